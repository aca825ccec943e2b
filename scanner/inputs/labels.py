"""True labels of inputs, for the paper's protocol and for ``scanner probe``: from a labels file
(``input,label`` lines) or from ImageFolder-style subfolder names."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import InputError


def read_labels_file(path: str | Path) -> dict[str, int]:
    """A CSV/TSV/space-separated file of ``input,label`` lines (a header line is allowed)."""
    labels: dict[str, int] = {}
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise InputError(f"cannot read labels file {path}: {exc.strerror or exc}") from None
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        row = next(csv.reader([line.replace("\t", ",")]))
        if len(row) == 1:
            row = line.split()
        if len(row) < 2:
            raise InputError(f"{path}:{lineno}: expected 'input,label', got {line!r}")
        try:
            labels[row[0].strip()] = int(row[1])
        except ValueError:
            if lineno == 1:
                continue  # header
            raise InputError(f"{path}:{lineno}: label {row[1]!r} is not an integer") from None
    return labels


def folder_labels(names: list[str], class_names: Sequence[str] | None, num_classes: int | None) -> tuple[np.ndarray | None, str]:
    """True labels from ImageFolder-style parent folder names, or None with the reason.

    A folder name maps to a label by the model's class names, else by being an integer, else by
    the ImageFolder convention (sorted folder names) when there are exactly ``num_classes``.
    """
    folders = [Path(n.split(":")[0].split("[")[0]).parent.name for n in names]
    distinct = sorted(set(folders))
    if len(distinct) < 2:
        return None, "no class subfolders (one folder)"
    if class_names:
        lookup = {name: i for i, name in enumerate(class_names)}
        if all(f in lookup for f in distinct):
            return np.array([lookup[f] for f in folders]), "subfolder names matched to the model's class names"
    if all(f.isdigit() for f in distinct):
        return np.array([int(f) for f in folders]), "integer subfolder names"
    if num_classes is not None and len(distinct) == num_classes:
        lookup = {name: i for i, name in enumerate(distinct)}
        return np.array([lookup[f] for f in folders]), "sorted subfolder names (ImageFolder convention)"
    return None, f"subfolder names ({', '.join(distinct[:5])}...) do not map to class indices"


def true_labels(names: list[str], class_names, num_classes: int | None,
                labels_file: str | Path | None) -> tuple[np.ndarray | None, str]:
    """True labels of the inputs ``names``: from ``labels_file`` if given (every input must be
    listed), else from ImageFolder subfolder names (:func:`folder_labels`)."""
    if labels_file is not None:
        table = read_labels_file(labels_file)
        missing = [n for n in names if n not in table]
        if missing:
            raise InputError(f"labels file {labels_file} has no label for {len(missing)} input(s), e.g. {missing[0]}")
        return np.array([table[n] for n in names]), f"labels file {labels_file}"
    return folder_labels(names, class_names, num_classes)
