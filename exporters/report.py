"""What :func:`exporters.export` returns: the file written, the exporter used, the spec and the
parity figures, with a readable ``str()`` for the command line."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from scanner.model.preprocess import Preprocessor
from scanner.model.spec import Spec

from .parity import ParityResult


@dataclass(frozen=True)
class ExportReport:
    """What :func:`export` wrote and how well it matches PyTorch.

    Attributes
    ----------
    path : Path
        The ``.onnx`` file.
    opset : int
        Default-domain opset of the file.
    size_bytes : int
        Size on disk, external data included.
    exporter : {"dynamo", "torchscript"}
        Which ``torch.onnx`` exporter produced the graph.
    spec : Spec
        The preprocessing spec written into the metadata.
    parity : tuple of ParityResult
        One per (batch size, input kind); empty when the check was skipped.
    tolerance : float
    dynamo_error : str or None
        Why the dynamo exporter was not used, when ``exporter == "torchscript"``.
    external_data : bool
        Whether weights went to ``<path>.data`` (only for models over 2 GB).
    embedded_normalization : bool
        Whether range scaling and mean/std are inside the graph.
    unknown : tuple of str
        What the caller did not state ("pixel_range", "normalization"): recorded as unknown.
    """

    path: Path
    opset: int
    size_bytes: int
    exporter: str
    spec: Spec
    parity: tuple[ParityResult, ...]
    tolerance: float
    dynamo_error: str | None = None
    external_data: bool = False
    embedded_normalization: bool = False
    unknown: tuple[str, ...] = ()

    @property
    def max_abs_diff(self) -> float | None:
        """Largest absolute logit difference over all parity checks (None if skipped)."""
        return max((r.max_abs_diff for r in self.parity), default=None)

    @property
    def argmax_agreement(self) -> float | None:
        """Lowest fraction of agreeing predictions over all parity checks (None if skipped)."""
        return min((r.argmax_agreement for r in self.parity), default=None)

    def __str__(self) -> str:
        spec = self.spec
        dims = Preprocessor(spec).describe_input("batch")
        if spec.mean is not None or spec.std is not None:
            norm = f"mean {fmt_stats(spec.mean)} std {fmt_stats(spec.std)} applied outside the graph"
        elif self.embedded_normalization:
            norm = "normalization inside the graph"
        elif "normalization" in self.unknown:
            norm = "normalization unknown"
        else:
            norm = "no normalization"
        rng = "unknown" if "pixel_range" in self.unknown else spec.pixel_range
        lines = [
            f"wrote     {self.path} ({fmt_size(self.size_bytes)}"
            + (", weights in external data)" if self.external_data else ")"),
            f"exporter  {self.exporter}, opset {self.opset}"
            + (f" (dynamo exporter failed: {self.dynamo_error})" if self.dynamo_error else ""),
            f"input     {spec.input_name} {dims} {spec.layout}, {rng} range"
            + (", BGR" if spec.bgr else "")
            + f", {norm}",
            f"output    {spec.output_name}"
            + (f", {len(spec.class_names)} class names" if spec.class_names else ""),
        ]
        if self.unknown:
            lines.append(f"unknown   {' and '.join(u.replace('_', ' ') for u in self.unknown)} not given: recorded as "
                         "unknown, so scans warn that the preprocessing is guessed; pass --pixel-range (and --mean/"
                         "--std if the model normalizes) to record it")
        if not self.parity:
            lines.append("parity    not checked")
            return "\n".join(lines)
        lines.append(
            f"parity    ONNX Runtime vs PyTorch: max |logit diff| {self.max_abs_diff:.2e} "
            f"(tolerance {self.tolerance:g}), argmax agreement {self.argmax_agreement:.1%}"
        )
        batches = sorted({r.batch_size for r in self.parity})
        kinds = list(dict.fromkeys(r.input_kind for r in self.parity))
        cell = {(r.input_kind, r.batch_size): r for r in self.parity}
        lines.append("          " + f"{'input':<7}" + "".join(f"{'batch ' + str(b):>18}" for b in batches))
        for kind in kinds:
            row = ""
            for b in batches:
                r = cell.get((kind, b))
                row += f"{r.max_abs_diff:>12.1e} {r.argmax_agreement:>5.0%}" if r else f"{'-':>18}"
            lines.append(f"          {kind:<7}{row}")
        return "\n".join(lines)




def fmt_stats(values) -> str:
    return "-" if values is None else "(" + ", ".join(f"{v:g}" for v in values) + ")"


def fmt_size(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size} B"
