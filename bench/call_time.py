"""The slowest model call a default scan makes on this machine: what the per-call watchdog
(``--call-timeout``, :data:`scanner.model.runner.DEFAULT_CALL_TIMEOUT`) must never trip on.

    python -m bench.call_time [--repeats 3]

A call holds at most ``ROWS_PER_CALL`` (1,536) rows and a batch's query buffer at most 2^24
float32 elements, so the heaviest call of a given network is the one that fills both bounds.
Measured with the CIFAR ResNet-18 of ``bench.nets`` (no down-sampling stem: the most work per
input pixel of the zoo's networks, 0.56 GFLOP at 32 x 32) in the two shapes of a default scan:
32 x 32 inputs (a 1,536-row call: SCALE-UP's 256 images x 6 queries, and the calibrated default
decision's calls alike) and the same network on 224 x 224 inputs (SCALE-UP's default batch of
18 images x 6 = 108 rows, about 27 GFLOP a row: more than a ResNet-152 at that size). Each call
is ONNX Runtime ``run`` with the scanner's own session (``Scanner(model, device="cpu")``).
Writes ``bench/results/call_time.md`` and ``call_time.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np

from bench.throughput import REPO, WORK, run_env, write_results


def export(side: int):
    from bench.throughput import MEAN, STD, build_model
    from exporters import export as export_onnx

    path = WORK / f"resnet18-{side}.onnx"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # parity is the exporter's test, not this measurement's (at 224 x 224 it takes longer than it)
        export_onnx(build_model("resnet18"), path, input_shape=(3, side, side), mean=MEAN, std=STD,
                    source=f"bench.call_time resnet18 {side}x{side}", check_parity=False)
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--render", type=Path, default=None,
                    help="only redo the tables from an earlier call_time.json (its measurements kept)")
    args = ap.parse_args(argv)
    started = time.time()
    from scanner import Scanner
    from scanner.model.runner import AUTO_BASE_S, AUTO_PER_VALUE_S, ROWS_PER_CALL, call_limit

    if args.render is not None:
        env = json.loads(args.render.read_text())
        rows = env.pop("rows")
        for r in rows:
            side = 224 if "224" in r["model"] else 32
            values = r["rows_per_call"] * 3 * side * side
            r["us_per_value"] = round(r["max_s"] / values * 1e6, 2)
            r["auto_limit_s"] = round(call_limit("auto", values), 1)
        env.pop("default_call_timeout_s", None)
        env["rendered"] = f"tables redone with --render {time.strftime('%Y-%m-%d')} from that run's measurements"
        repeats = int(env["command"].split("--repeats")[1].split()[0]) if "--repeats" in env["command"] else 3
        return render(env, rows, repeats)
    rows = []
    for side in (32, 224):
        scanner = Scanner(export(side), device="cpu")
        runner = scanner.model.runner
        runner.call_timeout = None  # measured without the watchdog
        n = min(ROWS_PER_CALL, scanner.batch_size * scanner.detector.queries_per_input)
        batch = np.random.default_rng(0).random((n, 3, side, side), dtype=np.float32)
        runner.run(batch[:8])  # warm-up
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            runner.run(batch)
            times.append(time.perf_counter() - t0)
        rows.append({"model": f"resnet18 (CIFAR) at {side}x{side}", "batch_images": scanner.batch_size,
                     "rows_per_call": n, "median_s": round(statistics.median(times), 2),
                     "max_s": round(max(times), 2), "s_per_row": round(statistics.median(times) / n, 4),
                     "us_per_value": round(max(times) / batch.size * 1e6, 2),
                     "auto_limit_s": round(call_limit("auto", batch.size), 1)})
    env = run_env("bench.call_time", argv, started, device="cpu", load_average=round(os.getloadavg()[0], 1))
    return render(env, rows, args.repeats)


def render(env: dict, rows: list[dict], repeats: int) -> int:
    from scanner.model.runner import AUTO_BASE_S, AUTO_PER_VALUE_S

    slowest = max(r["max_s"] for r in rows)
    lines = ["# The slowest model call of a default scan (what the per-call watchdog must never trip on)", "",
             f"Command: `{env['command']}` ({env['date']}, {env['wall_s']} s). Machine: {env['cpu']}, "
             f"{env['cores']} cores, no GPU, shared (load average {env['load_average']} at the end: other jobs "
             f"ran beside it, so these are a busy CPU's figures); onnxruntime {env['onnxruntime']}. One call of the scanner's "
             f"own session on random inputs, {repeats} runs after a warm-up; random weights (speed does not "
             "depend on them). CPU figures depend on the processor and on what else runs on it."
             + (f" ({env['rendered']}.)" if env.get("rendered") else ""), "",
             "| model | images per batch | rows per call | median s | max s | s per row | us per input value (max) "
             "| default limit of the call (auto) s | limit / max |", "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['batch_images']} | {r['rows_per_call']} | {r['median_s']} | {r['max_s']} | "
              f"{r['s_per_row']} | {r['us_per_value']} | {r['auto_limit_s']} | {r['auto_limit_s'] / r['max_s']:.1f} |"
              for r in rows]
    lines += ["", f"Slowest call: {slowest} s. The default per-call limit (`--call-timeout auto`) is {AUTO_BASE_S:g} s plus "
              f"{AUTO_PER_VALUE_S * 1e6:g} us per input value of the call (rows x height x width x channels).", ""]
    write_results(REPO / "bench" / "results", "call_time", {**env, "rows": rows, "auto_base_s": AUTO_BASE_S,
                                                            "auto_per_value_s": AUTO_PER_VALUE_S},
                  "\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
