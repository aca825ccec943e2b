"""``scanner audit`` on a Ray cluster: the candidate triggers' queries spread over actors, one ONNX
session each. The driver draws the same seeded candidates, splits and gathers the labels in
order, so the verdict, every class's rate and the queries counted are the local run's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..audit import AuditResult
from ..audit import triggers as T
from ..audit.run import audit as run_audit
from ..errors import ScannerError
from .ray_data import _cause, _connect, _native_stderr_aside, _plan, require_ray


def _worker_class(ray):
    @ray.remote
    class AuditWorker:
        """One session; the candidates drawn exactly as the driver draws them."""

        def __init__(self, model: str, load: dict[str, Any], shape: tuple[int, int, int], seed: int, draws: int,
                     families: tuple[str, ...]) -> None:
            from ..model.loader import load_model

            self.model = load_model(model, **load)
            self.found = T.candidates(*shape, seed, draws, families)

        def labels(self, indices: list[int], images: np.ndarray) -> list[np.ndarray]:
            m = self.model
            return [m.predict(m.preprocessor(np.ascontiguousarray(self.found[i].apply(images), dtype=np.float32)))[0]
                    for i in indices]

    return AuditWorker


def audit(model: str | Path, clean, *, address: str | None = None, workers: int | None = None,
          threads: int | None = None, device: str = "auto", options: dict | None = None,
          spec_file: str | Path | None = None, call_timeout: float | str | None = "auto", **kwargs) -> AuditResult:
    """:func:`scanner.audit.audit` with the candidates' queries on Ray actors (``workers``, default
    one per 2 CPUs of the cluster; ``address`` as for the Ray scan). The model and any spec file
    must be readable at the same path on every node."""
    ray = require_ray()
    if workers is not None and workers < 1 or threads is not None and threads < 1:
        raise ScannerError("workers and threads must be at least 1")

    def engine(shape, seed, draws, families):
        n = len(T.candidates(*shape, seed, draws, families))
        count, per_actor, resources = _plan(ray, device, workers, threads, n)
        load = {"device": device, "options": options, "spec_file": spec_file, "threads": per_actor,
                "call_timeout": call_timeout}
        actors = [_worker_class(ray).options(**resources).remote(str(model), load, shape, seed, draws, families)
                  for _ in range(count)]

        def label_candidates(indices: list[int], images: np.ndarray) -> list[np.ndarray]:
            ref = ray.put(images)
            parts = [list(p) for p in np.array_split(np.asarray(indices, dtype=int), len(actors)) if len(p)]
            try:
                done = ray.get([a.labels.remote([int(i) for i in p], ref) for a, p in zip(actors, parts)])
            except Exception as exc:  # noqa: BLE001 - an actor's failure, said in one line
                raise ScannerError(f"the Ray engine failed: {_cause(exc)}") from None
            return [labels for chunk in done for labels in chunk]

        return label_candidates

    with _native_stderr_aside():
        started = _connect(ray, address)
        try:
            return run_audit(model, clean, device=device, options=options, spec_file=spec_file,
                             call_timeout=call_timeout, engine=engine, **kwargs)
        finally:
            if started:
                ray.shutdown()
