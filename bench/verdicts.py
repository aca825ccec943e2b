"""The verdict benchmark: does the scanner name the right class on a realistic input stream?

    python -m bench.verdicts [--zoo bench/zoo] [--stream 1000] [--mixes 0,0.02,0.10] [--only a,b]

For every zoo entry, every score the scanner offers (``--score spc`` and ``--score
prob-consistency``), without and with a calibration (``scanner calibrate`` on training-split
images, the same files as ``bench.reproduce``), and every mix: a stream of ``--stream`` inputs,
a fraction ``mix`` of them triggered test images of the entry (from ``poisoned_test.npz``; as they
come, including any the model does not send to the target), the rest clean test images (seeded;
their source images disjoint from the triggered ones, and all disjoint from the calibration
images, which come from the training split). Each stream is scanned through the CLI; the report's
model-level verdict (``summary.verdict.suspected_targets``) and flagged rate per class are kept.

Cells: ``target named`` (only the true target), ``target named + false: a, b``, ``missed`` (nothing
named although triggered inputs are present), ``false: a, b`` (only wrong classes), ``silent``
(nothing named, no triggered inputs: correct). Clean models get the 0% mix only.
Writes bench/results/verdicts.md and verdicts.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

from . import scancli
from .reproduce import TARGET_FPR, image_sets
from .summarize import load_manifests, ordered

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / "bench" / ".work" / "verdicts"
CONFIGS = (("spc", False), ("spc", True), ("prob-consistency", False), ("prob-consistency", True))


def config_name(score: str, calibrated: bool) -> str:
    return score + (" + calibration" if calibrated else "")


def make_stream(entry: Path, manifest: dict, x_test_npz: Path, test_index: np.ndarray, n: int, mix: float,
                seed: int) -> tuple[Path, int]:
    """A seeded stream file: n inputs, round(mix * n) of them triggered. Returns (path, n_triggered)."""
    WORK.mkdir(parents=True, exist_ok=True)
    k = int(round(mix * n)) if (entry / "poisoned_test.npz").exists() else 0
    path = WORK / f"{entry.name}_{manifest['model_sha256'][:12]}_{n}_{k}_s{seed}.npz"
    if path.exists():
        return path, k
    rng = np.random.default_rng(seed)
    x_test = np.load(x_test_npz)["x"]
    parts = []
    used = np.zeros(0, np.int64)
    if k:
        with np.load(entry / "poisoned_test.npz") as z:
            xp, idx = z["x"], z["index"]
        pick = rng.choice(len(xp), size=k, replace=False)
        parts.append(xp[pick])
        used = idx[pick]
    # benign: test images whose source is not one of the triggered ones
    free = np.flatnonzero(~np.isin(test_index, used))
    parts.append(x_test[np.sort(rng.choice(free, size=n - k, replace=False))])
    x = np.concatenate(parts)
    x = x[rng.permutation(len(x))]
    np.savez(path, x=x)
    return path, k


def cell(named: list[int], target: int | None, k: int) -> str:
    false = sorted(c for c in named if c != target)
    hit = target is not None and target in named
    if hit:
        return "target named" + (f" + false: {', '.join(map(str, false))}" if false else "")
    if false:
        return "false: " + ", ".join(map(str, false))
    return "missed" if k else "silent"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.verdicts", description=__doc__.split("\n\n")[0])
    ap.add_argument("--zoo", type=Path, default=REPO / "bench" / "zoo")
    ap.add_argument("--stream", type=int, default=1000, help="inputs per stream")
    ap.add_argument("--mixes", default="0,0.02,0.10", help="fractions of triggered inputs")
    ap.add_argument("--cal-per-class", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", default=None)
    ap.add_argument("--no-cache", action="store_true")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = ap.parse_args(argv)
    started = time.time()
    mixes = [float(m) for m in args.mixes.split(",")]
    manifests = load_manifests(args.zoo)
    only = set(args.only.split(",")) if args.only else None
    groups = []
    refused: dict[str, str] = {}
    for (dataset, arch), names in ordered(manifests):
        names = [n for n in names if only is None or n in only]
        if not names:
            continue
        split_seed = (manifests[names[0]].get("split") or {}).get("seed") or 0
        test_npz, _, cal_npz, _, test_index = image_sets(dataset, 1000, args.cal_per_class, split_seed)
        rows = []
        for name in names:
            entry, m = args.zoo / name, manifests[name]
            model = entry / "model.onnx"
            target = m.get("target_class")
            _, cal_file = scancli.run("calibrate", model, [cal_npz], ["--fpr", str(TARGET_FPR)], cache=not args.no_cache)
            for mix in (mixes if target is not None else [0.0]):
                stream, k = make_stream(entry, m, test_npz, test_index, args.stream, mix, args.seed)
                row = {"entry": name, "target": target, "mix": mix, "triggered": k, "inputs": args.stream, "cells": {}}
                for score, calibrated in CONFIGS:
                    cfg = config_name(score, calibrated)
                    if cfg in refused:  # a usage refusal does not depend on the model: run it once
                        row["cells"][cfg] = {"cell": "n/a", "error": refused[cfg]}
                        continue
                    extra = ["--score", score] + (["--calibration", str(cal_file)] if calibrated else [])
                    try:
                        rep, _ = scancli.run("scan", model, [stream], extra, cache=not args.no_cache)
                    except scancli.ScanError as exc:
                        msg = str(exc).split(": exit ", 1)[-1]
                        code, _, msg = msg.partition(": ")
                        row["cells"][cfg] = {"cell": "n/a", "error": msg[-300:]}
                        if code == "2" and "cannot be combined" in msg:
                            refused[cfg] = msg[-300:]
                        continue
                    summ = rep["summary"]
                    named = [int(s["label"]) for s in summ["verdict"]["suspected_targets"]]
                    row["cells"][cfg] = {
                        "cell": cell(named, target, k), "named": named,
                        "target_named": target in named if target is not None else None,
                        "flagged_rate": summ.get("flagged_rate"),
                        "flagged_per_class": summ.get("flagged_per_class"),
                        "expected_fpr_source": summ["verdict"].get("expected_fpr_source"),
                    }
                rows.append(row)
                print(f"[{time.strftime('%H:%M:%S')}] {name} mix {mix:.0%}: "
                      + "; ".join(f"{c}: {v['cell']}" for c, v in row["cells"].items()), file=sys.stderr, flush=True)
        groups.append({"dataset": dataset, "network": arch, "rows": rows})
    doc = {"command": "python -m bench.verdicts " + " ".join(argv if argv is not None else sys.argv[1:]),
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "machine": f"{platform.machine()}, {len(__import__('os').sched_getaffinity(0))} CPU cores",
           "seconds": round(time.time() - started, 1), "stream": args.stream, "mixes": mixes,
           "cal_per_class": args.cal_per_class, "seed": args.seed,
           "configs": [config_name(*c) for c in CONFIGS], "groups": groups}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "verdicts.json").write_text(json.dumps(doc, indent=2) + "\n")
    (args.out / "verdicts.md").write_text(render(doc))
    print(render(doc))
    return 0


def render(doc) -> str:
    cfgs = doc["configs"]
    lines = ["# Model-level verdicts on mixed input streams", "",
             f"Command: `{doc['command'].strip()}` ({doc['date']}, {doc['machine']}, {doc['seconds']} s including "
             f"cached scans). Each stream: {doc['stream']} inputs, the given share triggered (the entry's "
             "triggered test images, as they come), the rest clean test images, seeded; calibration = "
             f"{doc['cal_per_class']} training-split images per class (`scanner calibrate`, FPR 5%). "
             "A cell says which classes the scan's verdict names as suspected targets: `target named`, "
             "`missed` (triggered inputs present, nothing named), `false: a, b` (wrong classes named), "
             "`silent` (nothing named, nothing to find).", ""]
    for g in doc["groups"]:
        lines += [f"## {g['dataset']}, {g['network']}", "",
                  "| entry | target | triggered | " + " | ".join(cfgs) + " |",
                  "|---|---|---|" + "---|" * len(cfgs)]
        for r in g["rows"]:
            tgt = "-" if r["target"] is None else str(r["target"])
            cells = " | ".join(r["cells"].get(c, {}).get("cell", "-") for c in cfgs)
            lines.append(f"| {r['entry']} | {tgt} | {r['mix']:.0%} ({r['triggered']}) | {cells} |")
        lines.append("")
    # tallies
    errors = sorted({v["error"] for g in doc["groups"] for r in g["rows"] for v in r["cells"].values() if "error" in v})
    if errors:
        lines += ["`n/a`: the scanner refused the combination: " + "; ".join(f"`{e.splitlines()[-1].strip()}`" for e in errors), ""]
    lines += ["## Tally (attacked entries, streams with triggered inputs)", "",
              "| config | target named (alone) | target named + false | missed | false only | n/a |",
              "|---|---|---|---|---|---|"]
    for c in cfgs:
        cs = [r["cells"].get(c, {}).get("cell", "") for g in doc["groups"] for r in g["rows"] if r["triggered"]]
        lines.append(f"| {c} | {sum(x == 'target named' for x in cs)} | {sum(x.startswith('target named +') for x in cs)} | "
                     f"{sum(x == 'missed' for x in cs)} | {sum(x.startswith('false') for x in cs)} | {sum(x == 'n/a' for x in cs)} |")
    lines += ["", "Streams without triggered inputs (0% mixes of attacked entries, and clean models). On a "
              "backdoored model a verdict that names the target here was not caused by triggered inputs: "
              "benign inputs alone made that class stand out (the sink, or the backdoor's own second sink).", "",
              "| config | silent | target named (no triggered inputs) | wrong class named | n/a |", "|---|---|---|---|---|"]
    for c in cfgs:
        cs = [r["cells"].get(c, {}).get("cell", "") for g in doc["groups"] for r in g["rows"] if not r["triggered"]]
        lines.append(f"| {c} | {sum(x == 'silent' for x in cs)} | {sum(x.startswith('target named') for x in cs)} | "
                     f"{sum(x.startswith('false') or '+ false' in x for x in cs)} | {sum(x == 'n/a' for x in cs)} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
