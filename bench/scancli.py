"""Run the scanner through its command line and read its JSON report (schema version 1).

The benchmarks drive ``python -m scanner.cli`` in a subprocess rather than importing the
scanner's Python API, so they depend only on the CLI and the report's documented fields
(``results[*].{predicted_label, spc, nspc, prob_consistency, flagged}``,
``summary.verdict.suspected_targets[*].label``, ``summary.flagged_per_class``).

Reports are cached in ``bench/.work/scans/`` under a key made of the model's and the inputs'
sha256 and the arguments, so a rerun over an unchanged zoo only reads JSON.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from .cifar import REPO_ROOT, WORK_DIR

CACHE = WORK_DIR / "scans"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


_HASHES: dict[tuple[str, float, int], str] = {}


def _file_hash(path: Path) -> str:
    st = path.stat()
    key = (str(path.resolve()), st.st_mtime, st.st_size)
    if key not in _HASHES:
        _HASHES[key] = sha256_file(path)
    return _HASHES[key]


class ScanError(RuntimeError):
    pass


def run(command: str, model: Path, inputs: list[Path], args: list[str], *, cache: bool = True,
        extra_key: str = "") -> tuple[dict, Path]:
    """``python -m scanner.cli COMMAND MODEL INPUTS... ARGS``: its parsed JSON output and the file.

    ``scan`` is run with ``-f json -o FILE``; ``calibrate`` with ``-o FILE`` (the calibration).
    Arguments that are files (``--calibration X``) are hashed into the cache key as well.
    """
    parts = [command, _file_hash(model)] + [_file_hash(p) for p in inputs] + list(args) + [extra_key]
    parts += [_file_hash(Path(a)) for a in args if os.path.isfile(a)]
    key = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:24]
    out = CACHE / f"{command}-{key}.json"
    if cache and out.exists():
        return json.loads(out.read_text()), out
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.stem + ".part.json")
    cmd = [sys.executable, "-m", "scanner", "-q", command, str(model), *map(str, inputs), *args, "-o", str(tmp)]
    if command == "scan":
        cmd += ["-f", "json"]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True)
    if proc.returncode not in (0, 1):  # 1: gate failed, still a report
        raise ScanError(f"{' '.join(cmd[2:])}: exit {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    doc = json.loads(tmp.read_text())
    tmp.replace(out)
    return doc, out


def columns(report: dict) -> dict[str, np.ndarray]:
    """Per-input arrays from a scan report: labels, flagged, undecidable (bool), and every score
    the report holds (``spc``, ``nspc``, ``prob_consistency``, ``strip``, ``teco``, ``q_*``; NaN
    where absent)."""
    res = report["results"]
    if report.get("failures"):
        raise ScanError(f"{len(report['failures'])} inputs failed, e.g. {report['failures'][0]}")
    skip = {"input", "predicted_label", "predicted_class", "flagged", "undecidable"}
    names = [k for k, v in (res[0].items() if res else []) if k not in skip and not isinstance(v, dict)]
    out = {"labels": np.array([r["predicted_label"] for r in res], dtype=np.int64),
           "flagged": np.array([bool(r["flagged"]) for r in res]),
           "undecidable": np.array([bool(r.get("undecidable")) for r in res])}
    for name in names:
        out[name] = np.array([np.nan if r.get(name) is None else r[name] for r in res], dtype=np.float64)
    for name in ("spc", "nspc", "prob_consistency"):
        out.setdefault(name, np.full(len(res), np.nan))
    return out
