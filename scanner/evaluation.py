"""The paper's evaluation protocol over a benign and a poisoned input set.

Benign = clean inputs the model classifies correctly (when true labels are known); poisoned =
triggered inputs the model sends to the target class (when ``target_label`` is given). Scores:
SPC, and NSPC when the scanner has a calibration. Metrics from :mod:`scanner.metrics`.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .core import Scanner
from .results import ScanResult, ScanSettings
from .errors import InputError
from .metrics import detection_report


@dataclass
class Evaluation:
    """The paper's protocol on one benign and one poisoned set: what was kept, every figure, and
    the kept SPC values (for plots)."""

    settings: ScanSettings
    protocol: dict[str, Any]
    metrics: dict[str, dict[str, Any]]
    benign_spc: np.ndarray
    poisoned_spc: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        """The ``scanner evaluate -o`` JSON document."""
        return {"schema_version": 1, "kind": "evaluation", **self.settings.to_dict(),
                "protocol": self.protocol, "metrics": self.metrics}


def read_labels_file(path: str | Path) -> dict[str, int]:
    """A CSV/TSV/space-separated file of ``input,label`` lines (a header line is allowed)."""
    labels: dict[str, int] = {}
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise InputError(f"cannot read labels file {path}: {exc.strerror or exc}") from None
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        row = next(csv.reader([line.replace("\t", ",")]))
        if len(row) == 1:
            row = line.split()
        if len(row) < 2:
            raise InputError(f"{path}:{lineno}: expected 'input,label', got {line!r}")
        try:
            labels[row[0].strip()] = int(row[1])
        except ValueError:
            if lineno == 1:
                continue  # header
            raise InputError(f"{path}:{lineno}: label {row[1]!r} is not an integer") from None
    return labels


def folder_labels(names: list[str], class_names: Sequence[str] | None, num_classes: int | None) -> tuple[np.ndarray | None, str]:
    """True labels from ImageFolder-style parent folder names, or None with the reason.

    A folder name maps to a label by the model's class names, else by being an integer, else by
    the ImageFolder convention (sorted folder names) when there are exactly ``num_classes``.
    """
    folders = [Path(n.split(":")[0].split("[")[0]).parent.name for n in names]
    distinct = sorted(set(folders))
    if len(distinct) < 2:
        return None, "no class subfolders (one folder)"
    if class_names:
        lookup = {name: i for i, name in enumerate(class_names)}
        if all(f in lookup for f in distinct):
            return np.array([lookup[f] for f in folders]), "subfolder names matched to the model's class names"
    if all(f.isdigit() for f in distinct):
        return np.array([int(f) for f in folders]), "integer subfolder names"
    if num_classes is not None and len(distinct) == num_classes:
        lookup = {name: i for i, name in enumerate(distinct)}
        return np.array([lookup[f] for f in folders]), "sorted subfolder names (ImageFolder convention)"
    return None, f"subfolder names ({', '.join(distinct[:5])}...) do not map to class indices"


def _true_labels(result: ScanResult, scanner: Scanner, labels_file) -> tuple[np.ndarray | None, str]:
    names = [result.inputs.name(int(i)) for i in result.indices]
    return true_labels(names, scanner.spec.class_names, scanner.num_classes, labels_file)


def true_labels(names: list[str], class_names, num_classes: int | None,
                labels_file: str | Path | None) -> tuple[np.ndarray | None, str]:
    """True labels of the inputs ``names``: from ``labels_file`` if given (every input must be
    listed), else from ImageFolder subfolder names (:func:`folder_labels`)."""
    if labels_file is not None:
        table = read_labels_file(labels_file)
        missing = [n for n in names if n not in table]
        if missing:
            raise InputError(f"labels file {labels_file} has no label for {len(missing)} input(s), e.g. {missing[0]}")
        return np.array([table[n] for n in names]), f"labels file {labels_file}"
    return folder_labels(names, class_names, num_classes)


def evaluate(scanner: Scanner, benign: Sequence[str | Path], poisoned: Sequence[str | Path], *,
             target_label: int | None = None, labels_file: str | Path | None = None,
             fprs=(0.01, 0.05), seed: int = 0) -> Evaluation:
    """Scan both sets, apply the protocol's filters and compute every detection figure."""
    ben = scanner.scan(benign)
    poi = scanner.scan(poisoned)
    if ben.n_scored == 0 or poi.n_scored == 0:
        raise InputError("nothing could be scored in the benign or the poisoned set")
    truth, truth_note = _true_labels(ben, scanner, labels_file)
    keep_benign = np.ones(ben.n_scored, dtype=bool)
    if truth is not None:
        keep_benign = ben.scores.labels == truth
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
    }
    metrics: dict[str, dict[str, Any]] = {}
    b_spc, p_spc = ben.scores.spc[keep_benign], poi.scores.spc[keep_poisoned]
    spc_threshold = scanner.threshold if scanner.calibration is None else 0.5
    metrics["spc"] = detection_report(b_spc, p_spc, threshold=spc_threshold, fprs=fprs, seed=seed)
    if scanner.calibration is not None:
        metrics["nspc"] = detection_report(ben.scores.nspc[keep_benign], poi.scores.nspc[keep_poisoned],
                                                  threshold=scanner.threshold, fprs=fprs, seed=seed)
    if ben.scores.prob_consistency is not None:  # beyond the paper; AUROC is what matters here
        metrics["prob_consistency"] = detection_report(
            ben.scores.prob_consistency[keep_benign], poi.scores.prob_consistency[keep_poisoned],
            threshold=scanner.threshold if scanner.score_name == "prob-consistency" else 0.5, fprs=fprs, seed=seed)
    return Evaluation(scanner.settings(), protocol, metrics, b_spc, p_spc)


def plot_evaluation(result: Evaluation, path: str | Path) -> None:
    """ROC curve and SPC histograms of both sets, as one PNG."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise InputError('--plot needs matplotlib: pip install matplotlib (in a checkout of the scanner: pip install -e ".[plot]")') from None
    from sklearn.metrics import roc_curve

    b, p = result.benign_spc, result.poisoned_spc
    fpr, tpr, _ = roc_curve(np.r_[np.zeros(b.size), np.ones(p.size)], np.r_[b, p])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(fpr, tpr, label=f"SPC, AUROC {result.metrics['spc']['auroc']:.4f}")
    ax1.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax1.set(xlabel="false-positive rate", ylabel="true-positive rate", title="ROC")
    ax1.legend(loc="lower right")
    k = len(result.settings.query_names)
    bins = np.linspace(-0.5 / k, 1 + 0.5 / k, k + 2)  # one bin centred on each SPC value i / k
    ax2.hist(b, bins=bins, alpha=0.6, density=True, label=f"benign (n={b.size})")
    ax2.hist(p, bins=bins, alpha=0.6, density=True, label=f"poisoned (n={p.size})")
    ax2.set(xlabel="SPC", ylabel="density", title="SPC histograms, scales " + ",".join(result.settings.query_names))
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
