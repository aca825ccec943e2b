"""Which inputs SCALE-UP cannot judge: how much amplification changes each test image.

    python -m bench.undecidable [--limit 3000]

For each data set, the share of pixel values that ``clip(n x, 0, 1)`` moves by more than
``UNDECIDABLE_DELTA`` (averaged over n = 3, 5, 7, 9, 11: the scanner's own
``scanner.detectors.scaleup.amplification_change``), its percentiles, and how many images fall
under the scanner's ``UNDECIDABLE_SHARE``. Writes bench/results/undecidable.md.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np

from scanner.detectors.scaleup import DEFAULT_SCALES, UNDECIDABLE_DELTA, UNDECIDABLE_SHARE, amplification_change

from . import datasets

REPO = Path(__file__).resolve().parent.parent
PCTS = (0, 0.5, 1, 5, 50, 95, 100)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.undecidable", description=__doc__.split("\n\n")[0])
    ap.add_argument("--limit", type=int, default=3000, help="test images per data set (first ones of the test split)")
    args = ap.parse_args(argv)
    lines = ["# Inputs SCALE-UP cannot judge", "",
             f"Command: `python -m bench.undecidable --limit {args.limit}` ({time.strftime('%Y-%m-%d', time.gmtime())}, "
             f"{platform.machine()}). Share of pixel values moved by more than {UNDECIDABLE_DELTA:g} under "
             f"clip(n x, 0, 1), mean over n = {','.join(map(str, DEFAULT_SCALES))}; an input below "
             f"{UNDECIDABLE_SHARE:g} is reported `undecidable`.", "",
             "| data set | images | " + " | ".join(f"p{p:g}" for p in PCTS) + " | undecidable |",
             "|---|---|" + "---|" * len(PCTS) + "---|"]
    for name in ("cifar10", "gtsrb", "mnist"):
        ds = datasets.load(name)
        x = ds.x_test[:args.limit]
        change = amplification_change(x, DEFAULT_SCALES)
        pct = np.percentile(change, PCTS)
        under = int((change < UNDECIDABLE_SHARE).sum())
        lines.append(f"| {name} | {len(x)} | " + " | ".join(f"{v:.3f}" for v in pct)
                     + f" | {under} ({under / len(x):.2%}) |")
    text = "\n".join(lines) + "\n"
    (REPO / "bench" / "results" / "undecidable.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
