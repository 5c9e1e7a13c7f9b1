"""The fast path of :meth:`FeatureSpace.repair`: index tensors compiled once per (space, device).

:meth:`FeatureSpace.repair` used to spend almost all of its time on per-op overhead: a Python
loop over relations (run twice), one ``torch.cat`` per one-hot block, repeated float64
conversions and ``bool(t.any())`` host syncs. A :class:`RepairPlan` runs the same steps as a
short, fixed sequence of batched tensor ops:

- only the *mutable* one-hot blocks get the argmax (immutable ones are ``x_orig``'s already);
- float64 raw units only on the ``K`` numeric columns, held transposed, ``(K, N)``, with the
  columns permuted so that log1p-scaled, integer and rounded columns form contiguous runs
  (:class:`~advsec.features.repair.layout.WorkingLayout`): the conversions are a few in-place
  ops on row slices, with no ``where``;
- relations are grouped into *stages*: relations of one type whose repairs commute run as one
  gather/where/scatter (:mod:`~advsec.features.repair.groups`). The stage order is the schema
  order up to swaps of commuting relations, so the result is exactly what the per-relation
  reference (:func:`~advsec.features.repair.reference.repair_reference`, every relation twice,
  in order) gives, in any configuration; the second round is skipped when the plan proves it
  changes nothing (:mod:`~advsec.features.repair.schedule`);
- the violation check that follows runs once, batched, on the relations' columns only, and
  flags the rows where it reverted something instead of syncing; :meth:`RepairPlan.finish`
  completes those rows. It is skipped when the plan proves it can revert nothing (relations
  that always hold after their repair, on columns that survive the float32 round trip);
- a *guarded* repair (:meth:`RepairPlan.repair_guarded`) runs grid rounding, the guard's
  prefix (:meth:`RepairPlan.guard_prefix`) and the repair fused in one pass, and lets a
  :class:`~advsec.features.repair.guard.RepairGuard` refuse moves away from the original;
  bitwise blends (:func:`~advsec.features.repair.ops.select`) replace ``torch.where`` on large
  CPU tensors.

Shapes: ``N`` rows, ``D`` model columns, ``K`` numeric features (the columns of
:meth:`FeatureSpace.to_raw`), ``R`` relations. Inside the plan, numeric values are ``(K, N)``
("working" layout, rows in the plan's order); the public methods take and return ``(N, D)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from advsec.features.constraints import Relation, ZeroIfZeroRelation
from advsec.features.repair.groups import GROUPS, RelationGroup, relation_kind
from advsec.features.repair.guard import ChangedPart
from advsec.features.repair.layout import WorkingLayout
from advsec.features.repair.onehot import OneHotBlocks
from advsec.features.repair.ops import F64, INT, ROUND, long_tensor, select
from advsec.features.repair.proposals import GateClosures, TargetMovers
from advsec.features.repair.schedule import (
    relations_always_hold,
    schedule,
    second_round_is_noop,
)

if TYPE_CHECKING:
    from advsec.features.repair.guard import RepairGuard
    from advsec.features.space import FeatureSpace

__all__ = ["RepairPlan"]


class RepairPlan:
    """Everything :meth:`FeatureSpace.repair` needs on one device, as tensors.

    Build it with :meth:`FeatureSpace.repair_plan` (cached per device). Public methods take
    model inputs ``x``, ``x0`` of shape ``(N, D)``.
    """

    def __init__(self, space: FeatureSpace, device: torch.device | str) -> None:
        lay = self.layout = WorkingLayout(space, device)
        dev = self.device = lay.device
        self.relations: list[Relation] = list(space.relations_)
        self.mutable = space.torch_view(dev).mutable
        self.idx = lay.idx  # (K,) model column of numeric feature k
        self.k = k = lay.k
        self.pos = lay.pos  # numeric feature -> working row
        self.widx = lay.widx
        mut_np, wflags = lay.mut, lay.wflags
        self.conv = lay.conversions(list(range(k)))
        self.n_mutable = lay.n_mutable
        self.imm_rows = (torch.arange(self.n_mutable, k, device=dev)
                         if self.n_mutable < k else None)
        quant = [p for p in range(k) if lay.wmut[p] and wflags[p] & (INT | ROUND)]
        self.grid = lay.conversions(quant) if quant else None
        # -- mutable one-hot blocks
        blocks = [(a, b) for f, a, b in space.blocks_ if not f.is_numeric and f.mutable]
        self.blocks = blocks
        self.onehot: OneHotBlocks | None = OneHotBlocks(blocks, dev) if blocks else None
        # -- relations: repair stages (working rows + a zero row at K) and the violation check
        rels = self.relations
        sched = schedule(rels, mut_np)
        self.stages: list[RelationGroup] = [
            GROUPS[kind]([rels[i] for i in members], lay.rows_of(), mut_np, k, dev)
            for kind, members in sched]
        # a second round of the stages (the reference repairs every relation twice) and the
        # violation check after the repair are skipped where the plan proves them no-ops
        self.rounds = 1 if second_round_is_noop(rels, sched, mut_np, lay.params["low"]) else 2
        self.check = bool(rels) and not (self.rounds == 1 and relations_always_hold(
            rels, mut_np, lay.flags, lay.params))
        rel_feats = sorted({self.pos[c] for r in rels for c in r.columns()})
        self.rel_rows = long_tensor(rel_feats, dev)
        self.rel_conv = lay.conversions(rel_feats) if rels else None
        sub = {j: rel_feats.index(self.pos[j]) for r in rels for j in r.columns()}
        self.checks: list[RelationGroup] = []
        check_order: list[int] = []
        for kind in GROUPS:
            members = [i for i, r in enumerate(rels) if relation_kind(r) == kind]
            if members:
                self.checks.append(GROUPS[kind]([rels[i] for i in members], lay.rows_of(sub),
                                                None, len(rel_feats), dev))
                check_order.extend(members)
        cols = np.zeros((len(rel_feats), len(rels)), dtype=np.float32)
        for row, i in enumerate(check_order):
            cols[[sub[c] for c in rels[i].columns()], row] = 1.0
        self.rel_cols = torch.as_tensor(cols, device=dev)  # (Kr, R), columns in check order
        self.gates = GateClosures(rels, lay, dev)
        self.movers = TargetMovers(rels, lay, dev)

    # ------------------------------------------------------------------ layout
    def gather(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, D)`` model inputs -> their numeric columns, ``(K, N)`` in working order."""
        return x.T.index_select(0, self.widx)

    def scatter(self, out: torch.Tensor, xk: torch.Tensor) -> None:
        """Write working rows ``xk`` ``(K, N)`` back into ``out`` ``(N, D)`` in place."""
        out.T.index_copy_(0, self.widx, xk)

    # ------------------------------------------------------------------ the repair
    def repair(self, x: torch.Tensor, x0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One pass of the repair of ``x`` ``(N, D)`` into valid records, no host sync.

        Same result as the reference :meth:`FeatureSpace.repair_reference` after the first
        round of its violation check; rows where that round reverted something come back
        flagged, and :meth:`finish` completes them.

        Returns:
            ``(out, pending)``: the repaired ``(N, D)`` inputs and a ``(N,)`` bool tensor.
        """
        with torch.no_grad():
            return self._run(x, x0, None, grid=False)

    def repair_guarded(self, x: torch.Tensor, x0: torch.Tensor, guard: RepairGuard, *,
                       grid: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`round_to_grid` (when ``grid``), :meth:`guard_prefix` and :meth:`repair` of
        ``x`` ``(N, D)`` fused into one pass (the same result, bit for bit). Rows the guard
        refuses afterwards (:meth:`RepairGuard.refuses`) are flagged in ``pending`` too.

        Returns:
            ``(out, pending)``: the repaired ``(N, D)`` inputs and a ``(N,)`` bool tensor.
        """
        with torch.no_grad():
            return self._run(x, x0, guard, grid=grid)

    #: :meth:`repair_guarded` under the name its eps-ball callers use
    #: (:func:`advsec.attacks.repair.repair_in_ball`, whose guard is an attack's eps-ball)
    repair_in_ball = repair_guarded

    def _run(self, x: torch.Tensor, x0: torch.Tensor, guard: RepairGuard | None, *,
             grid: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """The repair of ``x`` ``(N, D)`` (guarded when ``guard`` is given; grid rounding first
        when ``grid`` too): ``(out (N, D), pending (N,) bool)``."""
        if guard is not None and self.onehot is not None:
            x = self._prefix_onehot(x, x0, guard)
        out = x0.clone()  # immutable columns (and blocks) are the original's, bit for bit
        n = x.shape[0]
        pending: torch.Tensor | None = None  # (N,) bool, allocated only when needed
        parts: list[ChangedPart] = []
        if self.onehot is not None:
            oh = self.onehot
            hot = oh.argmax_onehot(torch.clamp(x[:, oh.flat], 0.0, 1.0)).to(x.dtype)
            x0b = x0[:, oh.flat]
            hot = select(hot == x0b, x0b, hot)  # unchanged entries keep their bits
            out[:, oh.flat] = hot
            if guard is not None:
                parts.append(ChangedPart(hot.T, x0b.T, oh.take))
        if self.k:
            xk, x0k = self.gather(x), self.gather(x0)
            if grid and guard is not None:
                self._grid_(xk, x0k, x, x0, guard)
            if guard is not None:
                self.gates.restore_refused_(xk, x0k, guard)
            xk.clamp_(0.0, 1.0)  # the projection: bounds, immutables
            if self.imm_rows is not None:
                xk[self.n_mutable:] = x0k[self.n_mutable:]
            raw = torch.empty((self.k + 1, n), dtype=F64, device=x.device)
            raw[self.k] = 0.0  # the padding row of the relation groups
            work = raw[: self.k]
            self.conv.raw_into(xk, work)
            if guard is not None and self.movers.n:
                self.movers.restore_refused_(raw, xk, x0k, guard)
            if self.stages:
                raw0 = work.clone()
                for _ in range(self.rounds):
                    for stage in self.stages:
                        stage.repair(raw)
                self.conv.quantize_(work)
                untouched = (xk == x0k) & (work == raw0)
            else:
                untouched = xk == x0k
            new = select(untouched, x0k, self.conv.model_(work).to(x.dtype))
            if self.check:
                pending = self._revert_once_(new, x0k)
            self.scatter(out, new)
            if guard is not None:
                parts.append(ChangedPart(new, x0k, self.gather))
        if guard is not None and parts:
            refused = guard.refuses(parts)
            pending = refused if pending is None else pending | refused
        if pending is None:
            pending = torch.zeros(n, dtype=torch.bool, device=x.device)
        return out, pending

    def _revert_once_(self, new: torch.Tensor, x0k: torch.Tensor) -> torch.Tensor:
        """One round of the violation check on working rows ``new`` ``(K, N)`` (in place): every
        relation a decoded record breaks gets its changed columns back from ``x0k``. Returns
        ``(N,)`` True where something was reverted."""
        conv = self.rel_conv
        assert conv is not None
        sub = new.index_select(0, self.rel_rows)
        sub0 = x0k.index_select(0, self.rel_rows)
        raw = torch.empty((len(sub) + 1, sub.shape[1]), dtype=F64, device=new.device)
        raw[-1] = 0.0
        conv.raw_into(sub, raw[:-1])
        bad = torch.cat([g.bad(raw) for g in self.checks]) if len(self.checks) > 1 else (
            self.checks[0].bad(raw))
        revert = ((self.rel_cols @ bad.to(torch.float32)) > 0) & (sub != sub0)
        new.index_copy_(0, self.rel_rows, select(revert, sub0, sub))
        return revert.any(0)

    def finish(self, x: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        """Complete the violation check of a :meth:`repair` result ``x`` ``(N, D)`` (syncs; a
        no-op where the plan proved that the check reverts nothing)."""
        if not self.check or not len(x):
            return x
        with torch.no_grad():
            xk, x0k = self.gather(x), self.gather(x0)
            for _ in range(len(self.relations)):
                if not bool(self._revert_once_(xk, x0k).any()):
                    break
            x = x.clone()
            self.scatter(x, xk)
        return x

    # ------------------------------------------------------------------ the grid
    def round_to_grid(self, x: torch.Tensor, x0: torch.Tensor,
                      guard: RepairGuard) -> torch.Tensor:
        """``x`` ``(N, D)`` with its mutable quantised numeric columns on their grid: each
        value goes to its nearest grid value where ``guard`` accepts it
        (:meth:`RepairGuard.accepts_nearest`), else to the grid value next to ``x`` on the
        original's side. An entry ``x`` left at ``x0``, or whose grid value is within 4e-7 of
        it, keeps the original's bits. Float32 arithmetic; no host sync."""
        if self.grid is None or not len(x):
            return x
        with torch.no_grad():
            xk, x0k = self.gather(x), self.gather(x0)
            self._grid_(xk, x0k, x, x0, guard)
            out = x.clone()
            self.scatter(out, xk)
        return out

    def _grid_(self, xk: torch.Tensor, x0k: torch.Tensor, x: torch.Tensor, x0: torch.Tensor,
               guard: RepairGuard) -> None:
        """Put the quantised rows of ``xk`` ``(K, N)`` on their grid in place (``x``, ``x0``:
        the ``(N, D)`` inputs, for the guard)."""
        g = self.grid
        if g is None:
            return
        xc, x0c = g.select(xk), g.select(x0k)
        t = xc.clamp(0.0, 1.0)  # float32: the kernel redoes the raw values in float64
        if not g.unit_span:
            t.mul_(g.g_span)
        if not g.zero_lo:
            t.add_(g.g_lo)
        for a, b in g.log_runs:
            t[a:b].expm1_()
        g.grid_clip_(t)
        for a, b, sc, _ in g.g_runs:  # grid units (the step of integers is 1)
            t[a:b].mul_(sc)
        near = g.grid_to_model_(torch.add(t, 0.5).floor_())
        ok = guard.accepts_nearest(near, xc, x0c, x, x0)
        side = torch.ones_like(xc).copysign_(xc - x0c)
        toward = g.grid_to_model_(t.mul_(side).floor_().mul_(side))  # next grid value to x0
        new = select(ok, near, toward)
        # the original's grid value (or an untouched entry) keeps its bits; 4e-7 allows for the
        # float32 round-off and is below the model spacing of the grid wherever it matters
        keep = ((new - x0c).abs_() <= 4e-7) | (xc == x0c)
        g.put_(xk, select(keep, x0c, new))

    # ------------------------------------------------------------------ the guard's prefix
    def guard_prefix(self, x: torch.Tensor, x0: torch.Tensor,
                     guard: RepairGuard) -> torch.Tensor:
        """``x`` ``(N, D)`` with what the repair would move and ``guard`` refuses kept at ``x0``.

        - a ``zero_if_zero`` gate (``when``) the input closed, when the guard refuses the
          zeroing of the relation's mutable features (:meth:`RepairGuard.refuses_closing`):
          the gate gets its original value back (the features keep the input's values);
        - a relation that moves a mutable target (``sum`` with a target column, ``ratio``)
          and is broken, when the target it would set is :meth:`RepairGuard.too_far` from the
          original's: every mutable column of the relation gets its original value back (the
          original satisfies the relation, so the target stays);
        - a mutable one-hot block whose argmax would move an entry :meth:`RepairGuard.too_far`:
          the block gets its original values back.

        Model-space step shared by the fast and the reference repair (:meth:`repair_guarded`
        runs it fused); numeric columns come back projected.
        """
        with torch.no_grad():
            if self.onehot is not None:
                x = self._prefix_onehot(x, x0, guard)
            if self.gates.n or self.movers.n:
                xk, x0k = self.gather(x), self.gather(x0)
                self.gates.restore_refused_(xk, x0k, guard)
                if self.movers.n:
                    xk.clamp_(0.0, 1.0)
                    if self.imm_rows is not None:
                        xk[self.n_mutable:] = x0k[self.n_mutable:]
                    raw = torch.empty((self.k + 1, len(x)), dtype=F64, device=x.device)
                    raw[self.k] = 0.0
                    self.conv.raw_into(xk, raw[: self.k])
                    self.movers.restore_refused_(raw, xk, x0k, guard)
                x = x.clone()
                self.scatter(x, xk)
        return x

    def _prefix_onehot(self, x: torch.Tensor, x0: torch.Tensor,
                       guard: RepairGuard) -> torch.Tensor:
        """``x`` ``(N, D)`` with the mutable one-hot blocks whose argmax would move an entry
        too far (for ``guard``) back at ``x0``'s values."""
        oh = self.onehot
        assert oh is not None
        hot = oh.argmax_onehot(torch.clamp(x[:, oh.flat], 0.0, 1.0)).to(x.dtype)
        x0b = x0[:, oh.flat]
        far = guard.too_far((hot - x0b).abs(), records_first=True)  # (N, F)
        far = (far.to(torch.float32) @ oh.block_member) > 0
        keep = (far.to(torch.float32) @ oh.block_member.T) > 0
        x = x.clone()
        x[:, oh.flat] = torch.where(keep, x0b, x[:, oh.flat])
        return x

    # ------------------------------------------------------------------ blame
    def blame(self, bad: torch.Tensor, xr: torch.Tensor) -> torch.Tensor:
        """``(N, D)`` bool: what to restore from the original so that the entries ``bad`` of
        the repaired ``xr`` ``(N, D)`` are not moved next time (slow path, Python loops).

        The entries themselves; for an entry a closed ``zero_if_zero`` gate zeroed, that gate;
        for any other bad entry, every mutable column of each relation that holds it; whole
        one-hot blocks.
        """
        out = bad.clone()
        mutable = self.mutable.tolist()
        idx = self.idx.tolist()
        if self.relations:
            raw = self.conv.raw(self.gather(xr))  # (K, N), working rows
            claimed = torch.zeros_like(bad)
            for rel in self.relations:
                if not isinstance(rel, ZeroIfZeroRelation):
                    continue
                k = rel.columns()
                cols = [idx[c] for c in k[1:]]
                hit = bad[:, cols] & (raw[self.pos[k[0]]].abs() <= rel.tol)[:, None]
                claimed[:, cols] |= hit
                if mutable[idx[k[0]]]:
                    out[:, idx[k[0]]] |= hit.any(1)
            rest = bad & ~claimed
            for rel in self.relations:
                if isinstance(rel, ZeroIfZeroRelation):
                    continue
                cols = [idx[c] for c in rel.columns()]
                hit = rest[:, cols].any(1)
                for c in cols:
                    if mutable[c]:
                        out[:, c] |= hit
        for a, b in self.blocks:
            out[:, a:b] |= bad[:, a:b].any(1, keepdim=True)
        return out
