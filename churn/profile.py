"""A bounded-memory profile of scored traffic: per-feature and prediction histograms.

The service cannot keep the rows it scores (privacy, memory), yet drift needs their
distribution. So it keeps counts on a grid that does not depend on any data:

* categorical features and flags: one count per category of `churn.schema` (+ "other");
* integers with bounds (tenure 0..72): one count per integer value;
* unbounded numbers (charges): a logarithmic grid with 1% relative width per bin (the idea of
  DDSketch): ~1,400 bins cover 1 to 1,000,000 with a quantile error below 1%, whatever the data;
* the prediction P(churn): 100 equal bins on [0, 1];

plus an underflow, an overflow and a missing-value count each. The whole profile is a few
thousand integers, however many rows were scored, and two profiles on the grid add up.

Drift against a profile (`churn.drift.profile_report`) turns the reference sample into a
profile on the same grid, then merges adjacent fine bins into ~`bins` groups of equal
reference mass, which is what PSI on reference quantiles does with raw data.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from churn import schema
from churn.schema import Kind

FORMAT = 1
_LOG_RATIO = 1.01
_LOG_TOP = 1e6
PREDICTION = "prediction"


@dataclass(frozen=True)
class Grid:
    """How one column is counted: `edges` for numbers, `labels` for categories."""

    name: str
    kind: str  # "numeric" | "categorical"
    edges: tuple[float, ...] = ()
    labels: tuple[str, ...] = ()
    flag: bool = False  # categorical labels "0"/"1" counted from integer values
    integer: bool = False  # numeric bins of one integer each

    @property
    def size(self) -> int:
        # numeric: below edges[0], len(edges)-1 intervals, at/above edges[-1], missing
        # categorical: each label, then "other"
        return len(self.edges) + 2 if self.kind == "numeric" else len(self.labels) + 1

    def bin_labels(self) -> list[str]:
        if self.kind == "categorical":
            return [*self.labels, "other"]
        e = self.edges
        inner = [f"[{lo:.4g}, {hi:.4g})" for lo, hi in itertools.pairwise(e)]
        return [f"< {e[0]:.4g}", *inner, f">= {e[-1]:.4g}", "missing"]

    def codes(self, values: Any) -> np.ndarray:
        """Bin index of each value (vectorised; a dict lookup for a handful of strings)."""
        if self.kind == "categorical":
            other = len(self.labels)
            if self.flag:
                x = np.asarray(values)
                return np.where(x == 0, 0, np.where(x == 1, 1, other)).astype(np.int64)
            if len(values) <= 256:
                index = self._index
                return np.fromiter(
                    (index.get(v, other) for v in values), dtype=np.int64, count=len(values)
                )
            codes = np.asarray(pd.Categorical(values, self.labels).codes, dtype=np.int64)
            return np.where(codes < 0, other, codes)
        x = np.asarray(values, dtype=np.float64)
        out = np.searchsorted(self._edges, x, side="right")
        return np.where(np.isnan(x), self.size - 1, out)

    def counts(self, values: Any) -> np.ndarray:
        """How many of `values` fall in each bin: `codes`, counted. Category strings given as a
        plain sequence (the service's validated columns) are counted label by label with
        `tuple.count`, a C loop that compares pointers first: the service's decoder hands out
        the schema's own string objects, so this is ~10x faster than a code per value."""
        if self.kind == "categorical" and isinstance(values, (tuple, list)):
            # A flag's labels "0"/"1" count the integers 0 and 1 (as `codes` does).
            found = [values.count(v) for v in ((0, 1) if self.flag else self.labels)]
            return np.array([*found, len(values) - sum(found)], dtype=np.int64)
        return np.bincount(self.codes(values), minlength=self.size)

    @property
    def _index(self) -> dict[str, int]:
        return self._lookup[0]

    @property
    def _edges(self) -> np.ndarray:
        return self._lookup[1]

    @cached_property
    def _lookup(self) -> tuple[dict[str, int], np.ndarray]:
        return {v: i for i, v in enumerate(self.labels)}, np.asarray(self.edges)

    def midpoints(self) -> np.ndarray:
        """A representative value per numeric bin (missing excluded), for approximate means."""
        e = np.asarray(self.edges)
        inner = e[:-1] if self.integer else (e[:-1] + e[1:]) / 2
        return np.concatenate([[e[0]], inner, [e[-1]]])


def _grid(column: schema.Column) -> Grid:
    if column.kind is Kind.CATEGORY:
        return Grid(column.name, "categorical", labels=column.categories)
    if column.kind is Kind.FLAG:
        return Grid(column.name, "categorical", labels=("0", "1"), flag=True)
    if column.kind is Kind.INTEGER and column.minimum is not None and column.maximum is not None:
        lo, hi = int(column.minimum), int(column.maximum)
        edges = tuple(float(v) for v in range(lo, hi + 2))
        return Grid(column.name, "numeric", edges=edges, integer=True)
    n = int(np.ceil(np.log(_LOG_TOP) / np.log(_LOG_RATIO)))
    edges = (0.0, *(float(v) for v in np.geomspace(1.0, _LOG_TOP, n + 1)))
    return Grid(column.name, "numeric", edges=edges)


GRIDS: dict[str, Grid] = {c.name: _grid(c) for c in schema.FEATURES}
PREDICTION_GRID = Grid(
    PREDICTION, "numeric", edges=tuple(float(v) for v in np.linspace(0.0, 1.0, 101))
)


@dataclass
class Profile:
    """Counts per bin for every feature and for the prediction; `rows` rows seen."""

    rows: int = 0
    counts: dict[str, np.ndarray] = field(default_factory=dict)
    model_version: int | None = None
    since: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    def __post_init__(self) -> None:
        for grid in (*GRIDS.values(), PREDICTION_GRID):
            if grid.name not in self.counts:
                self.counts[grid.name] = np.zeros(grid.size, dtype=np.int64)

    def add(
        self, frame: pd.DataFrame | Mapping[str, Any], proba: Iterable[float] | None = None
    ) -> None:
        """Count the rows of `frame` (the model's input columns, as a frame or as one sequence
        per column name) and their predictions."""
        n = len(frame) if isinstance(frame, pd.DataFrame) else len(frame[schema.FEATURES[0].name])
        if n == 0:
            return
        for name, grid in GRIDS.items():
            self.counts[name] += grid.counts(frame[name])
        if proba is not None:
            p = np.asarray(list(proba) if not isinstance(proba, np.ndarray) else proba)
            self.counts[PREDICTION] += np.bincount(
                PREDICTION_GRID.codes(p), minlength=PREDICTION_GRID.size
            )
        self.rows += n

    @property
    def predictions(self) -> int:
        return int(self.counts[PREDICTION].sum())

    def to_json(self) -> dict[str, Any]:
        def one(grid: Grid) -> dict[str, Any]:
            entry: dict[str, Any] = {"kind": grid.kind, "counts": self.counts[grid.name].tolist()}
            if grid.kind == "numeric":
                entry["edges"] = list(grid.edges)
            else:
                entry["labels"] = list(grid.labels)
            return entry

        return {
            "format": FORMAT,
            "rows": self.rows,
            "since": self.since,
            "model_version": self.model_version,
            "features": {name: one(grid) for name, grid in GRIDS.items()},
            PREDICTION: one(PREDICTION_GRID),
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Profile:
        """Read what `to_json` wrote; ValueError (naming what is wrong) for anything else."""
        if not isinstance(doc, Mapping) or doc.get("format") != FORMAT:
            raise ValueError(f"not a churn traffic profile (format {FORMAT})")
        features = doc.get("features")
        if not isinstance(features, Mapping):
            raise ValueError("profile has no 'features'")
        counts: dict[str, np.ndarray] = {}
        for grid in (*GRIDS.values(), PREDICTION_GRID):
            entry = doc.get(PREDICTION) if grid is PREDICTION_GRID else features.get(grid.name)
            if not isinstance(entry, Mapping):
                raise ValueError(f"profile has no counts for '{grid.name}'")
            key = "edges" if grid.kind == "numeric" else "labels"
            if tuple(entry.get(key, ())) != (grid.edges if key == "edges" else grid.labels):
                raise ValueError(
                    f"profile of '{grid.name}' was counted on another grid (another version "
                    "of churn-mlops?)"
                )
            values = np.asarray(entry.get("counts", []), dtype=np.int64)
            if values.shape != (grid.size,) or (values < 0).any():
                raise ValueError(f"profile counts of '{grid.name}' are malformed")
            counts[grid.name] = values
        rows = doc.get("rows")
        if not isinstance(rows, int) or rows < 0:
            raise ValueError("profile 'rows' must be a count")
        version = doc.get("model_version")
        return cls(
            rows=rows,
            counts=counts,
            model_version=int(version) if isinstance(version, int) else None,
            since=str(doc.get("since", "")),
        )


def from_frame(frame: pd.DataFrame, proba: Iterable[float] | None = None) -> Profile:
    profile = Profile()
    profile.add(frame, proba)
    return profile
