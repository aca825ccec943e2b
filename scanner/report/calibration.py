"""What a calibration can and cannot do, in words: what ``scanner calibrate`` prints and what a
scan's summary warns about (classes a score can never flag)."""

from __future__ import annotations

from ..decide.calibration import Calibration, unflaggable
from ..decide.reference import q_name


def calibration_lines(cal: Calibration, result) -> list[str]:
    """Lines for ``scanner calibrate``: warnings first, the summary line last."""
    lines = []
    for score in ["nspc", *(q_name(n) for n in cal.values)]:
        classes = unflaggable(cal, score)
        if classes:
            shown = ", ".join(str(k) for k in sorted(classes)[:12]) + (" ..." if len(classes) > 12 else "")
            first = classes[min(classes)]
            lines.append(f"Warning: {score.replace('_', '-')} can never flag predicted class(es) {shown} "
                         f"(class {min(classes)}: {first})")
    for name, mask in result.scores.undecidable_by.items():
        undecidable = int(mask.sum())
        if undecidable:
            lines.append(f"Warning: {undecidable} calibration input(s) are undecidable for {name}: left out of its "
                         "references (the paper's NSPC statistics keep them; a combined decision judges them "
                         "with the other detectors)")
    small = sum(1 for s in cal.per_class.values() if s.n < cal.min_class_samples)
    parts = ", ".join(d["name"] for d in cal.detectors) if cal.detectors else "scaleup"
    refs = cal.references(list(cal.values)) if cal.labels is not None else None
    achieved = "" if refs is None else "; FPR on this set (leave-one-out): " + ", ".join(
        f"{k.replace('_', '-')} {v:.4f}" for k, v in refs.achieved_fpr.items())
    lines.append(
        f"calibrated {parts} on {cal.n_samples} benign inputs ({len(cal.per_class)} predicted classes, {small} using "
        f"pooled references); decision {str(cal.decision or 'nspc').replace('_', '-')} at FPR {cal.target_fpr:g} per "
        f"class{achieved}; NSPC threshold {cal.threshold:.4g} (FPR {cal.achieved_fpr:.4f}); "
        f"scales {','.join(map(str, cal.scales))}")
    return lines
