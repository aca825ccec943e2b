"""The distributed engine: one scan on a Ray cluster (Ray Data), with the local scan's results.

What runs where:

- the driver (where ``scanner scan --engine ray`` runs) lists the inputs with
  :func:`~scanner.inputs.find.collect_inputs`, cuts them into the local loop's chunks
  (:meth:`BatchLoader.chunks <scanner.inputs.stream.BatchLoader.chunks>`, ``batch_size`` inputs each),
  loads the model once on its CPU to validate it and to own the settings, and keeps the books (a
  :class:`~scanner.results.Tally`, about 70 bytes per input);
- Ray Data tasks decode each chunk (:meth:`BatchLoader.load <scanner.inputs.stream.BatchLoader.load>`:
  the same pixels and the same per-input failures as locally);
- an actor pool scores the decoded chunks: each actor builds one :class:`~scanner.core.Scanner`
  (one ONNX Runtime session) once and calls :meth:`Scanner.score_batch` on whole chunks, so every
  model call holds exactly the inputs it holds locally; with ``device="cuda"`` each actor asks Ray
  for one GPU. With ``output_dir`` the actors also write their per-input records as shards.

The driver fills its books by input index and builds the result with :meth:`Scanner.result`, so
flags, summary, verdict and gate come from the local scan's code. Every input must come back
exactly once: Ray retries the task of a dead worker and restarts a dead actor; a lost or doubled
input is an error, never a silent difference.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import pickle
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..inputs.stream import BatchLoader
from ..decide.calibration import Calibration
from ..detectors.scaleup import DEFAULT_SCALES
from ..errors import InputError, ScannerError
from ..model.runner import DEFAULT_CALL_TIMEOUT
from ..inputs.find import InputSet, MemoryArray, collect_inputs
from ..results import ScanResult

log = logging.getLogger("scanner")

INSTALL_HINT = 'pip install -e ".[ray]"'
SHARD_FORMATS = ("parquet", "jsonl")


def require_ray():
    """Import Ray (and Ray Data), or fail with the install command."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise ScannerError(f"the Ray engine needs Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


def scan(model: str | Path, paths: Sequence[str | Path] | InputSet, *, address: str | None = None,
         workers: int | None = None, threads: int | None = None, output_dir: str | Path | None = None,
         shard_format: str = "parquet", device: str = "auto", scales: Sequence[float] = DEFAULT_SCALES,
         threshold: float | None = None, calibration: str | Path | Calibration | None = None,
         spec: dict[str, Any] | None = None, spec_file: str | Path | None = None, batch_size: int | None = None,
         score: str | None = None, detectors: str | Sequence[str] | None = None,
         progress: Callable[[int, int], None] | None = None,
         call_timeout: float | str | None = DEFAULT_CALL_TIMEOUT) -> ScanResult:
    """Scan image files, folders and image arrays on a Ray cluster; same result as ``Scanner.scan``.

    Parameters
    ----------
    model, device, scales, threshold, calibration, spec, spec_file, batch_size, score, detectors, call_timeout
        As for :class:`~scanner.core.Scanner`. The model, the inputs and any spec file must be
        readable at the same path on every node (a shared file system).
    paths : sequence of paths, or an InputSet
        Files, folders (recursive) and ``.npy``/``.npz`` image arrays, on a file system every node
        sees; not URIs (``s3://``) and not in-memory arrays.
    address : str, optional
        The cluster (``"auto"``, ``"ray://head:10001"``, ``"head:6379"``). Default: the cluster
        Ray is already connected to, else ``RAY_ADDRESS``, else a new local one for this scan.
    workers : int, optional
        Scoring actors. Default: one per GPU with ``device="cuda"``, else one per 2 CPUs.
    threads : int, optional
        ONNX Runtime threads per actor. Default: the cluster's CPUs divided by ``workers``.
    output_dir : path, optional
        Each actor also writes its per-input records there, one shard per chunk
        (``part-<first input index>.parquet`` or ``.jsonl``); a retried chunk overwrites its shard.
    shard_format : {"parquet", "jsonl"}
        JSONL lines are the local ``--format jsonl`` lines; Parquet has the CSV report's columns.
    progress : callable, optional
        Called with (inputs done, total) after each chunk comes back.
    """
    ray = require_ray()
    if shard_format not in SHARD_FORMATS:
        raise ScannerError(f"shard format must be parquet or jsonl, got {shard_format!r}")
    if workers is not None and workers < 1 or threads is not None and threads < 1:
        raise ScannerError("workers and threads must be at least 1")
    from ..core import Scanner

    options = dict(scales=tuple(scales), threshold=threshold, spec=spec, spec_file=spec_file,
                   batch_size=batch_size, score=score, detectors=detectors, call_timeout=call_timeout)
    # the driver's own copy: validates everything before a cluster starts, owns settings and books
    driver = Scanner(model, device="cpu", calibration=calibration, threads=1, **options)
    options.update(calibration=driver.calibration, batch_size=driver.batch_size)
    if not isinstance(paths, InputSet):
        uris = [str(p) for p in paths if re.match(r"[A-Za-z][A-Za-z0-9+.-]+:/", str(p))]  # Path("s3://b") is s3:/b
        if uris:
            raise InputError(f"{uris[0]}: the Ray engine reads paths of a file system that every node sees (local "
                             "or shared); URIs are not supported: mount the bucket or copy the files")
    inputs = paths if isinstance(paths, InputSet) else collect_inputs(paths)
    for part in inputs.parts():
        if isinstance(part, MemoryArray):  # everything else is a small picklable description
            raise InputError("the Ray engine reads files and .npy/.npz arrays; save in-memory arrays with "
                             "numpy.save or use the local engine")
    if output_dir is not None:
        output_dir = Path(output_dir)
        try:
            output_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ScannerError(f"cannot create {output_dir}: {exc.strerror or exc}") from None

    with _native_stderr_aside():
        started_ray = _connect(ray, address)
        try:
            return _run(ray, driver, model, inputs, options, device=device, workers=workers, threads=threads,
                        output_dir=output_dir, shard_format=shard_format, progress=progress)
        finally:
            if started_ray:
                ray.shutdown()


@contextlib.contextmanager
def _native_stderr_aside():
    """Keep Ray's own C++ log lines (``[... E 1234 1234] core_worker.cc:2465: Actor with class
    name ...``, which read as errors in a CI log) off the terminal, unless the scanner's debug log
    is on (``-vv``).

    Ray's C++ code and the processes it starts write to file descriptor 2, so that descriptor goes
    to a temporary file for the scan; Python's ``sys.stderr`` (the progress bar, the scanner's log
    and messages) moves to a copy of the real one. A test runner that has replaced ``sys.stderr``
    keeps it. What Ray wrote is dropped: the scanner says in its own words what failed."""
    if log.isEnabledFor(logging.DEBUG):
        yield
        return
    try:
        sys.__stderr__.flush()
        real = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no descriptor 2 (an embedded interpreter)
        yield
        return
    swap = sys.stderr is sys.__stderr__
    python_side = sys.stderr
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        if swap:
            python_side = os.fdopen(os.dup(real), "w", buffering=1, encoding=sys.__stderr__.encoding,
                                    errors="backslashreplace")
            sys.stderr = python_side
        try:
            yield
        finally:
            with contextlib.suppress(OSError, ValueError):
                python_side.flush()
            os.dup2(real, 2)
            os.close(real)
            if swap:
                sys.stderr = sys.__stderr__
                python_side.close()


def _connect(ray, address: str | None) -> bool:
    """Connect to (or start) a cluster; True when this call started one that it must stop."""
    if ray.is_initialized():
        return False
    started = time.perf_counter()
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.ERROR, configure_logging=True)
    except Exception as exc:  # noqa: BLE001 - ConnectionError, ValueError, RuntimeError from ray.init
        where = f" at {address}" if address else ""
        raise ScannerError(f"cannot connect to the Ray cluster{where}: {' '.join(str(exc).split())[:300]}") from None
    log.info("ray: connected in %.2f s to %s", time.perf_counter() - started, ray.get_runtime_context().gcs_address)
    return True


def _plan(ray, device: str, workers: int | None, threads: int | None, chunks: int) -> tuple[int, int, dict[str, float]]:
    """(actors, ONNX Runtime threads per actor, Ray resources per actor)."""
    total = ray.cluster_resources()
    cpus, gpus = int(total.get("CPU", 1)), int(total.get("GPU", 0))
    if device == "cuda":
        if gpus < 1:
            raise ScannerError("--device cuda: the Ray cluster has no GPU")
        workers = workers or min(gpus, chunks)
        if workers > gpus:
            raise ScannerError(f"--workers {workers} with --device cuda needs {workers} GPUs; the Ray cluster has {gpus}")
        threads = threads or 1
        return workers, threads, {"num_gpus": 1, "num_cpus": 1}
    workers = workers or max(1, min(cpus // 2, chunks))
    threads = threads or max(1, cpus // workers)
    # actors reserve a little less than they use, so that the decoding tasks (0.25 CPU each) always
    # find a slot, and any number of actors fits (oversubscribed if more than the CPUs)
    return workers, threads, {"num_cpus": min(float(threads), 0.75 * cpus / workers)}


def _run(ray, driver, model, inputs: InputSet, options: dict, *, device: str, workers: int | None,
         threads: int | None, output_dir: Path | None, shard_format: str, progress) -> ScanResult:
    started = time.perf_counter()
    spec = driver.spec
    shape = (spec.height, spec.width, spec.channels)
    loader = BatchLoader(inputs, height=shape[0], width=shape[1], channels=shape[2], batch_size=driver.batch_size)
    chunks = [{"start": pieces[0][3], "pieces": pickle.dumps(pieces, protocol=5)} for pieces in loader.chunks()]
    # no more actors than chunks: an idle actor only costs its start-up
    workers, threads, resources = _plan(ray, device, min(workers, len(chunks)) if workers else None, threads,
                                        len(chunks))
    log.info("ray: %d chunks of up to %d inputs, %d actor(s) x %d thread(s)", len(chunks), driver.batch_size,
             workers, threads)
    ds = _pipeline(ray, chunks, shape, str(model), dict(options, device=device, threads=threads),
                   workers, resources, output_dir, shard_format)
    tally = driver.tally(len(inputs))
    seen = np.zeros(len(inputs), dtype=np.int32)
    engine: set[tuple[str, str, str]] = set()
    done = 0
    try:
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            for blob in batch["out"]:
                indices, scores, failures, size, actor_engine = pickle.loads(blob)
                if len(indices):
                    tally.add(indices, scores)
                    seen[indices] += 1
                tally.fail(failures)
                if failures:
                    seen[[i for i, _ in failures]] += 1
                engine.add(actor_engine)
                done += size
                if progress is not None:
                    progress(done, len(inputs))
    except ScannerError:
        raise
    except Exception as exc:  # noqa: BLE001 - Ray wraps worker errors; report their cause in one line
        raise ScannerError(f"distributed scan failed: {_cause(exc)}") from None
    if (seen != 1).any():  # never a silent difference from the local scan
        lost, doubled = int((seen == 0).sum()), int((seen > 1).sum())
        raise ScannerError(f"distributed scan lost {lost} and duplicated {doubled} of {len(inputs)} inputs")
    result = driver.result(inputs, tally, time.perf_counter() - started)
    if len(engine) > 1:
        log.warning("actors ran the model differently: %s", sorted(engine))
    if engine:  # what the actors ran, not the driver's CPU copy
        provider, mode, note = sorted(engine)[0]
        result.settings = dataclasses.replace(result.settings, execution_provider=provider, batch_mode=mode,
                                              batch_note=note)
    return result


def _pipeline(ray, chunks: list[dict], shape: tuple[int, int, int], model: str, options: dict, workers: int,
              resources: dict[str, float], output_dir: Path | None, shard_format: str):
    """Chunks -> decoding tasks -> scoring actors, one chunk per call at each stage (quiets Ray
    Data's progress bars and start-up messages in this process)."""
    from ray.data import ActorPoolStrategy, DataContext

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    # a worker's error reaches the caller as one ScannerError line, not as Ray Data's logged traceback
    logging.getLogger("ray.data").setLevel(logging.CRITICAL)
    ds = ray.data.from_items(chunks, override_num_blocks=max(1, len(chunks)))
    ds = ds.map_batches(_decode_chunks, batch_size=1, batch_format="numpy", num_cpus=0.25,
                        fn_kwargs={"shape": shape, "names": output_dir is not None})
    # the arguments travel inside the class: constructor arguments would sit in the object store,
    # which Ray warns about for restartable actors
    args = (model, options, output_dir, shard_format)
    actor = type("ScoreActor", (_ScoreActor,), {"__init__": lambda self: _ScoreActor.__init__(self, *args)})
    return ds.map_batches(actor, batch_size=1, batch_format="numpy", compute=ActorPoolStrategy(size=workers),
                          **resources)


_LOADERS: dict[tuple[int, int, int], BatchLoader] = {}


def _decode_chunks(batch: dict[str, np.ndarray], *, shape: tuple[int, int, int], names: bool) -> dict[str, np.ndarray]:
    """Ray Data task: decode chunks with the local loop's code (one loader per worker process,
    so a .npz member is decompressed once per process, not once per chunk)."""
    loader = _LOADERS.get(shape)
    if loader is None:
        loader = _LOADERS[shape] = BatchLoader(InputSet(), height=shape[0], width=shape[1], channels=shape[2],
                                               batch_size=1, workers=1)
    out = []
    for blob in batch["pieces"]:
        pieces = pickle.loads(blob)
        decoded = loader.load(pieces)
        out.append(pickle.dumps((decoded, pieces[0][3], _names(pieces) if names else None), protocol=5))
    return {"decoded": np.array(out, dtype=object)}


def _names(pieces) -> list[str]:
    """Display names of a chunk's inputs, in order (as InputSet.name gives them)."""
    names: list[str] = []
    for part, local, count, _start in pieces:
        names.extend([part] if isinstance(part, str) else (part.name(local + k) for k in range(count)))
    return names


class _ScoreActor:
    """Ray Data actor: one Scanner (one ONNX Runtime session), built once, scores whole chunks."""

    def __init__(self, model: str, options: dict, output_dir: Path | None, shard_format: str) -> None:
        from ..core import Scanner

        self.scanner = Scanner(model, **options)
        m = self.scanner.model
        self.engine = (m.provider, m.plan.mode, m.plan.note)
        self.output_dir = output_dir
        self.shard_format = shard_format

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = []
        for blob in batch["decoded"]:
            decoded, start, names = pickle.loads(blob)
            scores = self.scanner.score_batch(decoded.images) if len(decoded.indices) else None
            if self.output_dir is not None:
                from .shards import write_shard

                write_shard(self.scanner, self.output_dir, self.shard_format, start, names, decoded, scores)
            out.append(pickle.dumps((decoded.indices, scores, decoded.failures, decoded.size, self.engine),
                                    protocol=5))
        return {"out": np.array(out, dtype=object)}


def _cause(exc: BaseException) -> str:
    """One line for an error raised in a Ray worker: the innermost cause's message (a Ray error
    that carries no cause object, such as a failed actor constructor, ends its text with it)."""
    inner = exc
    for _ in range(10):
        nxt = getattr(inner, "cause", None)
        if not isinstance(nxt, BaseException) or nxt is inner:
            break
        inner = nxt
    if isinstance(inner, ScannerError):
        return " ".join(str(inner).split())[:300]
    lines = [line.strip() for line in re.sub(r"\x1b\[[0-9;]*m", "", str(inner)).splitlines() if line.strip()]
    last = lines[-1] if lines else type(inner).__name__
    named = re.match(r"(?:[\w.]+\.)?(\w+): (.*)", last)
    if named and named.group(1) in _SCANNER_ERRORS:
        return named.group(2)[:300]
    return (last if named else f"{type(inner).__name__}: {last}")[:300]


_SCANNER_ERRORS = {"ScannerError", "ModelLoadError", "SpecError", "InputError", "CalibrationError", "RunTerminated",
                   "CallTimedOut"}
