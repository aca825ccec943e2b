"""The response profile: every query's answer to the model, summarized per input as features.

The detectors each reduce their queries to one scalar (SPC, STRIP's entropy, TeCo's spread);
much of what tells a triggered input from a clean one is lost in that reduction (a patch trigger
that survives some corruptions and not others, a warp that keeps the label under blending). The
profile keeps, for every query ``q`` of an input whose own prediction is ``y``:

- ``log p_q(y)``: how much of the input's own class survives the query (floored at
  ``log(PROB_FLOOR)``, so that a vanishing probability stays finite);
- ``H(p_q)``: the entropy of the query's prediction (nats).

Features are query-major within each kind: ``[log p_0(y) .. log p_{Q-1}(y), H(p_0) .. H(p_{Q-1})]``
(query 0 is the input itself). They need class probabilities (a label-only model has none) and,
like every score, depend on the input alone, never on its batch. The density model over them
and its calibrated p-values live in :mod:`scanner.decide.profile`.
"""

from __future__ import annotations

import numpy as np

PROB_FLOOR = 1e-12
FEATURES_PER_QUERY = 2


def response_profile(labels: np.ndarray, probs: np.ndarray, b: int) -> np.ndarray:
    """The ``(b, 2 Q)`` float64 features of ``b`` inputs from the query-major outputs of their
    ``Q`` queries each (``labels``: ``(Q b,)``, ``probs``: ``(Q b, K)``; row ``i b + k`` is query ``i``
    of input ``k``)."""
    probs = np.asarray(probs, dtype=np.float64)
    if b == 0:
        return np.empty((0, 0), dtype=np.float64)
    if probs.ndim != 2 or probs.shape[0] % b:
        raise ValueError(f"expected (Q * {b}, K) probabilities, got {probs.shape}")
    q = probs.reshape(probs.shape[0] // b, b, probs.shape[1])
    own = np.asarray(labels[:b], dtype=np.int64)
    safe = np.maximum(q, PROB_FLOOR)
    log_own = np.log(safe[:, np.arange(b), own])              # (Q, b)
    entropy = -np.sum(q * np.log(safe), axis=2)               # (Q, b)
    return np.concatenate([log_own.T, entropy.T], axis=1)
