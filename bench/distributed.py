"""Throughput of the Ray engine against the local scan on this machine.

    python -m bench.distributed [--models zoo,resnet18] [--count N] [--repeats 3] [--workers 1,2]
                                [--data ../shared/data/cifar10]

For each model, on the same CIFAR-10 JPEG folder (built by ``bench.throughput``), in one process:
  local      ``Scanner.scan`` (the model already loaded): listing, decoding, amplification,
             the model, SPC;
  ray xN     ``scanner.engines.ray_data.scan`` with N scoring actors on a local cluster started once
             by ``ray.init(num_cpus=<cores>)``: the driver's model load and listing, the actors'
             start and model load, decoding tasks, scoring, gathering the books.
Each is also timed on a one-image folder: its *start-up* (for Ray: the driver's model load, the
actors' start and model load, the pipeline's ramp; for local, nearly nothing). Reported per
engine: images/s over the whole call, images/s *once up* (count / (scan - start-up)), and their
ratios to the local scan. ``ray.init`` (once per cluster) is timed separately.
Every Ray result is checked to be identical to the local one (labels at every scale, scores,
flags, failures). Writes ``bench/results/distributed.md`` and ``distributed.json``.

The models: ``zoo`` is the zoo's network (``bench/zoo/clean/model.onnx``, resnet8-xs);
``resnet18`` the CIFAR ResNet-18 exported by ``bench.throughput`` (seeded random weights).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from bench.throughput import REPO, WORK, build_model, cpu_name, export_model, image_folder, source_images

DEFAULT_COUNTS = {"zoo": 3000, "resnet18": 1024}


def model_path(name: str) -> Path:
    if name == "zoo":
        return REPO / "bench" / "zoo" / "clean" / "model.onnx"
    WORK.mkdir(parents=True, exist_ok=True)
    return export_model(name, build_model(name))


def lscpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return cpu_name()


def time_scan(engine: str, path: Path, folder: Path):
    """(result, seconds) of one scan of ``folder``; local: the model is loaded before the clock."""
    from scanner import Scanner, distributed

    if engine == "local":
        scanner = Scanner(path)
        start = time.perf_counter()
        result = scanner.scan([folder])
    else:
        start = time.perf_counter()
        result = distributed.scan(path, [folder], workers=int(engine.split("x")[1]))
    return result, time.perf_counter() - start


def identical(a, b) -> bool:
    same = (np.array_equal(a.indices, b.indices) and np.array_equal(a.scores.query_labels, b.scores.query_labels)
            and np.array_equal(a.scores.labels, b.scores.labels) and np.array_equal(a.scores.flagged, b.scores.flagged)
            and a.failures == b.failures)
    for name, values in a.scores.named.items():
        other = b.scores.named[name]
        same = same and ((values is None and other is None) or np.array_equal(values, other, equal_nan=True))
    return bool(same)


def portable(arg: str) -> str:
    """An argument as the results record it: an absolute path relative to the repository (this
    machine's folders mean nothing elsewhere), anything else as it was."""
    if not os.path.isabs(arg):
        return arg
    return os.path.relpath(arg, REPO)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="zoo,resnet18")
    ap.add_argument("--count", type=int, default=None, help="images per measurement [default: zoo 3000, resnet18 1024]")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", default="1,2", help="actor counts to measure")
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "cifar10")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = ap.parse_args(argv)

    import onnxruntime
    import ray

    started = time.time()
    cores = os.cpu_count() or 1
    t = time.perf_counter()
    ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    ray_init_s = time.perf_counter() - t
    sources = source_images(args.data, None)
    workers = [int(w) for w in args.workers.split(",")]
    rows = []
    try:
        for name in args.models.split(","):
            count = args.count or DEFAULT_COUNTS.get(name, 1000)
            path, folder = model_path(name), image_folder(sources, count, "cifar10")
            one = image_folder(sources, 1, "cifar10")
            keys = ["local", *(f"ray x{w}" for w in workers)]
            runs: dict[str, list] = {k: [] for k in keys}
            same = True
            for r in range(args.repeats):
                local = None
                for key in keys:  # interleaved, so that load from other work hits every engine alike
                    startup = time_scan(key, path, one)[1]
                    result, seconds = time_scan(key, path, folder)
                    local = result if key == "local" else local
                    same = same and identical(result, local)
                    runs[key].append((seconds, startup))
                print(f"{name} run {r + 1}: " + ", ".join(f"{k} {count / v[-1][0]:.1f}/s (start-up {v[-1][1]:.2f} s)"
                                                          for k, v in runs.items()), file=sys.stderr)
            engines = {}
            for key, values in runs.items():
                scan_s, startup_s = statistics.median(v[0] for v in values), statistics.median(v[1] for v in values)
                up = [count / (s - u) for s, u in values]
                engines[key] = {"scan_s": scan_s, "startup_s": startup_s, "images_per_s": count / scan_s,
                                "up_images_per_s": statistics.median(up), "runs": values}
            base = engines["local"]
            for e in engines.values():
                e["ratio"] = e["images_per_s"] / base["images_per_s"]
                e["up_ratio"] = e["up_images_per_s"] / base["up_images_per_s"]
            from scanner import Scanner

            rows.append({"model": name, "path": str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path),
                         "images": count, "batch_size": Scanner(path).batch_size, "identical": same,
                         "engines": engines})
    finally:
        ray.shutdown()

    env = {"cpu": lscpu_model(), "cores": cores, "onnxruntime": onnxruntime.__version__, "ray": ray.__version__,
           "python": platform.python_version(), "repeats": args.repeats, "ray_init_s": ray_init_s,
           "command": "python -m bench.distributed " + " ".join(map(portable, argv if argv is not None else sys.argv[1:])),
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "wall_s": round(time.time() - started, 1)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "distributed.json").write_text(json.dumps({"env": env, "rows": rows}, indent=2) + "\n")
    text = render(env, rows)
    (args.out / "distributed.md").write_text(text)
    print(text)
    return 0


def render(env, rows) -> str:
    lines = [
        "# Throughput: the Ray engine vs the local scan",
        "",
        f"Command: `{env['command'].strip()}` ({env['date']}, {env['wall_s']} s)",
        f"Machine: {env['cpu']} (`lscpu` model name), {env['cores']} cores, no GPU, shared with other work; "
        f"onnxruntime {env['onnxruntime']}, ray {env['ray']}, Python {env['python']}. Medians of {env['repeats']} runs.",
        f"Local Ray cluster: `ray.init(num_cpus={env['cores']})` took {env['ray_init_s']:.2f} s (once per cluster).",
        "",
        "*scan*: the whole call (local: model already loaded; Ray: the driver's model load, the actors' start and "
        "model load included). *start-up*: the same call on a one-image folder. *once up*: images / (scan - "
        "start-up), the median over runs. Ratios are to the local scan. *identical*: every Ray result equal to "
        "the local one (labels at every scale, scores, flags, failures).",
        "",
        "| model | images | batch | engine | scan s | img/s | ratio | start-up s | img/s once up | ratio once up | identical |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        for key, e in row["engines"].items():
            lines.append(f"| {row['model']} | {row['images']} | {row['batch_size']} | {key} | {e['scan_s']:.2f} | "
                         f"{e['images_per_s']:.1f} | {e['ratio']:.2f} | {e['startup_s']:.2f} | "
                         f"{e['up_images_per_s']:.1f} | {e['up_ratio']:.2f} | "
                         f"{'yes' if row['identical'] else 'NO'} |")
    lines += [
        "",
        "Read with care: the machine's 2 cores are shared with other work (load averages of 4 to 15 during "
        "such runs), and a Ray scan runs more processes (driver, decoding workers, actors) than the local "
        "scan's one, so under contention it can take a larger share of the CPUs: ratios above 1 say that Ray "
        "costs nothing measurable here, not that it is faster on an idle machine. The engines are interleaved "
        "in every run so that the load hits each alike; the absolute images/s are below those of "
        "`bench/results/throughput.md` for the same reason.",
        "",
        "CUDA: not measured (no GPU on this machine).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
