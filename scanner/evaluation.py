"""The paper's evaluation protocol over a benign and a poisoned input set.

Benign = clean inputs the model classifies correctly (when true labels are known); poisoned =
triggered inputs the model sends to the target class (when ``target_label`` is given). Every score the scan offers is evaluated
(SPC, prob-consistency, STRIP, TeCo, and with a calibration NSPC and the calibrated ``q_*``).
Inputs a score cannot judge (undecidable: none of its detectors can) stay in both sets, the same
way: that score never flags them, so they count below every judged input (a true negative when
benign, a miss when poisoned), and each score says how many it could not judge. Metrics from
:mod:`scanner.decide.metrics`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .core import Scanner
from .results import ScanResult, ScanSettings
from .errors import InputError, ModelLoadError
from .decide.metrics import detection_report
from .decide.scoring import default_threshold
from .inputs.labels import folder_labels, read_labels_file, true_labels  # noqa: F401  (part of this module's API)


@dataclass
class Evaluation:
    """The paper's protocol on one benign and one poisoned set: what was kept, every figure, and
    the kept values of every score (for plots)."""

    settings: ScanSettings
    protocol: dict[str, Any]
    metrics: dict[str, dict[str, Any]]
    benign: dict[str, np.ndarray]
    poisoned: dict[str, np.ndarray]
    names: tuple[str, str] = ("benign", "poisoned")  # how the two sets are shown (their paths)

    @property
    def benign_spc(self) -> np.ndarray:
        return self.benign.get("spc", np.empty(0))

    @property
    def poisoned_spc(self) -> np.ndarray:
        return self.poisoned.get("spc", np.empty(0))

    def to_dict(self) -> dict[str, Any]:
        """The ``scanner evaluate -o`` JSON document."""
        return {"schema_version": 1, "kind": "evaluation", **self.settings.to_dict(),
                "protocol": self.protocol, "metrics": self.metrics}


UNDECIDABLE_RULE = ("kept in both sets: a score never flags an input it cannot judge, so such an input counts "
                    "below every judged one (a true negative if benign, a miss if poisoned)")


def _true_labels(result: ScanResult, scanner: Scanner, labels_file) -> tuple[np.ndarray | None, str]:
    names = [result.inputs.name(int(i)) for i in result.indices]
    return true_labels(names, scanner.spec.class_names, scanner.num_classes, labels_file)


def evaluate(scanner: Scanner, benign: Sequence[str | Path], poisoned: Sequence[str | Path], *,
             target_label: int | None = None, labels_file: str | Path | None = None,
             fprs=(0.01, 0.05), seed: int = 0) -> Evaluation:
    """Scan both sets, apply the protocol's filters and compute every detection figure."""
    ben = scanner.scan(benign)
    poi = scanner.scan(poisoned)
    for part in (ben, poi):  # a model call stopped by the per-call watchdog: no partial figures
        if part.incomplete:
            raise ModelLoadError(part.incomplete)
    if ben.n_scored == 0 or poi.n_scored == 0:
        raise InputError("nothing could be scored in the benign or the poisoned set")
    truth, truth_note = _true_labels(ben, scanner, labels_file)
    keep_benign = np.ones(ben.n_scored, dtype=bool)
    if truth is not None:
        keep_benign &= ben.scores.labels == truth
    keep_poisoned = np.ones(poi.n_scored, dtype=bool)
    poisoned_note = "no filter (pass --target-label to keep only inputs sent to the target)"
    if target_label is not None:
        keep_poisoned = poi.scores.labels == target_label
        poisoned_note = f"kept inputs predicted as the target {target_label}"
        source, _ = folder_labels([poi.inputs.name(int(i)) for i in poi.indices], scanner.spec.class_names, scanner.num_classes)
        if source is not None:
            keep_poisoned &= source != target_label
            poisoned_note += " from non-target source classes"
    if not keep_benign.any() or not keep_poisoned.any():
        raise InputError(
            f"after filtering, {int(keep_benign.sum())} benign and {int(keep_poisoned.sum())} poisoned inputs "
            "remain; both must be non-empty"
        )
    protocol = {
        "benign_found": ben.n_found, "benign_scored": ben.n_scored, "benign_kept": int(keep_benign.sum()),
        "benign_filter": ("kept correctly classified inputs; true labels from " + truth_note) if truth is not None
        else f"correct-prediction filter OFF: {truth_note}",
        "benign_accuracy": float(keep_benign.mean()) if truth is not None else None,
        "poisoned_found": poi.n_found, "poisoned_scored": poi.n_scored, "poisoned_kept": int(keep_poisoned.sum()),
        "poisoned_filter": poisoned_note,
        "attack_success_rate": float((poi.scores.labels == target_label).mean()) if target_label is not None else None,
        "failures": ben.failure_records() + poi.failure_records(),
        "undecidable": {"benign": int(ben.scores.undecidable[keep_benign].sum()),
                        "poisoned": int(poi.scores.undecidable[keep_poisoned].sum()),
                        "rule": UNDECIDABLE_RULE},
    }
    metrics: dict[str, dict[str, Any]] = {}
    kept_b, kept_p = {}, {}
    decision = scanner.score_name.replace("-", "_")
    for name in scanner.score_names:
        b, p = ben.scores.named.get(name), poi.scores.named.get(name)
        if b is None or p is None:
            continue
        b, p = b[keep_benign], p[keep_poisoned]
        out_b = scanner.undecidable_for(name, b, {k: v[keep_benign] for k, v in ben.scores.undecidable_by.items()})
        out_p = scanner.undecidable_for(name, p, {k: v[keep_poisoned] for k, v in poi.scores.undecidable_by.items()})
        kept_b[name], kept_p[name] = b[~out_b], p[~out_p]  # the judged values, for plots
        # each score at its own default operating point; the scan's decision at the scan's threshold
        threshold = scanner.threshold if name == decision else default_threshold(scanner.detector, scanner.calibration, name)
        judged = np.r_[b[~out_b], p[~out_p]]
        floor = min(float(judged.min()) if judged.size else 0.0, threshold) - 1.0  # never flagged, below all
        metrics[name] = detection_report(np.where(out_b, floor, b), np.where(out_p, floor, p), threshold=threshold,
                                         fprs=fprs, seed=seed)
        metrics[name]["threshold"] = threshold
        metrics[name]["decision"] = name == decision
        metrics[name]["undecidable"] = {"benign": int(out_b.sum()), "poisoned": int(out_p.sum())}
    names = (", ".join(map(str, benign)), ", ".join(map(str, poisoned)))
    return Evaluation(scanner.settings(), protocol, metrics, kept_b, kept_p, names)


def plot_evaluation(result: Evaluation, path: str | Path) -> None:
    """ROC curves of every score (the decision's operating point marked) and a histogram of each
    score for both sets, as one PNG; the model and the set names in the title."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise InputError('--plot needs matplotlib: pip install matplotlib (in a checkout of the scanner: pip install -e ".[plot]")') from None
    from sklearn.metrics import roc_curve

    names = list(result.metrics)
    cols = 3
    rows = 1 + (len(names) + cols - 1) // cols
    fig = plt.figure(figsize=(4.2 * cols, 3.4 * rows))
    fig.suptitle(f"{Path(result.settings.model).name}: benign {result.names[0]} vs poisoned {result.names[1]}",
                 fontsize=10)
    roc = fig.add_subplot(rows, cols, 1)
    for name in names:
        b, p = result.benign[name], result.poisoned[name]
        fpr, tpr, _ = roc_curve(np.r_[np.zeros(b.size), np.ones(p.size)], np.r_[b, p])
        line, = roc.plot(fpr, tpr, label=f"{name} {result.metrics[name]['auroc']:.3f}", lw=2 if result.metrics[name]["decision"] else 1)
        if result.metrics[name]["decision"]:
            at = result.metrics[name]["at_threshold"]
            roc.plot([at["fpr"]], [at["tpr"]], "o", color=line.get_color(), label=f"operating point ({name} >= "
                     f"{result.metrics[name]['threshold']:.3g})")
    roc.plot([0, 1], [0, 1], "k:", lw=0.8)
    roc.set(xlabel="false-positive rate", ylabel="true-positive rate", title="ROC (AUROC)")
    roc.legend(loc="lower right", fontsize=7)
    for i, name in enumerate(names):
        ax = fig.add_subplot(rows, cols, cols + 1 + i)
        b, p = result.benign[name], result.poisoned[name]
        both = np.r_[b, p]
        bins = np.linspace(both.min(), both.max() + 1e-9, 31) if both.size else 10
        ax.hist(b, bins=bins, alpha=0.6, density=True, label=f"benign (n={b.size})")
        ax.hist(p, bins=bins, alpha=0.6, density=True, label=f"poisoned (n={p.size})")
        ax.axvline(result.metrics[name]["threshold"], color="k", lw=0.8, ls="--")
        ax.set(xlabel=name, ylabel="density", title=name + (" (decision)" if result.metrics[name]["decision"] else ""))
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
