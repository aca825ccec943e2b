"""The public entry point: a :class:`Scanner` built from an ONNX file scores images with SCALE-UP.

Data flows one way: paths -> decoded unit-range images -> amplified copies in model layout ->
labels -> SPC (and NSPC with a calibration) -> flags. The CLI is a thin shell over this class.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from . import __version__
from .calibration import Calibration
from .errors import InputError, ScannerError
from .images import BatchLoader, InputSet, fit_array_images, collect_inputs
from .model import (
    OnnxClassifier, check_runtime, check_spec_fits, choose_output, infer_from_graph,
    inspect_proto, num_classes, plan_batches, read_model,
)
from .scaleup import DEFAULT_SCALES, DEFAULT_THRESHOLD, fill_scaled_batch, spc_score
from .spec import ResolvedSpec, merge_layers, read_spec_file, spec_from_metadata, validate_spec_dict

log = logging.getLogger("scanner")

# Elements (float32) of one session call's input, at most: bounds memory for large images.
_MAX_CALL_ELEMENTS = 1 << 24
_MAX_BATCH = 256


@dataclass
class Scores:
    """SCALE-UP outcome for a set of images, as arrays aligned on the input order.

    Attributes
    ----------
    labels : (n,) int64, the unscaled prediction.
    scaled_labels : (n, n_scales) int64, the prediction at each scale of ``scales``.
    spc : (n,) float64 in [0, 1].
    nspc : (n,) float64 or None (only with a calibration).
    prob_consistency : (n,) float64 in [0, 1] or None (models that output only labels).
        Mean over the scales of the probability the amplified copy gives the unscaled label
        (beyond the paper, see the README); higher is more suspicious.
    score : (n,) float64, the score compared with the threshold (nspc if calibrated, else spc,
        or prob_consistency when chosen).
    flagged : (n,) bool, ``score >= threshold``.
    """

    labels: np.ndarray
    scaled_labels: np.ndarray
    spc: np.ndarray
    nspc: np.ndarray | None
    prob_consistency: np.ndarray | None
    score: np.ndarray
    flagged: np.ndarray


@dataclass
class ScanResult:
    """Every input of a scan: scored ones in ``scores`` (rows = ``indices``), the rest in ``failures``."""

    inputs: InputSet
    indices: np.ndarray
    scores: Scores
    failures: list[tuple[int, str]]
    settings: dict[str, Any]
    seconds: float

    @property
    def n_found(self) -> int:
        return len(self.inputs)

    @property
    def n_scored(self) -> int:
        return len(self.indices)

    def records(self) -> Iterator[dict[str, Any]]:
        """One dict per scored input, in input order, with stable field names."""
        s = self.scores
        keys = [str(n) for n in self.settings["scales"]]
        names = self.settings.get("class_names")
        # plain Python values once, not a numpy scalar conversion per field per row
        columns = zip(self.inputs.names(self.indices), s.labels.tolist(), s.spc.tolist(),
                      _column(s.nspc, len(self.indices)), _column(s.prob_consistency, len(self.indices)),
                      s.scaled_labels.tolist(), s.flagged.tolist())
        for name, label, spc, nspc, consistency, scaled, flagged in columns:
            yield {
                "input": name,
                "predicted_label": label,
                "predicted_class": names[label] if names and 0 <= label < len(names) else None,
                "spc": spc,
                "nspc": nspc,
                "prob_consistency": consistency,
                "scaled_labels": dict(zip(keys, scaled)),
                "flagged": flagged,
            }

    def failure_records(self) -> list[dict[str, str]]:
        return [{"input": self.inputs.name(i), "reason": reason} for i, reason in self.failures]


def _column(values: np.ndarray | None, n: int) -> list:
    return [None] * n if values is None else values.tolist()


class Scanner:
    """SCALE-UP over one ONNX image classifier.

    Parameters
    ----------
    model : str or Path
        The ``.onnx`` file (external weights, if any, next to it).
    device : {"auto", "cpu", "cuda"}, default="auto"
        "auto" uses CUDA when a session really gets it, else CPU; "cuda" fails if it cannot.
    scales : sequence of float, default=(3, 5, 7, 9, 11)
        The scale set S.
    threshold : float, optional
        Flag when the score is at least this. Default: the calibration's threshold (on NSPC)
        with a calibration, else 0.5 (on SPC).
    calibration : str, Path or Calibration, optional
        Made by ``scanner calibrate`` for this model and scale set.
    spec : dict, optional
        Preprocessing overrides (highest precedence), fields of :class:`scanner.spec.Spec`.
    spec_file : str or Path, optional
        A JSON spec file (below ``spec``, above the model's metadata).
    batch_size : int, optional
        Images per batch (each becomes ``len(scales) + 1`` model inputs). Default: up to 256,
        fewer for large images.
    workers : int, optional
        Image decoding threads.
    score : {"spc", "prob-consistency"}, default="spc"
        What is compared with the threshold without a calibration. "prob-consistency" (beyond
        the paper) needs a model that outputs class scores.

    Examples
    --------
    >>> scanner = Scanner("samples/model.onnx")                      # doctest: +SKIP
    >>> result = scanner.scan(["samples/triggered"])                  # doctest: +SKIP
    >>> result.scores.flagged.mean()                                  # doctest: +SKIP
    """

    def __init__(self, model: str | Path, *, device: str = "auto", scales: Sequence[float] = DEFAULT_SCALES,
                 threshold: float | None = None, calibration: str | Path | Calibration | None = None,
                 spec: dict[str, Any] | None = None, spec_file: str | Path | None = None,
                 batch_size: int | None = None, workers: int | None = None, threads: int | None = None,
                 score: str = "spc") -> None:
        if device not in ("auto", "cpu", "cuda"):
            raise ScannerError(f"device must be auto, cpu or cuda, got {device!r}")
        scales = tuple(scales)
        if not scales or any(s <= 0 for s in scales):
            raise ScannerError(f"scales must be a non-empty set of positive numbers, got {scales}")
        if score not in ("spc", "prob-consistency"):
            raise ScannerError(f"score must be spc or prob-consistency, got {score!r}")
        if score != "spc" and calibration is not None:
            raise ScannerError("a calibration applies to SPC (NSPC); it cannot be combined with --score prob-consistency")
        check_runtime()
        path = Path(model)
        proto = read_model(path)
        self.info = inspect_proto(proto, path)
        self.resolved: ResolvedSpec = merge_layers([
            ("option", validate_spec_dict(spec or {}, origin="options")),
            ("spec file", read_spec_file(spec_file) if spec_file else {}),
            ("model metadata", spec_from_metadata(self.info.metadata)),
            ("inferred from graph", infer_from_graph(self.info)),
        ])
        self.spec = self.resolved.spec
        check_spec_fits(self.spec, self.info)
        output, kind, note = choose_output(self.info, self.spec.output_name)
        session, provider, plan = plan_batches(proto, self.info, self.spec, output, device, threads)
        del proto
        self.classifier = OnnxClassifier(self.info, self.spec, session, provider, output, kind, note, plan)
        self.num_classes = num_classes(output, kind) or (len(self.spec.class_names) if self.spec.class_names else None)
        if score != "spc" and kind != "scores":
            raise ScannerError(f"--score {score} needs class scores, but the model's output {output.name!r} holds labels only")
        self.score_kind = score
        self.scales = scales
        self.calibration = self._load_calibration(calibration)
        if threshold is None:
            threshold = self.calibration.threshold if self.calibration else DEFAULT_THRESHOLD
        self.threshold = float(threshold)
        per_image = self.spec.height * self.spec.width * self.spec.channels * (len(scales) + 1)
        self.batch_size = int(batch_size or max(1, min(_MAX_BATCH, _MAX_CALL_ELEMENTS // per_image)))
        # decoding shares the cores with ONNX Runtime: one thread fewer than cores (measured best)
        self.workers = int(workers or max(1, min(4, (os.cpu_count() or 1) - 1)))
        self._buffer: np.ndarray | None = None

    def _load_calibration(self, calibration) -> Calibration | None:
        if calibration is None:
            return None
        cal = calibration if isinstance(calibration, Calibration) else Calibration.load(calibration)
        cal.check_compatible(model_sha256=self.info.sha256, scales=self.scales)
        return cal

    @property
    def provider(self) -> str:
        return self.classifier.provider

    @property
    def score_name(self) -> str:
        return "nspc" if self.calibration else self.score_kind

    def settings(self) -> dict[str, Any]:
        """What produced the numbers: model, spec, provider, scales, threshold, calibration."""
        cal = self.calibration
        return {
            "scanner_version": __version__,
            "model": str(self.info.path),
            "model_sha256": self.info.sha256,
            "spec": self.spec.to_dict(),
            "spec_sources": dict(self.resolved.sources),
            "output": self.classifier.output.name,
            "batch_mode": self.classifier.plan.mode,
            "batch_note": self.classifier.plan.note,
            "execution_provider": self.provider,
            "scales": list(self.scales),
            "threshold": self.threshold,
            "score": self.score_name,
            "calibration": None if cal is None else {
                "n_samples": cal.n_samples, "target_fpr": cal.target_fpr,
                "achieved_fpr": cal.achieved_fpr, "threshold": cal.threshold,
                "expected_fpr": cal.expected_fpr(),
                "expected_fpr_per_class": {str(k): v for k, v in cal.expected_fpr_per_class().items()},
            },
            "class_names": list(self.spec.class_names) if self.spec.class_names else None,
        }

    # -- the hot path --------------------------------------------------------------------------
    def _buffer_for(self, rows: int) -> np.ndarray:
        shape = self._model_shape()
        if self._buffer is None or self._buffer.shape[0] < rows:
            self._buffer = np.empty((rows,) + shape, dtype=np.float32)
        return self._buffer[:rows]

    def _model_shape(self) -> tuple[int, ...]:
        s = self.spec
        if s.layout == "nchw":
            return (s.channels, s.height, s.width)
        if s.layout == "nhwc":
            return (s.height, s.width, s.channels)
        return (s.height * s.width * s.channels,)

    def _to_model_layout(self, images: np.ndarray) -> np.ndarray:
        """(b, H, W, C) unit-range images -> a view in the model's layout and channel order."""
        if self.spec.bgr:
            images = images[..., ::-1]
        if self.spec.layout == "nchw":
            return images.transpose(0, 3, 1, 2)
        if self.spec.layout == "flat":
            return images.reshape(len(images), -1)
        return images

    def predict_unit(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Labels of (b, H, W, C) images (float32 in [0, 1], or uint8 pixels), unscaled and at each scale.

        Returns ``labels`` (b,), ``scaled_labels`` (b, n_scales) and the probability
        consistency (b,) (None for label-only models). The unscaled copy and the amplified
        copies go to the model in one call (chunked only for fixed-batch models).
        """
        b = len(images)
        # n = 1 gives the unscaled image again: reuse its label instead of running it twice
        extra = [n for n in self.scales if n != 1]
        buf = self._buffer_for(b * (1 + len(extra)))
        fill_scaled_batch(self._to_model_layout(images), extra, buf, finish=self.spec.normalize_)
        labels, probs = self.classifier.predict(buf, probabilities=True)
        unscaled = labels[:b]
        by_scale = dict(zip(extra, labels[b:].reshape(len(extra), b))) if extra else {}
        scaled = np.stack([unscaled if n == 1 else by_scale[n] for n in self.scales], axis=1)
        consistency = None
        if probs is not None:
            # probability of the unscaled label in each copy; copy k of scale i is row (i + 1) * b + k
            p_y = probs.reshape(1 + len(extra), b, -1)[:, np.arange(b), unscaled]
            per_scale = {n: p_y[1 + i] for i, n in enumerate(extra)}
            consistency = np.mean([p_y[0] if n == 1 else per_scale[n] for n in self.scales], axis=0)
        return unscaled, scaled, consistency

    def _scores(self, labels: np.ndarray, scaled: np.ndarray, consistency: np.ndarray | None) -> Scores:
        spc = spc_score(labels, scaled)
        nspc = self.calibration.nspc(spc, labels) if self.calibration else None
        score = {"spc": spc, "nspc": nspc, "prob-consistency": consistency}[self.score_name]
        return Scores(labels, scaled, spc, nspc, consistency, score, score >= self.threshold)

    # -- public scoring ------------------------------------------------------------------------
    def score_arrays(self, images: np.ndarray) -> Scores:
        """Score images given as an array (N, H, W[, C]), uint8 or float in [0, 1].

        Images of another size are resized; RGB/gray are converted to what the model takes.
        """
        images = np.asarray(images)
        if images.ndim not in (3, 4) or images.dtype.kind not in "uif":
            raise InputError(f"expected images shaped (N, H, W[, C]) of uint8 or float, got {images.shape} {images.dtype}")
        x = fit_array_images(images, self.spec.height, self.spec.width, self.spec.channels)
        if not np.isfinite(x).all() or x.min(initial=0) < 0 or x.max(initial=0) > 1:
            raise InputError("float images must have values in [0, 1]")
        labels = np.empty(len(x), dtype=np.int64)
        scaled = np.empty((len(x), len(self.scales)), dtype=np.int64)
        consistency = np.empty(len(x), dtype=np.float64)
        for start in range(0, len(x), self.batch_size):
            rows = slice(start, start + self.batch_size)
            labels[rows], scaled[rows], c = self.predict_unit(np.ascontiguousarray(x[rows]))
            consistency[rows] = np.nan if c is None else c
        return self._scores(labels, scaled, self._consistency_or_none(consistency))

    def _consistency_or_none(self, consistency: np.ndarray) -> np.ndarray | None:
        return None if self.classifier.output_kind != "scores" else consistency

    def scan(self, paths: Sequence[str | Path] | InputSet, *,
             progress: Callable[[int, int], None] | None = None) -> ScanResult:
        """Scan image files, folders and image arrays; every input is scored or listed as failed."""
        started = time.perf_counter()
        inputs = paths if isinstance(paths, InputSet) else collect_inputs(paths)
        total = len(inputs)
        labels = np.empty(total, dtype=np.int64)
        scaled = np.empty((total, len(self.scales)), dtype=np.int64)
        consistency = np.full(total, np.nan)
        scored = np.zeros(total, dtype=bool)
        failures: list[tuple[int, str]] = []
        loader = BatchLoader(inputs, height=self.spec.height, width=self.spec.width,
                             channels=self.spec.channels, batch_size=self.batch_size, workers=self.workers)
        done = 0
        for batch in loader:
            if len(batch.indices):
                lab, sc, c = self.predict_unit(batch.images)
                labels[batch.indices], scaled[batch.indices] = lab, sc
                if c is not None:
                    consistency[batch.indices] = c
                scored[batch.indices] = True
            failures.extend(batch.failures)
            done += batch.size
            if progress is not None:
                progress(done, total)
        indices = np.flatnonzero(scored)
        failures.sort()
        scores = self._scores(labels[indices], scaled[indices], self._consistency_or_none(consistency[indices]))
        return ScanResult(inputs, indices, scores, failures,
                          self.settings(), time.perf_counter() - started)
