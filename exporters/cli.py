"""``scanner export``: a thin shell over :func:`exporters.export` and the loaders.

Register with ``app.command("export")(export_command)``. torch is imported only when the
command runs; without it the command says how to install it and exits with status 2.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from typing import Annotated, Optional

import typer

from scanner.errors import ScannerError
from scanner.model.spec import Layout, PixelRange

TORCH_MISSING = ('Error: scanner export needs PyTorch: pip install "torch==2.13.0" onnxscript '
                 '(in a checkout of the scanner: pip install -e ".[export]")')


def export_command(
    output: Annotated[
        Path,
        typer.Option("--output", "-o", help="Where to write the .onnx file.", dir_okay=False, show_default=False),
    ],
    torchscript: Annotated[
        Optional[Path],
        typer.Option("--torchscript", metavar="FILE", help="Model source: a TorchScript archive (torch.jit.save)."),
    ] = None,
    factory: Annotated[
        Optional[str],
        typer.Option(
            "--factory",
            metavar="MODULE:CALLABLE",
            help="Model source: a callable that builds the model, called with no arguments "
            "(the current directory is importable).",
        ),
    ] = None,
    weights: Annotated[
        Optional[Path],
        typer.Option(
            "--weights",
            metavar="FILE",
            help="state_dict for the --factory model, read with torch.load(weights_only=True).",
        ),
    ] = None,
    pickle: Annotated[
        Optional[Path],
        typer.Option(
            "--pickle",
            metavar="FILE",
            help="Model source: a whole module saved with torch.save(model). Loading a pickle runs "
            "arbitrary code from the file, so it needs --trust-pickle.",
        ),
    ] = None,
    trust_pickle: Annotated[
        bool,
        typer.Option("--trust-pickle", help="Allow --pickle: you trust the file to run code on this machine."),
    ] = False,
    input_shape: Annotated[
        str, typer.Option("--input-shape", metavar="C,H,W", help="Input size the model takes, channels first.")
    ] = "3,32,32",
    layout: Annotated[
        Layout,
        typer.Option("--layout", case_sensitive=False, help="Layout of the ONNX input; the model itself takes NCHW."),
    ] = Layout.nchw,
    mean: Annotated[
        Optional[str],
        typer.Option("--mean", metavar="M[,M,M]", help="Normalization mean, in --pixel-range units."),
    ] = None,
    std: Annotated[
        Optional[str],
        typer.Option("--std", metavar="S[,S,S]", help="Normalization std, in --pixel-range units."),
    ] = None,
    pixel_range: Annotated[
        Optional[PixelRange],
        typer.Option("--pixel-range", case_sensitive=False, help="Pixels in [0, 1] (unit) or [0, 255] (byte); "
                     "with neither --mean nor --std it also states that the model does not normalize [default: "
                     "unknown, recorded as such: scans then warn that the preprocessing is guessed]."),
    ] = None,
    bgr: Annotated[bool, typer.Option("--bgr", help="The model expects BGR channel order.")] = False,
    class_names: Annotated[
        Optional[str], typer.Option("--class-names", metavar="A,B,C", help="Class names, comma-separated.")
    ] = None,
    class_names_file: Annotated[
        Optional[Path], typer.Option("--class-names-file", metavar="FILE", help="Class names, one per line.")
    ] = None,
    opset: Annotated[
        Optional[int], typer.Option("--opset", help="ONNX opset (below 18 uses TorchScript) [default: the exporter's].")
    ] = None,
    embed_normalization: Annotated[
        bool,
        typer.Option(
            "--embed-normalization",
            help="Put x*255 (byte range) and (x - mean) / std inside the graph, so it takes raw [0, 1] pixels.",
        ),
    ] = False,
    tolerance: Annotated[
        float, typer.Option("--tolerance", help="Largest allowed |logit| difference, ONNX Runtime vs PyTorch.")
    ] = 1e-3,
) -> None:
    """Export a PyTorch image classifier to ONNX for the scanner.

    Give one model source: --torchscript FILE, --factory MODULE:CALLABLE [--weights FILE], or --pickle FILE --trust-pickle.

    The file gets a dynamic batch axis and the preprocessing spec in its metadata; ONNX Runtime is then checked against PyTorch on random and amplified inputs, and nothing is written if they disagree.

    Exit status: 0 written and parity passed; 2 usage, model, export or parity error.
    """
    try:
        import torch  # noqa: F401
    except ImportError:
        typer.echo(TORCH_MISSING, err=True)
        raise typer.Exit(2)

    try:
        shape = _int_list("--input-shape", input_shape, count=3)
        mean_v = _float_list("--mean", mean)
        std_v = _float_list("--std", std)
        names = _class_names(class_names, class_names_file)
        model, source = _load_model(torchscript, factory, weights, pickle, trust_pickle)
        import exporters

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", exporters.ExportWarning)
            report = exporters.export(
                model, output, input_shape=shape, layout=layout.value, mean=mean_v, std=std_v,
                pixel_range=None if pixel_range is None else pixel_range.value, bgr=bgr, class_names=names, opset=opset,
                embed_normalization=embed_normalization, tolerance=tolerance, source=source,
            )
        for item in caught:
            if issubclass(item.category, exporters.ExportWarning):
                typer.echo(f"Warning: {item.message}", err=True)
    except ScannerError as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(2)
    typer.echo(str(report))


def _load_model(torchscript, factory, weights, pickle, trust_pickle):
    from exporters import ExportError, load_factory, load_pickle, load_torchscript

    given = [flag for flag, value in (("--torchscript", torchscript), ("--factory", factory), ("--pickle", pickle))
             if value is not None]
    if len(given) != 1:
        what = "no model source" if not given else f"{' and '.join(given)} together"
        raise ExportError(
            f"give exactly one model source, got {what}: --torchscript FILE, "
            "--factory MODULE:CALLABLE [--weights FILE], or --pickle FILE --trust-pickle"
        )
    if weights is not None and factory is None:
        raise ExportError("--weights goes with --factory (the callable that builds the model for them)")
    if trust_pickle and pickle is None:
        raise ExportError("--trust-pickle goes with --pickle")
    if torchscript is not None:
        return load_torchscript(torchscript), f"torchscript {torchscript.name}"
    if factory is not None:
        if os.getcwd() not in sys.path and "" not in sys.path:
            sys.path.insert(0, os.getcwd())
        source = f"factory {factory}" + (f", weights {weights.name}" if weights is not None else "")
        return load_factory(factory, weights), source
    if not trust_pickle:
        raise ExportError(
            f"--pickle {pickle} needs --trust-pickle: loading a pickle runs arbitrary code from the file; "
            "prefer --torchscript, or --factory with --weights"
        )
    return load_pickle(pickle, trust=True), f"pickle {pickle.name}"


def _class_names(inline: str | None, path: Path | None) -> list[str] | None:
    from exporters import ExportError

    if inline is not None and path is not None:
        raise ExportError("give --class-names or --class-names-file, not both")
    if inline is not None:
        names = [n.strip() for n in inline.split(",")]
        if any(not n for n in names):
            raise ExportError(f"--class-names has an empty name: {inline!r}")
        return names
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or exc
            raise ExportError(f"cannot read --class-names-file {path}: {reason}") from None
        names = [line.strip() for line in text.splitlines() if line.strip()]
        if not names:
            raise ExportError(f"--class-names-file {path} has no names")
        return names
    return None


def _float_list(flag: str, text: str | None) -> list[float] | None:
    from exporters import ExportError

    if text is None:
        return None
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise ExportError(f"{flag} expects comma-separated numbers, got {text!r}") from None


def _int_list(flag: str, text: str, *, count: int) -> list[int]:
    from exporters import ExportError

    try:
        values = [int(v) for v in text.replace("x", ",").split(",")]
    except ValueError:
        values = []
    if len(values) != count or min(values) < 1:
        raise ExportError(f"{flag} expects {count} positive integers such as 3,32,32, got {text!r}")
    return values
