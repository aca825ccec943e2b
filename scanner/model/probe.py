"""Finding the preprocessing: try the plausible ones on sample inputs and rank them.

A model without metadata says nothing about the pixel range or the normalization it was trained
with, and a wrong guess does not fail: the model still returns labels, just wrong ones (often all
the same one). :func:`probe` feeds a sample of the user's inputs through every plausible
preprocessing, using the model already loaded (one session; the candidates differ only in the
:class:`~scanner.model.preprocess.Preprocessor`), and ranks them:

* with true labels (ImageFolder subfolders or a labels file): by accuracy; the best is called
  only when a paired sign test on the inputs the two best disagree on separates them;
* without: by label-free evidence, ``score = diversity ** 2 * confidence``. ``diversity`` is
  the entropy of the predicted-label histogram over ``log(min(K, n))`` (1: the sample spread
  over the classes, 0: every input on one class); ``confidence`` is the mean top-class
  probability (1 for a model that outputs labels only). A wrong range or normalization pushes
  inputs off the training distribution, where classifiers collapse onto one or a few classes
  (diversity falls) or become unsure (confidence falls). Confidence alone is fooled by scale:
  [0, 255] pixels fed to a [0, 1] model inflate the logits, so its predictions look sure while
  they are worse (the product ``diversity * confidence`` chose 0-255 for MNIST models that want
  [0, 1], 69% against 99.5% accurate); collapse is the stronger evidence, hence diversity
  squared. Measured on 38 rewritten zoo models (``bench/results/probe.md``). The best is called
  only when the runner-up scores below ``1 - LABEL_FREE_MARGIN`` times it; otherwise the probe
  says it cannot tell and recommends nothing. Exact ties rank the simplest candidate first
  ([0, 1], no normalization, RGB), and are "cannot tell" all the same.

Candidates whose predictions are identical on the sample are reported as equivalent (e.g. RGB
and BGR for a model that averages the channels): on this sample the choice does not matter.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..inputs.stream import BatchLoader
from ..inputs.decode import BYTE_MAX
from .._validation import check_output_file
from ..errors import InputError
from ..inputs.find import InputSet, MemoryArray, collect_inputs
from .loader import Model
from .preprocess import Preprocessor
from .spec import Spec

DEFAULT_SAMPLE = 100
LABEL_FREE_MARGIN = 0.10  # runner-up within 10% of the best score: cannot tell
SIGN_TEST_Z = 2.0         # accuracy: best must win the disagreements by 2 standard deviations

# normalization statistics in unit-range units, RGB order (name, mean, std)
STATS: tuple[tuple[str, tuple[float, ...] | None, tuple[float, ...] | None], ...] = (
    ("no normalization", None, None),
    ("mean/std 0.5", (0.5,), (0.5,)),
    ("ImageNet", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    ("CIFAR-10", (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    ("MNIST", (0.1307,), (0.3081,)),
    ("ImageNet mean only", (0.485, 0.456, 0.406), None),  # Caffe style: byte pixels minus the mean
)
# (x*255 - 255*m) / (255*s) == (x - m) / s: with a std, the byte range gives the unit range's
# input bit for bit up to rounding, so byte is tried without normalization or with a mean only.
_UNIT_STATS = ("no normalization", "mean/std 0.5", "ImageNet", "CIFAR-10", "MNIST")
_BYTE_STATS = ("no normalization", "ImageNet mean only")


@dataclass(frozen=True)
class Candidate:
    """One preprocessing: pixel range, normalization statistics (by name) and channel order."""

    pixel_range: str
    stats: str
    bgr: bool
    gray: bool = False  # a 1-channel model: grayscale, no channel order

    def fields(self, channels: int) -> dict[str, Any]:
        """The spec fields, with mean/std in pixel-range units and the model's channel order."""
        _, mean, std = next(s for s in STATS if s[0] == self.stats)
        k = 255.0 if self.pixel_range == "byte" else 1.0

        def scaled(values):
            if values is None:
                return None
            out = [round(v * k, 6) for v in values]
            if len(out) == 3 and channels == 1:
                out = [round(sum(out) / 3, 6)]
            return tuple(out[::-1] if self.bgr else out)

        return {"pixel_range": self.pixel_range, "mean": scaled(mean), "std": scaled(std), "bgr": self.bgr}

    def flags(self, channels: int) -> str:
        f = self.fields(channels)
        parts = [f"--pixel-range {f['pixel_range']}"]
        for key in ("mean", "std"):
            if f[key] is not None:
                parts.append(f"--{key} {','.join(f'{v:g}' for v in f[key])}")
        if f["bgr"]:
            parts.append("--bgr")
        return " ".join(parts)

    def __str__(self) -> str:
        rng = "[0, 1]" if self.pixel_range == "unit" else "[0, 255]"
        return f"{rng}, {self.stats}, {'grayscale' if self.gray else 'BGR' if self.bgr else 'RGB'}"


def candidates(channels: int, *, fixed: dict[str, Any] | None = None, byte_only: bool = False) -> list[Candidate]:
    """Every plausible preprocessing, simplest first; ``fixed`` spec fields (given as options)
    are kept (only candidates that agree with them are tried)."""
    fixed = fixed or {}
    out = []
    for bgr in (False, True) if channels == 3 else (False,):
        for pixel_range in ("byte",) if byte_only else ("unit", "byte"):
            for name, mean, _ in STATS:
                if name not in (_BYTE_STATS[:1] if byte_only else _UNIT_STATS if pixel_range == "unit" else _BYTE_STATS):
                    continue
                if channels == 1 and mean is not None and len(mean) == 3:
                    continue
                cand = Candidate(pixel_range, name, bgr, gray=channels == 1)
                fields = cand.fields(channels)
                if all(_same(fields[k], v) for k, v in fixed.items() if k in fields):
                    out.append(cand)
    # simplest first: RGB before BGR, unit before byte, no normalization first
    return sorted(out, key=lambda c: (c.bgr, c.pixel_range != "unit", [s[0] for s in STATS].index(c.stats)))


def _same(a, b) -> bool:
    if isinstance(a, tuple) or isinstance(b, (tuple, list)):
        return a is not None and b is not None and np.allclose(a, b, rtol=1e-3)
    return a == b


@dataclass(frozen=True)
class Trial:
    """One candidate on the sample: its predictions and the evidence."""

    candidate: Candidate
    labels: np.ndarray
    confidence: float | None
    diversity: float
    top_class: int
    top_share: float
    accuracy: float | None
    score: float
    same_as: int | None = None  # rank (1-based) of a better candidate with identical predictions

    def to_dict(self, channels: int) -> dict[str, Any]:
        return {"preprocessing": str(self.candidate), "flags": self.candidate.flags(channels),
                "accuracy": self.accuracy, "confidence": self.confidence, "diversity": self.diversity,
                "top_class": self.top_class, "top_share": self.top_share, "score": self.score,
                "same_predictions_as_rank": self.same_as}


@dataclass
class ProbeResult:
    """The ranking, whether the best is clearly best, and the spec it implies."""

    model: str
    channels: int
    inputs_found: int
    sampled: int
    failed: int
    truth: str | None
    trials: list[Trial]
    decided: bool
    reason: str
    current: Candidate | None
    spec: Spec
    class_names: tuple[str, ...] | None = field(default=None)

    @property
    def best(self) -> Trial:
        return self.trials[0]

    def spec_dict(self) -> dict[str, Any]:
        """The spec file to write (the one schema): the model's resolved spec with the best
        candidate's range, normalization and channel order."""
        return self.spec.to_dict()

    def write_spec(self, path: str | Path) -> None:
        check_output_file(path)  # a regular file or a new name; never a FIFO (a hang) or a device
        if not self.decided:
            raise InputError(f"--write-spec: the probe cannot tell the preprocessing, so no spec is written "
                             f"({self.reason})")
        try:
            Path(path).write_text(json.dumps(self.spec_dict(), indent=2) + "\n")
        except OSError as exc:
            raise InputError(f"cannot write {path}: {exc.strerror or exc}") from None

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "inputs_found": self.inputs_found, "sampled": self.sampled,
                "failed": self.failed, "truth": self.truth, "decided": self.decided, "reason": self.reason,
                # no recommendation when it cannot tell
                "best_flags": self.best.candidate.flags(self.channels) if self.decided else None,
                "spec": self.spec_dict() if self.decided else None,
                "ranking": [t.to_dict(self.channels) for t in self.trials]}

    def _class(self, label: int) -> str:
        names = self.class_names
        return f"{label} {names[label]}" if names and 0 <= label < len(names) else str(label)

    def __str__(self) -> str:
        evidence = (f"ranked by accuracy against {self.truth}" if self.truth else
                    "no true labels: ranked by score = diversity^2 x confidence of the predictions")
        lines = [f"probe {self.model}: {self.sampled} of {self.inputs_found} inputs sampled"
                 + (f" ({self.failed} unreadable)" if self.failed else "") + f"; {evidence}"]
        head = ["rank", "preprocessing", "accuracy", "confidence", "diversity", "top class", "score", ""]
        rows = []
        for rank, t in enumerate(self.trials, 1):
            note = f"same predictions as #{t.same_as}" if t.same_as else ""
            if self.current is not None and t.candidate == self.current:
                note = (note + "; " if note else "") + "current"
            rows.append([str(rank), str(t.candidate), "-" if t.accuracy is None else f"{t.accuracy:.1%}",
                         "-" if t.confidence is None else f"{t.confidence:.3f}", f"{t.diversity:.3f}",
                         f"{self._class(t.top_class)} ({t.top_share:.0%})", f"{t.score:.3f}", note])
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
        for row in [head] + rows:
            lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
        best = self.best.candidate
        if self.decided:
            lines.append(f"best: {best} ({self.reason})")
            lines.append(f"flags: {best.flags(self.channels)}")
        else:  # no recommendation: a guess printed as flags gets copied as a fact
            lines.append(f"cannot tell: {self.reason}")
            lines.append("no recommendation: give true labels (ImageFolder subfolders or --labels), or find out "
                         "how the model was trained and pass --pixel-range/--mean/--std/--bgr")
        return "\n".join(lines)


class _Picked(MemoryArray):
    """One image taken out of an array file, keeping its display name."""

    def __init__(self, image: np.ndarray, name: str) -> None:
        super().__init__(np.asarray(image)[None], name)

    def name(self, i: int) -> str:
        return self.label


def _subset(inputs: InputSet, indices: np.ndarray) -> InputSet:
    out = InputSet()
    offsets = np.asarray(inputs.offsets(), dtype=np.int64)
    parts = inputs.parts()
    for i, name in zip(indices.tolist(), inputs.names(indices)):
        part_no = int(np.searchsorted(offsets, i, side="right") - 1)
        part = parts[part_no]
        if isinstance(part, str):
            out.add_file(part)
        elif hasattr(part, "load"):
            out.add_array(_Picked(part.load()[i - int(offsets[part_no])], name))
        else:  # an input that failed before decoding
            out.add_array(part)
    return out


def _decode(inputs: InputSet, spec: Spec) -> tuple[np.ndarray, list[str], int]:
    loader = BatchLoader(inputs, height=spec.height, width=spec.width, channels=spec.channels, batch_size=64)
    images, names, failed = [], [], 0
    for batch in loader:
        if len(batch.indices):
            block = batch.images
            images.append(block / BYTE_MAX if block.dtype == np.uint8 else np.asarray(block, dtype=np.float32))
            names.extend(inputs.names(batch.indices))
        failed += len(batch.failures)
    if not images:
        raise InputError(f"none of the {len(inputs)} sampled inputs could be read")
    return np.concatenate(images).astype(np.float32), names, failed


def _truth(names: list[str], model: Model, labels_file) -> tuple[np.ndarray | None, str | None]:
    from ..inputs.labels import true_labels

    truth, note = true_labels(names, model.spec.class_names, model.num_classes, labels_file)
    return (truth, note) if truth is not None else (None, None)


def _trial(model: Model, images: np.ndarray, cand: Candidate, truth, n_classes: int) -> Trial:
    pre = Preprocessor(replace(model.spec, **cand.fields(model.spec.channels)))
    labels, probs = [], []
    for start in range(0, len(images), 256):
        got, p = model.predict(pre(images[start:start + 256]), probabilities=True)
        labels.append(got)
        probs.append(None if p is None else p.max(axis=1))
    labels = np.concatenate(labels)
    confidence = None if probs[0] is None else float(np.concatenate(probs).mean())
    counts = np.bincount(labels - labels.min())
    share = counts[counts > 0] / len(labels)
    span = min(n_classes, len(labels))
    diversity = float(-(share * np.log(share)).sum() / math.log(span)) if span > 1 else 0.0
    top = int(counts.argmax() + labels.min())
    accuracy = None if truth is None else float((labels == truth).mean())
    diversity = max(0.0, diversity)
    return Trial(cand, labels, confidence, diversity, top, float(counts.max() / len(labels)), accuracy,
                 diversity ** 2 * (1.0 if confidence is None else confidence))


def _current(model: Model, cands: list[Candidate]) -> Candidate | None:
    spec = model.spec
    for cand in cands:
        f = cand.fields(spec.channels)
        if all(_same(f[k], getattr(spec, k)) if getattr(spec, k) is not None or f[k] is not None else True
               for k in f) and (spec.mean is None) == (f["mean"] is None):
            return cand
    return None


def probe(model: Model, paths: Sequence[str | Path] | InputSet, *, labels_file: str | Path | None = None,
          sample: int = DEFAULT_SAMPLE, seed: int = 0) -> ProbeResult:
    """Rank the plausible preprocessings of ``model`` on a sample of the inputs ``paths``.

    Fields given as options when the model was loaded (``model.resolved.sources == "option"``)
    are kept fixed; the others are varied. Only unscaled predictions are used.
    """
    if sample < 1:
        raise InputError(f"--sample must be at least 1, got {sample}")
    inputs = paths if isinstance(paths, InputSet) else collect_inputs(paths)
    rng = np.random.default_rng(seed)
    picked = np.sort(rng.choice(len(inputs), size=min(sample, len(inputs)), replace=False))
    images, names, failed = _decode(_subset(inputs, picked), model.spec)
    truth, truth_note = _truth(names, model, labels_file)
    spec, channels = model.spec, model.spec.channels
    fixed = {k: getattr(spec, k) for k, src in model.resolved.sources.items()
             if src == "option" and k in ("pixel_range", "mean", "std", "bgr")}
    cands = candidates(channels, fixed=fixed, byte_only=model.info.input.dtype == "uint8")
    if not cands:
        raise InputError("the preprocessing options given leave no candidate to try; give fewer of "
                         "--pixel-range/--mean/--std/--bgr")
    n_classes = model.num_classes or max(2, int(images.shape[0]))
    trials = [_trial(model, images, c, truth, n_classes) for c in cands]
    order = sorted(range(len(trials)), key=lambda i: (-(trials[i].accuracy or 0.0), -trials[i].score, i))
    ranked: list[Trial] = []
    for i in order:
        t = trials[i]
        same = next((r + 1 for r, u in enumerate(ranked) if u.same_as is None and np.array_equal(u.labels, t.labels)),
                    None)
        ranked.append(replace(t, same_as=same))
    decided, reason = _decide(ranked, truth)
    best = ranked[0].candidate
    out_spec = replace(spec, **best.fields(channels))
    return ProbeResult(str(model.info.path), channels, len(inputs), len(images), failed, truth_note, ranked,
                       decided, reason, _current(model, cands), out_spec, spec.class_names)


def _decide(ranked: list[Trial], truth) -> tuple[bool, str]:
    best = ranked[0]
    other = next((t for t in ranked[1:] if t.same_as is None), None)
    if truth is None and best.score <= 0.05:
        return False, ("every candidate collapses onto one class: the sample may hold one class only "
                       "(give mixed clean inputs, or true labels), or the model wants another preprocessing")
    if other is None:
        return True, "every candidate gives the same predictions on this sample: any will do"
    agree = float((best.labels == other.labels).mean())
    if truth is not None:
        wins = int(((best.labels == truth) & (other.labels != truth)).sum())
        losses = int(((other.labels == truth) & (best.labels != truth)).sum())
        if wins - losses > SIGN_TEST_Z * math.sqrt(wins + losses) and wins > losses:
            return True, (f"accuracy {best.accuracy:.1%} against {other.accuracy:.1%} for the runner-up "
                          f"({other.candidate}); right on {wins} inputs where it is wrong, wrong on {losses}")
        return False, (f"the runner-up ({other.candidate}, accuracy {other.accuracy:.1%}) is not significantly "
                       f"worse (right on {losses} inputs where the best is wrong, wrong on {wins}; the two agree "
                       f"on {agree:.0%} of the sample); probe more inputs (--sample) or check that the labels match the model's classes")
    if other.score >= (1 - LABEL_FREE_MARGIN) * best.score:
        return False, (f"the runner-up ({other.candidate}) scores {other.score:.3f} against {best.score:.3f} "
                       f"and agrees on {agree:.0%} of the sample; give true labels (ImageFolder subfolders or "
                       "--labels) to decide")
    return True, f"score {best.score:.3f} against {other.score:.3f} for the runner-up ({other.candidate})"
