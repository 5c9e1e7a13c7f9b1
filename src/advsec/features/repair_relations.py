"""Relation groups of :class:`~advsec.features.repair_plan.RepairPlan`: relations of one type
whose repairs commute run as one batched gather/where/scatter; the scheduling that proves which
rounds and checks can be skipped; the eps-ball-aware gates and movers of ``repair_in_ball``."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import numpy as np
import torch

from advsec.features.constraints import (
    VIOLATION_EPS,
    OrderRelation,
    RatioRelation,
    Relation,
    SumRelation,
    ZeroIfZeroRelation,
)
from advsec.features.repair_ops import (
    _F64,
    _INT,
    _LOG,
    _ROUND,
    BALL_TOL,
    _Conv,
    _f64col,
    _long,
    select,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from advsec.features.repair_plan import RepairPlan

__all__: list[str] = []


# ---------------------------------------------------------------------------- zero_if_zero gates
class _Gates:
    """The ``zero_if_zero`` relations with a mutable gate and a mutable zeroed feature, for
    :meth:`RepairPlan.ball_prefix`: ``G`` gates (sorted by gate row), ``Z`` zeroed rows, ``W``
    distinct gate rows."""

    def __init__(self, rels: list[Relation], num_mut: np.ndarray, plan: RepairPlan,
                 dev: torch.device) -> None:
        pos = plan.pos
        gates = sorted((r for r in rels if isinstance(r, ZeroIfZeroRelation)
                        and num_mut[r.columns()[0]]
                        and any(num_mut[c] for c in r.columns()[1:])),
                       key=lambda r: pos[r.columns()[0]])
        self.n = len(gates)
        if not gates:
            return
        when = [pos[r.columns()[0]] for r in gates]
        zeroed = sorted({pos[c] for r in gates for c in r.columns()[1:] if num_mut[c]})
        member = np.zeros((len(gates), len(zeroed)), dtype=np.float32)
        for g, r in enumerate(gates):
            for c in r.columns()[1:]:
                if num_mut[c]:
                    member[g, zeroed.index(pos[c])] = 1.0
        uniq = sorted(set(when))
        self.shared = len(uniq) != len(when)
        to_col = np.zeros((len(uniq), len(gates)), dtype=np.float32)
        for g, w in enumerate(when):
            to_col[uniq.index(w), g] = 1.0
        self.member = torch.as_tensor(member, device=dev)  # (G, Z)
        self.gate_to_col = torch.as_tensor(to_col, device=dev)  # (W, G)
        self.col_of_gate = _long([uniq.index(w) for w in when], dev)  # (G,)
        self.conv = _Conv(uniq, plan._flags, plan._params, dev)  # the W distinct gate rows
        self.zero_rows = _long(zeroed, dev)
        zero = torch.zeros((len(zeroed), 1), dtype=_F64, device=dev)
        zconv = _Conv(zeroed, plan._flags, plan._params, dev)
        self.zero_model = zconv.model_(zconv.quantize_(zero)).to(torch.float32)  # (Z, 1)
        self.tol = _f64col([r.tol for r in gates], dev)


class _Movers:
    """The relations whose repair moves a mutable target (``sum`` with a target column,
    ``ratio``), for :meth:`RepairPlan.ball_prefix`: ``M`` of them (one per target row, sorted
    by it), ``U`` mutable rows among their columns."""

    def __init__(self, rels: list[Relation], num_mut: np.ndarray, plan: RepairPlan,
                 dev: torch.device) -> None:
        pos = plan.pos

        def target(r: Relation) -> int | None:
            if isinstance(r, SumRelation) and isinstance(r.target, str):
                t = r.columns()[-1]
            elif isinstance(r, RatioRelation):
                t = r.columns()[0]
            else:
                return None
            return pos[t] if num_mut[t] else None

        first: dict[int, Relation] = {}
        for r in rels:
            t = target(r)
            if t is not None and t not in first:
                first[t] = r
        sums = [r for r in first.values() if isinstance(r, SumRelation)]
        ratios = [r for r in first.values() if isinstance(r, RatioRelation)]
        members = sums + ratios
        self.n = len(members)
        if not members:
            return
        k = plan.k
        self.sums = _Sum(sums, plan._map(pos), None, k, dev) if sums else None
        self.ratios = _Ratio(ratios, plan._map(pos), None, k, dev) if ratios else None
        targets = [target(r) for r in members]
        order = sorted(range(len(members)), key=lambda i: targets[i])
        self.perm = None if order == list(range(len(order))) else _long(order, dev)
        rows_t = [targets[i] for i in order]
        self.conv_t = _Conv([int(t) for t in rows_t if t is not None], plan._flags, plan._params,
                            dev)
        rows_u = sorted({pos[c] for r in members for c in r.columns() if num_mut[c]})
        member = np.zeros((len(rows_u), len(members)), dtype=np.float32)
        for j, i in enumerate(order):
            for c in members[i].columns():
                if num_mut[c]:
                    member[rows_u.index(pos[c]), j] = 1.0
        self.member = torch.as_tensor(member, device=dev)  # (U, M)
        self.conv_u = _Conv(rows_u, plan._flags, plan._params, dev)

    def pin_(self, raw: torch.Tensor, xk: torch.Tensor, x0k: torch.Tensor,
             eps: torch.Tensor) -> None:
        """Restore, in place, the columns of the broken relations whose new target would leave
        the ball: in ``xk`` ``(K, N)`` and in its raw values ``raw`` ``(K + 1, N)``."""
        preds, bads = [], []
        if self.sums is not None:
            total, _, bad = self.sums._parts(raw)
            preds.append(total)
            bads.append(bad)
        if self.ratios is not None:
            _, _, expected, bad = self.ratios._parts(raw)
            preds.append(expected)
            bads.append(bad)
        pred = preds[0] if len(preds) == 1 else torch.cat(preds)
        bad = bads[0] if len(bads) == 1 else torch.cat(bads)
        if self.perm is not None:
            pred, bad = pred.index_select(0, self.perm), bad.index_select(0, self.perm)
        value = self.conv_t.model_(self.conv_t.quantize_(pred.expand_as(bad).clone()))
        far = (value.to(xk.dtype) - self.conv_t.select(x0k)).abs_() > eps.T + BALL_TOL
        restore = (self.member @ (bad & far).to(torch.float32)) > 0  # (U, N)
        u = self.conv_u
        x0u = u.select(x0k)
        u.put_(xk, select(restore, x0u, u.select(xk)))
        u.put_(raw, select(restore, u.raw(x0u), u.select(raw)))


# ---------------------------------------------------------------------------- relation groups
def _kind(rel: Relation) -> str:
    for kind, cls in _CLASSES.items():
        if isinstance(rel, cls):
            return kind
    raise TypeError(f"relation {rel.name!r}: no batched repair for {type(rel).__name__}")


def _reads_writes(rel: Relation, mut: np.ndarray) -> tuple[set[int], set[int]]:
    """Columns the relation's repair reads and may write (mutable ones), as the reference does.

    ``zero_if_zero`` reads only its gate: it writes a constant where the gate is closed."""
    cols = rel.columns()
    if isinstance(rel, ZeroIfZeroRelation):
        return {cols[0]}, {c for c in cols[1:] if mut[c]}
    if isinstance(rel, SumRelation):
        n = len(rel.addends)
        target = cols[n] if isinstance(rel.target, str) else None
        if target is not None and mut[target]:
            return set(cols), {target}
        return set(cols), {c for c in cols[:n] if mut[c]}
    if isinstance(rel, RatioRelation):
        t, num, _ = cols
        return set(cols), ({t} if mut[t] else {num} if mut[num] else set())
    return set(cols), {c for c in cols if mut[c]}


def _schedule(rels: list[Relation], mut: np.ndarray) -> list[tuple[str, list[int]]]:
    """Relations (by index) grouped into stages of one type whose members commute.

    The stage order is the schema order up to swaps of commuting relations: a relation goes to
    the first stage of its type after every stage holding a relation it does not commute with.
    Relations that write nothing are left out (their repair is the identity).
    """
    rw = [_reads_writes(r, mut) for r in rels]
    kinds = [_kind(r) for r in rels]

    def conflict(i: int, j: int) -> bool:
        (ri, wi), (rj, wj) = rw[i], rw[j]
        if wi & rj or wj & ri:
            return True
        return bool(wi & wj) and not (kinds[i] == kinds[j] == "zero_if_zero")

    stages: list[tuple[str, list[int]]] = []
    for i in range(len(rels)):
        if not rw[i][1]:
            continue
        lo = 0
        for s, (_, members) in enumerate(stages):
            if any(conflict(i, j) for j in members):
                lo = s + 1
        for s in range(lo, len(stages)):
            if stages[s][0] == kinds[i]:
                stages[s][1].append(i)
                break
        else:
            stages.append((kinds[i], [i]))
    return stages


def _second_round_is_noop(rels: list[Relation], stages: list[tuple[str, list[int]]],
                          mut: np.ndarray, low: np.ndarray) -> bool:
    """True when a second pass over ``stages`` provably changes nothing (bit for bit).

    Every stage must settle its relations and leave them settled under a second application
    (idempotent), and no other stage may touch what a stage reads or writes, except that a
    ``zero_if_zero`` stage and a stage of *zero-preserving* ``<=`` sums may share columns: such
    a sum has a constant target >= 0, only mutable addends with lower bounds >= 0, and a target
    small enough that float round-off cannot leave it violated after scaling; scaling keeps
    zeros zero and zeroing keeps the sum below its target.
    """
    def zero_preserving(rel: Relation) -> bool:
        if not isinstance(rel, SumRelation) or rel.op != "<=" or isinstance(rel.target, str):
            return False
        cols = rel.columns()
        return (float(rel.target) >= 0 and all(mut[c] and low[c] >= 0 for c in cols)
                and (len(cols) + 4) * 2.0**-52 * float(rel.target) <= VIOLATION_EPS)

    def settles(rel: Relation) -> bool:
        cols = rel.columns()
        if isinstance(rel, ZeroIfZeroRelation):
            return True
        if isinstance(rel, SumRelation):
            n = len(rel.addends)
            if isinstance(rel.target, str) and mut[cols[n]]:
                return cols[n] not in cols[:n]
            return zero_preserving(rel)
        if isinstance(rel, RatioRelation):
            t, num, den = cols
            return (t not in (num, den)) if mut[t] else (num not in (t, den))
        return False

    info = []
    for kind, members in stages:
        reads: set[int] = set()
        writes: set[int] = set()
        for i in members:
            r, w = _reads_writes(rels[i], mut)
            reads |= r
            writes |= w
        if not all(settles(rels[i]) for i in members):
            return False
        if kind == "zero_if_zero" and reads & writes:  # a gate zeroed by its own stage
            return False
        zp = kind == "sum" and all(zero_preserving(rels[i]) for i in members)
        info.append((kind, reads, writes, zp))
    for (ks, rs, ws, zs), (kt, _rt, wt, zt) in itertools.permutations(info, 2):
        if not wt & (rs | ws):
            continue
        if ks == "zero_if_zero" and zt and not wt & rs:
            continue  # a zero-preserving sum writes zeroed features, never a gate
        if zs and kt == "zero_if_zero":
            continue  # zeroing addends keeps a <= sum settled
        return False
    return True


def _relations_always_hold(rels: list[Relation], mut: np.ndarray, flags: np.ndarray,
                           params: dict[str, np.ndarray]) -> bool:
    """True when every relation provably holds on the decoded result of one round of stages
    (given :func:`_second_round_is_noop`), so that the violation check never reverts anything.

    Only ``zero_if_zero`` relations whose zeroed features are all mutable and zero-preserving
    ``<=`` sums qualify: their repairs leave values in ``[0, v]``, which must lie in the fitted
    range; a sum's rounding to the grid (half a step per addend) must fit in its slack; and every
    feature they read must survive the float32 model round trip: the float32 rounding of the
    model value moves the raw value by less than a quarter grid step, so decoding gives it back.
    """
    span, lo, low, high, scale = (params[k] for k in ("span", "lo", "low", "high", "scale"))

    def in_range_zero(c: int) -> bool:  # 0 is a raw value of the column, on its grid
        return low[c] <= 0 <= high[c] and lo[c] <= 0 <= lo[c] + span[c]

    def half_step(c: int) -> float:
        return 0.5 / scale[c] if flags[c] & (_INT | _ROUND) else 0.0

    def round_trip(c: int) -> bool:
        if not flags[c] & (_INT | _ROUND):
            return False
        slope = span[c] * (1.0 + np.expm1(lo[c] + span[c])) if flags[c] & _LOG else span[c]
        err = slope * 2.0**-23 + 1e-12 * (abs(lo[c]) + span[c] + 1.0)
        return bool(np.isfinite(err) and err <= half_step(c) / 4)

    for rel in rels:
        cols = rel.columns()
        if not all(round_trip(c) for c in cols):
            return False
        if isinstance(rel, ZeroIfZeroRelation):
            if not all(mut[c] and in_range_zero(c) for c in cols[1:]):
                return False
        elif isinstance(rel, SumRelation) and rel.op == "<=" and not isinstance(rel.target,
                                                                                    str):
            target = float(rel.target)
            slack = rel.tol + rel.rtol * abs(target)
            if not (target >= 0 and all(mut[c] and low[c] >= 0 and in_range_zero(c)
                                        for c in cols)):
                return False
            if sum(half_step(c) for c in cols) > slack:
                return False
            if (len(cols) + 4) * 2.0**-52 * 2 * (target + slack + 1) > VIOLATION_EPS:
                return False
        else:
            return False
    return True


class _Group:
    """Relations of one type, batched over working rows ``raw`` ``(K + 1, N)`` whose last row
    is zero (the padding of ragged column lists): ``bad`` and an in-place ``repair``."""

    def __init__(self, rels: list[Relation], cols: Callable[[Relation], list[int]],
                 mut: np.ndarray | None, zero_row: int, dev: torch.device) -> None:
        self.n = len(rels)

    def bad(self, raw: torch.Tensor) -> torch.Tensor:
        """``(n, N)`` bool: violation above ``VIOLATION_EPS`` for each member."""
        raise NotImplementedError

    def repair(self, raw: torch.Tensor) -> None:
        """Repair ``raw`` in place, as each member's reference repair would (they commute)."""
        raise NotImplementedError


class _Padded:
    """Ragged row lists as a padded ``(n, L)`` index whose padding is the zero row."""

    def __init__(self, lists: list[list[int]], zero_row: int, dev: torch.device) -> None:
        width = max(1, max((len(c) for c in lists), default=1))
        idx = np.full((len(lists), width), zero_row, dtype=np.int64)
        for i, c in enumerate(lists):
            idx[i, : len(c)] = c
        self.shape = idx.shape
        self.idx = _long(idx.reshape(-1).tolist(), dev)
        valid = idx.reshape(-1) != zero_row
        self.full = bool(valid.all())
        self.valid = _long(np.flatnonzero(valid).tolist(), dev)
        self.rows = _long(idx.reshape(-1)[valid].tolist(), dev)

    def gather(self, raw: torch.Tensor) -> torch.Tensor:
        """``(n, L, N)`` values; padding reads the zero row."""
        return raw.index_select(0, self.idx).view(*self.shape, raw.shape[1])

    def scatter(self, raw: torch.Tensor, vals: torch.Tensor) -> None:
        """Write ``vals`` ``(n, L, N)`` back to the real entries' rows of ``raw``."""
        flat = vals.reshape(-1, raw.shape[1])
        raw.index_copy_(0, self.rows, flat if self.full else flat.index_select(0, self.valid))


class _ZeroIfZero(_Group):
    def __init__(self, rels: list[Relation], cols: Callable[[Relation], list[int]],
                 mut: np.ndarray | None, zero_row: int, dev: torch.device) -> None:
        super().__init__(rels, cols, mut, zero_row, dev)
        zz = [r for r in rels if isinstance(r, ZeroIfZeroRelation)]
        self.when = _long([cols(r)[0] for r in zz], dev)
        self.tol = _f64col([r.tol for r in zz], dev)  # (G, 1)
        self.zeroed = _Padded([cols(r)[1:] for r in zz], zero_row, dev)
        if mut is None:
            return
        # repair: the mutable zeroed rows, each with its gate(s)
        rows = sorted({cols(r)[1 + i] for r in zz for i, c in enumerate(r.columns()[1:])
                       if mut[c]})
        owners = [[g for g, r in enumerate(zz) if w in cols(r)[1:]] for w in rows]
        self.rows = _long(rows, dev)
        self.single = all(len(o) == 1 for o in owners)
        self.owner = _long([o[0] for o in owners], dev)
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


class _Sum(_Group):
    def __init__(self, rels: list[Relation], cols: Callable[[Relation], list[int]],
                 mut: np.ndarray | None, zero_row: int, dev: torch.device) -> None:
        super().__init__(rels, cols, mut, zero_row, dev)
        ss = [r for r in rels if isinstance(r, SumRelation)]
        self.addends = _Padded([cols(r)[: len(r.addends)] for r in ss], zero_row, dev)
        is_col = [isinstance(r.target, str) for r in ss]
        self.any_col, self.all_col = any(is_col), all(is_col)
        self.tcol = _long([cols(r)[-1] if c else zero_row for r, c in zip(ss, is_col,
                                                                           strict=True)], dev)
        self.is_col = torch.as_tensor(is_col, device=dev)[:, None]
        self.tconst = _f64col([0.0 if c else float(r.target)
                               for r, c in zip(ss, is_col, strict=True)], dev)
        le = [r.op == "<=" for r in ss]
        self.any_le, self.all_le = any(le), all(le)
        self.le = torch.as_tensor(le, device=dev)[:, None]
        self.tol = _f64col([r.tol for r in ss], dev)
        self.rtol = _f64col([r.rtol for r in ss], dev)
        self.any_rtol = any(r.rtol for r in ss)
        if mut is None:
            return
        # repair branches: a mutable target column moves; else the mutable addends scale
        move = [i for i, r in enumerate(ss) if is_col[i] and mut[r.columns()[-1]]]
        scale = [i for i, r in enumerate(ss) if i not in move
                 and any(mut[c] for c in r.columns()[: len(r.addends)])]
        self.move = _long(move, dev) if move else None
        self.move_rows = _long([cols(ss[i])[-1] for i in move], dev)
        self.scale_idx = _long(scale, dev) if scale and len(scale) < self.n else None
        muts = [[cols(ss[i])[j] for j, c in enumerate(ss[i].columns()[: len(ss[i].addends)])
                 if mut[c]] for i in scale]
        self.mut = _Padded(muts, zero_row, dev) if muts else None
        self.n_mut = _f64col([float(len(m)) for m in muts], dev)[:, :, None] if muts else None
        # every member scales all of its addends (all mutable) to a constant target >= 0: then
        # the reference's required value is the target itself, the share target / total
        self.simple = not move and len(scale) == self.n and all(
            not is_col[i] and float(ss[i].target) >= 0
            and all(mut[c] for c in ss[i].columns()[: len(ss[i].addends)]) for i in scale)

    def _parts(self, raw: torch.Tensor,
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
        return self._parts(raw)[2]

    def repair(self, raw: torch.Tensor) -> None:
        if self.simple:  # vals * share where broken: the reference's arithmetic, bit for bit
            vals = self.addends.gather(raw)  # (S, L, N)
            total, target, bad = self._parts(raw, vals)
            factor = torch.where(bad, target / total, 1.0)
            self.addends.scatter(raw, vals.mul_(factor[:, None, :]))
            return
        total, target, bad = self._parts(raw)
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


class _Ratio(_Group):
    def __init__(self, rels: list[Relation], cols: Callable[[Relation], list[int]],
                 mut: np.ndarray | None, zero_row: int, dev: torch.device) -> None:
        super().__init__(rels, cols, mut, zero_row, dev)
        rr = [r for r in rels if isinstance(r, RatioRelation)]
        c = [cols(r) for r in rr]
        self.t = _long([v[0] for v in c], dev)
        self.num = _long([v[1] for v in c], dev)
        self.den = _long([v[2] for v in c], dev)
        self.scale = _f64col([r.scale for r in rr], dev)
        self.tol = _f64col([r.tol for r in rr], dev)
        self.rtol = _f64col([r.rtol for r in rr], dev)
        self.any_rtol = any(r.rtol for r in rr)
        if mut is None:
            return
        m = [r.columns() for r in rr]
        move = [i for i, v in enumerate(m) if mut[v[0]]]
        follow = [i for i, v in enumerate(m) if not mut[v[0]] and mut[v[1]]]
        self.move = _long(move, dev) if move else None
        self.follow = _long(follow, dev) if follow else None
        self.move_rows = _long([c[i][0] for i in move], dev)
        self.follow_rows = _long([c[i][1] for i in follow], dev)

    def _parts(self, raw: torch.Tensor) -> tuple[torch.Tensor, ...]:
        t = raw.index_select(0, self.t)
        num = raw.index_select(0, self.num)
        den = raw.index_select(0, self.den)
        nonzero = den != 0
        expected = torch.where(nonzero, self.scale * num / torch.where(nonzero, den, 1.0), 0.0)
        slack = self.rtol * t.abs() + self.tol if self.any_rtol else self.tol
        bad = (t - expected).abs_().sub_(slack) > VIOLATION_EPS
        return t, den, expected, bad

    def bad(self, raw: torch.Tensor) -> torch.Tensor:
        return self._parts(raw)[3]

    def repair(self, raw: torch.Tensor) -> None:
        t, den, expected, bad = self._parts(raw)
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


class _Order(_Group):
    def __init__(self, rels: list[Relation], cols: Callable[[Relation], list[int]],
                 mut: np.ndarray | None, zero_row: int, dev: torch.device) -> None:
        super().__init__(rels, cols, mut, zero_row, dev)
        oo = [r for r in rels if isinstance(r, OrderRelation)]
        chains = [cols(r) for r in oo]
        pairs = [list(itertools.pairwise(c)) for c in chains]
        self.lo = _Padded([[a for a, _ in p] for p in pairs], zero_row, dev)
        self.hi = _Padded([[b for _, b in p] for p in pairs], zero_row, dev)
        self.tol = _f64col([r.tol for r in oo], dev)[:, :, None]
        if mut is None:
            return
        mchains = [[bool(mut[c]) for c in r.columns()] for r in oo]
        width = max(len(c) for c in chains)
        # forward: raise each mutable value to its predecessor; backward: lower to the successor
        self.up: list[tuple[torch.Tensor, torch.Tensor]] = []
        for p in range(1, width):
            sel = [i for i, c in enumerate(chains) if len(c) > p and mchains[i][p]]
            if sel:
                self.up.append((_long([chains[i][p - 1] for i in sel], dev),
                                _long([chains[i][p] for i in sel], dev)))
        self.down: list[tuple[torch.Tensor, torch.Tensor]] = []
        for p in range(width - 1, 0, -1):
            sel = [i for i, c in enumerate(chains) if len(c) > p and mchains[i][p - 1]]
            if sel:
                self.down.append((_long([chains[i][p] for i in sel], dev),
                                  _long([chains[i][p - 1] for i in sel], dev)))

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


_CLASSES: dict[str, type[Relation]] = {
    "zero_if_zero": ZeroIfZeroRelation, "sum": SumRelation, "ratio": RatioRelation,
    "order": OrderRelation,
}
_GROUPS: dict[str, type[_Group]] = {
    "zero_if_zero": _ZeroIfZero, "sum": _Sum, "ratio": _Ratio, "order": _Order,
}
