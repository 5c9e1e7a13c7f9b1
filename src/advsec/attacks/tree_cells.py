"""The split structure of a tree ensemble over a valid region: thresholds, cells, leaves.

:class:`EnsembleCells` is built once per ensemble and FeatureSpace. Per model column it holds
the sorted split thresholds (plus the breakpoints the region needs: 0 for the columns of a
mutable one-hot block, the zero of every feature a ``zero_if_zero`` relation reads) and, per
interval between them, the lowest and highest admissible value
(:meth:`~advsec.attacks.tree_domain.Domain.intervals`). Every (column, threshold) pair is
one *predicate* ``x[f] <= t[j]`` (index ``offset[f] + j``); per tree, the leaves and, per inner
node, its predicate and the leaves below each child. Record-dependent parts (directions,
immutables, the record's own interval) are :meth:`EnsembleCells.record_cells`.

Shapes: ``D`` model columns, ``P`` predicates, ``L`` leaves over all trees, ``C`` classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from advsec.attacks.tree_domain import Domain, domains
from advsec.features.constraints import ZeroIfZeroRelation
from advsec.features.schema import FeatureKind
from advsec.models.trees import TreeEnsemble

if TYPE_CHECKING:
    from advsec.features.space import FeatureSpace

__all__ = ["ColumnCells", "EnsembleCells", "RecordColumn"]


@dataclass(frozen=True)
class ColumnCells:
    """One column: ``thresholds`` ``(K,)`` sorted, ``low``/``high`` ``(K+1,)`` the admissible
    hull of each interval (NaN: none), ``offset``: the index of its first predicate."""

    column: int
    thresholds: np.ndarray
    low: np.ndarray
    high: np.ndarray
    offset: int


@dataclass(frozen=True)
class RecordColumn:
    """One column around one record: ``k0`` the record's interval; ``feasible`` ``(K+1,)``;
    ``dist`` ``(K+1,)`` the L-inf distance to the interval's nearest admissible value (inf
    where infeasible); ``value`` ``(K+1,)`` that value (the record's own in ``k0``)."""

    k0: int
    feasible: np.ndarray
    dist: np.ndarray
    value: np.ndarray


class EnsembleCells:
    """The split structure of ``ensemble`` over the region of ``space`` (module docstring;
    ``bounds``: the box of every column without a space).

    Attributes:
        ensemble, space, domains: the inputs and the per-column :class:`Domain`.
        columns: ``{column: ColumnCells}`` of every column with a predicate.
        n_predicates: ``P``; n_leaves: ``L``.
        leaf_tree: ``(L,)`` the tree of each leaf; leaf_value: ``(L, V)`` its value.
        nodes: per inner node ``(predicate, left leaves, right leaves)`` (leaf indices).
        tree_leaves: per tree, its leaf indices.
        mutable: ``(D,)`` bool; increase, decrease: ``(D,)`` bool, the directions.
        blocks: the mutable one-hot blocks ``(start, stop)``.
    """

    def __init__(self, ensemble: TreeEnsemble, space: FeatureSpace | None, *,
                 bounds: tuple[float, float] | None = (0.0, 1.0)) -> None:
        d = ensemble.n_features_in_
        self.ensemble, self.space = ensemble, space
        self.domains: list[Domain] = domains(space, d, bounds=bounds)
        self.mutable = np.ones(d, dtype=bool)
        self.increase = np.zeros(d, dtype=bool)
        self.decrease = np.zeros(d, dtype=bool)
        self.blocks: list[tuple[int, int]] = []
        extra: dict[int, list[float]] = {}
        if space is not None:
            self.mutable = np.asarray(space.mutable_mask, dtype=bool)
            for f, a, b in space.blocks_:
                if f.kind is FeatureKind.CATEGORICAL:
                    if f.mutable:
                        self.blocks.append((a, b))
                        for j in range(a, b):
                            extra.setdefault(j, []).append(0.0)
                    continue
                self.increase[a] = f.mutable and f.direction == "increase"
                self.decrease[a] = f.mutable and f.direction == "decrease"
            for col, z in self.zero_values().items():
                extra.setdefault(col, []).extend([float(np.nextafter(z, -np.inf)), z])
        split: dict[int, list[np.ndarray]] = {}
        for tree in ensemble.trees:
            inner = tree.left >= 0
            for f in np.unique(tree.feature[inner]):
                split.setdefault(int(f), []).append(tree.threshold[inner & (tree.feature == f)])
        self.columns: dict[int, ColumnCells] = {}
        offset = 0
        for col in sorted(set(split) | set(extra)):
            parts = [*split.get(col, []), np.asarray(extra.get(col, []), dtype=np.float64)]
            t = np.unique(np.concatenate(parts))
            low, high = self.domains[col].intervals(t)
            self.columns[col] = ColumnCells(col, t, low, high, offset)
            offset += len(t)
        self.n_predicates = offset
        self._leaves()

    def zero_values(self) -> dict[int, float]:
        """``{column: the model value of raw 0}`` for the numeric features that
        ``zero_if_zero`` relations (tolerance 0) read."""
        out: dict[int, float] = {}
        if self.space is None:
            return out
        where = {f.name: a for f, a, _ in self.space.blocks_ if f.is_numeric}
        for rel in self.space.relations_:
            if isinstance(rel, ZeroIfZeroRelation) and rel.tol == 0:
                for name in rel.features:
                    col = where[name]
                    dom = self.domains[col]
                    z = (dom.encode(np.array([0.0]))[0] if dom.kind == "grid" else
                         self._set_zero(col, name))
                    if z is not None and np.isfinite(z):
                        out[col] = float(z)
        return out

    def _set_zero(self, col: int, name: str) -> float | None:
        """The model value of raw 0 of a set or continuous column (None when not encodable)."""
        assert self.space is not None
        f = self.space.schema[name]
        lo, span = self.space.lo_[name], self.space.span_[name]
        v = np.float32(np.clip((0.0 - lo) / span, 0.0, 1.0))
        dom = self.domains[col]
        if dom.kind == "set" and dom.values is not None and not np.isin(float(v), dom.values):
            return None
        return float(v) if f.lower is None or f.lower <= 0 else None

    def _leaves(self) -> None:
        leaf_tree: list[int] = []
        leaf_value: list[np.ndarray] = []
        self.nodes: list[tuple[int, np.ndarray, np.ndarray]] = []
        self.tree_leaves: list[np.ndarray] = []
        for ti, tree in enumerate(self.ensemble.trees):
            m = len(tree.feature)
            under: list[np.ndarray] = [np.zeros(0, dtype=np.int64)] * m
            base = len(leaf_tree)
            is_leaf = tree.left < 0
            ids = np.full(m, -1, dtype=np.int64)
            ids[is_leaf] = base + np.arange(int(is_leaf.sum()))
            leaf_tree.extend([ti] * int(is_leaf.sum()))
            leaf_value.append(tree.value[is_leaf])
            for n in range(m - 1, -1, -1):
                if is_leaf[n]:
                    under[n] = ids[n:n + 1]
                    continue
                lft, rgt = under[tree.left[n]], under[tree.right[n]]
                under[n] = np.concatenate([lft, rgt])
                cells = self.columns[int(tree.feature[n])]
                j = int(np.searchsorted(cells.thresholds, tree.threshold[n]))
                self.nodes.append((cells.offset + j, lft, rgt))
            self.tree_leaves.append(under[0])
        self.n_leaves = len(leaf_tree)
        self.leaf_tree = np.asarray(leaf_tree, dtype=np.int64)
        self.leaf_value = np.concatenate(leaf_value)
        self.leaf_output = np.asarray([self.ensemble.trees[t].output for t in leaf_tree],
                                      dtype=np.int64)

    # ------------------------------------------------------------------ per record
    def record_cells(self, x0: np.ndarray, col: int) -> RecordColumn:
        """Column ``col`` of the record ``x0`` ``(D,)`` (float64 holding float32 values)."""
        c = self.columns[col]
        v0 = float(x0[col])
        k0 = int(np.searchsorted(c.thresholds, v0, side="left"))
        n = len(c.low)
        idx = np.arange(n)
        feasible = ~np.isnan(c.low)
        if not self.mutable[col]:
            feasible[:] = False
        if self.increase[col]:
            feasible &= idx >= k0
        if self.decrease[col]:
            feasible &= idx <= k0
        value = np.where(idx > k0, c.low, c.high)
        feasible[k0] = True
        value[k0] = v0
        dist = np.where(feasible, np.abs(value - v0), np.inf)
        return RecordColumn(k0, feasible, dist, value)

    def predicates_at(self, x: np.ndarray) -> np.ndarray:
        """``(P,)`` the predicates ``x[f] <= t[j]`` at the record ``x`` ``(D,)`` (0/1)."""
        out = np.zeros(self.n_predicates)
        for col, c in self.columns.items():
            out[c.offset:c.offset + len(c.thresholds)] = x[col] <= c.thresholds
        return out
