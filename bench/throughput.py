"""Throughput and memory of ``scanner scan`` against the ONNX Runtime ceiling and a PyTorch loop.

    python -m bench.throughput [--models resnet8-xs,resnet18,tiny] [--count N] [--repeats 3]
                               [--device cpu|cuda] [--data ../shared/data/cifar10] [--images DIR] [--memory]

For each model, on the same images, weights, machine and session options, in one run:
  ceiling    ONNX Runtime ``run`` alone on ready-made float32 arrays: the same number of forward
             passes (|S| + 1 per image), the same batch size, the scanner's own session options;
  scanner    ``scanner scan`` end to end in a subprocess: JPEG files on disk -> JSON report
             (process start, imports, model load and report writing included);
  reference  the straightforward PyTorch detector on the same weights: for each batch, for each
             scale, ``model(normalize(clamp(n * x, 0, 1)))`` in eager mode (images handed to it
             already decoded, so it is timed without any file I/O).
The scanner's time is then split: a one-image ``scanner scan`` (what every run pays: process
start, imports, model load) and ``Scanner.scan`` timed in process (the per-image work).
Images per second are medians over ``--repeats`` runs. ``--memory`` adds peak resident memory of
``scanner scan`` on 5,000 and 50,000 inputs (the test folder listed several times).
Weights are seeded random initializations: speed does not depend on their values.
Writes ``bench/results/throughput.md`` and ``throughput.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / "bench" / ".work" / "throughput"
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
SCALES = (3, 5, 7, 9, 11)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
# enough images that process start and model load (about 0.6 s) do not dominate
DEFAULT_COUNTS = {"tiny": 10000, "resnet8-xs": 3000, "resnet18": 500}


def tiny_cnn():
    import torch.nn as nn

    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(32, 10),
    )


def build_model(name: str):
    import torch

    from bench.nets import build

    torch.manual_seed(0)
    model = tiny_cnn() if name == "tiny" else build(name)
    model.eval()
    if name != "tiny":  # give BatchNorm non-trivial statistics, as after training
        with torch.no_grad():
            model.train()
            for _ in range(3):
                model(torch.randn(64, 3, 32, 32))
            model.eval()
    return model


def export_model(name: str, model) -> Path:
    from exporters import export

    path = WORK / f"{name}.onnx"
    if not path.exists():
        export(model, path, input_shape=(3, 32, 32), mean=MEAN, std=STD, pixel_range="unit", source=f"bench.throughput {name}")
    return path


def source_images(data: Path, images: Path | None) -> list[Path]:
    """The files to cycle through: a folder of the user's (recursively), or the CIFAR-10 test
    split interleaved by class."""
    if images is not None:
        files = sorted(p for p in images.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise SystemExit(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {images}")
        return files
    per_class = [sorted(c.glob("*.jpg")) for c in sorted(p for p in (data / "test").iterdir() if p.is_dir())]
    return [files[i] for i in range(max(map(len, per_class))) for files in per_class if i < len(files)]


def image_folder(sources: list[Path], count: int, tag: str) -> Path:
    """A folder of ``count`` files cycled from ``sources``.

    The files are hard links (copies where linking fails), not symlinks: a folder of symlinks
    costs the scanner's listing one ``stat`` per entry that a real folder of images does not.
    """
    folder = WORK / f"files_{tag}_{count}"
    if folder.exists() and len(list(folder.iterdir())) == count:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        src = sources[i % len(sources)].resolve()
        dst = folder / f"{i:06d}{src.suffix.lower()}"
        if not dst.exists():
            try:
                os.link(src, dst)
            except OSError:
                shutil.copyfile(src, dst)
    return folder


def decode_all(folder: Path) -> np.ndarray:
    from PIL import Image

    def load(path):
        with Image.open(path) as img:
            img = img.convert("RGB")
            return np.asarray(img if img.size == (32, 32) else img.resize((32, 32), Image.BILINEAR))

    return np.stack([load(p) for p in sorted(folder.iterdir())]).astype(np.float32) / 255


def time_ceiling(onnx_path: Path, images: np.ndarray, batch: int, device: str) -> tuple[float, str]:
    """ORT alone: the same forward passes and call sizes as the scanner, on ready arrays."""
    from scanner import create_session

    session, provider = create_session(str(onnx_path), device)
    name = session.get_inputs()[0].name
    per_call = batch * (len(SCALES) + 1)
    x = np.ascontiguousarray(images.transpose(0, 3, 1, 2))
    x = (x - np.array(MEAN, np.float32)[:, None, None]) / np.array(STD, np.float32)[:, None, None]
    total = len(images) * (len(SCALES) + 1)
    feeds = np.resize(x, (per_call,) + x.shape[1:]).astype(np.float32)
    session.run(None, {name: feeds[:8]})  # warm-up
    start = time.perf_counter()
    done = 0
    while done < total:
        rows = min(per_call, total - done)
        session.run(None, {name: feeds[:rows]})
        done += rows
    return time.perf_counter() - start, provider


def time_reference(model, images: np.ndarray, batch: int) -> float:
    """The straightforward PyTorch detector: per batch, per scale, one eager forward pass."""
    import torch

    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    x_all = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    spc = []
    start = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(x_all), batch):
            x = x_all[i:i + batch]
            y = model((x - mean) / std).argmax(1)
            same = torch.zeros(len(x))
            for n in SCALES:
                same += (model((torch.clamp(n * x, 0, 1) - mean) / std).argmax(1) == y).float()
            spc.append(same / len(SCALES))
    return time.perf_counter() - start


# Times the scanner's process from spawn to exit (the wrapper's own interpreter start is not
# the scanner's cost) and reads its peak RSS.
_RSS_WRAPPER = (
    "import resource, subprocess, sys, time\n"
    "t = time.perf_counter()\n"
    "rc = subprocess.run(sys.argv[1:]).returncode\n"
    "t = time.perf_counter() - t\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, rc, t)\n"
)


def time_scanner(onnx_path: Path, folders: list[Path], device: str, out: Path) -> tuple[float, int]:
    """Wall time and peak RSS (KiB) of ``scanner scan`` in its own process."""
    cmd = [sys.executable, "-m", "scanner", "-q", "scan", str(onnx_path), *map(str, folders),
           "--device", device, "-f", "json", "-o", str(out)]
    proc = subprocess.run([sys.executable, "-c", _RSS_WRAPPER, *cmd], capture_output=True, text=True)
    rss, rc, seconds = proc.stdout.split()
    if int(rc) != 0:
        raise RuntimeError(f"scanner scan failed (exit {rc}): {proc.stderr.strip()}")
    return float(seconds), int(rss)


def time_scan_loop(onnx_path: Path, folder: Path, device: str) -> float:
    """``Scanner.scan`` alone, in this process: listing, decoding, amplification, the model and
    SPC, without process start, imports, model load or the report."""
    from scanner import Scanner

    scanner = Scanner(onnx_path, device=device)
    start = time.perf_counter()
    scanner.scan([folder])
    return time.perf_counter() - start


def run_env(module: str, argv, started: float, **extra) -> dict:
    """What every throughput table states: machine, onnxruntime, the command as typed, date, wall time."""
    import onnxruntime

    return {"cpu": cpu_name(), "cores": os.cpu_count(), "onnxruntime": onnxruntime.__version__, **extra,
            "command": f"python -m {module} " + " ".join(argv if argv is not None else sys.argv[1:]),
            "date": time.strftime("%Y-%m-%d"), "wall_s": round(time.time() - started, 1)}


def write_results(out: Path, stem: str, doc: dict, text: str) -> None:
    """``out/STEM.json`` and ``out/STEM.md``; the table also goes to stdout."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(doc, indent=2) + "\n")
    (out / f"{stem}.md").write_text(text)
    print(text)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="resnet8-xs,resnet18,tiny",
                    help="resnet8-xs is the zoo's architecture; resnet18 the CIFAR ResNet-18; tiny a 3-conv CNN")
    ap.add_argument("--count", type=int, default=None,
                    help="images per measurement [default: tiny 10000, resnet8-xs 3000, resnet18 500]")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "cifar10",
                    help="CIFAR-10 ImageFolder root; its test split is the default image source")
    ap.add_argument("--images", type=Path, default=None,
                    help="a folder of images to scan instead (cycled to --count, resized to 32x32 for the ceiling)")
    ap.add_argument("--memory", action="store_true", help="also measure peak RSS at 5,000 and 50,000 inputs")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    WORK.mkdir(parents=True, exist_ok=True)
    from scanner import Scanner

    sources = source_images(args.data, args.images)
    tag = "cifar10" if args.images is None else hashlib.sha1(str(args.images.resolve()).encode()).hexdigest()[:8]
    rows, started = [], time.time()
    for name in args.models.split(","):
        count = args.count or DEFAULT_COUNTS.get(name, 2000)
        model = build_model(name)
        onnx_path = export_model(name, model)
        folder = image_folder(sources, count, tag)
        images = decode_all(folder)
        batch = Scanner(onnx_path, device=args.device).batch_size
        one = image_folder(sources, 1, tag)
        ceil_s, ref_s, scan_s, loop_s, start_s = [], [], [], [], []
        provider = None
        for r in range(args.repeats):
            s, provider = time_ceiling(onnx_path, images, batch, args.device)
            ceil_s.append(s)
            scan_s.append(time_scanner(onnx_path, [folder], args.device, WORK / f"{name}.json")[0])
            ref_s.append(time_reference(model, images, batch))
            loop_s.append(time_scan_loop(onnx_path, folder, args.device))
            start_s.append(time_scanner(onnx_path, [one], args.device, WORK / f"{name}-one.json")[0])
            print(f"{name} run {r + 1}: ceiling {count / s:.1f}/s, scanner {count / scan_s[-1]:.1f}/s, "
                  f"reference {count / ref_s[-1]:.1f}/s; scan loop {loop_s[-1]:.2f} s, "
                  f"one-image scan {start_s[-1]:.2f} s", file=sys.stderr)
        ips = {k: count / statistics.median(v) for k, v in (("ceiling", ceil_s), ("scanner", scan_s), ("reference", ref_s))}
        rows.append({"model": name, "images": count, "batch_size": batch, "provider": provider,
                     "forward_passes": count * (len(SCALES) + 1), "images_per_s": ips,
                     "scanner_over_ceiling": ips["scanner"] / ips["ceiling"],
                     "scanner_over_reference": ips["scanner"] / ips["reference"],
                     "seconds": {"ceiling": ceil_s, "scanner": scan_s, "reference": ref_s,
                                 "scan_loop": loop_s, "one_image_scan": start_s},
                     "median_s": {k: statistics.median(v) for k, v in (
                         ("ceiling", ceil_s), ("scanner", scan_s), ("scan_loop", loop_s), ("one_image_scan", start_s))}})

    memory = None
    if args.memory:
        name = "tiny"
        onnx_path = export_model(name, build_model(name))
        folder = image_folder(sources, 5000, tag)
        small = time_scanner(onnx_path, [folder], args.device, WORK / "mem5k.json")
        large = time_scanner(onnx_path, [folder] * 10, args.device, WORK / "mem50k.json")
        memory = {"model": name, "rss_kib_5000": small[1], "rss_kib_50000": large[1],
                  "ratio": large[1] / small[1], "seconds_5000": small[0], "seconds_50000": large[0]}

    from scanner import create_session

    # what a session gets on this machine when CUDA is allowed: says whether GPU figures were possible
    auto_provider = create_session(str(onnx_path), "auto")[1]
    env = run_env("bench.throughput", argv, started, auto_provider=auto_provider, torch=torch.__version__,
                  python=platform.python_version(), device=args.device, repeats=args.repeats, scales=list(SCALES))
    write_results(args.out, "throughput", {"env": env, "rows": rows, "memory": memory}, render(env, rows, memory))
    return 0


def render(env, rows, memory) -> str:
    lines = [
        "# Throughput: scanner vs ONNX Runtime ceiling vs PyTorch reference",
        "",
        f"Command: `{env['command']}` ({env['date']}, {env['wall_s']} s)",
        f"Machine: {env['cpu']}, {env['cores']} cores; device {env['device']}; onnxruntime {env['onnxruntime']}, "
        f"torch {env['torch']}, Python {env['python']}. Scales {','.join(map(str, env['scales']))} "
        f"(6 forward passes per image). Medians of {env['repeats']} runs.",
        "",
        "| model | images | batch | provider | ceiling img/s | scanner img/s | reference img/s | scanner / ceiling | scanner / reference |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        i = r["images_per_s"]
        lines.append(f"| {r['model']} | {r['images']} | {r['batch_size']} | {r['provider']} | {i['ceiling']:.1f} | "
                     f"{i['scanner']:.1f} | {i['reference']:.1f} | {r['scanner_over_ceiling']:.2f} | "
                     f"{r['scanner_over_reference']:.2f} |")
    lines += ["", "The scanner figure is end to end (process start, model load, JPEG decoding, JSON report); "
              "the ceiling and the reference get decoded arrays.",
              "", "## Where the scanner's time goes (medians, seconds)", "",
              "*one-image scan*: `scanner scan` end to end on one image (process start, imports, model load, "
              "report). *scan loop*: `Scanner.scan` in process (listing, decoding, amplification, the model, SPC). "
              "*rest*: scanner minus the two (mostly writing the report).", "",
              "| model | ceiling | scanner | one-image scan | scan loop | rest | ceiling / scan loop |",
              "|---|---|---|---|---|---|---|"]
    for r in rows:
        m = r.get("median_s")
        if m:
            rest = m["scanner"] - m["one_image_scan"] - m["scan_loop"]
            lines.append(f"| {r['model']} | {m['ceiling']:.2f} | {m['scanner']:.2f} | {m['one_image_scan']:.2f} | "
                         f"{m['scan_loop']:.2f} | {rest:.2f} | {m['ceiling'] / m['scan_loop']:.2f} |")
    if env["device"] != "cuda":
        lines += ["", "## CUDA", "",
                  "Not measured in this run: " + (
                      "a CUDA session works on this machine; rerun with `--device cuda`."
                      if env.get("auto_provider") == "CUDAExecutionProvider" else
                      f"no CUDA GPU is usable on this machine (`--device auto` gets {env.get('auto_provider')}).")]
    if memory:
        lines += ["", "## Memory", "",
                  f"Peak RSS of `scanner scan` ({memory['model']} model): {memory['rss_kib_5000'] / 1024:.0f} MiB on "
                  f"5,000 inputs, {memory['rss_kib_50000'] / 1024:.0f} MiB on 50,000 inputs: ratio "
                  f"{memory['ratio']:.2f} (target <= 1.2)."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
