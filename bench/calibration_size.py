"""How the response-profile decision depends on the number of calibration images per class.

    python -m bench.calibration_size [--entries badnets-white,wanet-t4,tuap,physicalba,blended,clean] [--sizes 25,50,100,200]

For each entry (CIFAR-10, calibration held out: test images neither evaluated nor trained on):
one ``scanner calibrate`` (the library call) on 200 held-out images per class, whose scan gives
the pool's response profiles, then one scan of the evaluated set collecting them too (benign: 200
test images per class the model classifies correctly; poisoned: the entry's triggered non-target
test images sent to the target). Then, for each size n, a seeded choice of n pool
images per class is split as ``scanner calibrate`` splits it (half fit the density model, half
are its reference) and the evaluated set is judged at p <= 0.05: TPR, FPR, FPR on the target
class, and the smallest p-value a class's reference allows (1 / (n/2 + 1)). Three seeds per size;
the table gives their mean. Writes bench/results/calibration_size.md and .json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from scanner import Scanner
from scanner.calibrating import calibrate
from scanner.decide.profile import ProfileModel, split
from scanner.decide.reference import ScoreReference

from .reproduce import TARGET_FPR, image_sets
from .summarize import load_manifests

REPO = Path(__file__).resolve().parent.parent
POOL_PER_CLASS = 200
SEEDS = (0, 1, 2)


def _profiles(scanner: Scanner, paths) -> tuple[np.ndarray, np.ndarray]:
    scanner.collect_features = True
    result = scanner.scan([str(p) for p in paths])
    if result.failures:
        raise RuntimeError(f"{len(result.failures)} inputs failed")
    return result.scores.features, result.scores.labels


def measure(entry: Path, manifest: dict, sizes, sets) -> dict:
    test_npz, y_test, pool_npz, _, _ = sets
    model = entry / "model.onnx"
    run = calibrate(model, [pool_npz])  # its scan already holds the pool's profiles
    cal, pool = run.calibration, run.scan
    pool_f, pool_y = pool.scores.features, pool.scores.labels
    scanner = Scanner(model, calibration=cal)
    poisoned = entry / "poisoned_test.npz"
    eval_f, eval_y = _profiles(scanner, [test_npz] + ([poisoned] if poisoned.exists() else []))
    n_test, target = len(y_test), manifest.get("target_class")
    benign = np.zeros(len(eval_y), bool)
    benign[:n_test] = eval_y[:n_test] == y_test
    pois = np.zeros(len(eval_y), bool)
    if target is not None:
        pois[n_test:] = eval_y[n_test:] == target
    rows = []
    for n in sizes:
        runs = []
        for seed in SEEDS:
            rng = np.random.default_rng(seed)
            chosen = np.sort(np.concatenate([rng.permutation(np.flatnonzero(pool_y == k))[:n] for k in np.unique(pool_y)]))
            f, y = pool_f[chosen], pool_y[chosen]
            fit = split(y)
            density = ProfileModel(f[fit], y[fit], cal.min_class_samples)
            ref = ScoreReference.fit(density.distance(f[~fit], y[~fit]), y[~fit], cal.min_class_samples)
            flag = ref.p_values(density.distance(eval_f, eval_y), eval_y) <= TARGET_FPR
            tgt = benign & (np.arange(len(eval_y)) < n_test) & (eval_y == target) if target is not None else None
            runs.append({"tpr": float(flag[pois].mean()) if pois.any() else None,
                         "fpr": float(flag[benign].mean()),
                         "fpr_target_class": float(flag[tgt].mean()) if tgt is not None and tgt.any() else None,
                         "p_floor": float(max(1 / (len(ref.reference(int(k))) + 1) for k in np.unique(y)))})
        rows.append({"per_class": n, **{k: (None if runs[0][k] is None else float(np.mean([r[k] for r in runs])))
                                         for k in runs[0]}})
    return {"entry": entry.name, "attack": manifest["attack"], "target": target, "sizes": rows}


def render(doc: dict) -> str:
    lines = ["# Calibration size: the response-profile decision with 25 to 200 calibration images per class", "",
             f"Command: `{doc['command']}` ({doc['date']}, {doc['machine']}, {doc['seconds']} s). CIFAR-10, "
             "calibration images held out (test images neither evaluated nor trained on). Each size: "
             f"mean of {len(SEEDS)} seeded choices; half of each class fits the density model, half is its "
             "reference. Cells: **TPR / FPR / FPR on the target class** at p <= 0.05; *p floor*: the smallest "
             "p-value the reference of the class with the fewest images allows (above 0.05 nothing can be "
             "flagged in that class).", "",
             "| entry | target | " + " | ".join(f"{s} per class" for s in doc["sizes"]) + " |",
             "|---|---|" + "---|" * len(doc["sizes"])]

    def f(v, d=2):
        return "-" if v is None else f"{v:.{d}f}"

    for r in doc["rows"]:
        cells = [f"{f(s['tpr'])} / {f(s['fpr'], 3)} / {f(s['fpr_target_class'])}" for s in r["sizes"]]
        lines.append(f"| {r['entry']} | {r['target'] if r['target'] is not None else '-'} | " + " | ".join(cells) + " |")
    floors = doc["rows"][0]["sizes"] if doc["rows"] else []
    lines.append("| *p floor* | | " + " | ".join(f"{s['p_floor']:.3f}" for s in floors) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.calibration_size", description=__doc__.split("\n\n")[0])
    ap.add_argument("--zoo", type=Path, default=REPO / "bench" / "zoo")
    ap.add_argument("--entries", default="badnets-white,wanet-t4,tuap,physicalba,blended,clean")
    ap.add_argument("--sizes", default="25,50,100,200")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = ap.parse_args(argv)
    started = time.time()
    sizes = [int(s) for s in args.sizes.split(",")]
    manifests = load_manifests(args.zoo)
    sets = image_sets("cifar10", 200, POOL_PER_CLASS, 0, "heldout")
    rows = []
    for name in args.entries.split(","):
        t0 = time.time()
        rows.append(measure(args.zoo / name, manifests[name], sizes, sets))
        print(f"[{time.strftime('%H:%M:%S')}] {name}: " + ", ".join(
            f"{s['per_class']}: {s['tpr'] if s['tpr'] is None else round(s['tpr'], 2)}/{s['fpr']:.3f}"
            for s in rows[-1]["sizes"]) + f" ({time.time() - t0:.0f} s)", flush=True)
    doc = {"command": "python -m bench.calibration_size " + " ".join(argv if argv is not None else __import__("sys").argv[1:]),
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "machine": f"{platform.machine()}, {len(__import__('os').sched_getaffinity(0))} CPU cores",
           "seconds": round(time.time() - started, 1), "sizes": sizes, "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "calibration_size.json").write_text(json.dumps(doc, indent=2) + "\n")
    (args.out / "calibration_size.md").write_text(render(doc))
    print(render(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
