"""Region transplant: does a piece of the input carry its label onto other images?

A local trigger (a patch, a sticker, a corner square) works wherever it is pasted: that is what
makes it a trigger. A genuine object part rarely does: a ninth of an airplane pasted onto a photo
of a frog leaves a frog. The detector cuts the input into a ``grid x grid`` array of regions
and pastes each region, in place, onto each of a few held clean images (``n_backgrounds``); the
model's answer to each such query says whether the region alone moves a clean image to the
input's own class ``y``. The score is the strongest region's weakest pull::

    transplant(x) = max_r  min_m  log p(y | background_m with region r of x)

(``min`` over backgrounds: a background that already shows class ``y`` pulls every input of
class ``y`` there, and must not make the region look strong; ``max`` over regions: one region
holding a trigger is enough). Higher is more suspicious. For a label-only model the score is 1
when some region moves every background to ``y`` and 0 otherwise (not on the same scale).

No gradients and no second round of queries: the regions are fixed, so the queries are built
before the model answers (occlusion-guided variants such as SentiNet first search for the
region; a fixed grid spends ``grid^2 x n_backgrounds`` queries instead of a search). Global
triggers (a blend over the whole image, a warp) are spread over every region and move nothing
on their own: this detector is aimed at local triggers, the others at the rest.

Cost: 1 + grid^2 x n_backgrounds queries per input (19 with the default 3 x 3 grid and 2 backgrounds).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..inputs.decode import BYTE_MAX
from ..model.preprocess import Preprocessor
from .base import MAX_PREVIEWS, Detector, DetectorScores, Preview, unit_queries
from .held import held_for, take
from .profile import PROB_FLOOR

DEFAULT_GRID = 3
DEFAULT_BACKGROUNDS = 2
MAX_GRID = 8
MAX_BACKGROUNDS = 16
_NOT_FITTED = ("the transplant detector holds no clean images: calibrate it (scanner calibrate) or call "
               "fit(clean_images) first")


def regions(height: int, width: int, grid: int) -> list[tuple[slice, slice]]:
    """The ``grid x grid`` regions (row-major), edges split as evenly as integers allow."""
    rows = np.linspace(0, height, grid + 1).round().astype(int)
    cols = np.linspace(0, width, grid + 1).round().astype(int)
    return [(slice(rows[i], rows[i + 1]), slice(cols[j], cols[j + 1])) for i in range(grid) for j in range(grid)]


def transplant_score(labels: np.ndarray, probs: np.ndarray | None, b: int, n_regions: int, n_backgrounds: int) -> np.ndarray:
    """The score of ``b`` inputs from the query-major outputs (query 0 the input, then region-major,
    background-minor: query ``1 + r * M + m``)."""
    own = np.asarray(labels[:b], dtype=np.int64)
    shape = (n_regions, n_backgrounds, b)
    if probs is not None:
        p = np.asarray(probs, dtype=np.float64)[b:].reshape(*shape, probs.shape[-1])
        pulled = np.log(np.maximum(p[:, :, np.arange(b), own], PROB_FLOOR))  # (R, M, b), finite like the profile's
        return pulled.min(axis=1).max(axis=0)
    moved = (np.asarray(labels[b:]).reshape(shape) == own).all(axis=1)  # (R, b)
    return moved.any(axis=0).astype(np.float64)


class Transplant(Detector):
    """Region transplant (module doc): one score, ``transplant`` (higher is more suspicious).

    Parameters
    ----------
    grid : int, default=3
        The input is cut into grid x grid regions (1 to 8).
    n_backgrounds : int, default=2
        Held clean images each region is pasted onto (1 to 16); taken by :meth:`fit`.
    seed : int, default=0
        Seeds the choice of backgrounds among the clean images given to :meth:`fit`.
    """

    name = "transplant"
    score_names = ("transplant",)
    default_threshold = -0.7  # data-free: a region that alone makes clean images about half class y
    clean_images_needed = DEFAULT_BACKGROUNDS

    def __init__(self, grid: int = DEFAULT_GRID, n_backgrounds: int = DEFAULT_BACKGROUNDS, seed: int = 0) -> None:
        for value, label, top in ((grid, "grid", MAX_GRID), (n_backgrounds, "n_backgrounds", MAX_BACKGROUNDS)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or not 1 <= value <= top:
                raise ValueError(f"{label}: expected an integer from 1 to {top}, got {value!r}")
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
            raise ValueError(f"seed: expected a non-negative integer, got {seed!r}")
        self.grid, self.n_backgrounds, self.seed = int(grid), int(n_backgrounds), int(seed)
        self.clean_images_needed = self.n_backgrounds
        self._held: np.ndarray | None = None

    def fit(self, clean_images: Any) -> None:
        """Keep ``n_backgrounds`` of ``clean_images`` ((n, H, W, C), uint8 or unit-range float32):
        all of them in their order when exactly that many are given, else a seeded choice."""
        self._held = take(clean_images, self.n_backgrounds, self.seed,
                          f"the transplant detector with {self.n_backgrounds} backgrounds", pool_order=True)

    @property
    def held_images(self) -> np.ndarray | None:
        """The backgrounds (M, H, W, C), float32 in [0, 1], read-only; None before :meth:`fit`."""
        return self._held

    @property
    def queries_per_input(self) -> int:
        return 1 + self.grid * self.grid * self.n_backgrounds

    def build_queries(self, images: np.ndarray, out: np.ndarray, pre: Preprocessor) -> None:
        held = held_for(self._held, images, "the transplant detector", _NOT_FITTED)
        b = len(images)
        unit = images / np.float32(BYTE_MAX) if images.dtype == np.uint8 else images
        out[:b] = pre.to_layout(unit)
        pre.normalize_(out[:b])
        query = np.empty_like(unit, dtype=np.float32)
        at = 1
        for rows, cols in regions(held.shape[1], held.shape[2], self.grid):
            for m in range(self.n_backgrounds):
                query[:] = held[m]
                query[:, rows, cols] = unit[:, rows, cols]
                seg = out[at * b:(at + 1) * b]
                seg[:] = pre.to_layout(query)
                pre.normalize_(seg)
                at += 1

    def score(self, labels: np.ndarray, probs: np.ndarray | None, b: int) -> DetectorScores:
        value = transplant_score(labels, probs, b, self.grid * self.grid, self.n_backgrounds)
        return DetectorScores(np.asarray(labels[:b]), np.zeros((b, 0), np.int64), {"transplant": value})

    def preview(self, image: np.ndarray) -> list[Preview]:
        """Each region of ``image`` pasted onto the first background (row-major; at most
        :data:`MAX_PREVIEWS`), built by :meth:`build_queries` of a detector holding only that
        background; none before :meth:`fit`."""
        if self._held is None:
            return []
        part = Transplant(grid=self.grid, n_backgrounds=1, seed=self.seed)
        part._held = self._held[:1]
        queries = unit_queries(part, image)
        cells = [(i, j) for i in range(self.grid) for j in range(self.grid)][:MAX_PREVIEWS]
        return [Preview(f"region {i + 1},{j + 1}", queries[1 + k]) for k, (i, j) in enumerate(cells)]

    def settings(self) -> dict[str, Any]:
        return {"grid": self.grid, "n_backgrounds": self.n_backgrounds, "seed": self.seed}

    def describe(self) -> str:
        return f"{self.grid}x{self.grid} regions onto {self.n_backgrounds} clean image{'s' if self.n_backgrounds != 1 else ''}"
