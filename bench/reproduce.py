"""The paper's detection table over every zoo entry, grouped by data set and network.

    python -m bench.reproduce [--zoo bench/zoo] [--benign-per-class 1000] [--cal-per-class 100] [--no-cache]

Drives the scanner's command line (``bench/scancli.py``; reports cached by model and input hash
in ``bench/.work/scans/``). For every entry:

- calibration: ``scanner calibrate`` on images of the TRAINING split (``--cal-per-class`` per
  class, seeded), never the evaluated ones; NSPC comes from that file;
- benign = test-split images the model classifies correctly; poisoned = the entry's triggered
  non-target test images (``poisoned_test.npz``) that the model sends to the target;
- for every score the scanner offers (SPC, NSPC, prob-consistency): AUROC, and TPR at 5% FPR
  with the threshold fitted on the training-split calibration images (the smallest threshold
  flagging at most 5% of them), together with the FPR that threshold actually gives on the
  evaluated benign images; TPR / FPR of the data-free default (SPC >= 0.5); the share of
  benign images with SPC = 1 (saturation);
- clean models: the false-positive rates at the same thresholds.

Writes bench/results/detection.md and detection.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

from . import datasets, scancli
from .summarize import load_manifests, ordered

REPO = Path(__file__).resolve().parent.parent
PAPER = {"spc": 0.928, "nspc": 0.933}  # the paper's CIFAR-10 averages, as quoted in the literature
REFERENCE = REPO.parent / "shared" / "reference" / "scaleup-official-spc"
SCORES = ("spc", "nspc", "prob_consistency")
SCORE_NAMES = {"spc": "SPC", "nspc": "NSPC", "prob_consistency": "prob-consistency"}
TARGET_FPR = 0.05
SETS = WORK = REPO / "bench" / ".work" / "reproduce"


# ------------------------------------------------------------------------------ metrics

def auroc(pos: np.ndarray, neg: np.ndarray) -> float:
    """Area under the ROC curve (positives = poisoned), ties counted one half."""
    pos, neg = np.asarray(pos, np.float64), np.asarray(neg, np.float64)
    if not len(pos) or not len(neg):
        return float("nan")
    allv = np.concatenate([pos, neg])
    order = np.argsort(allv, kind="mergesort")
    ranks = np.empty(len(allv))
    sorted_v = allv[order]
    # average ranks over ties
    starts = np.flatnonzero(np.r_[True, sorted_v[1:] != sorted_v[:-1]])
    ends = np.r_[starts[1:], len(allv)]
    avg = (starts + ends + 1) / 2.0
    ranks[order] = np.repeat(avg, ends - starts)
    r_pos = ranks[: len(pos)].sum()
    return float((r_pos - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def fit_threshold(cal: np.ndarray, fpr: float = TARGET_FPR) -> float:
    """Smallest observed value t with mean(cal >= t) <= fpr (inf when even the maximum flags more)."""
    cal = np.sort(np.asarray(cal, np.float64))
    for t in np.unique(cal):
        if np.mean(cal >= t) <= fpr:
            return float(t)
    return float("inf")


def rate(x: np.ndarray, t: float) -> float:
    return float(np.mean(x >= t)) if len(x) else float("nan")


# ------------------------------------------------------------------------------ image sets

def image_sets(dataset: str, benign_per_class: int, cal_per_class: int, split_seed: int = 0):
    """(test_npz, y_test, cal_npz, y_cal, test_index): benign test images (and their positions in the
    test split) and training-split calibration images (seeded choice per class)."""
    WORK.mkdir(parents=True, exist_ok=True)
    test_path = WORK / f"{dataset}-s{split_seed}_test_{benign_per_class}.npz"
    cal_path = WORK / f"{dataset}-s{split_seed}_cal_{cal_per_class}.npz"
    ylab = WORK / f"{dataset}-s{split_seed}_labels_{benign_per_class}_{cal_per_class}.npz"
    if not (test_path.exists() and cal_path.exists() and ylab.exists()):
        ds = datasets.load(dataset, split_seed=split_seed)
        te = np.concatenate([np.flatnonzero(ds.y_test == k)[:benign_per_class] for k in range(ds.num_classes)])
        rng = np.random.default_rng(1234)
        ca = np.sort(np.concatenate([rng.permutation(np.flatnonzero(ds.y_train == k))[:cal_per_class]
                                     for k in range(ds.num_classes)]))
        np.savez(test_path, x=ds.x_test[te])
        np.savez(cal_path, x=ds.x_train[ca])
        np.savez(ylab, test=ds.y_test[te], test_index=te, cal=ds.y_train[ca], cal_index=ca)
    z = np.load(ylab)
    return test_path, z["test"], cal_path, z["cal"], z["test_index"]


# ------------------------------------------------------------------------------ one entry

def score_entry(entry: Path, manifest: dict, sets, cache: bool = True) -> dict:
    test_npz, y_test, cal_npz, y_cal, _ = sets
    model = entry / "model.onnx"
    poisoned = entry / "poisoned_test.npz"
    inputs = [cal_npz, test_npz] + ([poisoned] if poisoned.exists() else [])
    _, cal_file = scancli.run("calibrate", model, [cal_npz], ["--fpr", str(TARGET_FPR)], cache=cache)
    # the scanner gives NSPC only with --score spc: one scan with the calibration (SPC, NSPC), one
    # with --score prob-consistency
    report, _ = scancli.run("scan", model, inputs, ["--calibration", str(cal_file)], cache=cache)
    col = scancli.columns(report)
    other, _ = scancli.run("scan", model, inputs, ["--score", "prob-consistency"], cache=cache)
    other = scancli.columns(other)
    if not np.array_equal(other["labels"], col["labels"]):
        raise RuntimeError(f"{entry.name}: the two scans disagree on predicted labels")
    col["prob_consistency"] = other["prob_consistency"]
    n_cal, n_test = len(y_cal), len(y_test)
    if len(col["labels"]) != n_cal + n_test + (manifest.get("poisoned_test", {}).get("n", 0) if poisoned.exists() else 0):
        raise RuntimeError(f"{entry.name}: {len(col['labels'])} results for {n_cal} + {n_test} + poisoned inputs")
    part = {k: (v[:n_cal], v[n_cal:n_cal + n_test], v[n_cal + n_test:]) for k, v in col.items()}
    cal_lab, test_lab, pois_lab = part["labels"]
    benign = test_lab == y_test
    target = manifest.get("target_class")
    pois = pois_lab == target if target is not None else np.zeros(0, bool)
    row = {"entry": entry.name, "attack": manifest["attack"], "target": target,
           "target_name": manifest.get("target_name"), "clean_accuracy": manifest["clean_accuracy"],
           "attack_success_rate": manifest.get("attack_success_rate"), "shortfall": manifest.get("shortfall"),
           "benign_kept": int(benign.sum()), "benign_total": int(n_test),
           "poisoned_kept": int(pois.sum()), "poisoned_total": int(len(pois_lab)),
           "calibration_images": int(n_cal), "calibration_accuracy": float(np.mean(cal_lab == y_cal)),
           "benign_spc1_share": float(np.mean(part["spc"][1][benign] == 1.0)),
           "poisoned_spc1_share": float(np.mean(part["spc"][2][pois] == 1.0)) if pois.any() else None}
    for s in SCORES:
        cal_s, ben_s, poi_s = part[s][0], part[s][1][benign], part[s][2][pois] if len(pois) else np.zeros(0)
        t = fit_threshold(cal_s)
        row[s] = {"auroc": auroc(poi_s, ben_s) if len(poi_s) else None, "threshold": t,
                  "calibration_fpr": rate(cal_s, t), "fpr": rate(ben_s, t),
                  "tpr": rate(poi_s, t) if len(poi_s) else None}
    row["spc_at_0.5"] = {"tpr": rate(part["spc"][2][pois], 0.5) if pois.any() else None,
                         "fpr": rate(part["spc"][1][benign], 0.5)}
    return row


def reference_rows() -> list[dict]:
    """AUROC from the paper's published arrays (Tiny-ImageNet ResNet-18): labels at n = 1..11."""
    rows = []
    if not REFERENCE.is_dir():
        return rows
    for attack in sorted(p.name for p in REFERENCE.iterdir() if p.is_dir()):
        bd, bn = (np.load(REFERENCE / attack / f) for f in ("tiny_bd.npy", "tiny_benign.npy"))
        row = {"attack": attack}
        for key, n_rows, scales in (("official_3000_1-11", 3000, range(1, 12)), ("all_3-11", None, (3, 5, 7, 9, 11))):
            cols = [n - 1 for n in scales]
            p = (bd[:n_rows][:, cols] == bd[:n_rows, :1]).mean(1)
            b = (bn[:n_rows][:, cols] == bn[:n_rows, :1]).mean(1)
            row[key] = auroc(p, b)
        rows.append(row)
    return rows


# ------------------------------------------------------------------------------ main

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.reproduce", description=__doc__.split("\n\n")[0])
    ap.add_argument("--zoo", type=Path, default=REPO / "bench" / "zoo")
    ap.add_argument("--benign-per-class", type=int, default=1000, help="test images per class (at most)")
    ap.add_argument("--cal-per-class", type=int, default=100, help="training-split calibration images per class (at most)")
    ap.add_argument("--only", default=None, help="comma-separated entry names (default: all)")
    ap.add_argument("--no-cache", action="store_true", help="rescan even where a cached report exists")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = ap.parse_args(argv)
    started = time.time()
    manifests = load_manifests(args.zoo)
    only = set(args.only.split(",")) if args.only else None
    groups = []
    for (dataset, arch), names in ordered(manifests):
        names = [n for n in names if only is None or n in only]
        if not names:
            continue
        split_seed = (manifests[names[0]].get("split") or {}).get("seed") or 0
        sets = image_sets(dataset, args.benign_per_class, args.cal_per_class, split_seed)
        rows = []
        for name in names:
            t0 = time.time()
            row = score_entry(args.zoo / name, manifests[name], sets, cache=not args.no_cache)
            row["seconds"] = round(time.time() - t0, 1)
            rows.append(row)
            au = ", ".join(f"{SCORE_NAMES[s]} {row[s]['auroc']:.4f}" for s in SCORES if row[s]["auroc"] is not None)
            print(f"[{time.strftime('%H:%M:%S')}] {dataset}/{arch} {name}: {au or 'clean'} ({row['seconds']} s)",
                  file=sys.stderr, flush=True)
        groups.append({"dataset": dataset, "network": arch, "rows": rows})
    doc = {"command": "python -m bench.reproduce " + " ".join(argv if argv is not None else sys.argv[1:]),
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "machine": f"{platform.machine()}, {len(__import__('os').sched_getaffinity(0))} CPU cores",
           "seconds": round(time.time() - started, 1), "benign_per_class": args.benign_per_class,
           "cal_per_class": args.cal_per_class, "scales": [3, 5, 7, 9, 11], "target_fpr": TARGET_FPR,
           "groups": groups, "paper": PAPER, "reference_arrays": reference_rows()}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "detection.json").write_text(json.dumps(doc, indent=2) + "\n")
    (args.out / "detection.md").write_text(render(doc))
    print(render(doc))
    return 0


def _f(v, digits=4) -> str:
    return "-" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.{digits}f}"


def render(doc) -> str:
    lines = [
        "# SCALE-UP on the backdoor zoo",
        "",
        f"Command: `{doc['command'].strip()}` ({doc['date']}, {doc['machine']}, {doc['seconds']} s including "
        "cached scans). Scales 3,5,7,9,11. Benign = test-split images the model classifies correctly "
        f"(at most {doc['benign_per_class']} per class before filtering); poisoned = the entry's triggered "
        "non-target test images that the model sends to the target. Calibration (NSPC statistics and every "
        f"threshold below) = at most {doc['cal_per_class']} TRAINING-split images per class, never evaluated.",
        "",
        f"TPR@5%: threshold = the smallest score value that flags at most 5% of the calibration images; "
        "TPR on the poisoned set and, in brackets, the FPR that threshold actually gives on the evaluated "
        "benign images. SPC takes |S| + 1 values: where more than 5% of calibration images sit at SPC = 1 "
        "no SPC threshold below 'nothing flagged' exists (TPR 0). 'SPC=1' = share of benign images whose "
        "SPC is 1 (saturated: every scale keeps the label).",
    ]
    for g in doc["groups"]:
        lines += ["", f"## {g['dataset']}, {g['network']}", "",
                  "| entry | target | clean acc | ASR | AUROC SPC | AUROC NSPC | AUROC prob-cons | "
                  "TPR@5% SPC (FPR) | TPR@5% NSPC (FPR) | TPR@5% prob-cons (FPR) | TPR / FPR @ SPC>=0.5 | "
                  "SPC=1 | benign / poisoned kept |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        attacked = [r for r in g["rows"] if r["target"] is not None]
        for r in g["rows"]:
            tgt = "-" if r["target"] is None else f"{r['target']} {r['target_name']}"
            asr = _f(r["attack_success_rate"]) + (" (short)" if r.get("shortfall") else "")
            if r["target"] is None:
                fprs = " | ".join(f"FPR {_f(r[s]['fpr'], 3)}" for s in SCORES)
                lines.append(f"| {r['entry']} (clean) | - | {_f(r['clean_accuracy'])} | - | - | - | - | {fprs} | "
                             f"FPR {_f(r['spc_at_0.5']['fpr'], 3)} | {_f(r['benign_spc1_share'], 3)} | "
                             f"{r['benign_kept']} / - |")
                continue
            au = " | ".join(_f(r[s]["auroc"]) for s in SCORES)
            tp = " | ".join(f"{_f(r[s]['tpr'], 3)} ({_f(r[s]['fpr'], 3)})" for s in SCORES)
            lines.append(f"| {r['entry']} | {tgt} | {_f(r['clean_accuracy'])} | {asr} | {au} | {tp} | "
                         f"{_f(r['spc_at_0.5']['tpr'], 3)} / {_f(r['spc_at_0.5']['fpr'], 3)} | "
                         f"{_f(r['benign_spc1_share'], 3)} | {r['benign_kept']} / {r['poisoned_kept']} |")
        if attacked:
            means = " | ".join(f"**{_f(float(np.mean([r[s]['auroc'] for r in attacked])))}**" for s in SCORES)
            lines.append(f"| **mean ({len(attacked)} attacked)** | | | | {means} | | | | | | |")
    lines += ["", f"Paper (CIFAR-10 averages as quoted in the literature): AUROC {doc['paper']['spc']} data-free, "
              f"{doc['paper']['nspc']} data-limited."]
    if doc["reference_arrays"]:
        lines += ["", "The paper's published arrays (Tiny-ImageNet, ResNet-18), AUROC of SPC computed here:", "",
                  "| attack | official protocol (3000 rows, S = 1..11) | all rows, S = 3,5,7,9,11 |", "|---|---|---|"]
        lines += [f"| {r['attack']} | {r['official_3000_1-11']:.4f} | {r['all_3-11']:.4f} |" for r in doc["reference_arrays"]]
    lines += ["", "prob-consistency (beyond the paper, `--score prob-consistency`): mean over the scales of the "
              "probability the amplified copy gives the unscaled label."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
