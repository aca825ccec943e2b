"""The model boundary: read the ONNX file once, resolve how to feed it, open a session with a
verified batch plan, and describe all of it.

``load_model(path)`` returns a :class:`Model`; ``str(model)`` is what ``scanner inspect``
prints. A :class:`~scanner.model.runner.Runner` inside it runs float batches; the rest of the
scanner never touches onnxruntime.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .batch_plan import BatchPlan, plan_batches
from .onnx_file import ModelInfo, read_model_file
from .preprocess import Preprocessor
from .resolve import OutputChoice, choose_output, num_classes, resolve_spec
from .runner import DEFAULT_CALL_TIMEOUT, ROWS_PER_CALL, Runner, check_call_timeout, labels_from_output, to_probabilities
from .runtime import check_runtime
from ..errors import SpecError
from .spec import ResolvedSpec, Spec


@dataclass
class Model:
    """A loaded ONNX classifier: its file facts, resolved preprocessing, output and batch plan."""

    info: ModelInfo
    resolved: ResolvedSpec
    preprocessor: Preprocessor
    output: OutputChoice
    num_classes: int | None
    plan: BatchPlan
    provider: str
    runner: Runner

    @property
    def spec(self) -> Spec:
        return self.resolved.spec

    @property
    def output_kind(self) -> str:
        return self.output.kind

    @property
    def session(self):
        return self.runner.session

    def predict(self, batch: np.ndarray, *, probabilities: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """Labels (N,) int64 and, if asked and the model outputs scores, probabilities (N, K).

        ``batch`` is float32, already in the model's layout and range.
        """
        out = self.runner.run(batch)
        labels = labels_from_output(out, self.output.kind, len(batch))
        probs = to_probabilities(out, len(batch)) if probabilities and self.output.kind == "scores" else None
        return labels, probs

    def describe(self) -> dict[str, Any]:
        """What ``scanner inspect -f json`` prints."""
        info = self.info
        return {
            "model": str(info.path), "sha256": info.sha256, "producer": info.producer, "opset": info.opset,
            "input": str(info.input), "ignored_initializer_inputs": info.initializer_inputs,
            "outputs": [str(o) for o in info.outputs],
            "output_used": self.output.tensor.name, "output_kind": self.output.kind,
            "output_reason": self.output.reason,
            "num_classes": self.num_classes, "batch": self.plan.mode, "batch_note": self.plan.note,
            "external_data": info.has_external_data, "execution_provider": self.provider,
            "spec": self.spec.to_dict(), "spec_sources": dict(self.resolved.sources),
        }

    def __str__(self) -> str:
        doc, info = self.describe(), self.info
        batch = self.plan.mode + (f" ({self.plan.note})" if self.plan.note else "")
        return "\n".join([
            f"model        {doc['model']}",
            f"sha256       {doc['sha256']}",
            f"producer     {doc['producer']}, opset {doc['opset']}" + (", external data" if info.has_external_data else ""),
            f"input        {doc['input']}" + (f" ({info.initializer_inputs} weight inputs with initializers ignored)"
                                              if info.initializer_inputs else ""),
            f"outputs      {', '.join(doc['outputs'])}",
            f"output used  {doc['output_used']} ({doc['output_kind']}: {doc['output_reason']})",
            f"classes      {doc['num_classes'] if doc['num_classes'] is not None else 'unknown'}",
            f"batch        {batch}",
            f"provider     {doc['execution_provider']}",
            "preprocessing (field, value, source):",
            str(self.resolved),
        ])


def _check_class_names(resolved: ResolvedSpec, output: OutputChoice) -> None:
    names, shape = resolved.spec.class_names, output.tensor.shape
    if names and output.kind == "scores" and shape and isinstance(shape[-1], int) and len(names) != shape[-1]:
        raise SpecError(f"{len(names)} class names given ({resolved.sources.get('class_names')}) but output "
                        f"{output.tensor} has {shape[-1]} classes")


def load_model(path: str | Path, *, device: str = "auto", options: dict[str, Any] | None = None,
               spec_file: str | Path | None = None, threads: int | None = None,
               call_timeout: float | str | None = DEFAULT_CALL_TIMEOUT) -> Model:
    """Read, resolve, open and verify one ONNX classifier.

    Parameters
    ----------
    path : str or Path
        The ``.onnx`` file (external weights, if any, next to it).
    device : {"auto", "cpu", "cuda"}, default="auto"
    options : dict, optional
        Preprocessing fields of :class:`~scanner.model.spec.Spec` (highest precedence).
    spec_file : str or Path, optional
        A JSON spec file (below ``options``, above the model's metadata).
    threads : int, optional
        ONNX Runtime intra-op threads.
    call_timeout : "auto", float or None, default="auto"
        Seconds one model call may run, from the first verification call on; a call still running
        then is stopped with an error. "auto": 60 s plus 60 s per million input values of the
        call (:func:`~scanner.model.runner.call_limit`). None or 0: no limit.
    """
    call_timeout = check_call_timeout(call_timeout)
    check_runtime()
    raw, proto, info = read_model_file(path)
    resolved = resolve_spec(info, options=options, spec_file=spec_file)
    pre = Preprocessor(resolved.spec)
    output = choose_output(info, resolved.spec.output_name)
    _check_class_names(resolved, output)
    session, provider, plan = plan_batches(raw, proto, info, pre, output.tensor.name, device, threads, call_timeout)
    del raw, proto
    runner = Runner(session, input_name=info.input.name, input_dtype=info.input.dtype, output_name=output.tensor.name,
                    max_batch=plan.max_batch or ROWS_PER_CALL, pad=plan.mode == "padded",
                    pad_to=plan.pad_to if plan.mode == "per-sample" else None, call_timeout=call_timeout)
    return Model(info, resolved, pre, output, num_classes(output, resolved.spec), plan, provider, runner)
