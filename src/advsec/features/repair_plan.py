"""The fast path of :meth:`FeatureSpace.repair`: index tensors compiled once per (space, device).

:meth:`FeatureSpace.repair` used to spend almost all of its time on per-op overhead: a Python
loop over relations (run twice), one ``torch.cat`` per one-hot block, repeated float64
conversions and ``bool(t.any())`` host syncs. A :class:`RepairPlan` runs the same steps as a
short, fixed sequence of batched tensor ops:

- only the *mutable* one-hot blocks get the argmax (immutable ones are ``x_orig``'s already);
- float64 raw units only on the ``K`` numeric columns, held transposed, ``(K, N)``, with the
  columns permuted so that log1p-scaled, integer and rounded columns form contiguous runs: the
  conversions are a few in-place ops on row slices, with no ``where``;
- relations are grouped into *stages*: relations of one type whose repairs commute run as one
  gather/where/scatter. The stage order is the schema order up to swaps of commuting relations,
  so the result is exactly what the per-relation reference
  (:meth:`~advsec.features.constraints.Relation.repair`, every relation twice, in order) gives,
  in any configuration; the second round is skipped when the plan proves it changes nothing;
- the violation check that follows runs once, batched, on the relations' columns only, and
  flags the rows where it reverted something instead of syncing; :meth:`RepairPlan.finish`
  completes those rows. It is skipped when the plan proves it can revert nothing (relations
  that always hold after their repair, on columns that survive the float32 round trip);
- for :func:`advsec.attacks.repair.repair_in_ball`, grid rounding, an eps-ball-aware prefix
  (:meth:`RepairPlan.ball_prefix`) and the repair run fused in one pass
  (:meth:`RepairPlan.repair_in_ball`); bitwise blends (:func:`select`) replace ``torch.where``
  on large CPU tensors.

Shapes: ``N`` rows, ``D`` model columns, ``K`` numeric features (the columns of
:meth:`FeatureSpace.to_raw`), ``R`` relations. Inside the plan, numeric values are ``(K, N)``
("working" layout, rows in the plan's order); the public methods take and return ``(N, D)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from advsec.features.constraints import (
    Relation,
    ZeroIfZeroRelation,
)
from advsec.features.repair_ops import (
    _F64,
    _INT,
    _LOG,
    _ROUND,
    BALL_TOL,
    _Conv,
    _long,
    _OneHot,
    select,
)
from advsec.features.repair_relations import (
    _GROUPS,
    _Gates,
    _Group,
    _kind,
    _Movers,
    _relations_always_hold,
    _schedule,
    _second_round_is_noop,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from advsec.features.space import FeatureSpace

__all__ = ["BALL_TOL", "Ball", "RepairPlan", "select"]



@dataclass(frozen=True)
class Ball:
    """The eps-ball a repair must stay in.

    Attributes:
        eps: ``(N, 1)`` radii; norm: ``"linf"`` or ``"l2"``; x: ``(N, D)`` the attack's
            iterate (L2: a repaired entry may move as far from the original as the iterate did).
    """

    eps: torch.Tensor
    norm: str
    x: torch.Tensor


class RepairPlan:
    """Everything :meth:`FeatureSpace.repair` needs on one device, as tensors.

    Build it with :meth:`FeatureSpace.repair_plan` (cached per device). Public methods take
    model inputs ``x``, ``x0`` of shape ``(N, D)``.
    """

    def __init__(self, space: FeatureSpace, device: torch.device | str) -> None:
        dev = torch.device(device)
        view = space.torch_view(dev)
        nv = space._numeric_view(dev)
        self.device = dev
        self.relations: list[Relation] = list(space.relations_)
        self.mutable = view.mutable
        self.idx = nv.idx  # (K,) model column of numeric feature k
        idx_np = np.asarray(nv.idx_np, dtype=np.int64)
        self.k = k = len(idx_np)
        mut_np = np.asarray(space.mutable_mask, dtype=bool)[idx_np]
        flags = (np.where(nv.log1p.cpu().numpy(), _LOG, 0)
                 | np.where(nv.integer.cpu().numpy(), _INT, 0)
                 | np.where(nv.round_scale.cpu().numpy() > 0, _ROUND, 0))
        # working order: mutable first; inside, log&plain, log&round, log&int, int, round, plain
        seg = {_LOG: 0, _LOG | _ROUND: 1, _LOG | _INT: 2, _INT: 3, _ROUND: 4, 0: 5}
        order = sorted(range(k), key=lambda j: (not mut_np[j], seg[int(flags[j])], j))
        self.pos = {j: p for p, j in enumerate(order)}  # numeric feature -> working row
        self.widx = _long(idx_np[order].tolist(), dev) if k else _long([], dev)
        params = {
            "span": nv.span.cpu().numpy(), "lo": nv.lo.cpu().numpy(),
            "low": nv.raw_lower.cpu().numpy(), "high": nv.raw_upper.cpu().numpy(),
            "scale": np.where(nv.round_scale.cpu().numpy() > 0, nv.round_scale.cpu().numpy(),
                              1.0),
        }
        self._params = {n: v[order] for n, v in params.items()}
        self._flags = flags[order]
        wmut = mut_np[order]
        self.conv = _Conv(list(range(k)), self._flags, self._params, dev)
        self.n_mutable = int(wmut.sum())
        self.imm_rows = (torch.arange(self.n_mutable, k, device=dev)
                         if self.n_mutable < k else None)
        quant = [p for p in range(k) if wmut[p] and self._flags[p] & (_INT | _ROUND)]
        self.grid = _Conv(quant, self._flags, self._params, dev) if quant else None
        # -- mutable one-hot blocks
        blocks = [(a, b) for f, a, b in space.blocks_ if not f.is_numeric and f.mutable]
        self.blocks = blocks
        self.onehot: _OneHot | None = _OneHot(blocks, dev) if blocks else None
        # -- relations: repair stages (working rows + a zero row at K) and the violation check
        rels = self.relations
        self.stages: list[_Group] = []
        sched = _schedule(rels, mut_np)
        for kind, members in sched:
            self.stages.append(_GROUPS[kind]([rels[i] for i in members], self._map(self.pos),
                                             mut_np, k, dev))
        # a second round of the stages (the reference repairs every relation twice) and the
        # violation check after the repair are skipped where the plan proves them no-ops
        self.rounds = 1 if _second_round_is_noop(rels, sched, mut_np, params["low"]) else 2
        self.check = bool(rels) and not (self.rounds == 1 and _relations_always_hold(
            rels, mut_np, flags, params))
        rel_feats = sorted({self.pos[c] for r in rels for c in r.columns()})
        self.rel_rows = _long(rel_feats, dev)
        self.rel_conv = _Conv(rel_feats, self._flags, self._params, dev) if rels else None
        sub = {j: rel_feats.index(self.pos[j]) for r in rels for j in r.columns()}
        self.checks: list[_Group] = []
        check_order: list[int] = []
        for kind in _GROUPS:
            members = [i for i, r in enumerate(rels) if _kind(r) == kind]
            if members:
                self.checks.append(_GROUPS[kind]([rels[i] for i in members], self._map(sub),
                                                 None, len(rel_feats), dev))
                check_order.extend(members)
        cols = np.zeros((len(rel_feats), len(rels)), dtype=np.float32)
        for row, i in enumerate(check_order):
            cols[[sub[c] for c in rels[i].columns()], row] = 1.0
        self.rel_cols = torch.as_tensor(cols, device=dev)  # (Kr, R), columns in check order
        self.gates = _Gates(rels, mut_np, self, dev)
        self.movers = _Movers(rels, mut_np, self, dev)

    @staticmethod
    def _map(pos: dict[int, int]) -> Callable[[Relation], list[int]]:
        return lambda rel: [pos[c] for c in rel.columns()]

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

    def repair_in_ball(self, x: torch.Tensor, x0: torch.Tensor, ball: Ball, *,
                       grid: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`round_to_grid` (when ``grid``), :meth:`ball_prefix` and :meth:`repair` of
        ``x`` ``(N, D)`` fused into one pass (the same result, bit for bit). Rows outside the
        ball afterwards are flagged in ``pending`` too (L2: rows outside it with an entry
        farther from the original than the iterate's). Returns ``(out, pending)``."""
        with torch.no_grad():
            return self._run(x, x0, ball, grid=grid)

    def _run(self, x: torch.Tensor, x0: torch.Tensor, ball: Ball | None, *,
             grid: bool) -> tuple[torch.Tensor, torch.Tensor]:
        if ball is not None and self.onehot is not None:
            x = self._prefix_onehot(x, x0, ball.eps)
        out = x0.clone()  # immutable columns (and blocks) are the original's, bit for bit
        n = x.shape[0]
        pending = torch.zeros(n, dtype=torch.bool, device=x.device)
        parts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []  # (new, x0, iterate)
        if self.onehot is not None:
            oh = self.onehot
            hot = oh.argmax_onehot(torch.clamp(x[:, oh.flat], 0.0, 1.0)).to(x.dtype)
            x0b = x0[:, oh.flat]
            hot = select(hot == x0b, x0b, hot)  # unchanged entries keep their bits
            out[:, oh.flat] = hot
            if ball is not None:
                parts.append((hot.T, x0b.T, ball.x[:, oh.flat].T if ball.norm != "linf"
                              else hot.T))
        if self.k:
            xk, x0k = self.gather(x), self.gather(x0)
            if grid and ball is not None:
                self._grid_(xk, x0k, x, x0, ball)
            if ball is not None:
                self._prefix_gates_(xk, x0k, ball.eps, ball.norm)
            xk.clamp_(0.0, 1.0)  # the projection: bounds, immutables
            if self.imm_rows is not None:
                xk[self.n_mutable:] = x0k[self.n_mutable:]
            raw = torch.empty((self.k + 1, n), dtype=_F64, device=x.device)
            raw[self.k] = 0.0  # the padding row of the relation groups
            work = raw[: self.k]
            self.conv.raw_into(xk, work)
            if ball is not None and self.movers.n:
                self.movers.pin_(raw, xk, x0k, ball.eps)
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
                pending |= self._revert_once_(new, x0k)
            self.scatter(out, new)
            if ball is not None:
                parts.append((new, x0k, self.gather(ball.x) if ball.norm != "linf" else new))
        if ball is not None and parts:
            pending |= self._outside(parts, ball)
        return out, pending

    @staticmethod
    def _outside(parts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
                 ball: Ball) -> torch.Tensor:
        """``(N,)`` rows outside the ball, from the columns a repair may move: ``parts`` holds
        ``(new, original, iterate)`` values, each ``(C, N)`` (the other columns are the
        original's; L-inf does not read the iterate's)."""
        if ball.norm == "linf":
            far = [(v - v0).abs_().amax(0) for v, v0, _ in parts]
            top = far[0] if len(far) == 1 else torch.stack(far).amax(0)
            return top > ball.eps[:, 0] + BALL_TOL
        sq = torch.zeros(ball.eps.shape[0], dtype=ball.eps.dtype, device=ball.eps.device)
        further = torch.zeros(ball.eps.shape[0], dtype=torch.bool, device=ball.eps.device)
        for v, v0, vx in parts:
            d = (v - v0).abs_()
            sq = sq + d.square().sum(0)
            further |= (d > (vx - v0).abs_() + BALL_TOL).any(0)
        return further & (sq.sqrt() > ball.eps[:, 0] * (1 + 1e-5) + BALL_TOL)

    def _revert_once_(self, new: torch.Tensor, x0k: torch.Tensor) -> torch.Tensor:
        """One round of the violation check on working rows ``new`` ``(K, N)`` (in place): every
        relation a decoded record breaks gets its changed columns back from ``x0k``. Returns
        ``(N,)`` True where something was reverted."""
        conv = self.rel_conv
        assert conv is not None
        sub = new.index_select(0, self.rel_rows)
        sub0 = x0k.index_select(0, self.rel_rows)
        raw = torch.empty((len(sub) + 1, sub.shape[1]), dtype=_F64, device=new.device)
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
    def round_to_grid(self, x: torch.Tensor, x0: torch.Tensor, eps: torch.Tensor,
                      norm: str) -> torch.Tensor:
        """``x`` ``(N, D)`` with its mutable quantised numeric columns on their grid, inside
        the ball (see :func:`advsec.attacks.repair.round_to_grid`)."""
        if self.grid is None or not len(x):
            return x
        with torch.no_grad():
            xk, x0k = self.gather(x), self.gather(x0)
            self._grid_(xk, x0k, x, x0, Ball(eps, norm, x))
            out = x.clone()
            self.scatter(out, xk)
        return out

    def _grid_(self, xk: torch.Tensor, x0k: torch.Tensor, x: torch.Tensor, x0: torch.Tensor,
               ball: Ball) -> None:
        """Put the quantised rows of ``xk`` ``(K, N)`` on their grid in place (``x``, ``x0``:
        the ``(N, D)`` inputs, for the L2 norm of the other columns)."""
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
        if ball.norm == "linf":
            ok = (near - x0c).abs_() <= ball.eps.T
        else:
            rest = (x - x0).square_().sum(1).to(_F64) - (xc - x0c).square_().sum(0).to(_F64)
            ok = (rest + (near - x0c).square_().sum(0).to(_F64)) <= ball.eps[:, 0].to(_F64) ** 2
        side = torch.ones_like(xc).copysign_(xc - x0c)
        toward = g.grid_to_model_(t.mul_(side).floor_().mul_(side))  # next grid value to x0
        new = select(ok, near, toward)
        # the original's grid value (or an untouched entry) keeps its bits; 4e-7 allows for the
        # float32 round-off and is below the model spacing of the grid wherever it matters
        keep = ((new - x0c).abs_() <= 4e-7) | (xc == x0c)
        g.put_(xk, select(keep, x0c, new))

    # ------------------------------------------------------------------ the eps-ball
    def ball_prefix(self, x: torch.Tensor, x0: torch.Tensor, eps: torch.Tensor,
                    norm: str = "linf") -> torch.Tensor:
        """``x`` ``(N, D)`` with what the repair would push out of the ball kept at ``x0``.

        - a ``zero_if_zero`` gate (``when``) the iterate closed while zeroing one of the
          relation's mutable features would move it farther than ``eps`` from ``x0`` (L2:
          or would take the row's numeric columns out of the ball): the gate gets its original
          value back (the features keep the iterate's values);
        - a relation that moves a mutable target (``sum`` with a target column, ``ratio``)
          and is broken: when the target it would set is farther than ``eps`` from ``x0``'s,
          every mutable column of the relation gets its original value back (the original
          satisfies the relation, so the target stays);
        - a mutable one-hot block whose argmax would move an entry farther than ``eps``: the
          block gets its original values back.

        A single entry farther than ``eps`` leaves the ball in either norm, so L-inf never
        restores what the ball allows (L2 restores gates on an estimate of the row's norm).
        Model-space step shared by the fast and the reference repair (:meth:`repair_in_ball`
        runs it fused); numeric columns come back projected.
        """
        with torch.no_grad():
            if self.onehot is not None:
                x = self._prefix_onehot(x, x0, eps)
            if self.gates.n or self.movers.n:
                xk, x0k = self.gather(x), self.gather(x0)
                self._prefix_gates_(xk, x0k, eps, norm)
                if self.movers.n:
                    xk.clamp_(0.0, 1.0)
                    if self.imm_rows is not None:
                        xk[self.n_mutable:] = x0k[self.n_mutable:]
                    raw = torch.empty((self.k + 1, len(x)), dtype=_F64, device=x.device)
                    raw[self.k] = 0.0
                    self.conv.raw_into(xk, raw[: self.k])
                    self.movers.pin_(raw, xk, x0k, eps)
                x = x.clone()
                self.scatter(x, xk)
        return x

    def _prefix_gates_(self, xk: torch.Tensor, x0k: torch.Tensor, eps: torch.Tensor,
                       norm: str) -> None:
        """Restore the closed gates whose zeroing would leave the ball, in ``xk`` ``(K, N)``.

        L-inf: a zeroed feature would be farther than eps from the original. L2 as well, and
        in a row whose squared distance (numeric columns) plus what the closed gates' zeroing
        adds would exceed eps², every closed gate whose zeroing adds to it."""
        g = self.gates
        if not g.n:
            return
        wx = g.conv.select(xk)  # (W, N)
        raw = g.conv.raw(wx).abs_()
        if g.shared:
            raw = raw.index_select(0, g.col_of_gate)
        closed = raw <= g.tol  # (G, N)
        z0 = x0k.index_select(0, g.zero_rows)
        dz = (z0 - g.zero_model).abs_()  # (Z, N): how far each zeroed feature would be
        leave = (g.member @ (dz > eps.T + BALL_TOL).to(torch.float32)) > 0
        if norm != "linf":
            gain = g.member @ (dz.square() - (xk.index_select(0, g.zero_rows) - z0).square_())
            grows = closed & (gain > 0)  # (G, N)
            total = (xk - x0k).square_().sum(0) + (gain * grows).sum(0)
            leave |= grows & (total > eps[:, 0].square())
        restore = closed & leave
        if g.shared:
            restore = (g.gate_to_col @ restore.to(torch.float32)) > 0
        g.conv.put_(xk, select(restore, g.conv.select(x0k), wx))

    def _prefix_onehot(self, x: torch.Tensor, x0: torch.Tensor,
                       eps: torch.Tensor) -> torch.Tensor:
        oh = self.onehot
        assert oh is not None
        hot = oh.argmax_onehot(torch.clamp(x[:, oh.flat], 0.0, 1.0)).to(x.dtype)
        x0b = x0[:, oh.flat]
        far = (((hot - x0b).abs() > eps + BALL_TOL).to(torch.float32) @ oh.block_member) > 0
        keep = (far.to(torch.float32) @ oh.block_member.T) > 0
        x = x.clone()
        x[:, oh.flat] = torch.where(keep, x0b, x[:, oh.flat])
        return x

    @staticmethod
    def ball_bad(xr: torch.Tensor, x0: torch.Tensor, ball: Ball) -> torch.Tensor:
        """``(N, D)`` bool: entries of ``xr`` that break the ball. L-inf: farther than eps from
        ``x0``; L2: in a row outside the ball, entries farther from ``x0`` than the iterate's."""
        d = (xr - x0).abs()
        if ball.norm == "linf":
            return d > ball.eps + BALL_TOL
        over = torch.linalg.vector_norm(xr - x0, dim=1, keepdim=True) > (
            ball.eps * (1 + 1e-5) + BALL_TOL)
        return over & (d > (ball.x - x0).abs() + BALL_TOL)

    def blame(self, bad: torch.Tensor, xr: torch.Tensor) -> torch.Tensor:
        """``(N, D)`` bool: what to restore from the original so that the entries ``bad`` of
        the repaired ``xr`` ``(N, D)`` stay in the ball next time (slow path, Python loops).

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
