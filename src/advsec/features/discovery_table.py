"""The numeric view of a training table that constraint discovery searches, and its tolerances.

Used by :mod:`advsec.features.discovery` (the entry point) and its search helpers
:mod:`~advsec.features.discovery_derived` (ratio, formula and sum relations) and
:mod:`~advsec.features.discovery_order` (order, zero-if-zero and share-sum relations).

A :class:`Table` holds the ``(N, K)`` float64 values of the K numeric features that take part,
their kinds, rounding units (1 for integer and binary features, ``10**-decimals`` for continuous
ones, 0 when the decimals are unknown), the share of their most common value, a fixed sample of
rows for cheap pruning and a fixed row permutation for the permutation test. Everything is
seeded, so discovery is deterministic.
"""

from __future__ import annotations

import keyword
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from advsec.features.codec import decimals, numeric_values
from advsec.features.constraints import VIOLATION_EPS
from advsec.features.schema import FeatureKind, FeatureSchema

__all__ = [
    "MAX_RTOL",
    "NEAR_CONSTANT",
    "PERMUTED_MAX",
    "Finding",
    "Table",
    "build_table",
    "floor_share",
    "learn_tolerance",
    "quote",
    "snap_rtol",
    "snap_tol",
]

#: A column whose most common value covers this share of rows or more takes part in no relation.
NEAR_CONSTANT = 0.99
#: The largest relative tolerance a derived relation may need (else it does not hold there).
MAX_RTOL = 0.1
#: A relation must hold on fewer than this share of its binding rows once a column is shuffled.
PERMUTED_MAX = 0.5
_POOL = 4096
_LADDER = tuple(float(f"{m * 10.0 ** e:.12g}") for e in range(-9, 0) for m in (1, 2, 5))
_SEED = 0


@dataclass(frozen=True)
class Table:
    """The numeric features of a training table, ready for the searches.

    Attributes:
        names: the K feature names, in schema order.
        kinds: their kinds (continuous, integer or binary).
        values: ``(N, K)`` float64 raw values.
        units: ``(K,)`` rounding unit of each column in raw units (1 for integer and binary
            columns, ``10**-d`` for a continuous column with ``d`` decimals, 0 when unknown).
        mode_share: ``(K,)`` share of rows holding each column's most common value.
        zero_share: ``(K,)`` share of rows where each column is 0.
        pool: ``(S,)`` row indices of a seeded sample (S <= 4096) used to prune candidates.
        perm: ``(N,)`` a seeded row permutation used to shuffle one column of a relation.
    """

    names: tuple[str, ...]
    kinds: tuple[FeatureKind, ...]
    values: np.ndarray
    units: np.ndarray
    mode_share: np.ndarray
    zero_share: np.ndarray
    pool: np.ndarray
    perm: np.ndarray
    index: dict[str, int] = field(default_factory=dict)

    @property
    def n(self) -> int:
        """N, the number of rows."""
        return int(self.values.shape[0])

    @property
    def k(self) -> int:
        """K, the number of numeric features."""
        return len(self.names)

    def col(self, j: int) -> np.ndarray:
        """Column ``j`` as ``(N,)`` float64."""
        return self.values[:, j]

    def informative(self, j: int) -> bool:
        """Whether column ``j`` may take part in a relation (not constant on >= 99 % of rows)."""
        return bool(self.mode_share[j] < NEAR_CONSTANT)

    def is_kind(self, j: int, *kinds: FeatureKind) -> bool:
        """Whether column ``j`` has one of ``kinds``."""
        return self.kinds[j] in kinds


@dataclass
class Finding:
    """A relation found by a search, before the final check.

    Attributes:
        config: the relation table (``type`` and its keys; no name or holds_on yet).
        share: the share of rows it holds on (the search's own, NumPy, count).
        rank: a sort key within its kind, smaller is better (e.g. the share under permutation).
        text: the relation in words for the notes (e.g. ``"smean == sbytes / spkts"``).
        slack: how its tolerance reads in the notes (e.g. ``"within 1"``).
        name: a suggested name.
        features: every feature name the relation reads.
    """

    config: dict[str, Any]
    share: float
    rank: float
    text: str
    slack: str
    name: str
    features: frozenset[str]


def build_table(df: pd.DataFrame, schema: FeatureSchema) -> Table:
    """The :class:`Table` of the numeric features of ``schema`` in ``df`` (N rows); a missing or
    non-finite value raises :class:`~advsec.errors.DataError` naming the column and row."""
    feats = [f for f in schema if f.is_numeric]
    n = len(df)
    values = np.empty((n, len(feats)), dtype=np.float64)
    units = np.zeros(len(feats))
    mode = np.ones(len(feats))
    zero = np.zeros(len(feats))
    for j, f in enumerate(feats):
        col = numeric_values(df, f)
        values[:, j] = col
        if f.kind is FeatureKind.CONTINUOUS:
            places = decimals(col) if n else None
            units[j] = 10.0 ** -places if places is not None else 0.0
        else:
            units[j] = 1.0
        if n:
            counts = pd.Series(col).value_counts(sort=False).to_numpy()
            mode[j] = float(counts.max()) / n
            zero[j] = float(np.count_nonzero(col == 0)) / n
    rng = np.random.default_rng(_SEED)
    pool = np.sort(rng.permutation(n)[: min(n, _POOL)])
    pool = rng.permutation(pool)  # a random order: the first rows of a mask are a random sample
    perm = rng.permutation(n)
    names = tuple(f.name for f in feats)
    return Table(names=names, kinds=tuple(f.kind for f in feats), values=values, units=units,
                 mode_share=mode, zero_share=zero, pool=pool, perm=perm,
                 index={name: j for j, name in enumerate(names)})


def snap_tol(value: float, unit: float) -> float:
    """The smallest multiple of ``unit / 2`` that is >= ``value`` (a tolerance in raw units);
    with ``unit`` 0, ``value`` rounded up to 2 significant digits (0 stays 0)."""
    if value <= 0:
        return 0.0
    if unit > 0:
        half = unit / 2.0
        return float(f"{math.ceil(value / half * (1 - 1e-12)) * half:.12g}")
    return snap_rtol(value)


def snap_rtol(value: float) -> float:
    """``value`` rounded up onto the ladder 1, 2, 5 x 10**k (0 stays 0)."""
    if value <= 0:
        return 0.0
    exp = math.floor(math.log10(value))
    for step in (1.0, 2.0, 5.0, 10.0):
        cand = float(f"{step * 10.0 ** exp:.12g}")
        if cand >= value * (1 - 1e-12):
            return cand
    return float(f"{10.0 ** (exp + 1):.12g}")


def learn_tolerance(residual: np.ndarray, target: np.ndarray, *, limit: float, unit: float,
                    relative: bool) -> tuple[float, float, np.ndarray]:
    """``(tol, rtol, holds)`` for ``|target - expected| = residual`` (both ``(N,)``).

    ``tol``: the largest residual that is at most ``limit`` (the rounding a relation may carry,
    in raw units), snapped up to half ``unit`` steps. With ``relative``, ``rtol``: the smallest
    value of the 1-2-5 ladder covering every remaining row that needs at most :data:`MAX_RTOL`
    (``tol + rtol * |target|``); rows that need more break the relation, and when there are
    such rows (a near-holding relation), ``rtol`` is the knee: the smallest ladder value that
    breaks it on few more rows (10 % of those, or 0.1 % of all rows), so that a rate whose
    broken records would need 10 % keeps the tolerance its good records need. ``holds`` is the
    ``(N,)`` boolean mask of rows within ``tol + rtol * |target|`` (plus
    :data:`~advsec.features.constraints.VIOLATION_EPS`, as the relations check).
    """
    slack = limit * (1 + 1e-9) + 1e-12
    within = residual <= slack
    tol = snap_tol(float(residual[within].max()), unit) if within.any() else 0.0
    if limit > 0:
        tol = min(tol, snap_tol(limit, unit))
    holds = residual <= tol + VIOLATION_EPS  # the slack of Relation checks (float round-off)
    rtol = 0.0
    if relative and not holds.all():
        mag = np.abs(target)
        with np.errstate(divide="ignore", invalid="ignore"):
            need = np.where(mag > 0, (residual - tol) / mag, np.inf)
        cover = ~holds & (need <= MAX_RTOL)
        if cover.any():
            rtol = snap_rtol(float(need[cover].max()))
            lost = np.count_nonzero(~holds & ~cover)
            if lost:  # near-holding: the rows beyond MAX_RTOL break it anyway, so take the
                # knee: the smallest rtol that loses few more (10 % of those, or 0.1 % of rows)
                needs = np.sort(need[cover])
                spare = max(0.1 * lost, 0.001 * len(residual))
                for rung in _LADDER:
                    if rung >= rtol:
                        break
                    if len(needs) - np.searchsorted(needs, rung, side="right") <= spare:
                        rtol = rung
                        break
            holds = residual <= tol + rtol * mag + VIOLATION_EPS
    return tol, rtol, holds


def floor_share(share: float) -> float:
    """``share`` rounded down to 4 decimals (so 1.0 means every row)."""
    return math.floor(share * 10_000 + 1e-9) / 10_000 if share < 1.0 else 1.0


def quote(name: str) -> str:
    """``name`` as it appears in a formula expression (backticks unless an identifier)."""
    return name if name.isidentifier() and not keyword.iskeyword(name) and not (
        name.startswith("__q")) else f"`{name}`"
