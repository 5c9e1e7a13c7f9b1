"""Fitting a FeatureSpace chunk by chunk: the same space as ``FeatureSpace.fit`` on the whole
table, from statistics that add up exactly (no sample).

What :meth:`~advsec.features.space.FeatureSpace.fit` learns, and how it accumulates here:

- per numeric feature, the minimum and maximum of the (clipped, transformed) values: the
  minimum of the chunks' minima (a NaN anywhere stays NaN, as ``np.min`` of the whole column);
- per categorical feature without fixed categories, the set of labels seen: the union;
- per feature with ``values = "observed"``, the set of values: the union;
- per continuous feature, the decimals: ``fit`` takes the fewest ``d`` in 0..9 for which every
  distinct value ``v`` satisfies ``round(v * 10**d) / 10**d == v``, stopping (no decimals) at the
  first ``d`` where the largest ``|v|`` times ``10**d`` reaches 2**52. That test is per value, so
  each chunk keeps, per ``d``, whether all its values pass, and the largest ``|v|``; the
  combination gives the same ``d``.

:class:`TrainingCheck` is ``FeatureSpace.check_training`` over chunks: it counts, per check of
``FeatureSpace.validate``, the records that break it and keeps the first one (its position in
the whole table, and the values of the features involved), then applies the whole-table rule
(shares for relations with ``holds_on``) and raises the same :class:`SchemaError`.

Shapes: chunks are raw tables (DataFrames with the schema's columns) of any number of rows;
rows are numbered by their position in the concatenated table, from 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from advsec.errors import DataError, SchemaError
from advsec.features.codec import MAX_DECIMALS, OTHER, forward, labels
from advsec.features.schema import Feature, FeatureKind, FeatureSchema
from advsec.features.space import FeatureSpace

__all__ = ["SpaceStats", "TrainingCheck", "fit_streaming"]


class SpaceStats:
    """The statistics ``FeatureSpace.fit`` needs, accumulated chunk by chunk.

    Args:
        schema: the raw feature schema.

    Attributes:
        rows: records seen so far.
    """

    def __init__(self, schema: FeatureSchema) -> None:
        self.schema = schema
        self.rows = 0
        self._lo: dict[str, float] = {}
        self._hi: dict[str, float] = {}
        self._cats: dict[str, set[str]] = {}
        self._values: dict[str, set[float]] = {}
        self._top: dict[str, float] = {}
        self._exact: dict[str, np.ndarray] = {}

    def update(self, raw: pd.DataFrame) -> SpaceStats:
        """Add the records of ``raw`` (a chunk, rows ``rows .. rows + len(raw) - 1``)."""
        missing = [n for n in self.schema.names if n not in raw.columns]
        if missing:
            raise DataError(f"table is missing feature column(s) {missing}")
        for f in self.schema:
            if f.kind is FeatureKind.CATEGORICAL:
                if f.categories is None:
                    seen = pd.unique(labels(raw[f.name]).dropna())
                    self._cats.setdefault(f.name, set()).update(
                        str(c) for c in seen if str(c) != OTHER)
                continue
            values = _numbers(raw, f, self.rows)
            if f.values is not None and isinstance(f.values, str):
                self._values.setdefault(f.name, set()).update(
                    float(v) for v in pd.unique(values))
            if f.lower is not None or f.upper is not None:
                values = np.clip(values, f.lower if f.lower is not None else -np.inf,
                                 f.upper if f.upper is not None else np.inf)
            if len(values):
                t = forward(values, f.transform)
                self._lo[f.name] = float(np.minimum(self._lo.get(f.name, np.inf), np.min(t)))
                self._hi[f.name] = float(np.maximum(self._hi.get(f.name, -np.inf), np.max(t)))
                if f.kind is FeatureKind.CONTINUOUS:
                    self._decimal_stats(f.name, values)
        self.rows += len(raw)
        return self

    def _decimal_stats(self, name: str, values: np.ndarray) -> None:
        uniq = pd.unique(values)
        self._top[name] = max(self._top.get(name, 0.0), float(np.max(np.abs(uniq))))
        exact = self._exact.setdefault(name, np.ones(MAX_DECIMALS + 1, dtype=bool))
        for d in range(MAX_DECIMALS + 1):
            if exact[d]:
                scale = 10.0**d
                with np.errstate(over="ignore", invalid="ignore"):
                    exact[d] = np.array_equal(np.round(uniq * scale) / scale, uniq)

    def _decimals(self, name: str) -> int | None:
        top, exact = self._top[name], self._exact[name]
        for d in range(MAX_DECIMALS + 1):
            if top * 10.0**d >= 2.0**52:
                return None
            if exact[d]:
                return d
        return None

    def fitted(self) -> dict[str, Any]:
        """The learned parameters, as :meth:`FeatureSpace.to_dict` writes them."""
        if self.rows == 0:
            raise DataError("cannot fit a FeatureSpace on an empty table")
        lo_: dict[str, float] = {}
        span_: dict[str, float] = {}
        cats_: dict[str, list[str]] = {}
        decimals_: dict[str, int] = {}
        values_: dict[str, list[float]] = {}
        for f in self.schema:
            if f.kind is FeatureKind.CATEGORICAL:
                cats_[f.name] = (list(f.categories) if f.categories is not None
                                 else sorted(self._cats.get(f.name, set())))
                continue
            if f.values is not None:
                values_[f.name] = (sorted(self._values.get(f.name, set()))
                                   if isinstance(f.values, str) else list(f.values))
            lo = _bound(f.lower, f) if f.lower is not None else self._lo[f.name]
            hi = _bound(f.upper, f) if f.upper is not None else self._hi[f.name]
            if not math.isfinite(lo) or not math.isfinite(hi):
                raise DataError(f"column {f.name!r}: no finite values to fit a scaling")
            lo_[f.name] = lo
            span_[f.name] = hi - lo if hi > lo else 1.0
            if f.kind is FeatureKind.CONTINUOUS:
                places = self._decimals(f.name)
                if places is not None:
                    decimals_[f.name] = places
        return {"schema": self.schema.to_dict(), "lo": lo_, "span": span_,
                "categories": cats_, "decimals": decimals_, "values": values_}

    def space(self) -> FeatureSpace:
        """The fitted :class:`FeatureSpace` (not checked against the records: see
        :class:`TrainingCheck`)."""
        return FeatureSpace.from_dict(self.fitted())


class TrainingCheck:
    """``FeatureSpace.check_training`` over chunks of the training table.

    Args:
        space: the fitted space.
    """

    def __init__(self, space: FeatureSpace) -> None:
        self.space = space
        self.rows = 0
        self._names: list[str] = []
        self._counts: np.ndarray = np.zeros(0, dtype=np.int64)
        self._first: dict[int, tuple[int, str]] = {}

    def update(self, raw: pd.DataFrame) -> TrainingCheck:
        """Check the records of ``raw`` (the next chunk)."""
        checks = self.space.validate(raw)
        mat = checks.to_numpy(dtype=bool)
        if not self._names:
            self._names = [str(c) for c in checks.columns]
            self._counts = np.zeros(len(self._names), dtype=np.int64)
        if mat.size:
            self._counts += mat.sum(axis=0)
            for j in np.flatnonzero(mat.any(axis=0)):
                if int(j) not in self._first:
                    pos = int(np.flatnonzero(mat[:, j])[0])
                    self._first[int(j)] = (self.rows + pos, self._shown(raw, pos, int(j)))
        self.rows += len(raw)
        return self

    def _shown(self, raw: pd.DataFrame, pos: int, j: int) -> str:
        kind, _, what = self._names[j].partition(":")
        feats = [what]
        if kind == "relation":
            feats = list(next(r for r in self.space.relations_ if r.name == what).features)
        return ", ".join(f"{f}={_plain(raw[f].iloc[pos])!r}" for f in feats)

    def finish(self) -> None:
        """Raise the :class:`SchemaError` ``check_training`` raises on the whole table, if any."""
        n = self.rows
        if not self._first:
            return
        partial = {f"relation:{r.name}": r.holds_on for r in self.space.relations_
                   if r.holds_on is not None}
        broken: list[tuple[int, int]] = []
        for j, name in enumerate(self._names):
            if j not in self._first:
                continue
            share = partial.get(name)
            if share is None:
                broken.append((self._first[j][0], j))
                continue
            held = 1.0 - float(self._counts[j]) / n
            margin = 0.005 + 3.0 * math.sqrt(share * (1.0 - share) / n)
            if held + margin < share:
                raise SchemaError(
                    f"{name.partition(':')[2]!r} holds on {100 * held:.2f} % of the "
                    f"{n:,} training records, but the schema says holds_on = {share} "
                    f"({100 * share:.2f} %): fix the relation or its holds_on")
        if not broken:
            return
        row, j = min(broken)
        kind, _, what = self._names[j].partition(":")
        raise SchemaError(
            f"training record {row!r} breaks {kind} {what!r} ({self._first[j][1]}; "
            f"{int(self._counts[j]):,} of {n:,} training records do): the schema does not "
            f"describe this data; fix or drop that {kind} in the schema"
            + (", or state the share it holds on (holds_on)" if kind == "relation" else ""))


def fit_streaming(schema: FeatureSchema, chunks: Iterable[pd.DataFrame], *,
                  check: bool = True) -> FeatureSpace:
    """A :class:`FeatureSpace` fitted from ``chunks`` of the training table: equal to
    ``FeatureSpace(schema).fit(pd.concat(chunks))``. With ``check``, ``chunks`` is iterated a
    second time for :class:`TrainingCheck` (so it must be re-iterable, e.g. a list or a
    :class:`~advsec.datasets.stream.CsvStream`-based source)."""
    stats = SpaceStats(schema)
    for chunk in chunks:
        stats.update(chunk)
    space = stats.space()
    if check:
        checker = TrainingCheck(space)
        for chunk in chunks:
            checker.update(chunk)
        checker.finish()
    return space


def _numbers(raw: pd.DataFrame, f: Feature, offset: int) -> np.ndarray:
    col = raw[f.name]
    if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
        values = col.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        values = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(values)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(f"column {f.name!r}, row {offset + row}: expected a finite number, got "
                        f"{col.iloc[row]!r}")
    return values


def _bound(value: float, f: Feature) -> float:
    return float(forward(np.array([value]), f.transform)[0])


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
