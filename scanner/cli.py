"""The ``scanner`` command line: a thin shell over :class:`scanner.Scanner`.

Exit codes: 0 = scanned and within the gate; 1 = the gate failed; 2 = usage error, unusable
model, or nothing could be scored (and, with --strict, any unreadable input).
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Iterator, Optional

import typer

from .errors import ScannerError
from .spec import Layout, PixelRange

log = logging.getLogger("scanner")

app = typer.Typer(
    name="scanner",
    help="Find backdoor-triggered inputs of an ONNX image classifier with SCALE-UP (ICLR 2023).\n\n"
    "Exit codes: 0 scanned and within the gate, 1 gate failed, 2 usage/model/input error.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


# -- options shared by every command that loads a model -----------------------------------------
PREP = "Preprocessing (overrides the spec file and the model's metadata)"
DeviceOpt = Annotated[Device, typer.Option(help="auto: CUDA when a session really gets it, else CPU; cuda: fail if unavailable.")]
ScalesOpt = Annotated[str, typer.Option(help="Scale set S, e.g. 3,5,7,9,11 or 1-11.")]
BatchOpt = Annotated[Optional[int], typer.Option("--batch-size", min=1, help="Images per batch (each sent with its |S| amplified copies).")]
LayoutOpt = Annotated[Optional[Layout], typer.Option(help="Input layout of the model.", rich_help_panel=PREP)]
SizeOpt = Annotated[Optional[str], typer.Option(help="Input image size HxW, e.g. 32x32.", rich_help_panel=PREP)]
RangeOpt = Annotated[Optional[PixelRange], typer.Option("--pixel-range", help="unit: [0,1]; byte: [0,255].", rich_help_panel=PREP)]
MeanOpt = Annotated[Optional[str], typer.Option(help="Per-channel mean, comma-separated, in pixel-range units.", rich_help_panel=PREP)]
StdOpt = Annotated[Optional[str], typer.Option(help="Per-channel std, comma-separated, in pixel-range units.", rich_help_panel=PREP)]
BgrOpt = Annotated[bool, typer.Option("--bgr", help="Feed channels in BGR order.", rich_help_panel=PREP)]
ChannelsOpt = Annotated[Optional[int], typer.Option(help="1 (grayscale) or 3 (RGB).", rich_help_panel=PREP)]
ScoreOpt = Annotated[str, typer.Option("--score", help="spc (the paper) or prob-consistency (beyond the paper: mean probability of the unscaled label across scales; needs a model that outputs scores).")]
SpecOpt = Annotated[Optional[Path], typer.Option("--spec", help="JSON spec file (schema in the README).", rich_help_panel=PREP)]
OutputNameOpt = Annotated[Optional[str], typer.Option("--output-name", help="Model output to read.", rich_help_panel=PREP)]


def _spec_overrides(layout, size, pixel_range, mean, std, bgr, channels, output_name) -> dict[str, Any]:
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
    return out


def _scales(text: str):
    from .scaleup import parse_scales

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


@contextlib.contextmanager
def _open_output(path: Optional[Path]):
    if path is None:
        yield sys.stdout
        return
    try:
        fh = open(path, "w", newline="")
    except OSError as exc:
        raise ScannerError(f"cannot write {path}: {exc.strerror or exc}") from None
    with fh:
        yield fh


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


def _make_scanner(model, *, device, scales, threshold=None, calibration=None, spec_file=None,
                  batch_size=None, overrides=None, score="spc"):
    from .core import Scanner

    return Scanner(model, device=device.value, scales=scales, threshold=threshold, calibration=calibration,
                   spec=overrides, spec_file=spec_file, batch_size=batch_size, score=score)


@app.callback()
def _main(
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="More log output (repeatable).")] = 0,
    quiet: Annotated[int, typer.Option("--quiet", "-q", count=True, help="Less log output; no progress bar.")] = 0,
) -> None:
    level = logging.WARNING - 10 * verbose + 10 * quiet
    logging.basicConfig(level=max(logging.DEBUG, level), stream=sys.stderr, format="%(levelname)s: %(message)s")
    _state["quiet"] = quiet > 0


_state: dict[str, Any] = {"quiet": False}


@app.command()
def scan(
    model: Annotated[Path, typer.Argument(help="The ONNX model.")],
    paths: Annotated[list[Path], typer.Argument(help="Image files, folders (recursive), .npy/.npz image arrays.")],
    scales: ScalesOpt = "3,5,7,9,11",
    threshold: Annotated[Optional[float], typer.Option(help="Flag when the score >= this [default: 0.5 on SPC, or the calibration's NSPC threshold].")] = None,
    calibration: Annotated[Optional[Path], typer.Option(help="Calibration file from `scanner calibrate` (scores become NSPC).")] = None,
    format: Annotated[str, typer.Option("--format", "-f", help="table, json, jsonl or csv.")] = "table",
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write the report here instead of stdout.")] = None,
    max_flagged: Annotated[Optional[int], typer.Option(min=0, help="Gate: exit 1 if more inputs are flagged.", rich_help_panel="CI gate")] = None,
    max_flagged_rate: Annotated[Optional[float], typer.Option(min=0.0, max=1.0, help="Gate: exit 1 if a larger fraction is flagged.", rich_help_panel="CI gate")] = None,
    strict: Annotated[bool, typer.Option(help="Exit 2 if any input cannot be read (default: list it as failed).", rich_help_panel="CI gate")] = False,
    expected_fpr: Annotated[Optional[float], typer.Option(min=0.0, max=1.0, help="Benign flag rate the verdict tests against [default: from the calibration, else 0.10 assumed].")] = None,
    score: ScoreOpt = "spc",
    device: DeviceOpt = Device.auto,
    batch_size: BatchOpt = None,
    layout: LayoutOpt = None, size: SizeOpt = None, pixel_range: RangeOpt = None, mean: MeanOpt = None,
    std: StdOpt = None, bgr: BgrOpt = False, channels: ChannelsOpt = None, spec: SpecOpt = None,
    output_name: OutputNameOpt = None,
) -> None:
    """Score every input with SCALE-UP, report, and gate.

    Exit codes: 0 scanned and within the gate; 1 gate failed; 2 usage error, unusable model,
    nothing could be scored, or (with --strict) an unreadable input.
    """
    from .report import Format, check_gate, render_scan, summarize, summary_lines

    with _user_errors():
        fmt = _format(format)
        scanner = _make_scanner(model, device=device, scales=_scales(scales), threshold=threshold,
                                calibration=calibration, spec_file=spec, batch_size=batch_size, score=score,
                                overrides=_spec_overrides(layout, size, pixel_range, mean, std, bgr, channels, output_name))
        with _progress(not _state["quiet"], "scanning") as progress:
            result = scanner.scan(paths, progress=progress)
        summary = summarize(result, expected_fpr=expected_fpr)
        gate = check_gate(summary, max_flagged=max_flagged, max_flagged_rate=max_flagged_rate)
        with _open_output(output) as stream:
            render_scan(result, summary, gate, fmt, stream)
        if result.n_scored == 0:
            raise ScannerError(f"none of the {result.n_found} inputs could be read; first failure: "
                               f"{result.failure_records()[0]['input']}: {result.failure_records()[0]['reason']}")
        if strict and result.failures:
            first = result.failure_records()[0]
            raise ScannerError(f"--strict: {len(result.failures)} input(s) could not be read, e.g. {first['input']}: {first['reason']}")
    if not _state["quiet"] and (output is not None or fmt is not Format.table):
        for line in summary_lines(result.settings, summary, gate):
            typer.echo(line, err=True)
    if gate is not None and not gate["passed"]:
        raise typer.Exit(1)


def _format(text: str):
    from .report import Format

    try:
        return Format(text.lower())
    except ValueError:
        raise ScannerError(f"--format must be one of table, json, jsonl, csv; got {text!r}") from None


@app.command()
def calibrate(
    model: Annotated[Path, typer.Argument(help="The ONNX model.")],
    clean_paths: Annotated[list[Path], typer.Argument(help="Trusted benign inputs (files, folders, arrays).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Calibration file to write (JSON).")],
    fpr: Annotated[float, typer.Option(min=0.0, max=1.0, help="Target false-positive rate on this set.")] = 0.05,
    min_class_samples: Annotated[int, typer.Option(min=2, help="Classes with fewer calibration inputs use pooled statistics.")] = 10,
    sigma_floor: Annotated[float, typer.Option(min=1e-6, help="Lower bound on a class's SPC standard deviation.")] = 0.05,
    scales: ScalesOpt = "3,5,7,9,11",
    device: DeviceOpt = Device.auto,
    batch_size: BatchOpt = None,
    layout: LayoutOpt = None, size: SizeOpt = None, pixel_range: RangeOpt = None, mean: MeanOpt = None,
    std: StdOpt = None, bgr: BgrOpt = False, channels: ChannelsOpt = None, spec: SpecOpt = None,
    output_name: OutputNameOpt = None,
) -> None:
    """Fit the data-limited variant on trusted benign inputs: per-class SPC mean/std and an NSPC threshold."""
    from .calibration import fit_calibration

    with _user_errors():
        scanner = _make_scanner(model, device=device, scales=_scales(scales), spec_file=spec, batch_size=batch_size,
                                overrides=_spec_overrides(layout, size, pixel_range, mean, std, bgr, channels, output_name))
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
def evaluate(
    model: Annotated[Path, typer.Argument(help="The ONNX model.")],
    benign: Annotated[list[Path], typer.Option("--benign", help="Clean inputs (repeatable); ImageFolder subfolders give true labels.")],
    poisoned: Annotated[list[Path], typer.Option("--poisoned", help="Triggered inputs (repeatable).")],
    target_label: Annotated[Optional[int], typer.Option(help="Attack target: keep poisoned inputs the model sends there.")] = None,
    labels: Annotated[Optional[Path], typer.Option(help="File of 'input,label' lines giving the benign inputs' true labels.")] = None,
    calibration: Annotated[Optional[Path], typer.Option(help="Calibration file: also report NSPC.")] = None,
    threshold: Annotated[Optional[float], typer.Option(help="Decision threshold [default: 0.5 on SPC, or the calibration's].")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write the metrics as JSON here.")] = None,
    plot: Annotated[Optional[Path], typer.Option(help="Write the ROC curve and SPC histograms as PNG.")] = None,
    scales: ScalesOpt = "3,5,7,9,11",
    device: DeviceOpt = Device.auto,
    batch_size: BatchOpt = None,
    layout: LayoutOpt = None, size: SizeOpt = None, pixel_range: RangeOpt = None, mean: MeanOpt = None,
    std: StdOpt = None, bgr: BgrOpt = False, channels: ChannelsOpt = None, spec: SpecOpt = None,
    output_name: OutputNameOpt = None,
) -> None:
    """The paper's protocol: AUROC, TPR/FPR/F1 at the threshold, TPR at 1% and 5% FPR, best F1."""
    from .evaluation import evaluate as run_evaluation, plot_evaluation

    with _user_errors():
        scanner = _make_scanner(model, device=device, scales=_scales(scales), threshold=threshold,
                                calibration=calibration, spec_file=spec, batch_size=batch_size,
                                overrides=_spec_overrides(layout, size, pixel_range, mean, std, bgr, channels, output_name))
        result = run_evaluation(scanner, benign, poisoned, target_label=target_label, labels_file=labels)
        if plot is not None:
            plot_evaluation(result, plot)
        document = {k: v for k, v in result.items() if not k.startswith("_")}
        if output is not None:
            with _open_output(output) as fh:
                json.dump(document, fh, indent=2)
                fh.write("\n")
    for line in evaluation_lines(document):
        typer.echo(line)


def evaluation_lines(doc: dict[str, Any]) -> list[str]:
    p = doc["protocol"]
    lines = [
        f"model {doc['model']} on {doc['execution_provider']}; scales {','.join(map(str, doc['scales']))}",
        f"benign: {p['benign_found']} found, {p['benign_scored']} scored, {p['benign_kept']} kept ({p['benign_filter']})",
        f"poisoned: {p['poisoned_found']} found, {p['poisoned_scored']} scored, {p['poisoned_kept']} kept ({p['poisoned_filter']})",
    ]
    if p["benign_accuracy"] is not None:
        lines.append(f"clean accuracy on the benign set: {p['benign_accuracy']:.4f}")
    if p["attack_success_rate"] is not None:
        lines.append(f"attack success rate on the poisoned set: {p['attack_success_rate']:.4f}")
    for name, m in doc["metrics"].items():
        t = m["at_threshold"]
        fixed = ", ".join(f"TPR {r['tpr']:.4f} at FPR {r['fpr']:.4f} (target {r['target_fpr']})" for r in m["tpr_at_fpr"])
        lines.append(f"{name.upper()}: AUROC {m['auroc']:.4f}; at threshold {t['threshold']:.4g}: TPR {t['tpr']:.4f}, "
                     f"FPR {t['fpr']:.4f}, F1 {t['f1']:.4f}; {fixed}; best F1 {m['best_f1']['f1']:.4f} (oracle)")
    if p["failures"]:
        lines.append(f"{len(p['failures'])} input(s) could not be read, e.g. {p['failures'][0]['input']}: {p['failures'][0]['reason']}")
    return lines


@app.command()
def inspect(
    model: Annotated[Path, typer.Argument(help="The ONNX model.")],
    format: Annotated[str, typer.Option("--format", "-f", help="table or json.")] = "table",
    device: DeviceOpt = Device.auto,
    layout: LayoutOpt = None, size: SizeOpt = None, pixel_range: RangeOpt = None, mean: MeanOpt = None,
    std: StdOpt = None, bgr: BgrOpt = False, channels: ChannelsOpt = None, spec: SpecOpt = None,
    output_name: OutputNameOpt = None,
) -> None:
    """Show what the scanner decided about a model and where each decision came from."""
    with _user_errors():
        fmt = _format(format)
        scanner = _make_scanner(model, device=device, scales=(3, 5, 7, 9, 11), spec_file=spec,
                                overrides=_spec_overrides(layout, size, pixel_range, mean, std, bgr, channels, output_name))
    info, clf = scanner.info, scanner.classifier
    doc = {
        "model": str(info.path), "sha256": info.sha256, "producer": info.producer, "opset": info.opset,
        "input": str(info.input), "ignored_initializer_inputs": info.initializer_inputs,
        "outputs": [str(o) for o in info.outputs],
        "output_used": clf.output.name, "output_kind": clf.output_kind, "output_reason": clf.output_note,
        "num_classes": scanner.num_classes, "batch": clf.plan.mode, "batch_note": clf.plan.note,
        "external_data": info.has_external_data, "execution_provider": clf.provider,
        "spec": scanner.spec.to_dict(), "spec_sources": dict(scanner.resolved.sources),
    }
    if fmt.value == "json":
        typer.echo(json.dumps(doc, indent=2))
        return
    batch = clf.plan.mode + (f" ({clf.plan.note})" if clf.plan.note else "")
    typer.echo("\n".join([
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
        str(scanner.resolved),
    ]))


def _register_export() -> None:
    """`scanner export` lives in exporters/ and imports torch only when it runs."""
    try:
        from exporters.cli import export_command
    except ImportError:  # exporters not installed alongside: leave the command out
        return
    app.command("export", help=export_command.__doc__)(export_command)


_register_export()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
