"""The command-line half of ``python -m bench.fuzz``: calibration files, spec files and model
metadata mutated leaf by leaf, and special files as the report's destination (``-o``), each case
one ``scanner scan`` in its own process.

A case is judged by what a user would see:
- exit status 0, 1 or 2 (3 is a bug in the scanner; anything else, such as a signal, a crash);
- no ``Traceback`` on stderr; exit 2 ends with one ``Error:`` line;
- no hang: the process ends within ``--hang-seconds``;
- no silent drop: a scan that reports lists every input (found = scored + failed, all 6 images);
- a calibration or spec with NaN or infinity put into it is never accepted (exit 0/1);
- a special ``-o`` (FIFO, a /dev/null device node, a directory, a symbolic link to either) is
  refused with exit 2 and left as it was; a symbolic link to a regular file is followed (the
  link stays, its target holds the report).
"""

from __future__ import annotations

import json
import os
import random
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

# what a leaf is replaced with
NONFINITE = ("NaN", "Infinity", "-Infinity")
MUTATIONS = ("nan", "inf", "-inf", "string", "list", "dict", "bool", "null", "negative", "zero", "huge_float",
             "huge_int", "digits_5001", "long_string", "deep", "float_for_int", "delete")


def leaves(doc, path=()):
    """Paths to every scalar (and every empty container) of a JSON document, in order."""
    if isinstance(doc, dict) and doc:
        for key, value in doc.items():
            yield from leaves(value, path + (key,))
    elif isinstance(doc, list) and doc:
        for i, value in enumerate(doc):
            yield from leaves(value, path + (i,))
    else:
        yield path


MARK = "__FUZZ_LEAF__"


def mutated_text(doc, path, kind: str, rnd: random.Random) -> str:
    """The JSON text of ``doc`` with the leaf at ``path`` replaced as ``kind`` says (texts JSON
    cannot hold, NaN or nesting 100,000 deep, are written in place of a marker)."""
    doc = json.loads(json.dumps(doc))
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    if not path:
        return {"deep": "[" * 100_000 + "]" * 100_000, "null": "null", "string": '"x"'}.get(kind, "[]")
    last = path[-1]
    literal = None
    if kind == "delete":
        del parent[last]
        return json.dumps(doc)
    value = {"string": "x", "list": [1, 2], "dict": {"a": 1}, "bool": True, "null": None, "negative": -1,
             "zero": 0, "huge_float": 1e308, "huge_int": 10**30, "float_for_int": 2.5,
             "long_string": "y" * (1 << 20)}.get(kind, MARK)
    if value == MARK:
        literal = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity", "digits_5001": "9" * 5001,
                   "deep": "[" * 100_000 + "]" * 100_000}[kind]
    parent[last] = value
    text = json.dumps(doc)
    return text.replace(json.dumps(MARK), literal, 1) if literal is not None else text


def base_spec(num_classes: int = 10) -> dict:
    return {"schema_version": 1, "layout": "nchw", "height": 8, "width": 8, "channels": 3, "pixel_range": "unit",
            "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0], "bgr": False,
            "class_names": [f"c{k}" for k in range(num_classes)], "input_name": "input", "output_name": "logits"}


def special_target(work: Path, kind: str) -> tuple[Path, str]:
    """A ``-o`` destination of ``kind`` in ``work`` and what must happen: "refused" or "followed"."""
    work.mkdir(parents=True, exist_ok=True)
    path = work / f"out-{kind}"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "devnull":
        # the /dev/null device (1, 3) as a node of our own: a regression replaces this one, never the machine's
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    elif kind == "directory":
        path.mkdir()
    elif kind in ("link-to-file", "link-to-fifo", "link-to-directory", "dangling-link"):
        target = work / f"target-{kind}"
        if kind == "link-to-file":
            target.write_text("old report\n")
        elif kind == "link-to-fifo":
            os.mkfifo(target)
        elif kind == "link-to-directory":
            target.mkdir()
        os.symlink(target, path)
    return path, ("followed" if kind in ("link-to-file", "dangling-link") else "refused")


SPECIALS = ("fifo", "devnull", "directory", "link-to-file", "link-to-fifo", "link-to-directory", "dangling-link")


def _node(path: Path) -> str:
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return "missing"
    for test, name in ((stat.S_ISLNK, "link"), (stat.S_ISFIFO, "fifo"), (stat.S_ISCHR, "chardev"),
                       (stat.S_ISDIR, "directory"), (stat.S_ISREG, "file")):
        if test(mode):
            return name
    return "other"


def run_case(args: list[str], hang_seconds: float) -> dict:
    """One ``scanner`` process; its exit status, stderr and whether it hung."""
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "scanner", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, errors="replace")
    try:
        out, err = proc.communicate(timeout=hang_seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        return {"hang": True, "rc": None, "stderr": err[-2000:], "stdout": "", "seconds": hang_seconds}
    return {"hang": False, "rc": proc.returncode, "stderr": err, "stdout": out,
            "seconds": round(time.monotonic() - started, 2)}


def judge(run: dict, images: int) -> list[str]:
    """Defects of one finished case (empty: none)."""
    problems = []
    if run["hang"]:
        return ["hang"]
    rc, err = run["rc"], run["stderr"]
    if "Traceback" in err:
        problems.append("traceback")
    if rc == 3:
        problems.append("exit 3")
    elif rc not in (0, 1, 2):
        problems.append(f"exit {rc}")
    if rc == 2:
        lines = [line for line in err.splitlines() if line.strip()]
        if not lines or not lines[-1].startswith("Error: "):
            problems.append("exit 2 without an Error: line")
    if rc in (0, 1):
        try:
            doc = json.loads(run["stdout"]) if run["stdout"].strip() else None
        except json.JSONDecodeError:
            doc = None
        if doc is not None:
            s = doc["summary"]
            if s["inputs_found"] != images or s["scored"] + s["failed"] != images:
                problems.append("silent drop")
    return problems


def cli_case(rnd: random.Random, work: Path, model: Path, calibration: dict, images_dir: Path, images: int,
             hang_seconds: float, make_model) -> dict:
    """One random command-line case; returns its record (kind, what was mutated, outcome, problems)."""
    work.mkdir(parents=True, exist_ok=True)
    kind = rnd.choice(("calibration", "calibration", "spec", "metadata", "output"))
    args = ["scan", str(model), str(images_dir), "-f", "json"]
    record: dict = {"kind": kind}
    if kind in ("calibration", "spec", "metadata"):
        doc = calibration if kind == "calibration" else base_spec()
        paths = list(leaves(doc))
        if kind == "calibration":  # the clean images are thousands of leaves: sample every part alike
            paths = [p for p in paths if not (p and p[0] == "clean_images" and rnd.random() < 0.999)]
        path = rnd.choice(paths)
        mutation = rnd.choice(MUTATIONS)
        text = mutated_text(doc, path, mutation, rnd)
        record.update(leaf="/".join(map(str, path)), mutation=mutation)
        if kind == "calibration":
            (work / "cal.json").write_text(text)
            args += ["--calibration", str(work / "cal.json")]
        elif kind == "spec":
            (work / "spec.json").write_text(text)
            args += ["--spec", str(work / "spec.json")]
        else:
            args[1] = str(make_model(work / "meta.onnx", text))
        run = run_case(args, hang_seconds)
        problems = judge(run, images)
        if mutation in ("nan", "inf", "-inf") and run["rc"] in (0, 1):
            problems.append("non-finite value accepted")
    else:
        target_kind = rnd.choice(SPECIALS)
        target, expected = special_target(work, target_kind)
        before = _node(target)
        which = rnd.choice(("-o", "--html"))
        args += [which, str(target)]
        record.update(target=target_kind, option=which)
        run = run_case(args, hang_seconds)
        problems = judge(run, images) if which == "--html" else [p for p in judge(run, images) if p != "silent drop"]
        after = _node(target)
        if expected == "refused":
            if run["rc"] != 2:
                problems.append(f"{target_kind} not refused (exit {run['rc']})")
            if after != before:
                problems.append(f"{target_kind} replaced ({before} -> {after})")
        else:
            link_target = Path(os.readlink(target)) if after == "link" else None
            if run["rc"] not in (0, 1) or after != "link" or link_target is None or _node(link_target) != "file":
                problems.append(f"{target_kind} not followed (exit {run['rc']}, {after})")
    record.update(rc=run["rc"], seconds=run["seconds"], problems=problems)
    if problems:
        record["stderr_tail"] = run["stderr"].strip().splitlines()[-3:]
    return record


def clean_images(rng: np.random.Generator, n: int) -> np.ndarray:
    """n 8x8 images of every brightness (the tiny model's classes follow the brightness)."""
    levels = rng.uniform(0.02, 0.98, n)
    noise = rng.normal(0, 0.03, (n, 8, 8, 3))
    return np.clip(levels[:, None, None, None] + noise, 0, 1).astype(np.float32)
