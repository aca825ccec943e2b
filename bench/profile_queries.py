"""Which queries and which combination should the default decision use? One scan per entry with
every detector (SCALE-UP, STRIP 16 blends, TeCo 12 x 3, region transplant 3 x 3 x 2: 76 queries),
then each variant computed from the same answers:

    python -m bench.profile_queries [--only badnets-white,clean] [--out bench/results/profile_queries.md]

Variants (each a per-class conformal p-value, flag at p <= 0.05; the profile is split-conformal
as ``scanner calibrate`` makes it, the combinations get per-class references from the
calibration inputs' leave-one-out p-values, as ``q_fisher`` does):

- ``profile58``: the response profile over SCALE-UP + STRIP + TeCo (the default before version 0.3, 58 queries);
- ``profile64``: the profile over SCALE-UP + STRIP + TeCo at 2 severities + transplant (64);
- ``profile76``: the profile over all 76 queries;
- ``transplant``: the transplant score alone (19 queries);
- ``minp64`` / ``minp76``: the smaller of the two p-values (Tippett's min-p: the profile of 64 or
  76 queries, and the transplant score), calibrated as one flag.

Calibration on the held-out CIFAR-10 images of ``bench.reproduce --cal-split heldout`` (test
images never trained on and never evaluated); GTSRB and MNIST on their training images (they
have no spare test images). Evaluated: the correctly classified benign test images and the
entry's triggered images the model sends to the target (first 500).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from scanner.calibrating import calibrate
from scanner.core import Scanner
from scanner.decide.profile import ProfileModel, split
from scanner.decide.reference import ScoreReference

from .reproduce import auroc, image_sets

REPO = Path(__file__).resolve().parent.parent
ZOO = REPO / "bench" / "zoo"
RATE = 0.05
DETECTORS = "scaleup,strip,teco,transplant"
PARAMS = {"strip": {"n_blends": 16}, "teco": {"severities": 3}, "transplant": {"grid": 3, "n_backgrounds": 2}}
# query layout of DETECTORS with PARAMS (the combination shares query 0)
Q = 1 + 5 + 16 + 36 + 18
TECO = np.arange(22, 58).reshape(12, 3)  # corruption-major, severity-minor
COLUMNS = {
    "profile58": np.arange(0, 58),
    "profile64": np.r_[np.arange(0, 22), TECO[:, :2].ravel(), np.arange(58, 76)],
    "profile76": np.arange(0, 76),
}
DEFAULT_ENTRIES = ["clean", "clean-s1", "badnets", "badnets-t4", "badnets-white", "badnets-white-t4", "blended",
                   "blended-t4", "wanet", "wanet-t4", "physicalba", "physicalba-t4", "tuap", "tuap-t4",
                   "label-consistent", "label-consistent-t4", "ssba-randenc", "ssba-randenc-t4", "vgg8-bn-clean",
                   "vgg8-bn-badnets", "vgg8-bn-blended", "vgg8-bn-wanet", "gtsrb-clean", "gtsrb-badnets-t41",
                   "gtsrb-blended-t41", "gtsrb-wanet-t41"]


def _cols(features: np.ndarray, queries: np.ndarray) -> np.ndarray:
    return np.concatenate([features[:, queries], features[:, Q + queries]], axis=1)


def _p(ref_values, ref_labels, values, labels) -> np.ndarray:
    return ScoreReference.fit(ref_values, ref_labels, 10).p_values(values, labels)


def _loo(values, labels) -> np.ndarray:
    ref = ScoreReference.fit(values, labels, 10)
    return ref.leave_one_out(values, labels)


def variants(cal_f, cal_y, cal_t, sets: dict[str, tuple]) -> dict[str, dict[str, np.ndarray]]:
    """p-values of every variant for each evaluated set ``name -> (features, labels, transplant)``."""
    fit = split(cal_y)
    ref = ~fit
    out = {name: {} for name in sets}
    p_t_loo = _loo(cal_t, cal_y)
    for name, (f, y, t) in sets.items():
        out[name]["transplant"] = _p(cal_t, cal_y, t, y)
    for key, queries in COLUMNS.items():
        model = ProfileModel(_cols(cal_f[fit], queries), cal_y[fit])
        d_ref = model.distance(_cols(cal_f[ref], queries), cal_y[ref])
        p_ref_loo = _loo(d_ref, cal_y[ref])
        # min-p over (profile, transplant), its reference from the reference half's leave-one-out p-values
        stat_ref = -np.log(np.minimum(p_ref_loo, p_t_loo[ref]))
        for name, (f, y, t) in sets.items():
            p_prof = _p(d_ref, cal_y[ref], model.distance(_cols(f, queries), y), y)
            out[name][key] = p_prof
            if key != "profile58":
                stat = -np.log(np.minimum(p_prof, out[name]["transplant"]))
                out[name]["minp" + key[7:]] = _p(stat_ref, cal_y[ref], stat, y)
    return out


def run_entry(entry: str, cal_split: str) -> dict:
    manifest = json.loads((ZOO / entry / "manifest.json").read_text())
    dataset = manifest.get("dataset", "cifar10")
    sets = image_sets(dataset, 200, 100, cal_split=cal_split if dataset == "cifar10" else "train")
    test_npz, y_test, cal_npz, _, _ = sets
    model = ZOO / entry / "model.onnx"
    t0 = time.time()
    cal, cres = calibrate(model, [str(cal_npz)], detectors=DETECTORS, detector_params=PARAMS)
    held = len(cres.scores.labels) - len(cal.labels)
    cal_rows = _calibration_rows(cres, cal)
    cal_f = cres.scores.features[cal_rows]
    cal_f, cal_y, cal_t = cal_f, cal.labels, cres.scores.named["transplant"][cal_rows]
    scanner = Scanner(model, calibration=cal)
    scanner.collect_features = True
    evaluated = {}
    bres = scanner.scan(str(test_npz))
    correct = bres.scores.labels == y_test[bres.indices]
    evaluated["benign"] = (bres.scores.features[correct], bres.scores.labels[correct],
                           bres.scores.named["transplant"][correct])
    target = manifest.get("target_class")
    poisoned = ZOO / entry / "poisoned_test.npz"
    if target is not None and poisoned.exists():
        x = np.load(poisoned)["x"][:500]
        pres = scanner.scan(x)
        hit = pres.scores.labels == target
        evaluated["poisoned"] = (pres.scores.features[hit], pres.scores.labels[hit], pres.scores.named["transplant"][hit])
    p = variants(cal_f, cal_y, cal_t, evaluated)
    row = {"entry": entry, "dataset": dataset, "target": target, "seconds": round(time.time() - t0, 1),
           "held": held, "n_benign": int(correct.sum()), "n_poisoned": int(len(evaluated.get("poisoned", [[]])[0]))}
    for name in p["benign"]:
        b = p["benign"][name]
        cell = {"fpr": float(np.mean(b <= RATE))}
        if target is not None:
            cell["fpr_target"] = float(np.mean(b[evaluated["benign"][1] == target] <= RATE))
        if "poisoned" in p and len(p["poisoned"][name]):
            q = p["poisoned"][name]
            cell["tpr"] = float(np.mean(q <= RATE))
            cell["auroc"] = auroc(1 - q, 1 - b)
        row[name] = cell
    return row


def _calibration_rows(cres, cal) -> np.ndarray:
    """Rows of the calibration scan that are calibration inputs (the held ones are not)."""
    n = len(cres.scores.labels)
    if n == len(cal.labels):
        return np.arange(n)
    # the held inputs are the first clean_images_needed of a seeded order: match by the count of labels
    held = n - len(cal.labels)
    from scanner.calibrating import SEED
    order = np.random.default_rng(SEED).permutation(n)
    picked = set(order[:held].tolist())
    return np.asarray([i for i in range(n) if cres.indices[i] not in picked])


NAMES = ["profile58", "profile64", "profile76", "transplant", "minp64", "minp76"]


def render(rows: list[dict], command: str, started: str, seconds: float) -> str:
    head = ["# Which queries and which combination: the response profile, region transplant, min-p", "",
            f"Command: `{command}` ({started}, {platform.machine()}, 2 CPU cores, {seconds:.0f} s). Each cell: "
            "**TPR (FPR, FPR on the target class's clean images)** at p <= 0.05; clean entries: FPR. "
            "Variants: see the module doc of `bench/profile_queries.py`.", "",
            "| entry | " + " | ".join(NAMES) + " |", "|---|" + "---|" * len(NAMES)]
    for r in rows:
        cells = []
        for n in NAMES:
            c = r[n]
            cells.append(f"FPR {c['fpr']:.3f}" if "tpr" not in c else
                         f"{c['tpr']:.2f} ({c['fpr']:.3f}, {c['fpr_target']:.2f})")
        head.append(f"| {r['entry']} | " + " | ".join(cells) + " |")
    attacked = [r for r in rows if "tpr" in r[NAMES[0]]]
    if attacked:
        head.append("| **mean / lowest TPR (attacked)** | " + " | ".join(
            f"**{np.mean([r[n]['tpr'] for r in attacked]):.2f} / {min(r[n]['tpr'] for r in attacked):.2f}**"
            for n in NAMES) + " |")
        head.append("| **mean AUROC (attacked)** | " + " | ".join(
            f"{np.mean([r[n]['auroc'] for r in attacked]):.3f}" for n in NAMES) + " |")
        head.append("| **highest FPR / target-class FPR** | " + " | ".join(
            f"{max(r[n]['fpr'] for r in rows):.3f} / {max(r[n]['fpr_target'] for r in attacked):.2f}" for n in NAMES) + " |")
    return "\n".join(head) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=",".join(DEFAULT_ENTRIES))
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "profile_queries.md")
    args = ap.parse_args(argv)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    t0 = time.time()
    rows = []
    for entry in [e for e in args.only.split(",") if e]:
        rows.append(run_entry(entry, "heldout"))
        print(json.dumps(rows[-1]), flush=True)
        args.out.with_suffix(".json").write_text(json.dumps(rows, indent=1))
    command = "python -m bench.profile_queries" + ("" if args.only == ",".join(DEFAULT_ENTRIES) else f" --only {args.only}")
    args.out.write_text(render(rows, command, started, time.time() - t0))
    print(args.out.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
