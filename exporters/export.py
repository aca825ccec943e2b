"""PyTorch -> ONNX export with a dynamic batch axis, the scanner's spec in metadata, and a parity
check of ONNX Runtime against PyTorch.

What lands in the file's ``metadata_props``:

``scanner.spec``
    The preprocessing spec (:class:`scanner.spec.Spec`, the scanner's one schema).
``scanner.producer``
    Which tool wrote the file, with versions.
``scanner.export``
    JSON: source, exporter used (``dynamo`` or ``torchscript``) and why the dynamo exporter
    was not used if so, opset, layout, input shape, whether normalization is in the graph, and
    the parity figures.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from scanner.spec import LAYOUTS, METADATA_KEY, PIXEL_RANGES, Spec, spec_from_metadata

from .errors import ExportError, ExportWarning, ParityError, one_line
from .parity import DEFAULT_BATCH_SIZES, DEFAULT_SCALES, ParityResult, compare, summarize

logger = logging.getLogger("scanner.exporters")

PRODUCER_KEY = "scanner.producer"
EXPORT_KEY = "scanner.export"
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
EXPORT_RECORD_VERSION = 1
# the dynamo exporter emits opset 18 or newer (older requests are silently raised to 18)
DYNAMO_MIN_OPSET = 18
# one protobuf may not exceed 2 GiB; leave room for the graph itself
_EXTERNAL_DATA_ABOVE = int(0.9 * 2**31)
_EXAMPLE_BATCH = 2  # not 1: torch.export specializes size-1 dimensions


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
        c, h, w = spec.channels, spec.height, spec.width
        dims = {"nchw": f"[batch, {c}, {h}, {w}]", "nhwc": f"[batch, {h}, {w}, {c}]"}.get(
            spec.layout, f"[batch, {h * w * c}]"
        )
        if spec.mean is not None or spec.std is not None:
            norm = f"mean {_fmt_stats(spec.mean)} std {_fmt_stats(spec.std)} applied outside the graph"
        elif self.embedded_normalization:
            norm = "normalization inside the graph"
        else:
            norm = "no normalization"
        lines = [
            f"wrote     {self.path} ({_fmt_size(self.size_bytes)}"
            + (", weights in external data)" if self.external_data else ")"),
            f"exporter  {self.exporter}, opset {self.opset}"
            + (f" (dynamo exporter failed: {self.dynamo_error})" if self.dynamo_error else ""),
            f"input     {spec.input_name} {dims} {spec.layout}, {spec.pixel_range} range"
            + (", BGR" if spec.bgr else "")
            + f", {norm}",
            f"output    {spec.output_name}"
            + (f", {len(spec.class_names)} class names" if spec.class_names else ""),
        ]
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


def export(
    model,
    path: str | os.PathLike,
    *,
    input_shape: Sequence[int] = (3, 32, 32),
    layout: str = "nchw",
    mean: float | Sequence[float] | None = None,
    std: float | Sequence[float] | None = None,
    pixel_range: str = "unit",
    bgr: bool = False,
    class_names: Sequence[str] | None = None,
    opset: int | None = None,
    embed_normalization: bool = False,
    check_parity: bool = True,
    tolerance: float = 1e-3,
    parity_batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
    parity_scales: Sequence[int] = DEFAULT_SCALES,
    source: str | None = None,
    seed: int = 0,
) -> ExportReport:
    """Export a PyTorch image classifier to one self-contained ONNX file the scanner can read.

    The graph gets a symbolic batch axis (``batch``), the input is named ``input`` and the
    (N, K) output ``logits``. The dynamo exporter is tried first; if it fails (or cannot write
    the requested opset) the TorchScript exporter is used, and the report says so.

    Parameters
    ----------
    model : torch.nn.Module
        Takes float32 (N, C, H, W) batches, already normalized, and returns (N, K) logits. It
        is exported in eval mode (with a warning if it was training; its mode is restored).
    path : path-like
        Where to write the ``.onnx`` file. Nothing is written if export or parity fails.
    input_shape : (C, H, W), default=(3, 32, 32)
        C is 1 or 3.
    layout : {"nchw", "nhwc", "flat"}, default="nchw"
        Layout of the ONNX input. ``nhwc`` takes (N, H, W, C) and ``flat`` takes (N, H*W*C)
        (NHWC order); the conversion to the model's NCHW happens inside the graph.
    mean, std : float or sequence of float, optional
        Normalization the model expects, ``(x - mean) / std``, in ``pixel_range`` units, one
        value or one per channel.
    pixel_range : {"unit", "byte"}, default="unit"
        Whether the model's preprocessing starts from pixels in [0, 1] or in [0, 255].
    bgr : bool, default=False
        The model expects BGR channel order (recorded in the spec; the scanner flips).
    class_names : sequence of str, optional
        K names, recorded in the spec.
    opset : int, optional
        ONNX opset; default is the exporter's (20 with torch 2.13). Below 18 only the
        TorchScript exporter is tried.
    embed_normalization : bool, default=False
        Put ``x * 255`` (for ``pixel_range="byte"``) and ``(x - mean) / std`` inside the graph,
        so it takes raw unit-range pixels; the spec then says ``pixel_range="unit"`` and has no
        mean/std. Otherwise the spec carries them and the scanner applies them.
    check_parity : bool, default=True
        Compare ONNX Runtime (CPU) with PyTorch on random and SCALE-UP-amplified inputs.
    tolerance : float, default=1e-3
        Largest allowed absolute logit difference.
    parity_batch_sizes : sequence of int, default=(1, 7, 64)
    parity_scales : sequence of int, default=(3, 5, 7, 9, 11)
        Amplifications ``clip(n * x, 0, 1)`` checked besides the plain random inputs.
    source : str, optional
        Where the model came from, for the metadata; default is its class name.
    seed : int, default=0
        Seed of the random parity inputs.

    Returns
    -------
    ExportReport

    Raises
    ------
    ExportError
        Bad arguments, a model that does not run or that neither exporter can export.
    ParityError
        ONNX Runtime and PyTorch disagree beyond ``tolerance`` (a subclass of ExportError).

    Examples
    --------
    >>> report = export(net, "net.onnx", input_shape=(3, 32, 32),
    ...                 mean=(0.4914, 0.4822, 0.4465), std=(0.247, 0.243, 0.261))
    >>> print(report)
    """
    try:
        import torch
    except ImportError:
        raise ExportError("exporting needs PyTorch: pip install 'scaleup-scanner[export]'") from None

    if not isinstance(model, torch.nn.Module):
        raise ExportError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    shape = _check_input_shape(input_shape)
    layout = _check_choice("layout", layout, LAYOUTS)
    pixel_range = _check_choice("pixel_range", pixel_range, PIXEL_RANGES)
    mean_t = _check_stats("mean", mean, shape[0])
    std_t = _check_stats("std", std, shape[0])
    if not (tolerance > 0):
        raise ExportError(f"tolerance must be positive, got {tolerance!r}")
    if opset is not None and (isinstance(opset, bool) or int(opset) != opset or opset < 7):
        raise ExportError(f"opset must be an integer of at least 7, got {opset!r}")
    path = Path(path)
    if path.is_dir():
        raise ExportError(f"output path {path} is a directory; give a file name such as model.onnx")
    if not path.parent.is_dir():
        raise ExportError(f"output directory {path.parent} does not exist")

    was_training = model.training
    if was_training:
        warnings.warn(
            f"{type(model).__name__} was in training mode; exporting it in eval mode "
            "(BatchNorm running statistics, no dropout)",
            ExportWarning,
            stacklevel=2,
        )
    model.eval()
    try:
        return _export(
            torch, model, path, shape=shape, layout=layout, mean=mean_t, std=std_t,
            pixel_range=pixel_range, bgr=bool(bgr), class_names=class_names, opset=opset,
            embed=bool(embed_normalization), check_parity=check_parity, tolerance=float(tolerance),
            batch_sizes=tuple(parity_batch_sizes), scales=tuple(parity_scales),
            source=source or f"{type(model).__module__}.{type(model).__qualname__}", seed=seed,
        )
    finally:
        if was_training:
            model.train()


def _export(torch, model, path: Path, *, shape, layout, mean, std, pixel_range, bgr, class_names,
            opset, embed, check_parity, tolerance, batch_sizes, scales, source, seed) -> ExportReport:
    channels, height, width = shape
    device = _device_of(torch, model)
    reference = _reference_fn(torch, model, device, pixel_range=pixel_range, mean=mean, std=std)

    # run the model once, before exporting: a model that does not run gives a clear error here
    example_images = torch.rand(_EXAMPLE_BATCH, height, width, channels, generator=torch.Generator().manual_seed(seed))
    n_classes = reference(example_images.numpy(), check=True).shape[1]
    if class_names is not None:
        class_names = tuple(str(name) for name in class_names)
        if len(class_names) != n_classes:
            raise ExportError(f"{len(class_names)} class names given, but the model outputs {n_classes} classes")

    spec = Spec(
        layout=layout, height=height, width=width, channels=channels,
        pixel_range="unit" if embed else pixel_range,
        mean=None if embed else mean, std=None if embed else std,
        bgr=bgr, class_names=class_names, input_name=INPUT_NAME, output_name=OUTPUT_NAME,
    )
    # the spec must survive the scanner's own reader
    spec_from_metadata({METADATA_KEY: spec.to_json()})

    scale = 255.0 if (embed and pixel_range == "byte") else None
    wrapper, scripted = _wrap(torch, model, layout=layout, shape=shape, device=device, scale=scale,
                              mean=mean if embed else None, std=std if embed else None)
    from .parity import arrange

    example = torch.from_numpy(arrange(example_images.numpy(), layout)).to(device)
    external = _parameter_bytes(model) > _EXTERNAL_DATA_ABOVE

    workdir = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        tmp = workdir / path.name
        exporter, dynamo_error = _run_exporters(torch, wrapper, example, tmp, opset=opset, external=external,
                                               scripted=scripted, name=type(model).__name__)
        import onnx

        proto = onnx.load(str(tmp), load_external_data=False)
        actual_opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
        parity: tuple[ParityResult, ...] = ()
        if check_parity:
            run_onnx = _ort_runner(tmp, torch)
            try:
                parity = compare(run_onnx, reference, spec, input_shape=shape, tolerance=tolerance,
                                 batch_sizes=batch_sizes, scales=scales, seed=seed)
            except ParityError as exc:
                failed = f"; dynamo exporter failed: {dynamo_error}" if dynamo_error else ""
                note = f" (exporter: {exporter}{failed})"
                raise ParityError(str(exc) + note, exc.parity) from None
        record = {
            "version": EXPORT_RECORD_VERSION,
            "source": source,
            "exporter": exporter,
            "dynamo_error": dynamo_error,
            "opset": actual_opset,
            "layout": layout,
            "input_shape": list(shape),
            "embed_normalization": embed,
            "embedded": {"pixel_range": pixel_range, "mean": _as_list(mean), "std": _as_list(std)} if embed else None,
            "torch_version": torch.__version__,
            "parity": summarize(parity, tolerance=tolerance, batch_sizes=batch_sizes, scales=scales)
            if check_parity else None,
        }
        _set_metadata(proto, {
            METADATA_KEY: spec.to_json(),
            PRODUCER_KEY: _producer(torch),
            EXPORT_KEY: json.dumps(record),
        })
        onnx.save(proto, str(tmp))
        size = sum(f.stat().st_size for f in workdir.iterdir() if f.is_file())
        for item in workdir.iterdir():
            os.replace(item, path.parent / item.name)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    return ExportReport(path=path, opset=actual_opset, size_bytes=size, exporter=exporter, spec=spec,
                        parity=parity, tolerance=tolerance, dynamo_error=dynamo_error, external_data=external,
                        embedded_normalization=embed)


# -- the graph ---------------------------------------------------------------------------------
def _wrap(torch, model, *, layout, shape, device, scale, mean, std):
    """The module actually exported, and whether it holds TorchScript (then it is scripted)."""
    from ._graph import InputAdapter, contains_script_module

    adapter = InputAdapter(model, layout=layout, shape=shape, scale=scale, mean=mean, std=std, device=device).eval()
    if not contains_script_module(model):
        return adapter, False
    # tracing an eager module around a loaded TorchScript one fails; script the adapter instead
    try:
        with _quiet():
            return torch.jit.script(adapter), True
    except Exception as exc:
        logger.info("cannot script the input adapter (%s); tracing it", one_line(exc))
        return adapter, True


def _run_exporters(torch, wrapper, example, out: Path, *, opset, external, scripted, name) -> tuple[str, str | None]:
    """Try the dynamo exporter, then the TorchScript one; return (exporter, why dynamo failed)."""
    if scripted:
        dynamo_error = "it does not take TorchScript modules"
    elif opset is not None and opset < DYNAMO_MIN_OPSET:
        dynamo_error = f"it writes opset {DYNAMO_MIN_OPSET} or newer, opset {opset} was requested"
    else:
        try:
            with _quiet():
                torch.onnx.export(
                    wrapper, (example,), str(out), dynamo=True, opset_version=opset,
                    input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                    dynamic_shapes=({0: torch.export.Dim("batch")},),
                    external_data=external, verbose=False,
                )
            got, batch_dim = _file_facts(out)
            if opset is not None and got != opset:
                dynamo_error = f"it wrote opset {got}, opset {opset} was requested"
            elif not isinstance(batch_dim, str):
                # torch.export specializes silently when the model's code fixes the batch size
                dynamo_error = f"it fixed the batch dimension to {batch_dim}"
            else:
                return "dynamo", None
        except Exception as exc:
            dynamo_error = one_line(exc, 200)
        _clear(out)
        logger.info("dynamo exporter failed (%s); trying the TorchScript exporter", dynamo_error)
    try:
        with _quiet():
            torch.onnx.export(
                wrapper, (example,), str(out), dynamo=False, opset_version=opset,
                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            )
    except Exception as exc:
        raise ExportError(
            f"neither torch.onnx exporter can export {name}: "
            f"dynamo: {dynamo_error}; TorchScript: {one_line(exc, 200)}"
        ) from None
    return "torchscript", dynamo_error


@contextlib.contextmanager
def _quiet():
    """Keep the exporters' progress lines, graph dumps and warnings off the user's terminal.

    Both Python-level streams and the process's file descriptors 1 and 2 are captured (the
    TorchScript exporter prints from C++); what was captured goes to the debug log.
    """
    import sys

    captured = io.StringIO()
    saved_fds = []
    sink = tempfile.TemporaryFile(mode="w+b")
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()
        except Exception:
            pass
    try:
        for fd in (1, 2):
            try:
                saved_fds.append((fd, os.dup(fd)))
                os.dup2(sink.fileno(), fd)
            except OSError:
                pass
        with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured), \
                warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for stream in (sys.__stdout__, sys.__stderr__):
            try:
                stream.flush()
            except Exception:
                pass
        for fd, saved in saved_fds:
            os.dup2(saved, fd)
            os.close(saved)
        sink.seek(0)
        text = captured.getvalue() + sink.read().decode("utf-8", "replace")
        sink.close()
        if text.strip():
            logger.debug("torch.onnx output:\n%s", text)


def _clear(out: Path) -> None:
    for item in out.parent.iterdir():
        if item.is_file():
            item.unlink()


def _file_facts(path: Path) -> tuple[int | None, int | str | None]:
    """Default-domain opset and the input's batch dimension (a name when symbolic)."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    initializers = {t.name for t in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in initializers]
    batch = None
    if inputs and inputs[0].type.tensor_type.shape.dim:
        dim = inputs[0].type.tensor_type.shape.dim[0]
        batch = dim.dim_param if dim.HasField("dim_param") else dim.dim_value if dim.HasField("dim_value") else None
    return opset, batch


def _set_metadata(proto, values: dict[str, str]) -> None:
    keep = [(p.key, p.value) for p in proto.metadata_props if p.key not in values]
    del proto.metadata_props[:]
    for key, value in [*keep, *values.items()]:
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value


def _producer(torch) -> str:
    from importlib import metadata

    try:
        version = metadata.version("scaleup-scanner")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return f"scaleup-scanner {version} exporters (torch {torch.__version__})"


# -- the two sides of the parity check ------------------------------------------------------
def _reference_fn(torch, model, device, *, pixel_range, mean, std):
    """PyTorch logits of the original model for unit-range NHWC images, normalized as specified."""

    def stat(values):
        if values is None:
            return None
        return torch.tensor(values, dtype=torch.float32, device=device).reshape(1, -1, 1, 1)

    mean_t, std_t = stat(mean), stat(std)

    def reference(images, check: bool = False):
        x = torch.from_numpy(images).to(device).permute(0, 3, 1, 2)
        if pixel_range == "byte":
            x = x * 255.0
        if mean_t is not None:
            x = x - mean_t
        if std_t is not None:
            x = x / std_t
        try:
            with torch.no_grad():
                out = model(x)
        except Exception as exc:
            raise ExportError(
                f"model failed on a float32 batch of shape {tuple(x.shape)}: {type(exc).__name__}: {one_line(exc)}"
            ) from None
        if check:
            _check_output(torch, out, x.shape[0])
        return out.detach().float().cpu().numpy()

    return reference


def _check_output(torch, out, batch: int) -> None:
    if isinstance(out, (tuple, list)):
        raise ExportError(
            f"model returned a {type(out).__name__} of {len(out)}; export needs a model that returns one "
            "(batch, n_classes) tensor (wrap it to pick the logits)"
        )
    if not isinstance(out, torch.Tensor):
        raise ExportError(f"model returned a {type(out).__name__}; expected a (batch, n_classes) tensor")
    if out.ndim != 2 or out.shape[0] != batch:
        raise ExportError(
            f"model output has shape {tuple(out.shape)} for a batch of {batch}; expected (batch, n_classes)"
        )
    if not out.is_floating_point():
        raise ExportError(f"model output has dtype {out.dtype}; expected floating-point logits or probabilities")


def _ort_runner(model_path: Path, torch):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 4  # failures are reported by the parity check itself
    options.intra_op_num_threads = max(1, torch.get_num_threads())
    try:
        session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ExportError(f"ONNX Runtime cannot load the exported model: {one_line(exc)}") from None

    def run(batch):
        return session.run([OUTPUT_NAME], {INPUT_NAME: batch})[0]

    return run


# -- argument checks -------------------------------------------------------------------------
def _check_input_shape(input_shape) -> tuple[int, int, int]:
    try:
        shape = tuple(int(v) for v in input_shape)
        ok = len(shape) == 3 and all(int(a) == a for a in input_shape)
    except (TypeError, ValueError):
        ok = False
    if not ok or min(shape) < 1:
        raise ExportError(f"input_shape must be (channels, height, width) of positive integers, got {input_shape!r}")
    if shape[0] not in (1, 3):
        raise ExportError(f"input_shape must have 1 or 3 channels first (C, H, W), got {shape!r}")
    return shape


def _check_choice(name: str, value: Any, allowed: Sequence[str]) -> str:
    text = str(value).lower()
    if text not in allowed:
        raise ExportError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    return text


def _check_stats(name: str, values, channels: int) -> tuple[float, ...] | None:
    if values is None:
        return None
    if isinstance(values, (int, float)):
        values = [values]
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise ExportError(f"{name} must be numbers, got {values!r}") from None
    if len(out) not in (1, channels):
        raise ExportError(f"{name} has {len(out)} values; expected 1 or {channels} (one per channel)")
    if name == "std" and any(not (v > 0) for v in out):
        raise ExportError(f"std must be positive, got {list(out)}")
    return out


def _device_of(torch, model):
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def _parameter_bytes(model) -> int:
    return sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))


def _as_list(values):
    return list(values) if values is not None else None


def _fmt_stats(values) -> str:
    return "-" if values is None else "(" + ", ".join(f"{v:g}" for v in values) + ")"


def _fmt_size(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size} B"
