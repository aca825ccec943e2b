"""The ``scanner`` command line: a thin shell over the library.

Each command parses its options, makes one library call and hands the result to a renderer in
:mod:`scanner.report`. Options shared by several commands are declared once: the preprocessing
group (:func:`preprocessing_options`) and the aliases below.

Exit codes: 0 = scanned and within the gate; 1 = the gate failed; 2 = usage error, unusable
model, or nothing could be scored (and, with --strict, any unreadable input); 3 = internal
error (a bug in the scanner).
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from .support import (INTERNAL_ERROR, _closed_pipe_ends_quietly, _Command, _Commands, _hard_stop_after, _lift,  # noqa: F401
                      _progress, _state, _streaming)
from .options import (DEFAULT_CALL_TIMEOUT, call_timeout_value, BatchOpt, CalibrationOpt, CallTimeoutOpt, Device, DeviceOpt, Engine, ModelArg, OutputOpt, Preprocessing,
                      ScalesOpt, ScoreOpt, DetectorOpt, ThresholdOpt, _scales, _user_errors, preprocessing_options)
from ..errors import ScannerError
from ..report.render import Format, InspectFormat
from ..report.stream import Show

log = logging.getLogger("scanner")

app = typer.Typer(
    name="scanner",
    cls=_Commands,
    help="Find backdoor-triggered inputs of an ONNX image classifier (black-box). Without a calibration "
    "the paper's data-free SCALE-UP score decides; with one, three detectors (SCALE-UP, STRIP, TeCo) "
    "calibrated per class.\n\n"
    "Exit codes: 0 scanned and within the gate, 1 gate failed, 2 usage/model/input error, "
    "3 internal error (a bug).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # plain click rendering: a usage error is one "Error: ..." line, not a box (CI logs, pipes)
    rich_markup_mode=None,
)


def _open_output(path: Optional[Path]):
    """stdout, or a report file replaced only when complete (see :func:`scanner.report.render.open_report`)."""
    from ..report.render import open_report

    return open_report(path, sys.stdout)


def _check_outputs(*paths: Optional[Path]) -> None:
    """Refuse, before any work, an output path that is not a regular file or a new name (a
    directory, FIFO, device...; see :func:`scanner._validation.check_output_file`)."""
    from .._validation import check_output_file

    for path in paths:
        if path is not None:
            check_output_file(path)


def _make_scanner(model: Path, prep: Preprocessing, *, device: Device, scales=(3, 5, 7, 9, 11), threshold=None,
                  calibration=None, batch_size=None, score: str | None = None, detectors: str | None = None,
                  call_timeout: str = DEFAULT_CALL_TIMEOUT):
    from ..core import Scanner

    return Scanner(model, device=device.value, scales=scales, threshold=threshold, calibration=calibration,
                   spec=prep.overrides, spec_file=prep.spec_file, batch_size=batch_size, score=score,
                   detectors=detectors, call_timeout=call_timeout_value(call_timeout))


def _version(value: bool) -> None:
    if value:
        from .._version import __version__

        typer.echo(f"scanner {__version__} (scaleup-scanner)")
        raise typer.Exit()


@app.callback()
def _main(
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="More log output: -v the scanner's info, -vv its debug, -vvv also third-party debug. Also accepted after the command.", show_default=False)] = 0,
    quiet: Annotated[int, typer.Option("--quiet", "-q", count=True, help="Less output: no progress bar, no summary on stderr, warnings off (-qq: logged errors too; an Error: line always prints). Also accepted after the command.", show_default=False)] = 0,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    from ..report.terminal import set_verbosity

    set_verbosity(verbose, quiet)
    _state["quiet"] = quiet > 0
    _state["verbose"] = verbose > 0




@app.command(cls=_Command)
@preprocessing_options
def scan(
    model: ModelArg,
    paths: Annotated[list[Path], typer.Argument(help="Image files, folders (recursive), .npy/.npz image arrays.")],
    prep: Preprocessing,
    scales: ScalesOpt = "3,5,7,9,11",
    threshold: ThresholdOpt = None,
    calibration: CalibrationOpt = None,
    format: Annotated[Format, typer.Option("--format", "-f", case_sensitive=False, help="Report format; html: a self-contained audit report (charts, the most suspicious inputs beside their amplified copies), best with -o report.html.")] = Format.table,
    output: OutputOpt = None,
    max_flagged: Annotated[Optional[int], typer.Option(min=0, help="Gate: exit 1 if more inputs are flagged [default: no limit].", rich_help_panel="CI gate")] = None,
    max_flagged_rate: Annotated[Optional[float], typer.Option(min=0.0, max=1.0, help="Gate: exit 1 if a larger fraction is flagged [default: no limit].", rich_help_panel="CI gate")] = None,
    strict: Annotated[bool, typer.Option(help="Exit 2 if any input cannot be read [default: list it as failed].", show_default=False, rich_help_panel="CI gate")] = False,
    expected_fpr: Annotated[Optional[float], typer.Option(min=0.0, max=1.0, help="Benign flag rate the verdict tests against, with --calibration [default: from the calibration; without one no class is named whatever the rate].")] = None,
    score: ScoreOpt = None,
    detector: DetectorOpt = None,
    fail_on_suspect: Annotated[bool, typer.Option("--fail-on-suspect", help="Gate: exit 1 when the verdict names a suspected target class, or cannot judge the scan (most inputs undecidable); needs --calibration (refused without one).", rich_help_panel="CI gate")] = False,
    allow_undecidable: Annotated[bool, typer.Option("--allow-undecidable", help="Gate: with --fail-on-suspect, pass a scan whose verdict cannot judge it (most inputs undecidable) instead of failing it.", rich_help_panel="CI gate")] = False,
    device: DeviceOpt = Device.auto,
    batch_size: BatchOpt = None,
    engine: Annotated[Engine, typer.Option(case_sensitive=False, help="local: this machine; ray: a Ray cluster (pip install -e \".[ray]\").", rich_help_panel="Scaling out")] = Engine.local,
    ray_address: Annotated[Optional[str], typer.Option("--ray-address", help="Ray cluster to use (e.g. auto, head:6379) [default: RAY_ADDRESS, else a new local cluster].", rich_help_panel="Scaling out")] = None,
    workers: Annotated[Optional[int], typer.Option(min=1, help="Scoring actors [default: one per GPU with --device cuda, else one per 2 CPUs].", rich_help_panel="Scaling out")] = None,
    timeout: Annotated[Optional[float], typer.Option(min=0.001, help="Stop after this many seconds: the inputs not reached are reported as failed ('not scored') and the exit status is 2. If the model itself does not return (while loading), the process stops a few seconds later [default: no limit].", rich_help_panel="CI gate")] = None,
    output_dir: Annotated[Optional[Path], typer.Option("--output-dir", help="Write per-input results there as shards (JSONL with -f jsonl, else Parquet); the report keeps the summary only [default: none, results in the report].", rich_help_panel="Scaling out")] = None,
    html: Annotated[Optional[Path], typer.Option("--html", metavar="FILE", help="Also write the HTML audit report there (one file, besides the -f/-o report) [default: none].")] = None,
    show: Annotated[Optional[Show], typer.Option(case_sensitive=False, help="Table rows to print: all, flagged (flagged and failed inputs) or none; the summary always [default: flagged on a terminal, else all].")] = None,
    call_timeout: CallTimeoutOpt = DEFAULT_CALL_TIMEOUT,
) -> None:
    """Score every input (SCALE-UP by default; with --calibration its detectors and decision), report, and gate.

    Rows leave as their batch completes (table, CSV, JSONL; JSON at the end); the summary comes
    last. On a terminal the table shows flagged and failed inputs (--show). A failed gate or a
    named suspect is also one line on stderr, even with -q.

    Exit codes: 0 scanned and within the gate (or the reader of stdout closed it); 1 gate
    failed; 2 usage error, unusable model, nothing could be scored, or (with --strict) an
    unreadable input; 3 internal error.
    """
    from ..decide.verdict import NEEDS_CALIBRATION, check_gate, summarize
    from ..report.render import display_name, summary_lines
    from ..report.stream import ScanWriter
    from ..report.terminal import is_terminal, outcome_line, use_colour

    started = time.monotonic()
    on_terminal = output is None and is_terminal(sys.stdout)
    if show is None:
        show = Show.flagged if on_terminal and format is Format.table else Show.all
    colour = output is None and format is Format.table and use_colour(sys.stdout)
    with _closed_pipe_ends_quietly(), _user_errors(), _hard_stop_after(timeout), \
            _progress(not _state["quiet"], "scanning") as progress:
        around = _lift(progress) if progress is not None and on_terminal else None
        _check_outputs(output, html)
        if fail_on_suspect and calibration is None:
            raise ScannerError(NEEDS_CALIBRATION)
        if allow_undecidable and not fail_on_suspect:
            raise ScannerError("--allow-undecidable goes with --fail-on-suspect")
        if (format is Format.html or html is not None) and output_dir is not None:
            raise ScannerError("--format html needs the per-input results in the report; drop --output-dir")
        if engine is Engine.ray and timeout is not None:
            raise ScannerError("--timeout is not supported with --engine ray yet")
        if engine is Engine.ray:
            from ..engines import ray_data as distributed
            from ..engines import shards

            result = distributed.scan(
                model, paths, address=ray_address, workers=workers, output_dir=output_dir,
                shard_format="jsonl" if format is Format.jsonl else "parquet", device=device.value,
                scales=_scales(scales), threshold=threshold, calibration=calibration, spec=prep.overrides,
                spec_file=prep.spec_file, batch_size=batch_size, score=score, detectors=detector, progress=progress,
                call_timeout=call_timeout_value(call_timeout))
            scanner = None
        else:
            if ray_address is not None or workers is not None or output_dir is not None:
                raise ScannerError("--ray-address, --workers and --output-dir need --engine ray")
            scanner = _make_scanner(model, prep, device=device, scales=_scales(scales), threshold=threshold,
                                    calibration=calibration, batch_size=batch_size, score=score, detectors=detector,
                                    call_timeout=call_timeout)
            log.info("model %s: %s, output %s, batch %d (%s), %s", model, scanner.provider,
                     scanner.model.output.tensor.name, scanner.batch_size, scanner.model.plan.mode,
                     scanner.detector.describe())
        with _open_output(output) as stream:
            if output_dir is not None:
                writer = None
            else:
                settings = result.settings if scanner is None else scanner.settings()
                names = result.score_names if scanner is None else scanner.score_names
                writer = ScanWriter(format, stream, settings, names, show=show, colour=colour, around_write=around)
                writer.start()
            if scanner is not None:
                left = None if timeout is None else max(0.001, timeout - (time.monotonic() - started))
                result = scanner.scan(paths, progress=progress, timeout=left, on_batch=_streaming(writer))
            elif writer is not None:
                writer.add(result)
            if progress is not None:
                progress.clear()
            if writer is not None:
                writer.around_write = None  # the bar is gone for good
            summary = summarize(result, expected_fpr=expected_fpr)
            for warning in summary.warnings:
                typer.echo(f"Warning: {warning}", err=True)
            gate = check_gate(summary, max_flagged=max_flagged, max_flagged_rate=max_flagged_rate,
                              fail_on_suspect=fail_on_suspect, allow_undecidable=allow_undecidable)
            if writer is None:
                shards.render_summary(result, summary, gate, format, stream, output_dir)
            else:
                writer.finish(result, summary, gate)
            if html is not None and output_dir is None:
                from ..report.html import write_html

                with _open_output(html) as page:
                    write_html(result, summary, gate, page)
            # raised inside the block: a report file is then not put in place of an earlier one
            if result.n_scored == 0 and not result.incomplete:
                first = result.failure_records()[0]
                raise ScannerError(f"none of the {result.n_found} inputs could be read; first failure: "
                                   f"{display_name(first['input'])}: {display_name(first['reason'])}")
            if strict and result.failures:
                first = result.failure_records()[0]
                raise ScannerError(f"--strict: {len(result.failures)} input(s) could not be read, e.g. "
                                   f"{display_name(first['input'])}: {display_name(first['reason'])}")
    log.info("scanned %d inputs in %.2f s (%.0f inputs/s)", result.n_found, result.seconds,
             result.n_found / result.seconds if result.seconds else 0.0)
    if not _state["quiet"] and (output is not None or format is not Format.table):
        for line in summary_lines(result.settings, summary, gate, colour=use_colour(sys.stderr)):
            typer.echo(line, err=True)
    elif not (on_terminal and format is Format.table):  # the summary is not on screen: one line for a CI log
        line = outcome_line(summary, gate, str(output) if output is not None else "stdout")
        if line:
            typer.echo(line, err=True)
    if result.incomplete:  # the report (marked incomplete) is written; the run did not finish
        flag = "--call-timeout" if "per-call limit" in result.incomplete else "--timeout"
        typer.echo(f"Error: {flag}: {result.incomplete}; the report lists the rest as not scored", err=True)
        raise typer.Exit(2)
    if gate is not None and not gate.passed:
        raise typer.Exit(1)


@app.command(cls=_Command)
@preprocessing_options
def calibrate(
    model: ModelArg,
    clean_paths: Annotated[list[Path], typer.Argument(help="Trusted benign inputs (files, folders, arrays).")],
    output: Annotated[Path, typer.Option("--output", "-o", metavar="FILE", help="Calibration file to write (JSON).")],
    prep: Preprocessing,
    fpr: Annotated[float, typer.Option(min=0.0, max=1.0, help="Target false-positive rate, per predicted class.")] = 0.05,
    detector: Annotated[str, typer.Option("--detector", help="Detectors to calibrate, comma-separated; scaleup is always among them (a scan may use a subset).")] = "scaleup,strip,teco,transplant",
    blends: Annotated[Optional[int], typer.Option(min=1, max=256, help="STRIP: clean images each input is blended with [default: 16].")] = None,
    severities: Annotated[Optional[int], typer.Option(min=1, max=5, help="TeCo: corruption severities 1..N [default: 2].")] = None,
    regions: Annotated[Optional[int], typer.Option(min=1, max=8, help="Transplant: the input is cut into N x N regions [default: 3].")] = None,
    min_class_samples: Annotated[int, typer.Option(min=2, help="Classes with fewer calibration inputs use pooled statistics.")] = 10,
    sigma_floor: Annotated[float, typer.Option(min=1e-6, help="Lower bound on a class's SPC standard deviation (NSPC).")] = 0.05,
    scales: ScalesOpt = "3,5,7,9,11",
    device: DeviceOpt = Device.auto,
    batch_size: BatchOpt = None,
    call_timeout: CallTimeoutOpt = DEFAULT_CALL_TIMEOUT,
) -> None:
    """Score trusted clean inputs with every detector: per-class references for each score, the clean
    images STRIP blends with, and the paper's NSPC statistics."""
    import json

    from ..calibrating import calibrate as run_calibration

    params: dict = {"scaleup": {"scales": _scales(scales)}}
    if blends is not None:
        params["strip"] = {"n_blends": blends}
    if severities is not None:
        params["teco"] = {"severities": severities}
    if regions is not None:
        params["transplant"] = {"grid": regions}
    with _user_errors():
        _check_outputs(output)
        with _progress(not _state["quiet"], "calibrating") as progress:
            run = run_calibration(
                model, clean_paths, detectors=detector, detector_params=params, target_fpr=fpr,
                min_class_samples=min_class_samples, sigma_floor=sigma_floor, progress=progress,
                device=device.value, spec=prep.overrides, spec_file=prep.spec_file, batch_size=batch_size,
                call_timeout=call_timeout_value(call_timeout))
        if run.scan.failures:
            log.warning("%d calibration input(s) could not be read and were left out, e.g. %s",
                        len(run.scan.failures), run.scan.failure_records()[0]["input"])
        with _open_output(output) as fh:  # replaced only when complete, like a report
            fh.write(json.dumps(run.calibration.to_dict(), indent=2) + "\n")
    lines = run.lines()
    for line in lines[:-1]:
        typer.echo(line, err=line.startswith("Warning"))
    typer.echo(f"{lines[-1]}; wrote {output}")


@app.command(cls=_Command)
@preprocessing_options
def evaluate(
    model: ModelArg,
    benign: Annotated[list[Path], typer.Option("--benign", help="Clean inputs (repeatable); ImageFolder subfolders give true labels.")],
    poisoned: Annotated[list[Path], typer.Option("--poisoned", help="Triggered inputs (repeatable).")],
    prep: Preprocessing,
    target_label: Annotated[Optional[int], typer.Option(help="Attack target: keep poisoned inputs the model sends there [default: keep every poisoned input].")] = None,
    labels: Annotated[Optional[Path], typer.Option(help="File of 'input,label' lines giving the benign inputs' true labels [default: ImageFolder subfolders, else no correct-prediction filter].")] = None,
    calibration: CalibrationOpt = None,
    threshold: ThresholdOpt = None,
    detector: DetectorOpt = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", metavar="FILE", help="Write the metrics as JSON here [default: text on stdout only].")] = None,
    plot: Annotated[Optional[Path], typer.Option(help="Write the ROC curve and SPC histograms as PNG (needs the plot extra) [default: no plot].")] = None,
    html: Annotated[Optional[Path], typer.Option("--html", metavar="FILE", help="Write the metrics, the ROC curve and the SPC histograms as one self-contained HTML page [default: none].")] = None,
    scales: ScalesOpt = "3,5,7,9,11",
    device: DeviceOpt = Device.auto,
    batch_size: BatchOpt = None,
    call_timeout: CallTimeoutOpt = DEFAULT_CALL_TIMEOUT,
) -> None:
    """The paper's protocol: AUROC, TPR/FPR/F1 at the threshold, TPR at 1% and 5% FPR, best F1.

    Every score the scan offers is evaluated. Inputs a score cannot judge stay in both sets and
    count as not flagged by it (a true negative if benign, a miss if poisoned); each score says
    how many."""
    from ..evaluation import evaluate as run_evaluation, plot_evaluation
    from ..report.render import render_evaluation, write_evaluation_json

    with _user_errors():
        _check_outputs(output, html, plot)
        scanner = _make_scanner(model, prep, device=device, scales=_scales(scales), threshold=threshold,
                                calibration=calibration, batch_size=batch_size, detectors=detector,
                                call_timeout=call_timeout)
        result = run_evaluation(scanner, benign, poisoned, target_label=target_label, labels_file=labels)
        if plot is not None:
            plot_evaluation(result, plot)
        if output is not None:
            with _open_output(output) as fh:
                write_evaluation_json(result, fh)
        if html is not None:
            from ..report.html import write_evaluation_html

            with _open_output(html) as fh:
                write_evaluation_html(result, fh)
    render_evaluation(result, sys.stdout)


@app.command(cls=_Command)
@preprocessing_options
def inspect(
    model: ModelArg,
    prep: Preprocessing,
    format: Annotated[InspectFormat, typer.Option("--format", "-f", case_sensitive=False, help="table or json.")] = InspectFormat.table,
    device: DeviceOpt = Device.auto,
    call_timeout: CallTimeoutOpt = DEFAULT_CALL_TIMEOUT,
) -> None:
    """Show what the scanner decided about a model and where each decision came from."""
    from ..model.loader import load_model
    from ..report.render import render_model

    with _user_errors():
        loaded = load_model(model, device=device.value, options=prep.overrides, spec_file=prep.spec_file,
                            call_timeout=call_timeout_value(call_timeout))
    render_model(loaded, format, sys.stdout)


@app.command(cls=_Command)
@preprocessing_options
def probe(
    model: ModelArg,
    paths: Annotated[list[Path], typer.Argument(help="Sample inputs: files, folders (ImageFolder subfolders give true labels), arrays.")],
    prep: Preprocessing,
    labels: Annotated[Optional[Path], typer.Option(help="File of 'input,label' lines giving the inputs' true labels [default: ImageFolder subfolders, else none].")] = None,
    sample: Annotated[int, typer.Option(min=1, help="Inputs each candidate preprocessing is tried on (a seeded random sample).")] = 100,
    write_spec: Annotated[Optional[Path], typer.Option("--write-spec", metavar="FILE", help="Write the best preprocessing as a spec file (use it with --spec) [default: none].")] = None,
    format: Annotated[InspectFormat, typer.Option("--format", "-f", case_sensitive=False, help="table or json.")] = InspectFormat.table,
    device: DeviceOpt = Device.auto,
    call_timeout: CallTimeoutOpt = DEFAULT_CALL_TIMEOUT,
) -> None:
    """Find the preprocessing: rank pixel ranges, normalizations and channel orders on sample inputs.

    By accuracy when true labels are known, else by how diverse and confident the predictions
    are. Prints the ranking and the flags to pass; when it cannot tell it says so and recommends
    nothing (--write-spec then exits 2). Preprocessing flags given here are kept fixed.
    """
    import json

    from ..model.loader import load_model
    from ..model.probe import probe as run_probe

    with _user_errors():
        _check_outputs(write_spec)
        loaded = load_model(model, device=device.value, options=prep.overrides, spec_file=prep.spec_file,
                            call_timeout=call_timeout_value(call_timeout))
        result = run_probe(loaded, paths, labels_file=labels, sample=sample)
        typer.echo(json.dumps(result.to_dict(), indent=2) if format is InspectFormat.json else str(result))
        if write_spec is not None:  # refused when it cannot tell (after the ranking, which says why)
            result.write_spec(write_spec)
    if write_spec is not None and not _state["quiet"]:
        typer.echo(f"wrote {write_spec} (scan with --spec {write_spec})", err=True)


from .audit_command import audit as _audit  # noqa: E402 - registered after the commands it sits beside

app.command("audit", cls=_Command)(_audit)


def main() -> None:
    app()
