"""Which density model describes clean response profiles: one covariance per class, or one
covariance shared by all classes (both Ledoit-Wolf, on standardized features)?

    python -m bench.profile_model [--entries clean,badnets-white,wanet,vgg8-bn-clean]

Decided on CLEAN calibration images only (never on triggered or evaluated ones): for each entry,
``scanner calibrate`` on the held-out calibration images of bench.reproduce (100 CIFAR-10 test
images per class that are never evaluated), then a 2-fold split within each class (the split
``scanner calibrate`` uses, and its swap): fit each model on one half, and score the other half
by its Gaussian log-likelihood. The mean held-out log-likelihood per image is the figure (higher
describes unseen clean images better). Writes bench/results/profile_model.md.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
from sklearn.covariance import LedoitWolf

from scanner.calibrating import calibrate
from scanner.decide.profile import split

from .reproduce import image_sets

REPO = Path(__file__).resolve().parent.parent


def _loglik(z: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> np.ndarray:
    d = z - mean
    _, logdet = np.linalg.slogdet(cov)
    return -0.5 * (np.einsum("ij,jk,ik->i", d, np.linalg.inv(cov), d) + logdet + z.shape[1] * np.log(2 * np.pi))


def held_out_loglik(features: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    totals = {"per-class covariance": 0.0, "shared covariance": 0.0}
    half = split(labels)
    for fit, test in ((half, ~half), (~half, half)):
        center, scale = features[fit].mean(0), np.maximum(features[fit].std(0), 1e-6)
        z, zt = (features[fit] - center) / scale, (features[test] - center) / scale
        yf, yt = labels[fit], labels[test]
        means = {k: z[yf == k].mean(0) for k in np.unique(yf)}
        shared = LedoitWolf(assume_centered=True).fit(np.concatenate([z[yf == k] - m for k, m in means.items()]))
        for k in np.unique(yt):
            if k not in means:
                continue
            own = LedoitWolf().fit(z[yf == k])
            totals["per-class covariance"] += float(_loglik(zt[yt == k], own.location_, own.covariance_).sum())
            totals["shared covariance"] += float(_loglik(zt[yt == k], means[k], shared.covariance_).sum())
    return {k: v / len(labels) for k, v in totals.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.profile_model", description=__doc__.split("\n\n")[0])
    ap.add_argument("--zoo", type=Path, default=REPO / "bench" / "zoo")
    ap.add_argument("--entries", default="clean,badnets-white,wanet,vgg8-bn-clean")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = ap.parse_args(argv)
    started = time.time()
    _, _, cal_npz, _, _ = image_sets("cifar10", 200, 100, 0, "heldout")
    rows = []
    for name in args.entries.split(","):
        scores = calibrate(args.zoo / name / "model.onnx", [cal_npz]).scan.scores
        rows.append((name, scores.features.shape, held_out_loglik(scores.features, scores.labels)))
        print(name, rows[-1][2], flush=True)
    lines = ["# The response profile's density model: per-class or shared covariance", "",
             f"Command: `python -m bench.profile_model {' '.join(argv or [])}`".rstrip() + f" ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
             f"{platform.machine()}, 2 CPU cores, {time.time() - started:.0f} s). Clean held-out calibration images "
             "only (100 CIFAR-10 test images per class, never evaluated); 2-fold within each class. Mean held-out "
             "Gaussian log-likelihood per image of standardized response profiles (higher is better).", "",
             "| entry | images x features | per-class covariance | shared covariance |", "|---|---|---|---|"]
    for name, shape, ll in rows:
        lines.append(f"| {name} | {shape[0]} x {shape[1]} | {ll['per-class covariance']:.1f} | {ll['shared covariance']:.1f} |")
    lines += ["", "The scanner uses the shared covariance (`scanner/decide/profile.py`): with about 50 fit images per "
              "class and 116 features, one covariance per class is estimated from too few images."]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "profile_model.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
