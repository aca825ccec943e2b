"""PyTorch -> ONNX export with a dynamic batch axis, the scanner's spec in metadata, and a parity
check of ONNX Runtime against PyTorch.

What lands in the file's ``metadata_props``:

``scanner.spec``
    The preprocessing spec (:class:`scanner.model.spec.Spec`, the scanner's one schema), with
    only what the caller stated: a pixel range not given is written as null (unknown), and so
    are mean/std not given, so the scanner treats that part of the preprocessing as guessed and
    warns (as for a model without metadata) instead of trusting a default as a fact.
``scanner.producer``
    Which tool wrote the file, with versions.
``scanner.export``
    JSON: source, exporter used (``dynamo`` or ``torchscript``) and why the dynamo exporter
    was not used if so, opset, layout, input shape, whether normalization is in the graph, and
    the parity figures.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Sequence

from scanner.model.preprocess import Preprocessor
from scanner.model.spec import LAYOUTS, METADATA_KEY, PIXEL_RANGES, Spec, spec_from_metadata

from .capture import quiet
from .checks import check_choice, check_input_shape, check_stats
from .errors import ExportError, ExportWarning, ParityError, one_line
from .parity import DEFAULT_BATCH_SIZES, DEFAULT_SCALES, ParityResult, compare, summarize
from .pytorch_side import device_of, output_name, parameter_bytes, reference_fn, wrap_model
from .report import ExportReport

logger = logging.getLogger("scanner.exporters")

PRODUCER_KEY = "scanner.producer"
EXPORT_KEY = "scanner.export"
INPUT_NAME = "input"
OUTPUT_NAME = "logits"  # or "probabilities" / "log_probabilities", after what the model returns
EXPORT_RECORD_VERSION = 1
# the dynamo exporter emits opset 18 or newer (older requests are silently raised to 18)
DYNAMO_MIN_OPSET = 18
# one protobuf may not exceed 2 GiB; leave room for the graph itself
_EXTERNAL_DATA_ABOVE = int(0.9 * 2**31)
_EXAMPLE_BATCH = 2  # not 1: torch.export specializes size-1 dimensions


def export(
    model,
    path: str | os.PathLike,
    *,
    input_shape: Sequence[int] = (3, 32, 32),
    layout: str = "nchw",
    mean: float | Sequence[float] | None = None,
    std: float | Sequence[float] | None = None,
    pixel_range: str | None = None,
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
    (N, K) output ``logits`` (``probabilities`` when its rows are non-negative and sum to 1 on a
    check batch, ``log_probabilities`` when their exponentials do). The dynamo exporter is tried first; if it fails (or cannot write
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
    pixel_range : {"unit", "byte"}, optional
        Whether the model's preprocessing starts from pixels in [0, 1] or in [0, 255]. Not given:
        recorded as unknown (the parity check and ``embed_normalization`` then use [0, 1]).
        Given without mean/std, it states "no normalization" as well (the scanner's rule).
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
        raise ExportError('exporting needs PyTorch: pip install "torch==2.13.0" onnxscript '
                          '(in a checkout of the scanner: pip install -e ".[export]")') from None

    if not isinstance(model, torch.nn.Module):
        raise ExportError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    shape = check_input_shape(input_shape)
    layout = check_choice("layout", layout, LAYOUTS)
    stated_range = None if pixel_range is None else check_choice("pixel_range", pixel_range, PIXEL_RANGES)
    mean_t = check_stats("mean", mean, shape[0])
    std_t = check_stats("std", std, shape[0])
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
            pixel_range=stated_range, bgr=bool(bgr), class_names=class_names, opset=opset,
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
    # what the caller did not state stays unknown in the metadata; exporting itself needs a range
    unknown = () if pixel_range is not None else ("pixel_range",) if mean is not None or std is not None \
        else ("pixel_range", "normalization")
    pixel_range = pixel_range or "unit"
    device = device_of(torch, model)
    reference = reference_fn(torch, model, device, pixel_range=pixel_range, mean=mean, std=std, bgr=bgr)

    # run the model once, before exporting: a model that does not run gives a clear error here
    example_images = torch.rand(_EXAMPLE_BATCH, height, width, channels, generator=torch.Generator().manual_seed(seed))
    example_out = reference(example_images.numpy(), check=True)
    n_classes = example_out.shape[1]
    out_name = output_name(example_out)
    if class_names is not None:
        class_names = tuple(str(name) for name in class_names)
        if len(class_names) != n_classes:
            raise ExportError(f"{len(class_names)} class names given, but the model outputs {n_classes} classes")

    spec = Spec(
        layout=layout, height=height, width=width, channels=channels,
        pixel_range="unit" if embed else pixel_range,
        mean=None if embed else mean, std=None if embed else std,
        bgr=bgr, class_names=class_names, input_name=INPUT_NAME, output_name=out_name,
    )
    written = spec.to_dict()
    if "pixel_range" in unknown:
        written["pixel_range"] = None  # unknown: the scanner falls back to its default and says so
    written = json.dumps(written)
    # the spec must survive the scanner's own reader
    spec_from_metadata({METADATA_KEY: written})

    scale = 255.0 if (embed and pixel_range == "byte") else None
    wrapper, scripted = wrap_model(torch, model, layout=layout, shape=shape, device=device, scale=scale,
                              mean=mean if embed else None, std=std if embed else None)
    example = torch.from_numpy(Preprocessor(spec)(example_images.numpy())).to(device)
    external = parameter_bytes(model) > _EXTERNAL_DATA_ABOVE

    workdir = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        tmp = workdir / path.name
        exporter, dynamo_error = _run_exporters(torch, wrapper, example, tmp, opset=opset, external=external,
                                               scripted=scripted, name=type(model).__name__, output=out_name)
        import onnx

        proto = onnx.load(str(tmp), load_external_data=False)
        actual_opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
        parity: tuple[ParityResult, ...] = ()
        if check_parity:
            run_onnx = _ort_runner(tmp, torch, out_name)
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
            "unknown": list(unknown),
            "embedded": {"pixel_range": pixel_range, "mean": _as_list(mean), "std": _as_list(std)} if embed else None,
            "torch_version": torch.__version__,
            "parity": summarize(parity, tolerance=tolerance, batch_sizes=batch_sizes, scales=scales)
            if check_parity else None,
        }
        _set_metadata(proto, {
            METADATA_KEY: written,
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
                        embedded_normalization=embed, unknown=unknown)


def _run_exporters(torch, wrapper, example, out: Path, *, opset, external, scripted, name,
                   output: str = OUTPUT_NAME) -> tuple[str, str | None]:
    """Try the dynamo exporter, then the TorchScript one; return (exporter, why dynamo failed)."""
    if scripted:
        dynamo_error = "it does not take TorchScript modules"
    elif opset is not None and opset < DYNAMO_MIN_OPSET:
        dynamo_error = f"it writes opset {DYNAMO_MIN_OPSET} or newer, opset {opset} was requested"
    else:
        try:
            with quiet():
                torch.onnx.export(
                    wrapper, (example,), str(out), dynamo=True, opset_version=opset,
                    input_names=[INPUT_NAME], output_names=[output],
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
        with quiet():
            torch.onnx.export(
                wrapper, (example,), str(out), dynamo=False, opset_version=opset,
                input_names=[INPUT_NAME], output_names=[output],
                dynamic_axes={INPUT_NAME: {0: "batch"}, output: {0: "batch"}},
            )
    except Exception as exc:
        raise ExportError(
            f"neither torch.onnx exporter can export {name}: "
            f"dynamo: {dynamo_error}; TorchScript: {one_line(exc, 200)}"
        ) from None
    return "torchscript", dynamo_error


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


def _as_list(values):
    return list(values) if values is not None else None


def _ort_runner(model_path: Path, torch, output: str = OUTPUT_NAME):
    """The exported file on the scanner's own CPU session, as the parity check's ONNX side."""
    from scanner.errors import ModelLoadError
    from scanner.model.runtime import create_session

    try:
        session, _ = create_session(str(model_path), "cpu", threads=max(1, torch.get_num_threads()))
    except ModelLoadError as exc:
        raise ExportError(f"ONNX Runtime cannot load the exported model: {exc}") from None

    def run(batch):
        return session.run([output], {INPUT_NAME: batch})[0]

    return run
