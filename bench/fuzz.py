"""Mutation fuzzing of the scanner's inputs: ``python -m bench.fuzz --minutes 10``.

Two halves, taking turns until the time is up:

1. Files to scan: batches of broken image and array files (seed files of every supported
   format, then truncated, bit-flipped, spliced or with a forged header) in a temporary folder,
   scanned with the library on a small hand-built model. Counted: inputs tried (files written),
   scored, failed with a reason; dropped: files neither scored nor listed as failed (must be 0);
   crashes: any exception other than the scanner's own ``ScannerError`` family (must be 0);
   hangs: a scan that does not finish within ``--hang-seconds`` (must be 0).
2. Files that configure a scan (:mod:`bench.fuzz_files`): a calibration of that model (every
   detector), a spec file and the model's ``scanner.spec`` metadata, each with one leaf replaced
   (NaN, infinity, a wrong type, huge, 100,000 deep, deleted...), and special files as ``-o`` or
   ``--html`` (FIFO, a /dev/null device node, a directory, symbolic links); each case is one
   ``scanner scan`` process, judged on its exit status (0-2; never 3), tracebacks, hangs,
   silent drops, accepted non-finite values and what became of the special file.

The same generator drives the property-based test ``tests/test_fuzz.py`` (about a minute in CI).
No torch; the model is an ONNX graph built here.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

SUFFIXES = (".png", ".jpg", ".bmp", ".gif", ".tiff", ".webp", ".ppm", ".npy", ".npz")


def seed_files(rng: np.random.Generator) -> dict[str, bytes]:
    """One small valid file per format (random content), as bytes."""
    from PIL import Image

    pixels = rng.integers(0, 256, (int(rng.integers(1, 40)), int(rng.integers(1, 40)), 3), dtype=np.uint8)
    out = {}
    for suffix, fmt in ((".png", "PNG"), (".jpg", "JPEG"), (".bmp", "BMP"), (".gif", "GIF"), (".tiff", "TIFF"),
                        (".webp", "WEBP"), (".ppm", "PPM")):
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, format=fmt)
        out[suffix] = buf.getvalue()
    arr = rng.integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    buf = io.BytesIO()
    np.save(buf, arr if rng.random() < 0.5 else arr.astype(np.float32) / 255)
    out[".npy"] = buf.getvalue()
    buf = io.BytesIO()
    np.savez_compressed(buf, x=arr, y=np.arange(3))
    out[".npz"] = buf.getvalue()
    return out


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    """One of: truncate, flip bytes, insert bytes, splice a copy, forge a header, keep as is."""
    op = int(rng.integers(0, 6))
    b = bytearray(data)
    if op == 0 and len(b) > 1:
        return bytes(b[: int(rng.integers(0, len(b)))])
    if op == 1:
        for _ in range(int(rng.integers(1, 16))):
            b[int(rng.integers(0, len(b)))] = int(rng.integers(0, 256))
        return bytes(b)
    if op == 2:
        at = int(rng.integers(0, len(b) + 1))
        return bytes(b[:at]) + rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8).tobytes() + bytes(b[at:])
    if op == 3:
        at = int(rng.integers(0, len(b) + 1))
        return bytes(b[:at]) + bytes(b)
    if op == 4 and len(b) > 16:
        b[8:16] = rng.integers(0, 256, 8, dtype=np.uint8).tobytes()  # header fields: sizes, dtypes, shapes
        return bytes(b)
    return bytes(b)


def write_batch(folder: Path, rng: np.random.Generator, count: int) -> list[Path]:
    """``count`` mutated files of random formats in ``folder``."""
    seeds = seed_files(rng)
    written = []
    for i in range(count):
        suffix = SUFFIXES[int(rng.integers(0, len(SUFFIXES)))]
        path = folder / f"f{i:04d}{suffix}"
        path.write_bytes(mutate(seeds[suffix], rng))
        written.append(path)
    return written


def tiny_model(path: Path, spec_text: str | None = None) -> Path:
    """An 8x8 RGB classifier whose class follows the image's brightness (10 classes); with
    ``spec_text``, that text is its ``scanner.spec`` metadata."""
    import onnx
    from onnx import TensorProto as T
    from onnx import helper as h

    nodes = [h.make_node("ReduceMean", ["input"], ["m"], axes=[1, 2, 3], keepdims=1),
             h.make_node("Flatten", ["m"], ["m2"]),
             h.make_node("Mul", ["m2", "w"], ["s"]),
             h.make_node("Sub", ["s", "c"], ["d"]),
             h.make_node("Abs", ["d"], ["a"]),
             h.make_node("Neg", ["a"], ["logits"])]
    graph = h.make_graph(nodes, "brightness", [h.make_tensor_value_info("input", T.FLOAT, ["N", 3, 8, 8])],
                         [h.make_tensor_value_info("logits", T.FLOAT, ["N", 10])],
                         initializer=[h.make_tensor("w", T.FLOAT, [1, 10], [1.0] * 10),
                                      h.make_tensor("c", T.FLOAT, [1, 10], [(k + 0.5) / 10 for k in range(10)])])
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 13)], ir_version=8)
    if spec_text is not None:
        h.set_model_props(model, {"scanner.spec": spec_text})
    onnx.save(model, str(path))
    return path


def check_scan(scanner, folder: Path, written: list[Path], hang_seconds: float) -> dict:
    """Scan ``folder`` and count the outcome; never raises."""
    from scanner.errors import ScannerError

    outcome: dict = {}

    def run():
        try:
            outcome["result"] = scanner.scan([folder])
        except ScannerError as exc:
            outcome["scanner_error"] = str(exc)
        except Exception as exc:  # noqa: BLE001 - this is what the fuzzer looks for
            outcome["crash"] = f"{type(exc).__name__}: {exc}"

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(hang_seconds)
    counts = {"tried": len(written), "scored": 0, "failed": 0, "dropped": 0, "crashes": 0, "hangs": 0,
              "scanner_errors": 0}
    if worker.is_alive():
        counts["hangs"] = 1
        return counts
    if "crash" in outcome:
        counts["crashes"], counts["crash"] = 1, outcome["crash"]
        return counts
    if "scanner_error" in outcome:
        counts["scanner_errors"] = 1
        return counts
    result = outcome["result"]
    names = set(result.inputs.names(np.arange(result.n_found)))
    failed_files = {result.inputs.name(i).split("[")[0].split(":")[0] for i, _ in result.failures}
    scored_files = {result.inputs.name(int(i)).split("[")[0].split(":")[0] for i in result.indices}
    counts["scored"] = len(scored_files - failed_files)
    counts["failed"] = len(failed_files)
    listed = {n.split("[")[0].split(":")[0] for n in names}
    counts["dropped"] = sum(1 for p in written if str(p) not in listed) + (result.n_found - result.n_scored - len(result.failures))
    return counts


def setup_cli(work: Path, model: Path, seed: int) -> tuple[dict, Path, int]:
    """A calibration of ``model`` (every detector, 400 clean images) and a folder of 6 images."""
    from PIL import Image

    from bench.fuzz_files import clean_images
    from scanner.calibrating import calibrate

    rng = np.random.default_rng(seed + 1)
    cal, _ = calibrate(model, clean_images(rng, 400), device="cpu", detector_params={"strip": {"n_blends": 4}})
    images = work / "images"
    images.mkdir()
    for i, img in enumerate(clean_images(rng, 6)):
        Image.fromarray(np.rint(img * 255).astype(np.uint8)).save(images / f"{i}.png")
    return json.loads(json.dumps(cal.to_dict())), images, 6


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--batch", type=int, default=40, help="files per scan")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--hang-seconds", type=float, default=60.0, help="a library scan of one batch that runs longer hangs")
    ap.add_argument("--cli-hang-seconds", type=float, default=180.0,
                    help="a scanner process that runs longer hangs (one takes about 10 s on a busy 2-core machine)")
    ap.add_argument("--no-cli", action="store_true", help="only the first half (files to scan)")
    ap.add_argument("--out", type=Path, default=None, help="write the totals as JSON here")
    args = ap.parse_args(argv)
    import random

    from bench.fuzz_files import cli_case
    from scanner import Scanner

    rng = np.random.default_rng(args.seed)
    rnd = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="scanner-fuzz-"))
    totals = {"tried": 0, "scored": 0, "failed": 0, "dropped": 0, "crashes": 0, "hangs": 0, "scanner_errors": 0, "scans": 0}
    cli = {"cases": 0, "by_kind": {}, "exit_codes": {}, "problems": {}, "seconds": 0.0}
    examples, cli_examples, refused = [], [], {}
    started = time.time()
    try:
        model = tiny_model(work / "model.onnx")
        scanner = Scanner(model, device="cpu")
        if not args.no_cli:
            calibration, images, n_images = setup_cli(work, model, args.seed)
        deadline = time.monotonic() + args.minutes * 60

        def cli_half() -> None:  # one scanner process at a time, beside the library scans below
            while time.monotonic() < deadline:
                case_dir = work / f"case{cli['cases']:05d}"
                record = cli_case(rnd, case_dir, model, calibration, images, n_images, args.cli_hang_seconds,
                                  lambda path, text: tiny_model(path, text))
                shutil.rmtree(case_dir, ignore_errors=True)
                cli["cases"] += 1
                cli["seconds"] += record["seconds"]
                cli["by_kind"][record["kind"]] = cli["by_kind"].get(record["kind"], 0) + 1
                rc = str(record["rc"])
                cli["exit_codes"][rc] = cli["exit_codes"].get(rc, 0) + 1
                if record.get("mutation"):
                    done = refused.setdefault(f"{record['kind']} {record['mutation']}", [0, 0])
                    done[0 if record["rc"] == 2 else 1] += 1
                for problem in record["problems"]:
                    cli["problems"][problem] = cli["problems"].get(problem, 0) + 1
                if record["problems"] and len(cli_examples) < 40:
                    cli_examples.append(record)

        cli_thread = None if args.no_cli else threading.Thread(target=cli_half, daemon=True)
        if cli_thread is not None:
            cli_thread.start()
        while time.monotonic() < deadline:
            folder = work / f"scan{totals['scans']:05d}"
            folder.mkdir()
            written = write_batch(folder, rng, args.batch)
            counts = check_scan(scanner, folder, written, args.hang_seconds)
            if counts.pop("crash", None) or counts["hangs"] or counts["dropped"]:
                examples.append({"scan": totals["scans"], **counts})
                shutil.copytree(folder, work.parent / f"{work.name}-keep{totals['scans']}")
            for key in counts:
                totals[key] += counts[key]
            totals["scans"] += 1
            shutil.rmtree(folder)
            if counts["hangs"]:
                break  # a hung thread keeps running; stop here and report
        if cli_thread is not None:
            cli_thread.join(args.cli_hang_seconds + 60)  # the case in flight
    finally:
        shutil.rmtree(work, ignore_errors=True)
    cli["seconds"] = round(cli["seconds"], 1)
    cli["refused_accepted_by_mutation"] = {k: {"refused (exit 2)": v[0], "accepted (exit 0/1)": v[1]}
                                           for k, v in sorted(refused.items())}
    report = {"command": "python -m bench.fuzz " + " ".join(argv if argv is not None else sys.argv[1:]),
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)), "minutes": args.minutes,
              "wall_s": round(time.time() - started, 1), "seed": args.seed, **totals,
              "problems": examples[:20], "cli": cli, "cli_problems": cli_examples}
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    bad = totals["crashes"] or totals["hangs"] or totals["dropped"] or cli["problems"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
