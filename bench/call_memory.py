"""Peak memory and speed of the default decision against the rows sent to the model per call.

    python -m bench.call_memory [--models resnet8-xs,vgg8-bn,resnet18] [--rows 0,1536,768] [--count N]

For each model (random weights, built and exported as in ``bench.throughput``) and each cap on
the rows of one ONNX Runtime call (0: no cap, the whole batch of queries in one call, as the
scanner did before ``scanner.model.runner.ROWS_PER_CALL``), a fresh process scans a folder of CIFAR-10
test JPEGs with the default detectors (SCALE-UP + STRIP + TeCo, 58 queries per input) and
reports its peak RSS and the time of ``Scanner.scan`` (after a 16-image warm-up). The scores of
every cap are compared with those of the uncapped run: they must be identical.
Writes ``bench/results/call_memory.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from .throughput import (REPO, WORK, build_model, export_model, image_folder, run_env, source_images,
                         write_results)
from .throughput_detectors import CHOICES, clean_images

COUNTS = {"resnet8-xs": 1000, "vgg8-bn": 1000, "resnet18": 200}
DEFAULT = "scaleup+strip+teco (default)"


def child(onnx_path: str, rows: int, folder: str, warm: str, data: str, scores_out: str) -> None:
    """One measurement, in its own process so that its peak RSS is its own."""
    import resource

    import numpy as np

    import scanner.model.loader as loader
    from scanner import Scanner

    if rows == 0:
        loader.ROWS_PER_CALL = None  # the loader then sends a whole batch of queries in one call
    else:
        loader.ROWS_PER_CALL = rows
    names, params = CHOICES[DEFAULT]
    scanner = Scanner(onnx_path, device="cpu", detectors=names, detector_params=params)
    scanner.detector.fit(clean_images(Path(data)))
    scanner.scan([Path(warm)])
    t0 = time.perf_counter()
    result = scanner.scan([Path(folder)])
    seconds = time.perf_counter() - t0
    scores = result.scores
    arrays = {k: np.asarray(v) for k, v in scores.named.items() if v is not None}
    np.savez(scores_out, labels=scores.labels, query_labels=scores.query_labels, **arrays)
    print(json.dumps({"seconds": seconds, "max_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                      "batch_size": scanner.batch_size, "queries_per_input": scanner.detector.queries_per_input}))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.call_memory", description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="resnet8-xs,vgg8-bn,resnet18")
    ap.add_argument("--rows", default="0,1536,768", help="rows per call to compare (0: no cap)")
    ap.add_argument("--count", type=int, default=None, help="images per measurement [resnet8-xs and vgg8-bn 1000, resnet18 200]")
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "cifar10")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    ap.add_argument("--child", nargs=6, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        a = args.child
        child(a[0], int(a[1]), a[2], a[3], a[4], a[5])
        return 0
    import numpy as np

    WORK.mkdir(parents=True, exist_ok=True)
    sources = source_images(args.data, None)
    warm = image_folder(sources, 16, "cifar10")
    rows_list = [int(r) for r in args.rows.split(",")]
    results, started = [], time.time()
    for name in args.models.split(","):
        count = args.count or COUNTS.get(name, 500)
        onnx_path = export_model(name, build_model(name))
        folder = image_folder(sources, count, "cifar10")
        base = None
        for rows in rows_list:
            scores = WORK / f"call_memory_{name}_{rows}.npz"
            cmd = [sys.executable, "-m", "bench.call_memory", "--child", str(onnx_path), str(rows), str(folder),
                   str(warm), str(args.data), str(scores)]
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
            if proc.returncode != 0:
                raise SystemExit(f"{name} rows={rows}: {proc.stderr.strip()[-2000:]}")
            row = {"model": name, "rows_per_call": rows, "images": count, **json.loads(proc.stdout.strip().splitlines()[-1])}
            got = np.load(scores)
            if base is None:
                base = got
            row["scores_identical"] = all(np.array_equal(got[k], base[k], equal_nan=got[k].dtype.kind == "f")
                                          for k in base.files)
            batch_rows = min(count, row["batch_size"]) * row["queries_per_input"]
            row["call_rows"] = min(batch_rows, rows) if rows else batch_rows
            results.append(row)
            print(f"{name} rows={rows or 'one call'}: {row['max_rss_kib'] / 1024:.0f} MiB, {count / row['seconds']:.1f} images/s, "
                  f"identical={row['scores_identical']}", file=sys.stderr, flush=True)
    env = run_env("bench.call_memory", argv, started)
    lines = ["# Peak memory against rows per model call (default decision, 58 queries per input)", "",
             f"Command: `{env['command'].strip()}` ({env['date']}, {env['wall_s']} s). Machine: {env['cpu']}, "
             f"{env['cores']} cores, CPU; onnxruntime {env['onnxruntime']}. One process per row; peak RSS of that "
             "process (model load, STRIP's clean images, a 16-image warm-up and the scan); images/s of `Scanner.scan` "
             "on CIFAR-10 test JPEGs, one run each (CPU figures depend on the processor and on what else runs). "
             "`rows per call` 0 = the whole batch of queries in one call (the scanner before the cap).", "",
             "| model | images | rows per call | rows in one call | peak RSS MiB | images/s | scores identical to uncapped |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['images']} | {r['rows_per_call'] or 'no cap'} | {r['call_rows']} | "
              f"{r['max_rss_kib'] / 1024:.0f} | {r['images'] / r['seconds']:.1f} | {'yes' if r['scores_identical'] else 'NO'} |"
              for r in results]
    write_results(args.out, "call_memory", {"env": env, "rows": results}, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
