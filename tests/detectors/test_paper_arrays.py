"""The paper's published prediction arrays reproduce every AUROC cell of their README."""

import numpy as np
import pytest

from scanner.decide.metrics import roc_auc_score
from scanner.detectors.scaleup import parse_scales, spc_score

# attack: (official protocol: first 3000 rows, S = 1..11), (all rows, S = 1..11), (all rows, S = 3,5,7,9,11)
EXPECTED = {
    "BadNets": (0.9672, 0.9570, 0.9518),
    "ISSBA": (0.9321, 0.9295, 0.9218),
    "TUAP": (0.7837, 0.7643, 0.7526),
    "WaNet": (0.9728, 0.9618, 0.9564),
}
PROTOCOLS = [(3000, "1-11"), (None, "1-11"), (None, "3,5,7,9,11")]


def reference_spc(matrix: np.ndarray, scales) -> np.ndarray:
    # column j holds the label at n = j + 1; column 0 is the unscaled prediction
    labels = matrix[:, 0].astype(np.int64)
    scaled = matrix[:, [int(n) - 1 for n in scales]].astype(np.int64)
    return spc_score(labels, scaled)


@pytest.mark.parametrize("attack", sorted(EXPECTED))
def test_reference_auroc_reproduces_to_4_decimals(reference_dir, attack):
    poisoned = np.load(reference_dir / attack / "tiny_bd.npy")
    benign = np.load(reference_dir / attack / "tiny_benign.npy")
    for (rows, scales), expected in zip(PROTOCOLS, EXPECTED[attack]):
        s = parse_scales(scales)
        p, b = reference_spc(poisoned[:rows], s), reference_spc(benign[:rows], s)
        auc = roc_auc_score(np.r_[np.ones(p.size), np.zeros(b.size)], np.r_[p, b])
        assert round(auc, 4) == expected, (attack, rows, scales, auc)
