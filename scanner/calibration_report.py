"""What a calibration can and cannot do, in words: what ``scanner calibrate`` prints and what a
scan's summary warns about (classes a score can never flag)."""

from __future__ import annotations

from .calibration import Calibration
from .reference import q_name


def unflaggable(cal: Calibration, score: str) -> dict[int, str]:
    """Predicted classes the calibrated ``score`` can never flag, each with why.

    ``q_<s>``: more than the target rate of the class's calibration inputs tie at its top value
    (a class with zero spread is the extreme), so no input reaches ``p <= FPR``. ``nspc``: even
    SPC = 1 stays below the threshold after the class's mean and (floored) spread.
    """
    out: dict[int, str] = {}
    if score == "nspc":
        for label, s in cal.per_class.items():
            if s.n < cal.min_class_samples:
                continue
            best = (1.0 - s.mean) / max(s.std, cal.sigma_floor)
            if best < cal.threshold:
                spread = "zero spread, sigma floored to " + f"{cal.sigma_floor:g}" if s.std < cal.sigma_floor else \
                    f"std {s.std:.3g}"
                out[label] = (f"benign SPC mean {s.mean:.3g} ({spread}): even SPC 1 gives NSPC {best:.3g} "
                              f"< threshold {cal.threshold:.3g}")
        return out
    if not score.startswith("q_") or cal.labels is None:
        return out
    raw = score[2:]
    if raw not in cal.values:
        return out
    refs = cal.references([raw]).scores
    if raw not in refs:
        return {label: f"{raw}: none of the calibration inputs could be judged (all undecidable)"
                for label in cal.per_class}
    ref = refs[raw]
    for label, top in ref.unflaggable(cal.target_fpr).items():
        n = len(ref.per_class[label])
        out[label] = (f"{raw}: only {n} calibration inputs (p cannot go below 1/{n + 1})" if 1 / (n + 1) > cal.target_fpr
                      else f"{raw}: more than {cal.target_fpr:.0%} of its {n} calibration inputs share the top value "
                           f"{top:.4g}, so no input of it reaches p <= {cal.target_fpr:g}")
    return out


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
    undecidable = int(result.scores.undecidable.sum())
    if undecidable:
        lines.append(f"Warning: {undecidable} calibration input(s) are undecidable ({next(iter(result.scores.undecidable_reasons.values()), '')}): "
                     "left out of that detector's references (the paper's NSPC statistics keep them)")
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
