"""How a discrete score's flag depends on which 100 clean images calibrate it.

    python -m bench.score_ties [--score teco] [--zoo bench/zoo]

TeCo's score (the spread of the severities at which 12 corruptions flip the label) takes few
values: with 3 severities a class's 100 reference inputs hold 20-30 distinct values, and most
triggered inputs of an attack share one of them. Whether that one value falls above or below the
class's 5% threshold then decides the detector's TPR almost wholesale, and the threshold moves
with the calibration images. For every attacked CIFAR-10 entry this reads the cached scans of
``python -m bench.reproduce`` and ``--cal-split heldout`` (run those first; nothing is rescanned
that they cached) and writes ``bench/results/score_ties.md``: the share of the poisoned inputs at
the score's most common value, that value's conformal p-value against the target class's
references under each calibration, and the TPR at the 5% flag under each.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from scanner.decide.calibration import Calibration

from . import scancli
from .cifar import REPO_ROOT
from .reproduce import TARGET_FPR, VERSION, image_sets
from .summarize import load_manifests, ordered

OUT = REPO_ROOT / "bench" / "results" / "score_ties.md"


def entry_row(entry: Path, manifest: dict, score: str, splits: dict) -> dict | None:
    model, poisoned = entry / "model.onnx", entry / "poisoned_test.npz"
    target = manifest.get("target_class")
    if not poisoned.exists() or target is None:
        return None
    row: dict = {"entry": entry.name, "target": target}
    for split, (test_npz, _, cal_npz, _, _) in splits.items():
        _, cal_file = scancli.run("calibrate", model, [cal_npz], ["--fpr", str(TARGET_FPR)], extra_key=VERSION)
        report, _ = scancli.run("scan", model, [test_npz, poisoned], ["--calibration", str(cal_file)],
                                extra_key=VERSION)
        col = scancli.columns(report)
        n = manifest["poisoned_test"]["n"]
        labels = np.asarray(col["labels"])[-n:]
        values = np.asarray(col[score], np.float64)[-n:]
        hit = (labels == target) & ~np.isnan(values)
        values = values[hit]
        ref = Calibration.load(cal_file).references([score]).reference_of(f"q_{score}")
        p = ref.p_values(values, np.full(len(values), target))
        if "mode" not in row:  # the raw score does not depend on the calibration
            u, c = np.unique(np.round(values, 6), return_counts=True)
            row.update(n=len(values), distinct=len(u), mode=float(u[c.argmax()]), share=float(c.max() / len(values)),
                       ref_distinct=len(np.unique(np.round(ref.reference(target), 6))))
        row[f"p_mode_{split}"] = float(ref.p_values(np.array([row["mode"]]), np.array([target]))[0])
        row[f"tpr_{split}"] = float((p <= TARGET_FPR).mean())
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.score_ties", description=__doc__.split("\n\n")[0])
    ap.add_argument("--score", default="teco", help="raw score to inspect (default teco)")
    ap.add_argument("--zoo", type=Path, default=REPO_ROOT / "bench" / "zoo")
    args = ap.parse_args(argv)
    t0 = time.time()
    manifests = load_manifests(args.zoo)
    rows = []
    for (dataset, _), names in ordered(manifests):
        if dataset != "cifar10":  # the held-out calibration needs spare test images (CIFAR-10 only)
            continue
        splits = {s: image_sets(dataset, 200, 100, 0, s) for s in ("train", "heldout")}
        for name in names:
            row = entry_row(args.zoo / name, manifests[name], args.score, splits)
            if row is not None:
                rows.append(row)
                print(f"{name}: {row['share']:.2f} at {row['mode']:.3f}", file=sys.stderr)
    lines = [
        f"# Ties in `{args.score}`: one value, two calibrations",
        "",
        f"Command: `python -m bench.score_ties --score {args.score}` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"{time.time() - t0:.0f} s from the cached scans of `python -m bench.reproduce` and `--cal-split heldout`).",
        "",
        "Poisoned = the entry's triggered test images the model sends to the target. *at mode*: share of them whose "
        "score equals the most common value; *p train / p held-out*: that value's conformal p-value against the target "
        "class's references (flag at p <= 0.05) from the training-split and the held-out calibration; *TPR*: the "
        f"{args.score} decision's TPR at the 5% flag under each. *ref values*: distinct values among the target class's "
        "training-split references.",
        "",
        "| entry | target | poisoned | distinct values | mode | at mode | ref values | p train | p held-out | TPR train | TPR held-out |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['entry']} | {r['target']} | {r['n']} | {r['distinct']} | {r['mode']:.3f} | {r['share']:.2f} | "
                     f"{r['ref_distinct']} | {r['p_mode_train']:.3f} | {r['p_mode_heldout']:.3f} | "
                     f"{r['tpr_train']:.2f} | {r['tpr_heldout']:.2f} |")
    OUT.write_text("\n".join(lines) + "\n")
    print(f"wrote {OUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
