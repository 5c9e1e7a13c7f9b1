"""Relation groups of the compiled repair: relations of one type whose repairs commute, run as
one batched gather/where/scatter over raw values in the working layout.

Every group acts on ``raw`` ``(K + 1, N)`` float64 working rows whose last row is zero (the
padding of ragged column lists); ``n`` members, ``N`` records.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import numpy as np
import torch

from advsec.features.constraints import (
    VIOLATION_EPS,
    FormulaRelation,
    OrderRelation,
    RatioRelation,
    Relation,
    SumRelation,
    ZeroIfZeroRelation,
)
from advsec.features.repair.ops import f64_column, long_tensor, select

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["GROUPS", "FormulaGroup", "OrderGroup", "Padded", "RatioGroup", "RelationGroup",
           "SumGroup", "ZeroIfZeroGroup", "relation_kind"]


class RelationGroup:
    """Relations of one type, batched over working rows ``raw`` ``(K + 1, N)`` whose last row
    is zero (the padding of ragged column lists): ``bad`` and an in-place ``repair``.

    Args:
        rels: the members; cols: a member's rows in ``raw``; mut: ``(K,)`` mutable features
            (``None``: a group that only checks, ``bad``); zero_row: the zero row of ``raw``.
    """

    def __init__(self, rels: list[Relation], cols: Callable[[Relation], list[int]],
                 mut: np.ndarray | None, zero_row: int, dev: torch.device) -> None:
        self.n = len(rels)

    def bad(self, raw: torch.Tensor) -> torch.Tensor:
        """``(n, N)`` bool: violation above ``VIOLATION_EPS`` for each member."""
        raise NotImplementedError

    def repair(self, raw: torch.Tensor) -> None:
        """Repair ``raw`` in place, as each member's reference repair would (they commute)."""
        raise NotImplementedError


class Padded:
    """Ragged row lists as a padded ``(n, L)`` index whose padding is the zero row."""

    def __init__(self, lists: list[list[int]], zero_row: int, dev: torch.device) -> None:
        width = max(1, max((len(c) for c in lists), default=1))
        idx = np.full((len(lists), width), zero_row, dtype=np.int64)
        for i, c in enumerate(lists):
            idx[i, : len(c)] = c
        self.shape = idx.shape
        self.idx = long_tensor(idx.reshape(-1).tolist(), dev)
        valid = idx.reshape(-1) != zero_row
        self.full = bool(valid.all())
        self.valid = long_tensor(np.flatnonzero(valid).tolist(), dev)
        self.rows = long_tensor(idx.reshape(-1)[valid].tolist(), dev)

    def gather(self, raw: torch.Tensor) -> torch.Tensor:
        """``(n, L, N)`` values; padding reads the zero row."""
        return raw.index_select(0, self.idx).view(*self.shape, raw.shape[1])

    def scatter(self, raw: torch.Tensor, vals: torch.Tensor) -> None:
        """Write ``vals`` ``(n, L, N)`` back to the real entries' rows of ``raw``."""
        flat = vals.reshape(-1, raw.shape[1])
        raw.index_copy_(0, self.rows, flat if self.full else flat.index_select(0, self.valid))


class ZeroIfZeroGroup(RelationGroup):
    """``zero_if_zero`` relations: closed gates zero their mutable features."""

    def __init__(self, rels: list[Relation], cols: Callable[[Relation], list[int]],
                 mut: np.ndarray | None, zero_row: int, dev: torch.device) -> None:
        super().__init__(rels, cols, mut, zero_row, dev)
        zz = [r for r in rels if isinstance(r, ZeroIfZeroRelation)]
        self.when = long_tensor([cols(r)[0] for r in zz], dev)
        self.tol = f64_column([r.tol for r in zz], dev)  # (G, 1)
        self.zeroed = Padded([cols(r)[1:] for r in zz], zero_row, dev)
        if mut is None:
            return
        # repair: the mutable zeroed rows, each with its gate(s)
        rows = sorted({cols(r)[1 + i] for r in zz for i, c in enumerate(r.columns()[1:])
                       if mut[c]})
        owners = [[g for g, r in enumerate(zz) if w in cols(r)[1:]] for w in rows]
        self.rows = long_tensor(rows, dev)
        self.single = all(len(o) == 1 for o in owners)
        self.owner = long_tensor([o[0] for o in owners], dev)
        member = np.zeros((len(rows), len(zz)), dtype=np.float32)
        for j, o in enumerate(owners):
            member[j, o] = 1.0
        self.member = torch.as_tensor(member, device=dev)  # (Z, G)

    def _gate(self, raw: torch.Tensor) -> torch.Tensor:
        return raw.index_select(0, self.when).abs_() <= self.tol

    def bad(self, raw: torch.Tensor) -> torch.Tensor:
        excess = torch.relu_(self.zeroed.gather(raw).abs_().sub_(self.tol[:, :, None]))
        return self._gate(raw) & (excess.sum(1) > VIOLATION_EPS)

    def repair(self, raw: torch.Tensor) -> None:
        gate = self._gate(raw)
        hit = (gate.index_select(0, self.owner) if self.single
               else (self.member @ gate.to(torch.float32)) > 0)
        vals = raw.index_select(0, self.rows)
        vals.view(torch.int64).bitwise_and_(hit.to(torch.int64).sub_(1))  # zeroed: +0.0 bits
        raw.index_copy_(0, self.rows, vals)


class SumGroup(RelationGroup):
    """``sum`` relations: a mutable target column moves to the total, else mutable addends
    scale to the target."""

    def __init__(self, rels: list[Relation], cols: Callable[[Relation], list[int]],
                 mut: np.ndarray | None, zero_row: int, dev: torch.device) -> None:
        super().__init__(rels, cols, mut, zero_row, dev)
        ss = [r for r in rels if isinstance(r, SumRelation)]
        self.addends = Padded([cols(r)[: len(r.addends)] for r in ss], zero_row, dev)
        is_col = [isinstance(r.target, str) for r in ss]
        self.any_col, self.all_col = any(is_col), all(is_col)
        self.tcol = long_tensor([cols(r)[-1] if c else zero_row for r, c in zip(ss, is_col,
                                                                           strict=True)], dev)
        self.is_col = torch.as_tensor(is_col, device=dev)[:, None]
        self.tconst = f64_column([0.0 if c else float(r.target)
                               for r, c in zip(ss, is_col, strict=True)], dev)
        le = [r.op == "<=" for r in ss]
        self.any_le, self.all_le = any(le), all(le)
        self.le = torch.as_tensor(le, device=dev)[:, None]
        self.tol = f64_column([r.tol for r in ss], dev)
        self.rtol = f64_column([r.rtol for r in ss], dev)
        self.any_rtol = any(r.rtol for r in ss)
        if mut is None:
            return
        # repair branches: a mutable target column moves; else the mutable addends scale
        move = [i for i, r in enumerate(ss) if is_col[i] and mut[r.columns()[-1]]]
        scale = [i for i, r in enumerate(ss) if i not in move
                 and any(mut[c] for c in r.columns()[: len(r.addends)])]
        self.move = long_tensor(move, dev) if move else None
        self.move_rows = long_tensor([cols(ss[i])[-1] for i in move], dev)
        self.scale_idx = long_tensor(scale, dev) if scale and len(scale) < self.n else None
        muts = [[cols(ss[i])[j] for j, c in enumerate(ss[i].columns()[: len(ss[i].addends)])
                 if mut[c]] for i in scale]
        self.mut = Padded(muts, zero_row, dev) if muts else None
        self.n_mut = f64_column([float(len(m)) for m in muts], dev)[:, :, None] if muts else None
        # every member scales all of its addends (all mutable) to a constant target >= 0: then
        # the reference's required value is the target itself, the share target / total
        self.simple = not move and len(scale) == self.n and all(
            not is_col[i] and float(ss[i].target) >= 0
            and all(mut[c] for c in ss[i].columns()[: len(ss[i].addends)]) for i in scale)

    def parts(self, raw: torch.Tensor,
               vals: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor,
                                                          torch.Tensor]:
        """``(total, target, bad)``, each ``(n, N)`` (``vals``: the gathered addends)."""
        total = (self.addends.gather(raw) if vals is None else vals).sum(1)
        if self.all_col:
            target = raw.index_select(0, self.tcol)
        elif self.any_col:
            target = torch.where(self.is_col, raw.index_select(0, self.tcol), self.tconst)
        else:
            target = self.tconst
        slack = self.rtol * target.abs() + self.tol if self.any_rtol else self.tol
        diff = total - target
        if self.all_le:
            gap = diff
        elif self.any_le:
            gap = torch.where(self.le, diff, diff.abs())
        else:
            gap = diff.abs_()
        return total, target, gap.sub_(slack) > VIOLATION_EPS

    def bad(self, raw: torch.Tensor) -> torch.Tensor:
        return self.parts(raw)[2]

    def repair(self, raw: torch.Tensor) -> None:
        if self.simple:  # vals * share where broken: the reference's arithmetic, bit for bit
            vals = self.addends.gather(raw)  # (S, L, N)
            total, target, bad = self.parts(raw, vals)
            factor = torch.where(bad, target / total, 1.0)
            self.addends.scatter(raw, vals.mul_(factor[:, None, :]))
            return
        total, target, bad = self.parts(raw)
        if self.move is not None:
            i = self.move
            raw.index_copy_(0, self.move_rows, torch.where(
                bad.index_select(0, i), total.index_select(0, i),
                raw.index_select(0, self.move_rows)))
        if self.mut is None or self.n_mut is None:
            return
        if self.scale_idx is not None:
            i = self.scale_idx
            total, bad = total.index_select(0, i), bad.index_select(0, i)
            target = target.expand(self.n, -1).index_select(0, i)
        vals = self.mut.gather(raw)  # (S, L, N)
        mut_sum = vals.sum(1)
        required = target - (total - mut_sum)
        ok = (bad & (required >= 0))[:, None, :]
        nz = mut_sum.abs() > 0
        share = torch.where(nz, required / torch.where(nz, mut_sum, 1.0), 0.0)
        scaled = torch.where(nz[:, None, :], vals * share[:, None, :],
                             required[:, None, :] / self.n_mut)
        self.mut.scatter(raw, select(ok, scaled, vals))


class RatioGroup(RelationGroup):
    """``ratio`` relations: a mutable target takes the ratio, else a mutable numerator
    follows the target."""

    def __init__(self, rels: list[Relation], cols: Callable[[Relation], list[int]],
                 mut: np.ndarray | None, zero_row: int, dev: torch.device) -> None:
        super().__init__(rels, cols, mut, zero_row, dev)
        rr = [r for r in rels if isinstance(r, RatioRelation)]
        c = [cols(r) for r in rr]
        self.t = long_tensor([v[0] for v in c], dev)
        self.num = long_tensor([v[1] for v in c], dev)
        self.den = long_tensor([v[2] for v in c], dev)
        self.scale = f64_column([r.scale for r in rr], dev)
        self.tol = f64_column([r.tol for r in rr], dev)
        self.rtol = f64_column([r.rtol for r in rr], dev)
        self.any_rtol = any(r.rtol for r in rr)
        if mut is None:
            return
        m = [r.columns() for r in rr]
        move = [i for i, v in enumerate(m) if mut[v[0]]]
        follow = [i for i, v in enumerate(m) if not mut[v[0]] and mut[v[1]]]
        self.move = long_tensor(move, dev) if move else None
        self.follow = long_tensor(follow, dev) if follow else None
        self.move_rows = long_tensor([c[i][0] for i in move], dev)
        self.follow_rows = long_tensor([c[i][1] for i in follow], dev)

    def parts(self, raw: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``(target, denominator, expected target, bad)``, each ``(n, N)``."""
        t = raw.index_select(0, self.t)
        num = raw.index_select(0, self.num)
        den = raw.index_select(0, self.den)
        nonzero = den != 0
        expected = torch.where(nonzero, self.scale * num / torch.where(nonzero, den, 1.0), 0.0)
        slack = self.rtol * t.abs() + self.tol if self.any_rtol else self.tol
        bad = (t - expected).abs_().sub_(slack) > VIOLATION_EPS
        return t, den, expected, bad

    def bad(self, raw: torch.Tensor) -> torch.Tensor:
        return self.parts(raw)[3]

    def repair(self, raw: torch.Tensor) -> None:
        t, den, expected, bad = self.parts(raw)
        if self.move is not None:
            i = self.move
            raw.index_copy_(0, self.move_rows, torch.where(
                bad.index_select(0, i), expected.index_select(0, i),
                raw.index_select(0, self.move_rows)))
        if self.follow is not None:
            i = self.follow
            d = den.index_select(0, i)
            value = t.index_select(0, i) * d / self.scale.index_select(0, i)
            rows = bad.index_select(0, i) & (d != 0)
            raw.index_copy_(0, self.follow_rows, torch.where(
                rows, value, raw.index_select(0, self.follow_rows)))


class OrderGroup(RelationGroup):
    """``order`` chains: mutable values rise to their predecessor, then fall to their
    successor."""

    def __init__(self, rels: list[Relation], cols: Callable[[Relation], list[int]],
                 mut: np.ndarray | None, zero_row: int, dev: torch.device) -> None:
        super().__init__(rels, cols, mut, zero_row, dev)
        oo = [r for r in rels if isinstance(r, OrderRelation)]
        chains = [cols(r) for r in oo]
        pairs = [list(itertools.pairwise(c)) for c in chains]
        self.lo = Padded([[a for a, _ in p] for p in pairs], zero_row, dev)
        self.hi = Padded([[b for _, b in p] for p in pairs], zero_row, dev)
        self.tol = f64_column([r.tol for r in oo], dev)[:, :, None]
        if mut is None:
            return
        mchains = [[bool(mut[c]) for c in r.columns()] for r in oo]
        width = max(len(c) for c in chains)
        # forward: raise each mutable value to its predecessor; backward: lower to the successor
        self.up: list[tuple[torch.Tensor, torch.Tensor]] = []
        for p in range(1, width):
            sel = [i for i, c in enumerate(chains) if len(c) > p and mchains[i][p]]
            if sel:
                self.up.append((long_tensor([chains[i][p - 1] for i in sel], dev),
                                long_tensor([chains[i][p] for i in sel], dev)))
        self.down: list[tuple[torch.Tensor, torch.Tensor]] = []
        for p in range(width - 1, 0, -1):
            sel = [i for i, c in enumerate(chains) if len(c) > p and mchains[i][p - 1]]
            if sel:
                self.down.append((long_tensor([chains[i][p] for i in sel], dev),
                                  long_tensor([chains[i][p - 1] for i in sel], dev)))

    def bad(self, raw: torch.Tensor) -> torch.Tensor:
        gap = torch.relu_(self.lo.gather(raw).sub_(self.hi.gather(raw)).sub_(self.tol))
        return gap.sum(1) > VIOLATION_EPS

    def repair(self, raw: torch.Tensor) -> None:
        for src, dst in self.up:
            raw.index_copy_(0, dst, torch.maximum(raw.index_select(0, dst),
                                                  raw.index_select(0, src)))
        for src, dst in self.down:
            raw.index_copy_(0, dst, torch.minimum(raw.index_select(0, dst),
                                                  raw.index_select(0, src)))


class FormulaGroup(RelationGroup):
    """``formula`` relations: a mutable target takes the expression's value. One expression
    evaluation per member (expressions differ in shape, so they are not batched)."""

    def __init__(self, rels: list[Relation], cols: Callable[[Relation], list[int]],
                 mut: np.ndarray | None, zero_row: int, dev: torch.device) -> None:
        super().__init__(rels, cols, mut, zero_row, dev)
        self.rels = [r for r in rels if isinstance(r, FormulaRelation)]
        self.rows = [dict(zip(r.features, cols(r), strict=True)) for r in self.rels]
        own = [r.columns()[0] for r in self.rels]
        self.moves = [mut is not None and bool(mut[c]) for c in own]

    def _bad_one(self, i: int, raw: torch.Tensor) -> torch.Tensor:
        rows = self.rows[i]
        rel = self.rels[i]
        return rel.violation_of(raw[rows[rel.target]], _getter(raw, rows)) > VIOLATION_EPS

    def bad(self, raw: torch.Tensor) -> torch.Tensor:
        return torch.stack([self._bad_one(i, raw) for i in range(len(self.rels))])

    def repair(self, raw: torch.Tensor) -> None:
        for i, rel in enumerate(self.rels):
            if not self.moves[i]:
                continue
            rows = self.rows[i]
            t = rows[rel.target]
            bad = self._bad_one(i, raw)
            value = rel.expected(_getter(raw, rows)).expand_as(raw[t])
            raw[t] = torch.where(bad, value, raw[t])


def _getter(raw: torch.Tensor, rows: dict[str, int]) -> Callable[[str], torch.Tensor]:
    return lambda name: raw[rows[name]]


_CLASSES: dict[str, type[Relation]] = {
    "zero_if_zero": ZeroIfZeroRelation, "sum": SumRelation, "ratio": RatioRelation,
    "order": OrderRelation, "formula": FormulaRelation,
}
GROUPS: dict[str, type[RelationGroup]] = {
    "zero_if_zero": ZeroIfZeroGroup, "sum": SumGroup, "ratio": RatioGroup, "order": OrderGroup,
    "formula": FormulaGroup,
}
"""Group class of each relation type (:func:`relation_kind`)."""


def relation_kind(rel: Relation) -> str:
    """The type of ``rel`` as a key of :data:`GROUPS`; TypeError when it has no batched repair."""
    for kind, cls in _CLASSES.items():
        if isinstance(rel, cls):
            return kind
    raise TypeError(f"relation {rel.name!r}: no batched repair for {type(rel).__name__}")
