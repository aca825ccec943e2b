"""How to combine the detectors: Fisher's method against Tippett's minimum p-value, one- and
two-sided p-values, over every subset of SCALE-UP, STRIP, TeCo and region transplant.

    python -m bench.combinations [--cal-split train|heldout]

Reads the scans ``bench.reproduce`` made (the same cached reports and calibrations; run it
first). For every attacked CIFAR-10 / GTSRB entry and every variant: per-class conformal
p-values from the calibration (two-sided: twice the smaller tail), combined by Fisher
(``-2 sum log p``) or Tippett (``min p``), the combined statistic referenced per class on the
calibration's leave-one-out values, flagged at p <= 0.05. Means over the entries: AUROC, TPR,
lowest TPR, FPR, highest target-class FPR. This is how the default decision of version 0.2
(one-sided Fisher over SCALE-UP, STRIP and TeCo) was chosen; the response profile (``q_profile``)
replaced it and is measured by ``bench.reproduce``. Writes bench/results/combinations.md.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np

from scanner.decide.calibration import Calibration
from scanner.decide.reference import ScoreReference, fisher

from . import scancli
from .reproduce import TARGET_FPR, VERSION, auroc, image_sets
from .summarize import load_manifests, ordered

REPO = Path(__file__).resolve().parent.parent
RAW = ("prob_consistency", "strip", "teco", "transplant")


def p_values(ref: ScoreReference, values, labels, *, loo: bool, two_sided: bool) -> np.ndarray:
    up = ref.leave_one_out(values, labels) if loo else ref.p_values(values, labels)
    if not two_sided:
        return up
    neg = ScoreReference({k: np.sort(-v) for k, v in ref.per_class.items()}, np.sort(-ref.pooled), ref.min_class_samples)
    low = neg.leave_one_out(-values, labels) if loo else neg.p_values(-values, labels)
    return np.minimum(1.0, 2 * np.minimum(up, low))


def combine(ps, how: str) -> np.ndarray:
    return fisher(ps) if how == "fisher" else -np.log(np.min(ps, axis=0))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.combinations", description=__doc__.split("\n\n")[0])
    ap.add_argument("--zoo", type=Path, default=REPO / "bench" / "zoo")
    ap.add_argument("--cal-split", choices=["train", "heldout"], default="train")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = ap.parse_args(argv)
    manifests = load_manifests(args.zoo)
    rows: dict[str, list[dict]] = {}
    for (dataset, _), names in ordered(manifests):
        if dataset == "mnist":
            continue
        sets = image_sets(dataset, 200, 100, (manifests[names[0]].get("split") or {}).get("seed") or 0, args.cal_split)
        if sets is None:
            continue
        test_npz, y_test, cal_npz, _, _ = sets
        for name in names:
            m, entry = manifests[name], args.zoo / name
            target = m.get("target_class")
            if target is None:
                continue
            _, cal_file = scancli.run("calibrate", entry / "model.onnx", [cal_npz], ["--fpr", str(TARGET_FPR)],
                                      extra_key=VERSION)
            rep, _ = scancli.run("scan", entry / "model.onnx", [test_npz, entry / "poisoned_test.npz"],
                                 ["--calibration", str(cal_file)], extra_key=VERSION)
            cal, col = Calibration.load(cal_file), scancli.columns(rep)
            labels, n = col["labels"], len(y_test)
            benign = (labels[:n] == y_test) & ~col["undecidable"][:n]
            pois = (labels[n:] == target) & ~col["undecidable"][n:]
            for two_sided in (False, True):
                for k in (1, 2, 3):
                    for subset in itertools.combinations(RAW, k):
                        refs = cal.references(list(subset), list(subset))
                        for how in (("fisher", "tippett") if k > 1 else ("single",)):
                            pe = [p_values(refs.scores[c], col[c], labels, loo=False, two_sided=two_sided) for c in subset]
                            if k == 1:
                                p = pe[0]
                            else:
                                pc = [p_values(refs.scores[c], cal.values[c], cal.labels, loo=True, two_sided=two_sided)
                                      for c in subset]
                                ref = ScoreReference.fit(combine(pc, how), cal.labels, cal.min_class_samples)
                                p = ref.p_values(combine(pe, how), labels)
                            flag = p <= TARGET_FPR
                            tb = benign & (y_test == target)
                            key = f"{' + '.join(subset)} | {how} | {'two' if two_sided else 'one'}-sided"
                            rows.setdefault(key, []).append({
                                "auroc": auroc(-p[n:][pois], -p[:n][benign]), "tpr": float(flag[n:][pois].mean()),
                                "fpr": float(flag[:n][benign].mean()),
                                "fpr_target": float(flag[:n][tb].mean()) if tb.any() else float("nan")})
            print(f"[{time.strftime('%H:%M:%S')}] {name}", file=sys.stderr, flush=True)
    lines = ["# Combining the detectors", "",
             f"Command: `python -m bench.combinations --cal-split {args.cal_split}` ({time.strftime('%Y-%m-%d')}); "
             "from the scans of `bench.reproduce` (same calibration split). Means over "
             f"{len(next(iter(rows.values()), []))} attacked CIFAR-10 / GTSRB entries; flag at p <= 0.05.", "",
             "| scores | combination | p-values | mean AUROC | mean TPR | lowest TPR | mean FPR | highest target-class FPR |",
             "|---|---|---|---|---|---|---|---|"]
    for key, rs in sorted(rows.items(), key=lambda kv: -np.mean([r["tpr"] for r in kv[1]])):
        subset, how, sided = key.split(" | ")
        lines.append(f"| {subset} | {how} | {sided} | {np.mean([r['auroc'] for r in rs]):.3f} | "
                     f"{np.mean([r['tpr'] for r in rs]):.3f} | {np.min([r['tpr'] for r in rs]):.3f} | "
                     f"{np.mean([r['fpr'] for r in rs]):.3f} | {np.nanmax([r['fpr_target'] for r in rs]):.3f} |")
    text = "\n".join(lines) + "\n"
    stem = "combinations" if args.cal_split == "train" else "combinations_heldout"
    (args.out / f"{stem}.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
