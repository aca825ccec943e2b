"""The ``scanner`` command line: a thin shell over the library.

Each command parses its options, makes one library call and hands the result to a renderer in
:mod:`scanner.report`. Options shared by several commands are declared once: the preprocessing
group (:func:`preprocessing_options`) and the aliases below.

Exit codes: 0 = scanned and within the gate; 1 = the gate failed; 2 = usage error, unusable
model, or nothing could be scored (and, with --strict, any unreadable input); 3 = internal
error (a bug in the scanner).
"""

from __future__ import annotations

import contextlib
import functools
import inspect as _inspect
import logging
import os
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Iterator, Optional

import typer
from typer.core import TyperGroup
from typer.exceptions import TyperException

from .errors import ScannerError
from .report import Format, InspectFormat
from .spec import Layout, PixelRange

log = logging.getLogger("scanner")

INTERNAL_ERROR = 3  # exit status of a bug in the scanner (0 passed, 1 gate failed, 2 usage/model/input)


class _Commands(TyperGroup):
    """The command group; ``export`` (in ``exporters/``) is added only when it is asked for, so
    that ``scanner scan`` never imports ``exporters``."""

    def _add_export(self) -> None:
        if "export" in self.commands:
            return
        try:
            from exporters.cli import export_command
        except ImportError:  # exporters not installed alongside: no export command
            return
        holder = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
        holder.command("export", help=export_command.__doc__)(export_command)
        self.add_command(typer.main.get_command(holder), "export")

    def list_commands(self, ctx) -> list[str]:
        self._add_export()
        return super().list_commands(ctx)

    def get_command(self, ctx, cmd_name: str):
        if cmd_name == "export":
            self._add_export()
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx):
        """Every command's errors, in one place: a library error is one line and exit 2; anything
        else is a bug in the scanner: one line saying so and exit 3 (the traceback with -v)."""
        try:
            return super().invoke(ctx)
        except ScannerError as exc:
            typer.echo(f"Error: {exc}", err=True)
            raise typer.Exit(2) from None
        except (TyperException, typer.Exit, typer.Abort):
            raise
        except KeyboardInterrupt:
            typer.echo("Interrupted", err=True)
            raise typer.Exit(130) from None
        except Exception as exc:  # noqa: BLE001 - the last line of defence
            if _state["verbose"]:
                traceback.print_exc()
            text = " ".join(str(exc).split())[:200]
            typer.echo(f"Error: internal error, a bug in the scanner ({type(exc).__name__}{': ' + text if text else ''}); "
                       "please report it" + ("" if _state["verbose"] else "; rerun with -v for the traceback"), err=True)
            raise typer.Exit(INTERNAL_ERROR) from None


app = typer.Typer(
    name="scanner",
    cls=_Commands,
    help="Find backdoor-triggered inputs of an ONNX image classifier with SCALE-UP (ICLR 2023).\n\n"
    "Exit codes: 0 scanned and within the gate, 1 gate failed, 2 usage/model/input error, "
    "3 internal error (a bug).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # plain click rendering: a usage error is one "Error: ..." line, not a box (CI logs, pipes)
    rich_markup_mode=None,
)


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Engine(str, Enum):
    """Where ``scan`` runs: this machine, or a Ray cluster (:mod:`scanner.distributed`)."""

    local = "local"
    ray = "ray"


class Score(str, Enum):
    """What the threshold applies to without a calibration."""

    spc = "spc"
    prob_consistency = "prob-consistency"


# -- options shared by several commands, declared once ------------------------------------------
ModelArg = Annotated[Path, typer.Argument(help="The ONNX model.")]
DeviceOpt = Annotated[Device, typer.Option(help="auto: CUDA when a session really gets it, else CPU; cuda: fail if unavailable.")]
ScalesOpt = Annotated[str, typer.Option(help="Scale set S, e.g. 3,5,7,9,11 or 1-11.")]
BatchOpt = Annotated[Optional[int], typer.Option("--batch-size", min=1, help="Images per batch (each sent with its |S| amplified copies).")]
ScoreOpt = Annotated[Score, typer.Option("--score", help="spc (the paper) or prob-consistency (beyond the paper: mean probability of the unscaled label across scales; needs a model that outputs scores).")]
OutputOpt = Annotated[Optional[Path], typer.Option("--output", "-o", help="Write the report here instead of stdout.")]
ThresholdOpt = Annotated[Optional[float], typer.Option(help="Flag when the score >= this [default: 0.5 on SPC, or the calibration's NSPC threshold].")]
CalibrationOpt = Annotated[Optional[Path], typer.Option(help="Calibration file from `scanner calibrate` (scores become NSPC).")]

PREP = "Preprocessing (overrides the spec file and the model's metadata)"


@dataclass(frozen=True)
class Preprocessing:
    """The preprocessing options of one command line, as the library takes them."""

    overrides: dict[str, Any]
    spec_file: Path | None


_PREP_PARAMS = {
    "layout": (Annotated[Optional[Layout], typer.Option(help="Input layout of the model.", rich_help_panel=PREP)], None),
    "size": (Annotated[Optional[str], typer.Option(help="Input image size HxW, e.g. 32x32.", rich_help_panel=PREP)], None),
    "pixel_range": (Annotated[Optional[PixelRange], typer.Option("--pixel-range", help="unit: [0,1]; byte: [0,255].", rich_help_panel=PREP)], None),
    "mean": (Annotated[Optional[str], typer.Option(help="Per-channel mean, comma-separated, in pixel-range units.", rich_help_panel=PREP)], None),
    "std": (Annotated[Optional[str], typer.Option(help="Per-channel std, comma-separated, in pixel-range units.", rich_help_panel=PREP)], None),
    "bgr": (Annotated[bool, typer.Option("--bgr", help="Feed channels in BGR order.", rich_help_panel=PREP)], False),
    "channels": (Annotated[Optional[int], typer.Option(help="1 (grayscale) or 3 (RGB).", rich_help_panel=PREP)], None),
    "spec": (Annotated[Optional[Path], typer.Option("--spec", help="JSON spec file (schema in the README).", rich_help_panel=PREP)], None),
    "output_name": (Annotated[Optional[str], typer.Option("--output-name", help="Model output to read.", rich_help_panel=PREP)], None),
    "class_names": (Annotated[Optional[str], typer.Option("--class-names", help="Class names in label order: a comma-separated list, or @FILE with one name per line.", rich_help_panel=PREP)], None),
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
    from .detectors.scaleup import parse_scales

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
    except KeyboardInterrupt:
        typer.echo("Interrupted", err=True)
        raise typer.Exit(130) from None


HARD_STOP_GRACE = 3.0  # seconds past --timeout before a run stuck inside the model is ended


@contextlib.contextmanager
def _hard_stop_after(timeout: float | None):
    """The last guarantee of --timeout: a run still going ``HARD_STOP_GRACE`` seconds after the
    limit (a model that never returns while it is loaded and verified) ends with exit 2."""
    if timeout is None:
        yield
        return

    def stop() -> None:
        sys.stderr.write(f"Error: --timeout: still running {timeout + HARD_STOP_GRACE:g} s after the start "
                         "(the model did not return); stopped, nothing was reported\n")
        sys.stderr.flush()
        os._exit(2)

    timer = threading.Timer(timeout + HARD_STOP_GRACE, stop)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def _open_output(path: Optional[Path]):
    """stdout, or a report file replaced only when complete (see :func:`scanner.report.open_report`)."""
    from .report import open_report

    return open_report(path, sys.stdout)


@contextlib.contextmanager
def _progress(enabled: bool, label: str):
    """A progress bar on a terminal; a no-op callback when piped or quiet."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    try:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    except ImportError:  # rich comes with typer, but a slim install may lack it: no bar then
        yield None
        return

    with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def _make_scanner(model: Path, prep: Preprocessing, *, device: Device, scales=(3, 5, 7, 9, 11), threshold=None,
                  calibration=None, batch_size=None, score: Score | None = None):
    from .core import Scanner

    return Scanner(model, device=device.value, scales=scales, threshold=threshold, calibration=calibration,
                   spec=prep.overrides, spec_file=prep.spec_file, batch_size=batch_size,
                   score=None if score is None else score.value)


@app.callback()
def _main(
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="More log output (repeatable).")] = 0,
    quiet: Annotated[int, typer.Option("--quiet", "-q", count=True, help="Less log output; no progress bar.")] = 0,
) -> None:
    level = logging.WARNING - 10 * verbose + 10 * quiet
    logging.basicConfig(level=max(logging.DEBUG, level), stream=sys.stderr, format="%(levelname)s: %(message)s")
    _state["quiet"] = quiet > 0
    _state["verbose"] = verbose > 0


_state: dict[str, Any] = {"quiet": False, "verbose": False}


@app.command()
@preprocessing_options
def scan(
    model: ModelArg,
    paths: Annotated[list[Path], typer.Argument(help="Image files, folders (recursive), .npy/.npz image arrays.")],
    prep: Preprocessing,
    scales: ScalesOpt = "3,5,7,9,11",
    threshold: ThresholdOpt = None,
    calibration: CalibrationOpt = None,
    format: Annotated[Format, typer.Option("--format", "-f", case_sensitive=False, help="Report format.")] = Format.table,
    output: OutputOpt = None,
    max_flagged: Annotated[Optional[int], typer.Option(min=0, help="Gate: exit 1 if more inputs are flagged.", rich_help_panel="CI gate")] = None,
    max_flagged_rate: Annotated[Optional[float], typer.Option(min=0.0, max=1.0, help="Gate: exit 1 if a larger fraction is flagged.", rich_help_panel="CI gate")] = None,
    strict: Annotated[bool, typer.Option(help="Exit 2 if any input cannot be read (default: list it as failed).", rich_help_panel="CI gate")] = False,
    expected_fpr: Annotated[Optional[float], typer.Option(min=0.0, max=1.0, help="Benign flag rate the verdict tests against [default: from the calibration, else 0.10 assumed].")] = None,
    score: ScoreOpt = Score.spc,
    device: DeviceOpt = Device.auto,
    batch_size: BatchOpt = None,
    engine: Annotated[Engine, typer.Option(case_sensitive=False, help="local: this machine; ray: a Ray cluster (pip install -e \".[ray]\").", rich_help_panel="Scaling out")] = Engine.local,
    ray_address: Annotated[Optional[str], typer.Option("--ray-address", help="Ray cluster to use (e.g. auto, head:6379) [default: RAY_ADDRESS, else a new local cluster].", rich_help_panel="Scaling out")] = None,
    workers: Annotated[Optional[int], typer.Option(min=1, help="Scoring actors [default: one per GPU with --device cuda, else one per 2 CPUs].", rich_help_panel="Scaling out")] = None,
    timeout: Annotated[Optional[float], typer.Option(min=0.001, help="Stop after this many seconds: the inputs not reached are reported as failed ('not scored') and the exit status is 2. If the model itself does not return (while loading), the process stops a few seconds later.", rich_help_panel="CI gate")] = None,
    output_dir: Annotated[Optional[Path], typer.Option("--output-dir", help="Write per-input results there as shards (JSONL with -f jsonl, else Parquet); the report keeps the summary only.", rich_help_panel="Scaling out")] = None,
) -> None:
    """Score every input with SCALE-UP, report, and gate.

    Exit codes: 0 scanned and within the gate; 1 gate failed; 2 usage error, unusable model,
    nothing could be scored, or (with --strict) an unreadable input.
    """
    from .decisions import check_gate, summarize
    from .report import display_name, render_scan, summary_lines

    started = time.monotonic()
    with _user_errors(), _hard_stop_after(timeout):
        if engine is Engine.ray and timeout is not None:
            raise ScannerError("--timeout is not supported with --engine ray yet")
        if engine is Engine.ray:
            from . import distributed, shards

            with _progress(not _state["quiet"], "scanning") as progress:
                result = distributed.scan(
                    model, paths, address=ray_address, workers=workers, output_dir=output_dir,
                    shard_format="jsonl" if format is Format.jsonl else "parquet", device=device.value,
                    scales=_scales(scales), threshold=threshold, calibration=calibration, spec=prep.overrides,
                    spec_file=prep.spec_file, batch_size=batch_size, score=score.value, progress=progress)
        else:
            if ray_address is not None or workers is not None or output_dir is not None:
                raise ScannerError("--ray-address, --workers and --output-dir need --engine ray")
            scanner = _make_scanner(model, prep, device=device, scales=_scales(scales), threshold=threshold,
                                    calibration=calibration, batch_size=batch_size, score=score)
            left = None if timeout is None else max(0.001, timeout - (time.monotonic() - started))
            with _progress(not _state["quiet"], "scanning") as progress:
                result = scanner.scan(paths, progress=progress, timeout=left)
        summary = summarize(result, expected_fpr=expected_fpr)
        for warning in summary.warnings:
            typer.echo(f"Warning: {warning}", err=True)
        gate = check_gate(summary, max_flagged=max_flagged, max_flagged_rate=max_flagged_rate)
        with _open_output(output) as stream:
            if output_dir is not None:
                shards.render_summary(result, summary, gate, format, stream, output_dir)
            else:
                render_scan(result, summary, gate, format, stream)
            # raised inside the block: a report file is then not put in place of an earlier one
            if result.n_scored == 0 and not result.incomplete:
                first = result.failure_records()[0]
                raise ScannerError(f"none of the {result.n_found} inputs could be read; first failure: "
                                   f"{display_name(first['input'])}: {display_name(first['reason'])}")
            if strict and result.failures:
                first = result.failure_records()[0]
                raise ScannerError(f"--strict: {len(result.failures)} input(s) could not be read, e.g. "
                                   f"{display_name(first['input'])}: {display_name(first['reason'])}")
    if not _state["quiet"] and (output is not None or format is not Format.table):
        for line in summary_lines(result.settings, summary, gate):
            typer.echo(line, err=True)
    if result.incomplete:  # the report (marked incomplete) is written; the run did not finish
        typer.echo(f"Error: --timeout: {result.incomplete}; the report lists the rest as not scored", err=True)
        raise typer.Exit(2)
    if gate is not None and not gate.passed:
        raise typer.Exit(1)


@app.command()
@preprocessing_options
def calibrate(
    model: ModelArg,
    clean_paths: Annotated[list[Path], typer.Argument(help="Trusted benign inputs (files, folders, arrays).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Calibration file to write (JSON).")],
    prep: Preprocessing,
    fpr: Annotated[float, typer.Option(min=0.0, max=1.0, help="Target false-positive rate on this set.")] = 0.05,
    min_class_samples: Annotated[int, typer.Option(min=2, help="Classes with fewer calibration inputs use pooled statistics.")] = 10,
    sigma_floor: Annotated[float, typer.Option(min=1e-6, help="Lower bound on a class's SPC standard deviation.")] = 0.05,
    scales: ScalesOpt = "3,5,7,9,11",
    device: DeviceOpt = Device.auto,
    batch_size: BatchOpt = None,
) -> None:
    """Fit the data-limited variant on trusted benign inputs: per-class SPC mean/std and an NSPC threshold."""
    from .calibration import fit_calibration

    with _user_errors():
        scanner = _make_scanner(model, prep, device=device, scales=_scales(scales), batch_size=batch_size)
        with _progress(not _state["quiet"], "calibrating") as progress:
            result = scanner.scan(clean_paths, progress=progress)
        if result.failures:
            log.warning("%d calibration input(s) could not be read and were left out, e.g. %s",
                        len(result.failures), result.failure_records()[0]["input"])
        cal = fit_calibration(result.scores.spc, result.scores.labels, scales=scanner.scales, target_fpr=fpr,
                              min_class_samples=min_class_samples, sigma_floor=sigma_floor,
                              model_sha256=scanner.info.sha256, spec=scanner.spec.to_dict())
        try:
            cal.save(output)
        except OSError as exc:
            raise ScannerError(f"cannot write {output}: {exc.strerror or exc}") from None
    small = sum(1 for s in cal.per_class.values() if s.n < cal.min_class_samples)
    typer.echo(
        f"calibrated on {cal.n_samples} benign inputs ({len(cal.per_class)} predicted classes, {small} using pooled "
        f"statistics); NSPC threshold {cal.threshold:.4g} gives FPR {cal.achieved_fpr:.4f} on this set "
        f"(target {cal.target_fpr}); scales {','.join(map(str, cal.scales))}; wrote {output}"
    )


@app.command()
@preprocessing_options
def evaluate(
    model: ModelArg,
    benign: Annotated[list[Path], typer.Option("--benign", help="Clean inputs (repeatable); ImageFolder subfolders give true labels.")],
    poisoned: Annotated[list[Path], typer.Option("--poisoned", help="Triggered inputs (repeatable).")],
    prep: Preprocessing,
    target_label: Annotated[Optional[int], typer.Option(help="Attack target: keep poisoned inputs the model sends there.")] = None,
    labels: Annotated[Optional[Path], typer.Option(help="File of 'input,label' lines giving the benign inputs' true labels.")] = None,
    calibration: CalibrationOpt = None,
    threshold: ThresholdOpt = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write the metrics as JSON here.")] = None,
    plot: Annotated[Optional[Path], typer.Option(help="Write the ROC curve and SPC histograms as PNG.")] = None,
    scales: ScalesOpt = "3,5,7,9,11",
    device: DeviceOpt = Device.auto,
    batch_size: BatchOpt = None,
) -> None:
    """The paper's protocol: AUROC, TPR/FPR/F1 at the threshold, TPR at 1% and 5% FPR, best F1."""
    from .evaluation import evaluate as run_evaluation, plot_evaluation
    from .report import render_evaluation, write_evaluation_json

    with _user_errors():
        scanner = _make_scanner(model, prep, device=device, scales=_scales(scales), threshold=threshold,
                                calibration=calibration, batch_size=batch_size)
        result = run_evaluation(scanner, benign, poisoned, target_label=target_label, labels_file=labels)
        if plot is not None:
            plot_evaluation(result, plot)
        if output is not None:
            with _open_output(output) as fh:
                write_evaluation_json(result, fh)
    render_evaluation(result, sys.stdout)


@app.command()
@preprocessing_options
def inspect(
    model: ModelArg,
    prep: Preprocessing,
    format: Annotated[InspectFormat, typer.Option("--format", "-f", case_sensitive=False, help="table or json.")] = InspectFormat.table,
    device: DeviceOpt = Device.auto,
) -> None:
    """Show what the scanner decided about a model and where each decision came from."""
    from .loader import load_model
    from .report import render_model

    with _user_errors():
        loaded = load_model(model, device=device.value, options=prep.overrides, spec_file=prep.spec_file)
    render_model(loaded, format, sys.stdout)


@app.command()
@preprocessing_options
def probe(
    model: ModelArg,
    paths: Annotated[list[Path], typer.Argument(help="Sample inputs: files, folders (ImageFolder subfolders give true labels), arrays.")],
    prep: Preprocessing,
    labels: Annotated[Optional[Path], typer.Option(help="File of 'input,label' lines giving the inputs' true labels.")] = None,
    sample: Annotated[int, typer.Option(min=1, help="Inputs each candidate preprocessing is tried on (a seeded random sample).")] = 100,
    write_spec: Annotated[Optional[Path], typer.Option("--write-spec", help="Write the best preprocessing as a spec file (use it with --spec).")] = None,
    format: Annotated[InspectFormat, typer.Option("--format", "-f", case_sensitive=False, help="table or json.")] = InspectFormat.table,
    device: DeviceOpt = Device.auto,
) -> None:
    """Find the preprocessing: rank pixel ranges, normalizations and channel orders on sample inputs.

    By accuracy when true labels are known, else by how confident and diverse the predictions
    are. Prints the ranking and the flags to pass; says when it cannot tell. Preprocessing
    flags given here are kept fixed.
    """
    import json

    from .loader import load_model
    from .probe import probe as run_probe

    with _user_errors():
        loaded = load_model(model, device=device.value, options=prep.overrides, spec_file=prep.spec_file)
        result = run_probe(loaded, paths, labels_file=labels, sample=sample)
        if write_spec is not None:
            result.write_spec(write_spec)
    typer.echo(json.dumps(result.to_dict(), indent=2) if format is InspectFormat.json else str(result))
    if write_spec is not None and not _state["quiet"]:
        typer.echo(f"wrote {write_spec} (scan with --spec {write_spec})", err=True)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
