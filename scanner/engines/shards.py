"""Per-input results written as shards (``scanner scan --engine ray --output-dir DIR``), and the
report that goes with them: the summary, verdict and gate without the per-input lists.

A shard holds one chunk of inputs (the local loop's batch): its scored inputs, then its failed
ones, in input order. It is named by the chunk's first input index, so the shards sort into input
order and a retried chunk overwrites its own shard (written to a temporary name, then renamed).
Records are made by the local code (:meth:`Scanner.result` and :meth:`ScanResult.records`):
a JSONL shard's lines are the local ``--format jsonl`` lines of those inputs; a Parquet shard has
the CSV report's columns, typed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ..core import Scanner
    from ..decide.verdict import Gate, Summary
    from ..results import ScanResult


class _ChunkNames:
    """The display names of one chunk's inputs, shaped like the part of InputSet that
    ScanResult reads (``names``, ``name``, ``len``)."""

    def __init__(self, names: list[str]) -> None:
        self._names = names

    def __len__(self) -> int:
        return len(self._names)

    def name(self, i: int) -> str:
        return self._names[i]

    def names(self, indices):
        return (self._names[i] for i in np.asarray(indices).tolist())


def chunk_result(scanner: "Scanner", start: int, names: list[str], decoded, scores) -> "ScanResult":
    """The local result object for one chunk (indices relative to ``start``)."""
    tally = scanner.tally(len(names))
    if scores is not None:
        tally.add(np.asarray(decoded.indices) - start, scores)
    tally.fail([(i - start, reason) for i, reason in decoded.failures])
    return scanner.result(_ChunkNames(names), tally, 0.0)


def write_shard(scanner: "Scanner", folder: Path, fmt: str, start: int, names: list[str], decoded, scores) -> Path:
    result = chunk_result(scanner, start, names, decoded, scores)
    path = folder / f"part-{start:012d}.{fmt}"
    tmp = folder / f".{path.name}.{os.getpid()}.tmp"
    if fmt == "jsonl":
        with open(tmp, "w") as fh:
            for record in result.records():
                fh.write(json.dumps({"type": "result", **record}) + "\n")
            for failure in result.failure_records():
                fh.write(json.dumps({"type": "failure", **failure}) + "\n")
    else:
        import pyarrow.parquet as pq

        pq.write_table(_table(result), tmp)
    os.replace(tmp, path)
    return path


def _table(result: "ScanResult"):
    """The CSV report's columns (input, status, label, class, every score, flag, labels per
    query, reason) as one typed Arrow table; failed inputs have nulls where they have no value."""
    import pyarrow as pa

    queries = list(result.settings.query_names)
    key = result.scores.query_labels_key
    scores = list(result.score_names)
    rows: dict[str, list] = {c: [] for c in ["input", "status", "predicted_label", "predicted_class", *scores,
                                             "flagged", *(f"label_x{q}" for q in queries), "reason"]}
    for r in result.records():
        values = {"input": r["input"], "status": "scored", "predicted_label": r["predicted_label"],
                  "predicted_class": r["predicted_class"], "flagged": r["flagged"], "reason": None,
                  **{s: r.get(s) for s in scores}, **{f"label_x{q}": v for q, v in zip(queries, r[key].values())}}
        for c in rows:
            rows[c].append(values[c])
    for f in result.failure_records():
        for c in rows:
            rows[c].append(f["input"] if c == "input" else "failed" if c == "status" else
                           f["reason"] if c == "reason" else None)
    types = {"input": pa.string(), "status": pa.string(), "predicted_label": pa.int64(),
             "predicted_class": pa.string(), "flagged": pa.bool_(), "reason": pa.string(),
             **{s: pa.float64() for s in scores}, **{f"label_x{q}": pa.int64() for q in queries}}
    return pa.table({c: pa.array(v, type=types[c]) for c, v in rows.items()})


def read_shards(folder: str | Path) -> list[dict[str, Any]]:
    """Every row of a results folder, in input order (Parquet rows as dicts, JSONL lines parsed)."""
    folder = Path(folder)
    rows: list[dict[str, Any]] = []
    for path in sorted(folder.glob("part-*")):
        if path.suffix == ".jsonl":
            rows.extend(json.loads(line) for line in path.read_text().splitlines() if line)
        elif path.suffix == ".parquet":
            import pyarrow.parquet as pq

            rows.extend(pq.read_table(path).to_pylist())
    return rows


def render_summary(result: "ScanResult", summary: "Summary", gate: "Gate | None", fmt, stream: IO[str],
                   output_dir: Path) -> None:
    """The report of a scan whose per-input results went to ``output_dir``: everything but the
    per-input lists (table: the summary block; json: the header; jsonl: the summary line)."""
    from ..report.render import Format, report_header, summary_lines

    where = {"results_dir": str(output_dir)}
    if fmt is Format.json:
        stream.write(json.dumps({**report_header(result, summary, gate), **where}, indent=2) + "\n")
    elif fmt is Format.jsonl:
        stream.write(json.dumps({"type": "summary", **report_header(result, summary, gate), **where}) + "\n")
    elif fmt is Format.csv:
        stream.write("field,value\n" + "".join(f"{k},{v}\n" for k, v in (
            ("inputs_found", summary.inputs_found), ("scored", summary.scored), ("failed", summary.failed),
            ("flagged", summary.flagged), ("results_dir", output_dir))))
    else:
        lines = summary_lines(result.settings, summary, gate)
        stream.write("\n".join(lines + [f"per-input results: {output_dir}"]) + "\n")
