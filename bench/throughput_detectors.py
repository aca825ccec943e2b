"""Images per second of each detector, side by side with its cost in model queries per input.

    python -m bench.throughput_detectors [--models resnet8-xs,resnet18] [--count N] [--repeats 3] [--device cpu|cuda]

Part of ``bench.throughput`` (same models, weights, images and session options: its helpers
build them). For each model and each detector choice (each detector alone, and the default
calibrated combination SCALE-UP + STRIP + TeCo + transplant with the ``scanner calibrate``
defaults: 16 blends, 2 severities, 3 x 3 regions onto 2 images; and the combination of the
versions before 0.3), ``Scanner.scan`` is timed in process on a folder of CIFAR-10 test JPEGs
(listing, decoding, building the queries, the model, the scores; not process start or the report).
STRIP and the transplant detector hold 16 clean images (CIFAR-10 training images). Medians over
``--repeats`` runs. Every calibrated decision of a combination (``q_profile``, ``q_fisher``, each
``q_<score>``) is computed from the same queries: what it adds is timed apart (the response
profile's features and distances for ``--count`` inputs of the default's 128 features).
Writes ``bench/results/throughput_detectors.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from .throughput import (REPO, WORK, build_model, export_model, image_folder, run_env, source_images,
                         write_results)

CHOICES = {
    "scaleup": ("scaleup", {}),
    "strip": ("strip", {"strip": {"n_blends": 16}}),
    "teco": ("teco", {"teco": {"severities": 2}}),
    "teco (3 severities)": ("teco", {"teco": {"severities": 3}}),
    "transplant": ("transplant", {}),
    "scaleup+strip+teco (default before 0.3)": ("scaleup,strip,teco", {"strip": {"n_blends": 16}, "teco": {"severities": 3}}),
    "scaleup+strip+teco+transplant (default)": ("scaleup,strip,teco,transplant",
                                                {"strip": {"n_blends": 16}, "teco": {"severities": 2}}),
}
COUNTS = {"resnet8-xs": 1000, "resnet18": 200}


def clean_images(data: Path, n: int = 16) -> np.ndarray:
    from PIL import Image

    files = sorted((data / "train" / "airplane").glob("*.jpg"))[:4] + sorted((data / "train" / "cat").glob("*.jpg"))[:4] \
        + sorted((data / "train" / "ship").glob("*.jpg"))[:4] + sorted((data / "train" / "frog").glob("*.jpg"))[:4]
    return np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files[:n]])


def profile_seconds(n: int, queries: int = 64, classes: int = 10) -> dict:
    """Time the response profile alone: features from ``n`` inputs' answers, then their distances."""
    from scanner.decide.profile import ProfileModel
    from scanner.detectors.profile import response_profile

    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(classes), size=queries * n)
    labels = probs.argmax(axis=1)
    fit = response_profile(labels, probs, n)
    model = ProfileModel(fit[:500], labels[:500] % classes)
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        model.distance(response_profile(labels, probs, n), labels[:n])
        times.append(time.perf_counter() - t0)
    return {"n": n, "seconds": statistics.median(times), "images_per_s": n / statistics.median(times)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.throughput_detectors", description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="resnet8-xs,resnet18")
    ap.add_argument("--count", type=int, default=None, help="images per measurement [resnet8-xs 1000, resnet18 200]")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "cifar10")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = ap.parse_args(argv)
    from scanner import Scanner

    WORK.mkdir(parents=True, exist_ok=True)
    sources = source_images(args.data, None)
    held = clean_images(args.data)
    rows, started = [], time.time()
    for name in args.models.split(","):
        count = args.count or COUNTS.get(name, 500)
        onnx_path = export_model(name, build_model(name))
        folder = image_folder(sources, count, "cifar10")
        for label, (names, params) in CHOICES.items():
            scanner = Scanner(onnx_path, device=args.device, detectors=names, detector_params=params)
            scanner.detector.fit(held) if scanner.detector.clean_images_needed else None
            scanner.scan([image_folder(sources, 16, "cifar10")])  # warm-up: session, caches, noise fields
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                scanner.scan([folder])
                times.append(time.perf_counter() - t0)
            med = statistics.median(times)
            rows.append({"model": name, "detector": label, "queries_per_input": scanner.detector.queries_per_input,
                         "images": count, "images_per_s": count / med, "queries_per_s": count * scanner.detector.queries_per_input / med,
                         "seconds": times, "provider": scanner.provider, "batch_size": scanner.batch_size})
            print(f"{name} {label}: {scanner.detector.queries_per_input} queries, {count / med:.1f} images/s "
                  f"({scanner.provider})", file=sys.stderr, flush=True)
    decision = profile_seconds(max(COUNTS.values()))
    env = run_env("bench.throughput_detectors", argv, started, device=args.device, repeats=args.repeats)
    lines = ["# Throughput of each detector", "",
             f"Command: `{env['command'].strip()}` ({env['date']}, {env['wall_s']} s). Machine: {env['cpu']}, "
             f"{env['cores']} cores; device {env['device']}; onnxruntime {env['onnxruntime']}. `Scanner.scan` in process on "
             "CIFAR-10 test JPEGs (decoding included), medians of "
             f"{env['repeats']} runs; random-weight models (speed does not depend on the weights). CPU figures depend on the "
             "processor and on what else runs on it.", "",
             "| model | detector | queries per input | images/s | model queries/s | provider |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['detector']} | {r['queries_per_input']} | {r['images_per_s']:.1f} | "
              f"{r['queries_per_s']:.0f} | {r['provider']} |" for r in rows]
    lines += ["", f"The response profile's decision on top of the queries (features from the answers, then the "
              f"Mahalanobis distance, 128 features, 10 classes): {decision['images_per_s']:,.0f} images/s "
              f"({decision['n']} inputs, median of 5), so `q_profile` costs what its 64 queries cost."]
    write_results(args.out, "throughput_detectors", {"env": env, "rows": rows, "profile_decision": decision},
                  "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
