"""The audit benchmark: does ``scanner audit`` name the right class from clean images alone?

    python -m bench.audit [--zoo bench/zoo] [--images 1000] [--only a,b]

For every zoo entry: ``--images`` clean test images of its data set (a seeded random subset of
the test split, never trained on), ``scanner.audit.audit`` with its defaults on the CPU, and the
verdict compared with the truth: ``target named`` (only the true target), ``target named +
false: a`` (the target and other classes), ``missed`` (a backdoored model, nothing named),
``false: a`` (only wrong classes), ``no class named`` (a clean model: correct), ``cannot judge``.
Each row also gives the held-back success rate of the trigger found for the true target (against
the entry's own ASR), the highest rate among the other classes, queries and seconds.
Writes bench/results/audit.md and audit.json (with ``--only``, those entries' rows replace theirs
in the last run's results).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from scanner.audit import audit

from . import datasets

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"


def cell(targets: list[int], truth: int | None, status: str) -> str:
    if status == "cannot judge":
        return "cannot judge"
    false = [t for t in targets if t != truth]
    if truth is None:
        return "false: " + ", ".join(map(str, false)) if false else "no class named"
    if truth in targets:
        return "target named" + (" + false: " + ", ".join(map(str, false)) if false else "")
    return "false: " + ", ".join(map(str, false)) if false else "missed"


def run_entry(entry: Path, images: int) -> dict:
    manifest = json.loads((entry / "manifest.json").read_text())
    ds = datasets.load(manifest.get("dataset", "cifar10"))
    pick = np.random.default_rng(1).permutation(len(ds.x_test))[:images]
    t0 = time.perf_counter()
    res = audit(entry / "model.onnx", ds.x_test[pick], device="cpu")
    seconds = time.perf_counter() - t0
    truth = manifest.get("target_class") if manifest.get("attack") != "clean" else None
    rates = [c.heldout_rate for c in res.classes]
    row = {"entry": entry.name, "dataset": ds.name, "network": manifest.get("network") or "resnet8-xs",
           "attack": manifest.get("attack"), "target": truth, "asr": manifest.get("attack_success_rate"),
           "status": res.verdict.status, "named": res.verdict.targets,
           "cell": cell(res.verdict.targets, truth, res.verdict.status), "reason": res.verdict.reason,
           "rates": [round(r, 4) for r in rates], "anomaly": [round(c.anomaly, 2) for c in res.classes],
           "queries": res.queries, "seconds": round(seconds, 1)}
    if rates:
        others = [r for k, r in enumerate(rates) if k != truth]
        row["best_other"] = round(max(others), 4)
        if truth is not None:
            c = res.classes[truth]
            row.update(target_rate=round(c.heldout_rate, 4), target_anomaly=round(c.anomaly, 2),
                       target_trigger=c.trigger)
    return row


def _pct(v) -> str:
    return "" if v is None else f"{v:.0%}"


def write(rows: list[dict], command: str, seconds: float) -> None:
    machine = f"{platform.machine()}, {len(os.sched_getaffinity(0))} CPU cores, no GPU (CPU provider)"
    doc = {"command": command, "date": datetime.date.today().isoformat(), "machine": machine,
           "seconds": round(seconds), "rows": rows}
    (RESULTS / "audit.json").write_text(json.dumps(doc, indent=1) + "\n")
    lines = ["# Model audit from clean images (`scanner audit`)", "",
             f"Command: `{command}` ({doc['date']}, {machine}, {doc['seconds']} s in all, while other jobs "
             "shared the two cores: seconds are upper bounds). Each entry: 1,000 clean test images "
             "(seeded, never trained on), the audit's defaults (128 to search, the rest held back).", "",
             "`target rate`: held-back success of the trigger the audit found for the true target; `ASR`: "
             "the entry's own trigger on its test split; `best other`: the highest held-back rate among the "
             "other classes.", ""]
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(f"{r['dataset']}, {r['network']}", []).append(r)
    for name, group in groups.items():
        lines += [f"## {name}", "", "| entry | target | verdict | target rate (anomaly) | ASR | best other | "
                  "trigger found for the target | queries | s |", "|---|---|---|---|---|---|---|---|---|"]
        for r in group:
            tr = f"{_pct(r.get('target_rate'))} ({r.get('target_anomaly', '')})" if r.get("target") is not None else ""
            lines.append(f"| {r['entry']} | {'' if r['target'] is None else r['target']} | {r['cell']} | {tr} | "
                         f"{_pct(r['asr'])} | {_pct(r.get('best_other'))} | {r.get('target_trigger', '')} | "
                         f"{r['queries']:,} | {r['seconds']} |")
        lines.append("")
    bd = [r for r in rows if r["target"] is not None and r["dataset"] in ("cifar10", "gtsrb")]
    cl = [r for r in rows if r["target"] is None]
    named = sum(r["cell"].startswith("target named") for r in bd)
    only = sum(r["cell"] == "target named" for r in bd)
    accused = [r["entry"] for r in cl if r["cell"] != "no class named"]
    lines += ["## Summary", "",
              f"- Backdoored CIFAR-10 and GTSRB entries whose true target is named: {named} of {len(bd)} "
              f"({only} with no other class named).",
              f"- Clean models with a class named: {len(accused)} of {len(cl)}" + (f" ({', '.join(accused)})" if accused else "") + ".",
              f"- Missed: {', '.join(r['entry'] for r in bd if not r['cell'].startswith('target named')) or 'none'}.", ""]
    (RESULTS / "audit.md").write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.audit", description=__doc__.split("\n\n")[0])
    ap.add_argument("--zoo", default=str(REPO / "bench" / "zoo"))
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--only", default=None, help="comma-separated entries")
    args = ap.parse_args(argv)
    entries = sorted(p for p in Path(args.zoo).iterdir() if (p / "model.onnx").exists())
    if args.only:
        keep = set(args.only.split(","))
        entries = [p for p in entries if p.name in keep]
    t0, rows = time.perf_counter(), []
    for entry in entries:
        row = run_entry(entry, args.images)
        print(f"{row['entry']:24s} {row['cell']:28s} target {_pct(row.get('target_rate')):>5} other "
              f"{_pct(row.get('best_other')):>5} {row['seconds']:6.1f} s", flush=True)
        rows.append(row)
    command = "python -m bench.audit" + "".join(f" {a}" for a in (argv if argv is not None else sys.argv[1:]))
    seconds = time.perf_counter() - t0
    old = RESULTS / "audit.json"
    if args.only and old.exists():  # update those rows of the last whole run, keep the rest
        prev = json.loads(old.read_text())
        done = {r["entry"] for r in rows}
        rows = sorted([r for r in prev["rows"] if r["entry"] not in done] + rows, key=lambda r: r["entry"])
        command, seconds = f"{prev['command']}; then {command}", prev["seconds"] + seconds
    write(rows, command, seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
