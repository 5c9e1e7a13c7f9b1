"""Which relations of a FeatureSpace the exact tree program models, and how.

- ``zero_if_zero`` with tolerance 0: exactly, on the interval cells (the zero of every feature
  it reads is its own cell: "``when`` is zero" implies "each feature is zero");
- ``sum`` (``==`` / ``<=``, ``tol``; ``rtol`` when the target is a constant or a feature with a
  non-negative lower bound) and ``order``: exactly, as linear constraints on raw values,
  when every feature they read has no ``log1p`` transform and no value set (raw value =
  ``lo + span * x``, linear in the model input);
- everything else (``ratio``, ``formula``, linear relations over ``log1p`` features, a
  ``zero_if_zero`` with a tolerance): **ignored**. The program then models a superset of the
  valid region (sound for "verified", but its minimal eps is a lower bound and its record may
  break that relation: the attack result is audited). :func:`plan_relations` lists them.

A relation the clean record already breaks is not enforced on it (as in
:func:`~advsec.attacks.validity.valid_records`).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING

from advsec.features.constraints import (
    OrderRelation,
    Relation,
    SumRelation,
    ZeroIfZeroRelation,
)

if TYPE_CHECKING:
    from advsec.attacks.tree_cells import EnsembleCells
    from advsec.features.space import FeatureSpace

__all__ = ["LinearRow", "RelationPlan", "plan_relations"]


@dataclass(frozen=True)
class LinearRow:
    """``low <= sum_i coef[i] * raw[column[i]] <= high`` (raw units) for relation ``name``."""

    name: str
    columns: tuple[int, ...]
    coef: tuple[float, ...]
    low: float
    high: float


@dataclass(frozen=True)
class RelationPlan:
    """``zero``: ``(name, when column, zeroed columns)``; ``linear``: :class:`LinearRow`;
    ``ignored``: the names of relations not modelled; ``raw_columns``: the columns the linear
    rows read (they get a raw-value variable)."""

    zero: tuple[tuple[str, int, tuple[int, ...]], ...]
    linear: tuple[LinearRow, ...]
    ignored: tuple[str, ...]
    raw_columns: tuple[int, ...]


def _linear(rel: Relation, col: dict[str, int], ok: dict[str, bool],
            nonneg: dict[str, bool]) -> list[LinearRow] | None:
    if not all(ok.get(f, False) for f in rel.features):
        return None
    if isinstance(rel, SumRelation):
        cols = [col[f] for f in rel.addends]
        coef = [1.0] * len(cols)
        slack = float(rel.tol)
        if isinstance(rel.target, str):
            if rel.rtol and not nonneg[rel.target]:
                return None
            cols.append(col[rel.target])
            coef.append(-1.0 - float(rel.rtol))  # sum - target - rtol * target <= tol
            lin = LinearRow(rel.name, tuple(cols), tuple(coef), -float("inf"), slack)
            if rel.op == "<=":
                return [lin]
            coef2 = [*coef[:-1], -1.0 + float(rel.rtol)]  # sum - target + rtol*target >= -tol
            return [lin, LinearRow(rel.name, tuple(cols), tuple(coef2), -slack, float("inf"))]
        target = float(rel.target)
        slack += float(rel.rtol) * abs(target)
        low = -float("inf") if rel.op == "<=" else target - slack
        return [LinearRow(rel.name, tuple(cols), tuple(coef), low, target + slack)]
    if isinstance(rel, OrderRelation):
        chain = [col[f] for f in rel.chain]
        return [LinearRow(rel.name, (a, b), (1.0, -1.0), -float("inf"), float(rel.tol))
                for a, b in itertools.pairwise(chain)]
    return None


def plan_relations(space: FeatureSpace | None, cells: EnsembleCells) -> RelationPlan:
    """The :class:`RelationPlan` of ``space``'s relations (module docstring)."""
    if space is None or not space.relations_:
        return RelationPlan((), (), (), ())
    col = {f.name: a for f, a, _ in space.blocks_ if f.is_numeric}
    ok = {f.name: (f.transform != "log1p" and cells.domains[a].kind != "set")
          for f, a, _ in space.blocks_ if f.is_numeric}
    nonneg = {f.name: f.lower is not None and f.lower >= 0 for f in space.schema if f.is_numeric}
    zeros = cells.zero_values()
    zero: list[tuple[str, int, tuple[int, ...]]] = []
    linear: list[LinearRow] = []
    ignored: list[str] = []
    for rel in space.relations_:
        if isinstance(rel, ZeroIfZeroRelation) and rel.tol == 0 and col[rel.when] in zeros:
            zero.append((rel.name, col[rel.when], tuple(col[f] for f in rel.zeroed)))
            continue
        rows = _linear(rel, col, ok, nonneg)
        if rows is None:
            ignored.append(rel.name)
        else:
            linear.extend(rows)
    raw_cols = tuple(sorted({c for r in linear for c in r.columns}))
    return RelationPlan(tuple(zero), tuple(linear), tuple(ignored), raw_cols)
