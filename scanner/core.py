"""The public entry point: a :class:`Scanner` runs one detector over one ONNX model. Data flows
one way: inputs -> unit-range images (:mod:`scanner.inputs.stream`) -> the detector's queries in a
reused buffer -> model outputs (:mod:`scanner.model.loader`) -> per-input scores -> flags; verdicts
and reports are downstream (:mod:`scanner.decide.verdict`, :mod:`scanner.report`)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .inputs.stream import BatchLoader
from .decide.calibration import Calibration
from .detectors import Detector, parts_of
from .detectors.profile import response_profile
from .detectors.scaleup import DEFAULT_SCALES
from .decide.profile import SCORE as PROFILE
from .decide.reference import COMBINED, q_name
from .decide.scoring import check_calibration, choose, make_detector_for
from ._validation import check_callable, check_number, check_path, check_scales
from .errors import InputError, ModelLoadError, ScannerError
from .inputs.find import InputSet, InputWindow, MemoryArray, as_inputs, check_memory_images
from .model.loader import Model, load_model
from .model.runner import DEFAULT_CALL_TIMEOUT, CallTimedOut, RunTerminated
from .results import ScanResult, ScanSettings, Scores, Tally
from .model.spec import ResolvedSpec, Spec

# Elements (float32) of one batch's query buffer, at most: bounds memory for large images. The
# runner sends that buffer in calls of at most runner.ROWS_PER_CALL rows.
_MAX_BATCH_ELEMENTS = 1 << 24
_MAX_BATCH = 256


class Scanner:
    """One detector (SCALE-UP by default) over one ONNX image classifier.

    Parameters
    ----------
    model : str or Path
        The ``.onnx`` file (external weights, if any, next to it).
    device : {"auto", "cpu", "cuda"}, default="auto"
        "auto" uses CUDA when a session really gets it, else CPU; "cuda" fails if it cannot.
    scales : sequence of float, default=(3, 5, 7, 9, 11)
        SCALE-UP's scale set S (ignored when ``detector`` is given).
    threshold : float, optional
        Flag when the score is at least this. Default: the calibration's threshold (on NSPC)
        with a calibration, else the detector's default (0.5 on SPC).
    calibration : str, Path or Calibration, optional
        Made by ``scanner calibrate`` for this model and scale set.
    spec : dict, optional
        Preprocessing overrides (highest precedence), fields of :class:`scanner.model.spec.Spec`.
    spec_file : str or Path, optional
        A JSON spec file (below ``spec``, above the model's metadata).
    batch_size : int, optional
        Images per batch (each becomes ``queries_per_input`` model inputs). Default: up to 256,
        fewer for large images.
    workers : int, optional
        Image decoding threads.
    threads : int, optional
        ONNX Runtime intra-op threads.
    score : str, optional
        The score compared with the threshold. Default: without a calibration the detector's
        first raw score (SCALE-UP: "spc"); with one, the calibration's decision (``q_fisher``
        for several detectors, see :data:`DECISION_ORDER`). Any raw score, ``nspc``, or a
        calibrated ``q_<score>`` of the detectors that run may be named.
    detector : Detector, optional
        A detector instance (default: ``ScaleUp(scales)``, or what the calibration recorded).
    detectors : str or sequence of str, optional
        Detectors by name ("scaleup", "strip", "teco", or several: "scaleup,strip,teco"), with a
        calibration a subset of its detectors. ``detector_params`` maps a name to its parameters.
    call_timeout : "auto", float or None, default="auto"
        The per-call watchdog: seconds one model call may run (at load and in a scan); a scan
        whose call runs past it stops there, the rest listed as not scored. "auto": 60 s plus 60 s
        per million input values of the call. None or 0: no limit.

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
                 score: str | None = None, detector: Detector | None = None,
                 detectors: str | Sequence[str] | None = None,
                 detector_params: dict[str, dict[str, Any]] | None = None,
                 call_timeout: float | str | None = DEFAULT_CALL_TIMEOUT) -> None:
        if device not in ("auto", "cpu", "cuda"):
            raise ScannerError(f"device must be auto, cpu or cuda, got {device!r}")
        if detector is not None and not isinstance(detector, Detector):
            raise ScannerError(f"detector must be a scanner.detectors.Detector, got {type(detector).__name__}")
        if threshold is not None:
            threshold = check_number(threshold, "threshold")
        for name, value in (("batch_size", batch_size), ("workers", workers), ("threads", threads)):
            if value is not None:
                check_number(value, name, lo=1, integer=True)
        if score is not None and not isinstance(score, str):
            raise ScannerError(f"score: expected a score name (str), got {type(score).__name__}")
        model = check_path(model, "model", error=ModelLoadError)
        if spec_file is not None:
            spec_file = check_path(spec_file, "spec_file")
        if calibration is not None and not isinstance(calibration, Calibration):
            calibration = check_path(calibration, "calibration")
        cal = calibration if calibration is None or isinstance(calibration, Calibration) else Calibration.load(calibration)
        self.detector = make_detector_for(detector, cal, detectors, detector_params, scales)
        self.model: Model = load_model(model, device=device, options=spec, spec_file=spec_file, threads=threads,
                                            call_timeout=call_timeout)
        if cal is not None:
            check_calibration(self.detector, cal, model_sha256=self.info.sha256, scales=check_scales(scales))
        self.calibration = cal
        choice = choose(self.detector, cal, has_probabilities=self.model.output_kind == "scores", score=score,
                        threshold=threshold, output_name=self.model.output.tensor.name)
        self.references, self.score_names = choice.references, choice.names
        # the response-profile density model, when the calibration has one and the scan offers it
        self.profile = cal.profile if choice.references is not None and PROFILE in choice.references.scores else None
        #: collect each input's response profile in the result (``scanner calibrate`` sets it)
        self.collect_features = False
        self.score_kind, self.threshold = choice.score, choice.threshold
        spec_ = self.spec
        per_image = spec_.height * spec_.width * spec_.channels * self.detector.queries_per_input
        self.batch_size = int(batch_size or max(1, min(_MAX_BATCH, _MAX_BATCH_ELEMENTS // per_image)))
        # decoding shares the cores with ONNX Runtime: one thread fewer than cores (measured best)
        self.workers = int(workers or max(1, min(4, (os.cpu_count() or 1) - 1)))
        self._buffer: np.ndarray | None = None

    def __repr__(self) -> str:
        names = "+".join(p.name for p in parts_of(self.detector))
        return (f"<Scanner {self.info.path} on {self.provider}: {names}, {self.detector.queries_per_input} queries "
                f"per input, flagged when {self.score_name} >= {self.threshold:.4g}>")

    # -- what the model boundary decided ------------------------------------------------------
    @property
    def info(self):
        return self.model.info

    @property
    def spec(self) -> Spec:
        return self.model.spec

    @property
    def resolved(self) -> ResolvedSpec:
        return self.model.resolved

    @property
    def provider(self) -> str:
        return self.model.provider

    @property
    def num_classes(self) -> int | None:
        return self.model.num_classes

    @property
    def scales(self) -> tuple:
        return getattr(self.detector, "scales", ())

    @property
    def score_name(self) -> str:
        """The score the threshold applies to, as reports spell it ("spc", "nspc", "q-fisher", ...)."""
        return self.score_kind

    def settings(self) -> ScanSettings:
        """What produced the numbers: model, spec, provider, detector, threshold, calibration."""
        m = self.model
        return ScanSettings(
            model=str(m.info.path), model_sha256=m.info.sha256, spec=m.spec, spec_sources=dict(m.resolved.sources),
            output=m.output.tensor.name, batch_mode=m.plan.mode, batch_note=m.plan.note,
            execution_provider=m.provider, detector=self._detector_settings(),
            detector_text=self.detector.describe(), query_names=tuple(self.detector.query_names()),
            threshold=self.threshold, score=self.score_name, calibration=self.calibration,
            reference_sizes=self._reference_sizes(),
        )

    def _reference_sizes(self) -> dict[int, int] | None:
        ref = None if self.references is None else self.references.reference_of(self.score_name.replace("-", "_"))
        return None if ref is None else ref.sizes()

    def _detector_settings(self) -> dict[str, Any]:
        """SCALE-UP's scale set at the top (report schema 1), then every detector that ran with its settings."""
        parts = parts_of(self.detector)
        scales = {"scales": list(self.scales)} if self.scales else {}
        return {**scales, "detectors": [{"name": p.name, **p.settings()} for p in parts]}

    # -- the hot path --------------------------------------------------------------------------
    def _buffer_for(self, rows: int) -> np.ndarray:
        if self._buffer is None or self._buffer.shape[0] < rows:
            self._buffer = np.empty((rows,) + self.model.preprocessor.model_shape, dtype=np.float32)
        return self._buffer[:rows]

    def score_batch(self, images: np.ndarray):
        """The detector's outcome for (b, H, W, C) images, float32 in [0, 1] or uint8 pixels.

        The batch's queries go to the model in calls of at most ``runner.ROWS_PER_CALL`` rows
        (a fixed-batch model: its own call size). Returns a :class:`~scanner.detectors.DetectorScores`.
        """
        b, det = len(images), self.detector
        buf = self._buffer_for(b * det.queries_per_input)
        det.build_queries(images, buf, self.model.preprocessor)
        labels, probs = self.model.predict(buf, probabilities=True)
        if probs is not None and probs.shape[1] < 2:
            raise ModelLoadError(f"the model's output {self.model.output.tensor.name!r} gives {probs.shape[1]} "
                                 "class score per input; a classifier with at least 2 classes is needed")
        out = det.score(labels, probs, b)
        if probs is not None and (self.profile is not None or self.collect_features):
            features = response_profile(labels, probs, b)
            if self.profile is not None:
                out.scores[PROFILE] = self.profile.distance(features, out.labels)
            if self.collect_features:
                out.features = features
        for part in parts_of(det):  # each detector on its own: one that cannot judge drops out
            found = part.undecidable(images)
            if found is not None:
                out.undecidable_by[part.name] = np.asarray(found[0], dtype=bool)
                out.undecidable_why[part.name] = found[1]
        if probs is not None:
            bad_rows = ~np.isfinite(probs).all(axis=1)
            if bad_rows.any():  # query-major rows: row i * b + k belongs to input k
                out.invalid = bad_rows.reshape(det.queries_per_input, b).any(axis=0)
        return out

    # -- public scoring ------------------------------------------------------------------------
    def score_arrays(self, images: np.ndarray) -> Scores:
        """Score images given as an array (N, H, W[, C]), uint8 or float in [0, 1].

        Images of another size are resized; RGB/gray are converted to what the model takes.
        The array is an input source like a folder: it goes through :meth:`scan`'s loop.
        """
        images = check_memory_images(images)
        inputs = InputSet()
        inputs.add_array(MemoryArray(images))
        result = self.scan(inputs)
        if result.failures:  # an array call returns a row per image or nothing
            first = result.failure_records()[0]
            raise InputError(f"{len(result.failures)} of {result.n_found} images cannot be scored, e.g. "
                             f"{first['input']}: {first['reason']}")
        return result.scores

    def scan(self, paths: Sequence[str | Path] | str | Path | np.ndarray | InputSet, *,
             progress: Callable[[int, int], None] | None = None, timeout: float | None = None,
             on_batch: Callable[[ScanResult, int], None] | None = None) -> ScanResult:
        """Scan image files, folders and image arrays; every input is scored or listed as failed.

        ``paths``: a sequence of paths, one path (that file or folder), or an image array in
        memory shaped (N, H, W[, C]) (inputs ``array[0]``, ``array[1]``...; unlike
        :meth:`score_arrays`, images that cannot be scored are listed as failed, not raised).

        With ``timeout`` (seconds), the scan stops when it runs out, also in the middle of a
        model call; the inputs not reached are listed as failed and ``result.incomplete`` says
        why.

        ``on_batch(chunk, first)`` is called as each batch completes, in input order: ``chunk``
        is the :class:`ScanResult` of inputs ``first`` .. ``first + chunk.n_found - 1`` (its
        indices count from ``first``), with the flags and scores the whole result will hold.
        An exception it raises ends the scan (and propagates).
        """
        started = time.perf_counter()
        if timeout is not None:
            timeout = check_number(timeout, "timeout", lo=0.0, lo_open=True, hi=1e7)
        check_callable(progress, "progress")
        check_callable(on_batch, "on_batch")
        inputs = as_inputs(paths)  # one path is that path, not a sequence of characters
        tally = self.tally(len(inputs))
        loader = BatchLoader(inputs, height=self.spec.height, width=self.spec.width,
                             channels=self.spec.channels, batch_size=self.batch_size, workers=self.workers)
        runner = self.model.runner
        timer = threading.Timer(timeout - (time.perf_counter() - started), runner.terminate) if timeout else None
        incomplete, done = None, 0

        def limit_reached() -> str:
            return f"the time limit of {timeout:g} s was reached after {done} of {len(inputs)} inputs"

        if timer is not None:
            runner.arm()
            timer.daemon = True
            timer.start()
        try:
            for batch in loader:
                if timeout is not None and time.perf_counter() - started >= timeout:
                    incomplete = limit_reached()
                    break
                failed_before = len(tally.failures)
                try:
                    if len(batch.indices):
                        tally.add(batch.indices, self.score_batch(batch.images))
                except CallTimedOut as exc:
                    incomplete = f"{exc} after {done} of {len(inputs)} inputs"
                    break
                except RunTerminated:
                    incomplete = limit_reached()
                    break
                tally.fail(batch.failures)
                if on_batch is not None:
                    on_batch(self._chunk(inputs, tally, done, batch.size, tally.failures[failed_before:]), done)
                done += batch.size
                if progress is not None:
                    progress(done, len(inputs))
        finally:
            if timer is not None:
                timer.cancel()
                runner.disarm()  # the session serves later calls again
        if incomplete is not None:
            reached = set(np.flatnonzero(tally.scored).tolist()) | {i for i, _ in tally.failures}
            tally.fail([(i, "not scored: " + incomplete) for i in range(len(inputs)) if i not in reached])
        result = self.result(inputs, tally, time.perf_counter() - started)
        result.incomplete = incomplete
        return result

    def _chunk(self, inputs: InputSet, tally: Tally, first: int, size: int, failures) -> ScanResult:
        """The result of inputs ``first`` .. ``first + size - 1`` of a tally being filled;
        ``failures`` are the ones this batch added (the tally's list is not searched again)."""
        part = self.tally(size)
        stop = first + size
        rows = np.flatnonzero(tally.scored[first:stop])
        part.labels[rows], part.queries[rows] = tally.labels[first + rows], tally.queries[first + rows]
        for name, values in tally.raw.items():
            part.raw[name] = values[first:stop]
        part.scored[rows] = True
        part.undecidable_by = {name: mask[first:stop].copy() for name, mask in tally.undecidable_by.items()}
        part.why = dict(tally.why)
        part.fail([(i - first, reason) for i, reason in failures])
        return self.result(InputWindow(inputs, first, size), part, 0.0)

    def tally(self, total: int) -> Tally:
        """Empty books for ``total`` inputs, filled batch by batch (any engine, any order)."""
        return Tally(total, len(self.detector.query_names()))

    def result(self, inputs: InputSet, tally: Tally, seconds: float) -> ScanResult:
        """The scan's result from filled books: flags, calibrated scores, settings."""
        indices = np.flatnonzero(tally.scored)
        raw = {k: v[indices] for k, v in tally.raw.items()}
        by = {name: mask[indices] for name, mask in tally.undecidable_by.items()}
        scores = self._scores(tally.labels[indices], tally.queries[indices], raw, by)
        deciding = self.deciding_detectors()
        rows = np.flatnonzero(scores.undecidable)  # only those: not a Python pass over every input
        scores.undecidable_reasons = {
            int(r): "; ".join(tally.why.get(n, f"{n} cannot judge it") for n in deciding if n in by and by[n][r])
            or f"its {self.score_name} could not be computed" for r in rows}
        if tally.features is not None:
            scores.features = tally.features[indices]
        return ScanResult(inputs, indices, scores, sorted(tally.failures), self.settings(), seconds,
                          score_names=self.score_names)

    def deciding_detectors(self, score: str | None = None) -> tuple[str, ...]:
        """The detectors ``score`` (default: the deciding one) comes from: an input is undecidable
        for it when none of them can judge it. One detector for its own scores (NSPC: SCALE-UP);
        every combined one for ``q_fisher``; every detector for the response profile."""
        key = (score or self.score_name).replace("-", "_")
        parts = parts_of(self.detector)
        if key in (PROFILE, q_name(PROFILE)):
            return tuple(p.name for p in parts)
        if key == q_name(COMBINED) and self.references is not None:
            raw = self.references.combined_of
        else:
            base = key[2:] if key.startswith("q_") else key
            raw = (self.detector.calibrated.get(base, base),)
        return tuple(p.name for p in parts if any(r in p.score_names for r in raw))

    def undecidable_for(self, name: str, values: np.ndarray, undecidable_by: dict[str, np.ndarray]) -> np.ndarray:
        """The inputs the score ``name`` (their ``values``) cannot judge: those none of its
        detectors can judge, and any without a value (NaN)."""
        names = self.deciding_detectors(name)
        masks = [undecidable_by[n] for n in names if n in undecidable_by]
        none_can = np.logical_and.reduce(masks) if masks and len(masks) == len(names) else False
        return np.isnan(np.asarray(values, dtype=np.float64)) | none_can

    def _scores(self, labels: np.ndarray, queries: np.ndarray, raw: dict[str, np.ndarray],
                undecidable_by: dict[str, np.ndarray]) -> Scores:
        det = self.detector
        has_probs = self.model.output_kind == "scores"
        named: dict[str, np.ndarray | None] = {}
        for name in det.score_names:
            if name in raw:
                named[name] = raw[name]
            elif name not in det.calibrated:  # not produced: needs probabilities the model lacks, or nothing scored
                usable = has_probs or name not in det.probability_scores
                named[name] = np.empty(0) if usable and len(labels) == 0 else None
        if PROFILE in raw:  # computed against the calibration, not by a detector
            named[PROFILE] = raw[PROFILE]
        for calibrated, base in det.calibrated.items():
            named[calibrated] = self.calibration.nspc(named[base], labels) if self.calibration else None
        if self.references is not None:
            # each raw score counts only for the inputs its detector can judge (Fisher drops the others)
            judged = {n: ~undecidable_by[p.name] for p in parts_of(det) if p.name in undecidable_by
                      for n in p.score_names}
            named.update(self.references.calibrated(named, labels, judged))
        named = {n: named.get(n) for n in self.score_names}
        score = named[self.score_name.replace("-", "_")]
        if score is None:
            raise ScannerError(f"the score {self.score_name} could not be computed for this model")
        undecidable = self.undecidable_for(self.score_name, score, undecidable_by)
        flagged = (score >= self.threshold) & ~undecidable
        return Scores(labels, queries, named, self.score_name, score, flagged,
                      query_labels_key=det.query_labels_key, undecidable=undecidable,
                      undecidable_by=dict(undecidable_by))
