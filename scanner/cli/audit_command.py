"""``scanner audit``: is this model backdoored, judged from clean images by queries alone."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import ScannerError

from .options import (DEFAULT_CALL_TIMEOUT, CallTimeoutOpt, DeviceOpt, Device, Engine, ModelArg, Preprocessing,
                      _user_errors, call_timeout_value, preprocessing_options)
from .support import _progress, _state

# exit status when --fail-on-backdoor sees a suspect (or an audit that cannot judge)
GATE_FAILED = 1


class AuditFormat(str, Enum):
    table = "table"
    json = "json"


@preprocessing_options
def audit(
    model: ModelArg,
    clean_paths: Annotated[list[Path], typer.Argument(help="Trusted clean images: files, folders (recursive), .npy/.npz arrays. At least 100 readable; 1,000 is the usual.")],
    prep: Preprocessing,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", metavar="FILE", help="Write the report there [default: stdout].")] = None,
    format: Annotated[AuditFormat, typer.Option("--format", "-f", case_sensitive=False, help="table or json.")] = AuditFormat.table,
    html: Annotated[Optional[Path], typer.Option("--html", metavar="FILE", help="Also write the HTML report there: each suspected class's trigger beside clean images with it applied [default: none].")] = None,
    fail_on_backdoor: Annotated[bool, typer.Option("--fail-on-backdoor", help="Gate: exit 1 when the verdict is 'suspect', and when it is 'cannot judge' (the line says why).", rich_help_panel="CI gate")] = False,
    max_images: Annotated[int, typer.Option(min=2, help="Clean images used at most (a seeded subset).")] = 1000,
    search_images: Annotated[int, typer.Option(min=1, help="Clean images that guide the search; the rest are held back to measure what it found.")] = 128,
    draws: Annotated[int, typer.Option(min=1, max=64, help="Random members tried per trigger family and setting.")] = 4,
    seed: Annotated[int, typer.Option(help="Seed of the image split and the random triggers [default: 0].", show_default=False)] = 0,
    device: DeviceOpt = Device.auto,
    call_timeout: CallTimeoutOpt = DEFAULT_CALL_TIMEOUT,
    engine: Annotated[Engine, typer.Option(case_sensitive=False, help="local: this machine; ray: the candidate triggers' queries on a Ray cluster, same verdict (pip install -e \".[ray]\").", rich_help_panel="Scaling out")] = Engine.local,
    ray_address: Annotated[Optional[str], typer.Option("--ray-address", help="Ray cluster to use (e.g. auto, head:6379) [default: RAY_ADDRESS, else a new local cluster].", rich_help_panel="Scaling out")] = None,
    workers: Annotated[Optional[int], typer.Option(min=1, help="Ray actors [default: one per 2 CPUs of the cluster].", rich_help_panel="Scaling out")] = None,
) -> None:
    """Audit the model: search each class for a small trigger that sends clean images to it.

    Queries the ONNX session only. The verdict is 'suspect' (with the target classes), 'no
    backdoor found' (with what was searched) or 'cannot judge' (with why). Exit codes: 0 audited
    (and the gate passed), 1 gate failed (--fail-on-backdoor), 2 usage/model/input error.
    """
    from .._validation import check_output_file
    from ..audit import Budget, audit as run_audit
    from ..report.audit import audit_text, write_audit_html, write_audit_json
    from ..report.render import open_report

    with _user_errors():
        for path in (output, html):
            if path is not None:
                check_output_file(path)
        if engine is not Engine.ray and (ray_address is not None or workers is not None):
            raise ScannerError("--ray-address and --workers go with --engine ray")
        common = dict(max_images=max_images, search_images=search_images, seed=seed, budget=Budget(draws=draws),
                      device=device.value, options=prep.overrides, spec_file=prep.spec_file,
                      call_timeout=call_timeout_value(call_timeout))
        with _progress(not _state["quiet"], "audit") as bar:
            if engine is Engine.ray:
                from ..engines.ray_audit import audit as ray_audit

                result = ray_audit(model, [str(p) for p in clean_paths], address=ray_address, workers=workers,
                                   progress=bar, **common)
            else:
                result = run_audit(model, [str(p) for p in clean_paths], progress=bar, **common)
        with open_report(output, sys.stdout) as fh:
            if format is AuditFormat.json:
                write_audit_json(result, fh)
            else:
                fh.write(audit_text(result) + "\n")
        if html is not None:
            with open_report(html, sys.stdout) as fh:
                write_audit_html(result, fh)
    status = result.verdict.status
    if output is not None and not _state["quiet"]:
        typer.echo(f"verdict: {status}", err=True)
    if fail_on_backdoor:
        failed = status in ("suspect", "cannot judge")
        if not _state["quiet"] or failed:
            word = "FAILED" if failed else "PASSED"
            why = {"suspect": "a backdoor is suspected",
                   "cannot judge": "the audit cannot judge this model: " + result.verdict.reason}.get(status, status)
            typer.echo(f"gate: {word} ({why})", err=True)
        if failed:
            raise typer.Exit(GATE_FAILED)
