"""The verdict benchmark: does the scanner name the right class on a realistic input stream?

    python -m bench.verdicts [--zoo bench/zoo] [--stream 1000] [--mixes 0,0.02,0.10] [--only a,b]

For every zoo entry and every mix: a stream of ``--stream`` inputs, a fraction ``mix`` of them
triggered test images of the entry (from ``poisoned_test.npz``; as they come, including any the
model does not send to the target), the rest clean test images (seeded; their source images
disjoint from the triggered ones, all disjoint from the calibration images, which come from the
training split). For every decision the scanner offers, with and without a calibration, the
stream's model-level verdict and flagged rate per class are kept.

The per-input scores come from ``bench.reproduce``'s scans (the same cached reports: one scan
of the entry's test and poisoned images with its calibration); a stream is a seeded subset of
those rows, and its verdict is computed by the scanner's own ``scanner.decide.verdict.decide`` (a
scan's verdict depends only on its inputs' labels, flags and undecidable marks, and each
input's scores do not depend on its batch). ``--check`` also scans every 10% stream through
the command line, with the default calibrated decision and without a calibration, and fails if
its verdict differs from the computed one.

Cells: ``target named`` (only the true target), ``target named + false: a, b``, ``missed`` (nothing
named although triggered inputs are present), ``false: a, b`` (only wrong classes), ``silent``
(nothing named, no triggered inputs: correct), ``cannot judge`` (most inputs undecidable). Without
a calibration the scanner names no class by design ("no reference"); the cell then says which
class it reports as most flagged. Clean models get the 0% mix only.
Writes bench/results/verdicts.md and verdicts.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

from scanner.decide.calibration import Calibration
from scanner.decide.verdict import DEFAULT_ASSUMED_FPR, decide

from . import scancli
from .reproduce import DECISIONS, TARGET_FPR, VERSION, decision_scores, image_sets
from .summarize import load_manifests, ordered

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / "bench" / ".work" / "verdicts"
# (column, decision, calibrated): without a calibration SCALE-UP's data-free scores
CONFIGS = (("spc, no calibration", "spc", False), ("prob-consistency, no calibration", "prob_consistency", False),
           ("nspc", "nspc", True), ("scaleup", "scaleup", True), ("strip", "strip", True), ("teco", "teco", True),
           ("strip+teco", "strip+teco", True), ("all (Fisher)", "all", True), ("profile (default)", "profile", True))


def stream_rows(n_test: int, test_index: np.ndarray, pois_index: np.ndarray, n: int, mix: float,
                seed: int) -> tuple[np.ndarray, int]:
    """Rows of the entry's scan (test rows first, then poisoned rows) forming one seeded stream."""
    rng = np.random.default_rng(seed)
    k = int(round(mix * n)) if len(pois_index) else 0
    pick = rng.choice(len(pois_index), size=k, replace=False) if k else np.zeros(0, np.int64)
    free = np.flatnonzero(~np.isin(test_index, pois_index[pick]))
    benign = rng.choice(free, size=min(n - k, len(free)), replace=False)
    return np.concatenate([np.sort(benign), n_test + np.sort(pick)]), k


def verdict_of(labels, flagged, undecidable, calibrated: bool, cal: Calibration, decision: str):
    """The scanner's verdict for a stream (``scanner.decide.verdict.decide``, as ``summarize`` calls it:
    NSPC against the calibration's benign rates, a calibrated q score against the beta-binomial
    null of its per-class references)."""
    kw: dict = {"expected_fpr": DEFAULT_ASSUMED_FPR, "source": "assumed", "reference": False}
    if calibrated and decision == "nspc":
        kw = {"expected_fpr": cal.expected_fpr(), "per_class": cal.expected_fpr_per_class(), "source": "calibration",
              "reference": True}
    elif calibrated:
        raw = list(DECISIONS[decision][1])
        refs = cal.references(raw, raw)
        ref = refs.reference_of("q_fisher" if len(raw) > 1 else f"q_{raw[0]}")
        kw = {"expected_fpr": cal.target_fpr, "source": "calibration", "reference": True,
              "reference_sizes": None if ref is None else ref.sizes()}
    verdict, _ = decide(labels, flagged, undecidable, **kw)
    return verdict


def cell(named: list[int], target: int | None, k: int, verdict=None) -> str:
    if verdict is not None and verdict.status == "cannot judge":
        return "cannot judge"
    if verdict is not None and verdict.status == "no reference":
        most = verdict.note.split("most flagged: class ")[-1].split(",")[0] if "most flagged" in verdict.note else "-"
        return f"no reference (most flagged: {most})"
    false = sorted(c for c in named if c != target)
    hit = target is not None and target in named
    if hit:
        return "target named" + (f" + false: {', '.join(map(str, false))}" if false else "")
    if false:
        return "false: " + ", ".join(map(str, false))
    return "missed" if k else "silent"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.verdicts", description=__doc__.split("\n\n")[0])
    ap.add_argument("--zoo", type=Path, default=REPO / "bench" / "zoo")
    ap.add_argument("--stream", type=int, default=1000, help="inputs per stream")
    ap.add_argument("--mixes", default="0,0.02,0.10", help="fractions of triggered inputs")
    ap.add_argument("--benign-per-class", type=int, default=200, help="as bench.reproduce (its scans are reused)")
    ap.add_argument("--cal-per-class", type=int, default=100)
    ap.add_argument("--cal-split", choices=["train", "heldout"], default="train", help="as bench.reproduce")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", default=None)
    ap.add_argument("--check", action="store_true", help="also scan each 10%% stream through the CLI and compare")
    ap.add_argument("--no-cache", action="store_true")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = ap.parse_args(argv)
    started = time.time()
    mixes = [float(m) for m in args.mixes.split(",")]
    manifests = load_manifests(args.zoo)
    only = set(args.only.split(",")) if args.only else None
    groups, checked = [], 0
    for (dataset, arch), names in ordered(manifests):
        names = [n for n in names if only is None or n in only]
        if not names:
            continue
        split_seed = (manifests[names[0]].get("split") or {}).get("seed") or 0
        sets = image_sets(dataset, args.benign_per_class, args.cal_per_class, split_seed, args.cal_split)
        if sets is None:
            continue
        test_npz, y_test, cal_npz, _, test_index = sets
        rows = []
        for name in names:
            entry, m = args.zoo / name, manifests[name]
            model, poisoned = entry / "model.onnx", entry / "poisoned_test.npz"
            target = m.get("target_class")
            inputs = [test_npz] + ([poisoned] if poisoned.exists() else [])
            _, cal_file = scancli.run("calibrate", model, [cal_npz], ["--fpr", str(TARGET_FPR)],
                                      cache=not args.no_cache, extra_key=VERSION)
            cal = Calibration.load(cal_file)
            rep, _ = scancli.run("scan", model, inputs, ["--calibration", str(cal_file)], cache=not args.no_cache,
                                 extra_key=VERSION)
            col = scancli.columns(rep)
            scores = decision_scores(cal, col, col["labels"])
            scores["prob_consistency"] = (col["prob_consistency"], 0.5)
            pois_index = np.load(poisoned)["index"] if poisoned.exists() else np.zeros(0, np.int64)
            for mix in (mixes if target is not None else [0.0]):
                pick, k = stream_rows(len(y_test), test_index, pois_index, args.stream, mix, args.seed)
                row = {"entry": name, "target": target, "mix": mix, "triggered": k, "inputs": len(pick), "cells": {}}
                for column, decision, calibrated in CONFIGS:
                    values, threshold = scores[decision]
                    uses_scaleup = DECISIONS.get(decision, ("", (), True))[2]
                    undecidable = col["undecidable"][pick] if uses_scaleup else np.zeros(len(pick), bool)
                    flagged = (values[pick] >= (0.5 if not calibrated else threshold)) & ~undecidable
                    v = verdict_of(col["labels"][pick], flagged, undecidable, calibrated, cal, decision)
                    named = [s.label for s in v.suspects]
                    per_class = {int(c): [int((col["labels"][pick] == c).sum()), int(flagged[col["labels"][pick] == c].sum())]
                                 for c in np.unique(col["labels"][pick])}
                    row["cells"][column] = {"cell": cell(named, target, k, v), "named": named, "status": v.status,
                                            "target_named": target in named if target is not None else None,
                                            "flagged_rate": float(flagged.mean()), "flagged_per_class": per_class}
                if args.check and abs(mix - 0.10) < 1e-9:
                    checked += check_with_cli(entry, cal_file, test_npz, poisoned, pick, len(y_test), row)
                rows.append(row)
                print(f"[{time.strftime('%H:%M:%S')}] {name} mix {mix:.0%}: "
                      + "; ".join(f"{c}: {v['cell']}" for c, v in row["cells"].items()), file=sys.stderr, flush=True)
        groups.append({"dataset": dataset, "network": arch, "rows": rows})
    doc = {"command": "python -m bench.verdicts " + " ".join(argv if argv is not None else sys.argv[1:]),
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "machine": f"{platform.machine()}, {len(__import__('os').sched_getaffinity(0))} CPU cores",
           "seconds": round(time.time() - started, 1), "stream": args.stream, "mixes": mixes,
           "cal_per_class": args.cal_per_class, "cal_split": args.cal_split, "seed": args.seed, "cli_checked_streams": checked,
           "configs": [c[0] for c in CONFIGS], "groups": groups}
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "verdicts" if args.cal_split == "train" else f"verdicts_{args.cal_split}"
    (args.out / f"{stem}.json").write_text(json.dumps(doc, indent=2) + "\n")
    (args.out / f"{stem}.md").write_text(render(doc))
    print(render(doc))
    return 0


def check_with_cli(entry: Path, cal_file: Path, test_npz: Path, poisoned: Path, pick: np.ndarray, n_test: int,
                   row: dict) -> int:
    """Scan the stream's images through the CLI (calibrated default, and data-free) and compare verdicts."""
    x = np.concatenate([np.load(test_npz)["x"], np.load(poisoned)["x"]])[pick]
    WORK.mkdir(parents=True, exist_ok=True)
    path = WORK / f"{entry.name}_check_{len(pick)}.npz"
    np.savez(path, x=x)
    for column, extra in (("profile (default)", ["--calibration", str(cal_file)]), ("spc, no calibration", [])):
        rep, _ = scancli.run("scan", entry / "model.onnx", [path], extra, extra_key=VERSION, cache=False)
        named = sorted(int(s["label"]) for s in rep["summary"]["verdict"]["suspected_targets"])
        if named != sorted(row["cells"][column]["named"]) or rep["summary"]["verdict"]["status"] != row["cells"][column]["status"]:
            raise RuntimeError(f"{entry.name}: the CLI's verdict {named} / {rep['summary']['verdict']['status']} differs "
                               f"from the computed {row['cells'][column]}")
    return 1


def render(doc) -> str:
    cfgs = doc["configs"]
    lines = ["# Model-level verdicts on mixed input streams", "",
             f"Command: `{doc['command'].strip()}` ({doc['date']}, {doc['machine']}, {doc['seconds']} s including "
             f"cached scans). Each stream: {doc['stream']} inputs, the given share triggered (the entry's "
             "triggered test images, as they come), the rest clean test images, seeded; calibration = "
             f"{doc['cal_per_class']} " + ("training-split" if doc.get("cal_split", "train") == "train" else
                                           "held-out test-split (not in any stream)") + " images per class (`scanner calibrate`, FPR 5%). "
             "A cell says which classes the scan's verdict names as suspected targets: `target named`, "
             "`missed` (triggered inputs present, nothing named), `false: a, b` (wrong classes named), "
             "`silent` (nothing named, nothing to find), `cannot judge` (most inputs undecidable), `no reference` "
             "(no calibration: the scanner names no class by design and reports the most flagged one). "
             f"Streams checked against the command line's own verdict (`--check`): {doc.get('cli_checked_streams', 0)}.", ""]
    for g in doc["groups"]:
        lines += [f"## {g['dataset']}, {g['network']}", "",
                  "| entry | target | triggered | " + " | ".join(cfgs) + " |",
                  "|---|---|---|" + "---|" * len(cfgs)]
        for r in g["rows"]:
            tgt = "-" if r["target"] is None else str(r["target"])
            cells = " | ".join(r["cells"].get(c, {}).get("cell", "-") for c in cfgs)
            lines.append(f"| {r['entry']} | {tgt} | {r['mix']:.0%} ({r['triggered']}) | {cells} |")
        lines.append("")
    # tallies
    lines += ["## Tally (attacked entries, streams with triggered inputs)", "",
              "| config | target named (alone) | target named + false | missed | false only | cannot judge | no reference |",
              "|---|---|---|---|---|---|---|"]
    for c in cfgs:
        cs = [r["cells"].get(c, {}).get("cell", "") for g in doc["groups"] for r in g["rows"] if r["triggered"]]
        lines.append(f"| {c} | {sum(x == 'target named' for x in cs)} | {sum(x.startswith('target named +') for x in cs)} | "
                     f"{sum(x == 'missed' for x in cs)} | {sum(x.startswith('false') for x in cs)} | "
                     f"{sum(x == 'cannot judge' for x in cs)} | {sum(x.startswith('no reference') for x in cs)} |")
    lines += ["", "Streams without triggered inputs (0% mixes of attacked entries, and clean models). On a "
              "backdoored model a verdict that names the target here was not caused by triggered inputs: "
              "benign inputs alone made that class stand out (the sink, or the backdoor's own second sink).", "",
              "| config | silent | target named (no triggered inputs) | wrong class named | cannot judge | no reference |",
              "|---|---|---|---|---|---|"]
    for c in cfgs:
        cs = [r["cells"].get(c, {}).get("cell", "") for g in doc["groups"] for r in g["rows"] if not r["triggered"]]
        lines.append(f"| {c} | {sum(x == 'silent' for x in cs)} | {sum(x.startswith('target named') for x in cs)} | "
                     f"{sum(x.startswith('false') or '+ false' in x for x in cs)} | {sum(x == 'cannot judge' for x in cs)} | "
                     f"{sum(x.startswith('no reference') for x in cs)} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
