"""The command line's shared options, declared once: choices, option aliases and the
preprocessing group that every command loading a model takes (:func:`preprocessing_options`).
"""

from __future__ import annotations

import contextlib
import functools
import inspect as _inspect
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Iterator, Optional

import typer

from ..errors import ScannerError
from ..model.runner import DEFAULT_CALL_TIMEOUT
from ..model.spec import Layout, PixelRange

PREP = "Preprocessing"  # the help panel of the preprocessing options (its note: cli.support.PANEL_NOTES)


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Engine(str, Enum):
    """Where ``scan`` runs: this machine, or a Ray cluster (:mod:`scanner.engines.ray_data`)."""

    local = "local"
    ray = "ray"


# -- options shared by several commands, declared once ------------------------------------------
ModelArg = Annotated[Path, typer.Argument(help="The ONNX model.")]
DeviceOpt = Annotated[Device, typer.Option(help="auto: CUDA when a session really gets it, else CPU; cuda: fail if unavailable.")]
ScalesOpt = Annotated[str, typer.Option(metavar="LIST", help="Scale set S, e.g. 3,5,7,9,11 or 1-11.")]
BatchOpt = Annotated[Optional[int], typer.Option("--batch-size", min=1, help="Images per batch (each sent with its |S| amplified copies) [default: up to 256, fewer for large images].")]
ScoreOpt = Annotated[Optional[str], typer.Option("--score", metavar="NAME", help="The score that flags: spc (the paper), prob-consistency (beyond the paper: mean probability of the unscaled label across scales), strip, teco; with a calibration also nspc and the calibrated q-<score> and q-fisher (the detectors combined) [default: spc; with a calibration its decision, usually q-fisher].")]
DetectorOpt = Annotated[Optional[str], typer.Option("--detector", metavar="NAMES", help="Detectors to run, comma-separated: scaleup (6 queries per input), strip (1 + blends; needs a calibration's clean images), teco (1 + 12 x severities), transplant (1 + 2 per region, 3 x 3 regions: 19; needs a calibration's clean images) [default: scaleup; with --calibration the calibration's detectors, or a subset of them].")]
OutputOpt = Annotated[Optional[Path], typer.Option("--output", "-o", metavar="FILE", help="Write the report here (replaced only when complete) [default: stdout].")]
ThresholdOpt = Annotated[Optional[float], typer.Option(help="Flag when the score >= this [default: 0.5 on SPC; with a calibration 1 - its FPR on q- scores (p-value at most the FPR), its threshold on NSPC].")]
CalibrationOpt = Annotated[Optional[Path], typer.Option(metavar="FILE", help="Calibration file from `scanner calibrate`: per-class benign references for every score, the detectors and their clean images [default: none, data-free SPC].")]
CallTimeoutOpt = Annotated[str, typer.Option("--call-timeout", help="Watchdog: stop with exit 2 when one model call runs longer than this many seconds (a model that never returns); auto: 60 s plus 60 s per million input values in the call (rows x height x width x channels); 0: no limit.")]


def call_timeout_value(text: str):
    """``--call-timeout``: "auto", or seconds (0: no limit) as the library takes them."""
    from ..model.runner import check_call_timeout

    if text.strip().lower() == DEFAULT_CALL_TIMEOUT:
        return DEFAULT_CALL_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        raise ScannerError(f"--call-timeout: expected auto, a number of seconds or 0 (no limit), got {text[:40]!r}") from None
    return check_call_timeout(value, "--call-timeout")



@dataclass(frozen=True)
class Preprocessing:
    """The preprocessing options of one command line, as the library takes them."""

    overrides: dict[str, Any]
    spec_file: Path | None


_PREP_PARAMS = {
    "layout": (Annotated[Optional[Layout], typer.Option(help="Input layout of the model.", rich_help_panel=PREP)], None),
    "size": (Annotated[Optional[str], typer.Option(metavar="HxW", help="Input image size, e.g. 32x32.", rich_help_panel=PREP)], None),
    "pixel_range": (Annotated[Optional[PixelRange], typer.Option("--pixel-range", help="unit: [0,1]; byte: [0,255].", rich_help_panel=PREP)], None),
    "mean": (Annotated[Optional[str], typer.Option(metavar="M,M,M", help="Per-channel mean, in pixel-range units.", rich_help_panel=PREP)], None),
    "std": (Annotated[Optional[str], typer.Option(metavar="S,S,S", help="Per-channel std, in pixel-range units.", rich_help_panel=PREP)], None),
    "bgr": (Annotated[bool, typer.Option("--bgr", help="Feed channels in BGR order [default: RGB, or what the spec or metadata says].", rich_help_panel=PREP)], False),
    "channels": (Annotated[Optional[int], typer.Option(help="1 (grayscale) or 3 (RGB).", rich_help_panel=PREP)], None),
    "spec": (Annotated[Optional[Path], typer.Option("--spec", metavar="FILE", help="JSON spec file (schema: docs/spec.md) [default: none].", rich_help_panel=PREP)], None),
    "output_name": (Annotated[Optional[str], typer.Option("--output-name", help="Model output to read [default: the class-score output chosen at load, see `scanner inspect`].", rich_help_panel=PREP)], None),
    "class_names": (Annotated[Optional[str], typer.Option("--class-names", metavar="NAMES", help="Class names in label order: a comma-separated list, or @FILE with one name per line [default: from --spec or the model's metadata, else the label numbers].", rich_help_panel=PREP)], None),
}


def preprocessing_options(func):
    """Give a command the preprocessing options; it receives them as ``prep: Preprocessing``.

    The options are appended to the command's signature (Typer reads ``__signature__``), so
    they are declared here once for every command that loads a model.
    """
    signature = _inspect.signature(func, eval_str=True)
    kept = [p for p in signature.parameters.values() if p.name != "prep"]
    added = [_inspect.Parameter(name, _inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
             for name, (annotation, default) in _PREP_PARAMS.items()]

    @functools.wraps(func)
    def command(**kwargs):
        values = {name: kwargs.pop(name) for name in _PREP_PARAMS}
        spec_file = values.pop("spec")
        with _user_errors():
            kwargs["prep"] = Preprocessing(_spec_overrides(**values), spec_file)
        return func(**kwargs)

    command.__signature__ = signature.replace(parameters=[
        p.replace(kind=_inspect.Parameter.KEYWORD_ONLY) for p in kept] + added)
    command.__annotations__ = {}
    return command


def _spec_overrides(*, layout, size, pixel_range, mean, std, bgr, channels, output_name, class_names=None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if layout is not None:
        out["layout"] = layout.value
    if size is not None:
        parts = size.lower().replace(",", "x").split("x")
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
            raise ScannerError(f"--size expects HxW such as 32x32, got {size!r}")
        out["height"], out["width"] = int(parts[0]), int(parts[1])
    if pixel_range is not None:
        out["pixel_range"] = pixel_range.value
    for key, value in (("mean", mean), ("std", std)):
        if value is not None:
            try:
                out[key] = [float(v) for v in value.split(",")]
            except ValueError:
                raise ScannerError(f"--{key} expects comma-separated numbers, got {value!r}") from None
    if bgr:
        out["bgr"] = True
    if channels is not None:
        out["channels"] = channels
    if output_name is not None:
        out["output_name"] = output_name
    if class_names is not None:
        out["class_names"] = _class_names(class_names)
    return out


def _class_names(text: str) -> list[str]:
    """``--class-names``: "cat,dog,..." or "@names.txt" (one name per line, blank lines skipped)."""
    if text.startswith("@"):
        try:
            names = [line.strip() for line in Path(text[1:]).read_text().splitlines()]
        except (OSError, UnicodeDecodeError) as exc:
            raise ScannerError(f"--class-names: cannot read {text[1:]}: {getattr(exc, 'strerror', None) or exc}") from None
    else:
        names = [name.strip() for name in text.split(",")]
    names = [name for name in names if name]
    if not names:
        raise ScannerError(f"--class-names: no names in {text!r}")
    return names


def _scales(text: str):
    from ..detectors.scaleup import parse_scales

    try:
        return parse_scales(text)
    except ValueError as exc:
        raise ScannerError(f"--scales: {exc}") from None


@contextlib.contextmanager
def _user_errors() -> Iterator[None]:
    """Turn library errors into one 'Error:' line on stderr and exit code 2."""
    try:
        yield
    except ScannerError as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt as exc:
        raise interrupted(exc) from None


class Signalled(KeyboardInterrupt):
    """SIGTERM or SIGHUP (what CI runners send on cancel, what a closed terminal sends), raised in
    the main thread like Ctrl-C's KeyboardInterrupt, so that the same clean-up runs."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def interrupted(exc: KeyboardInterrupt) -> typer.Exit:
    """One line and the exit status of an interrupted command: 128 + the signal's number (130
    for Ctrl-C / SIGINT, 143 for SIGTERM, 129 for SIGHUP), as a shell reports a process the
    signal ended. Temporary report files are gone by then (see open_report)."""
    import signal

    signum = exc.signum if isinstance(exc, Signalled) else signal.SIGINT
    name = signal.Signals(signum).name
    typer.echo("Interrupted" if signum == signal.SIGINT else f"Interrupted ({name})", err=True)
    return typer.Exit(128 + int(signum))


