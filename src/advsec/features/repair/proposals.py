"""The relations whose repair a guard may refuse before it runs (see
:mod:`~advsec.features.repair.guard`): ``zero_if_zero`` gates that would zero mutable features,
and relations whose repair moves a mutable target. Working layout ``(K, N)``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from advsec.features.constraints import (
    RatioRelation,
    Relation,
    SumRelation,
    ZeroIfZeroRelation,
)
from advsec.features.repair.groups import RatioGroup, SumGroup
from advsec.features.repair.guard import GateClosing
from advsec.features.repair.ops import F64, f64_column, long_tensor, select

if TYPE_CHECKING:
    from advsec.features.repair.guard import RepairGuard
    from advsec.features.repair.layout import WorkingLayout

__all__ = ["GateClosures", "TargetMovers"]


class GateClosures:
    """The ``zero_if_zero`` relations with a mutable gate and a mutable zeroed feature: ``G``
    gates (sorted by gate row), ``Z`` zeroed rows, ``W`` distinct gate rows."""

    def __init__(self, rels: list[Relation], layout: WorkingLayout, dev: torch.device) -> None:
        pos, num_mut = layout.pos, layout.mut
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
        self.col_of_gate = long_tensor([uniq.index(w) for w in when], dev)  # (G,)
        self.conv = layout.conversions(uniq)  # the W distinct gate rows
        self.zero_rows = long_tensor(zeroed, dev)
        zero = torch.zeros((len(zeroed), 1), dtype=F64, device=dev)
        zconv = layout.conversions(zeroed)
        self.zero_model = zconv.model_(zconv.quantize_(zero)).to(torch.float32)  # (Z, 1)
        self.tol = f64_column([r.tol for r in gates], dev)

    def restore_refused_(self, xk: torch.Tensor, x0k: torch.Tensor,
                         guard: RepairGuard) -> None:
        """Give the closed gates whose zeroing ``guard`` refuses their original value back, in
        ``xk`` ``(K, N)`` (``x0k``: the original's working rows)."""
        if not self.n:
            return
        wx = self.conv.select(xk)  # (W, N)
        raw = self.conv.raw(wx).abs_()
        if self.shared:
            raw = raw.index_select(0, self.col_of_gate)
        closed = raw <= self.tol  # (G, N)
        z0 = x0k.index_select(0, self.zero_rows)
        dist = (z0 - self.zero_model).abs_()  # (Z, N): how far each zeroed feature would be
        restore = closed & guard.refuses_closing(GateClosing(closed, self.member, dist, z0, xk,
                                                             x0k, self.zero_rows))
        if self.shared:
            restore = (self.gate_to_col @ restore.to(torch.float32)) > 0
        self.conv.put_(xk, select(restore, self.conv.select(x0k), wx))


class TargetMovers:
    """The relations whose repair moves a mutable target (``sum`` with a target column,
    ``ratio``): ``M`` of them (one per target row, sorted by it), ``U`` mutable rows among
    their columns."""

    def __init__(self, rels: list[Relation], layout: WorkingLayout, dev: torch.device) -> None:
        pos, num_mut = layout.pos, layout.mut

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
        sums: list[Relation] = [r for r in first.values() if isinstance(r, SumRelation)]
        ratios: list[Relation] = [r for r in first.values() if isinstance(r, RatioRelation)]
        members = sums + ratios
        self.n = len(members)
        if not members:
            return
        k = layout.k
        self.sums = SumGroup(sums, layout.rows_of(), None, k, dev) if sums else None
        self.ratios = RatioGroup(ratios, layout.rows_of(), None, k, dev) if ratios else None
        targets = [int(t) for r in members if (t := target(r)) is not None]
        order = sorted(range(len(members)), key=lambda i: targets[i])
        self.perm = None if order == list(range(len(order))) else long_tensor(order, dev)
        rows_t = [targets[i] for i in order]
        self.conv_t = layout.conversions([int(t) for t in rows_t if t is not None])
        rows_u = sorted({pos[c] for r in members for c in r.columns() if num_mut[c]})
        member = np.zeros((len(rows_u), len(members)), dtype=np.float32)
        for j, i in enumerate(order):
            for c in members[i].columns():
                if num_mut[c]:
                    member[rows_u.index(pos[c]), j] = 1.0
        self.member = torch.as_tensor(member, device=dev)  # (U, M)
        self.conv_u = layout.conversions(rows_u)

    def restore_refused_(self, raw: torch.Tensor, xk: torch.Tensor, x0k: torch.Tensor,
                         guard: RepairGuard) -> None:
        """Restore, in place, the columns of the broken relations whose new target ``guard``
        finds too far: in ``xk`` ``(K, N)`` and in its raw values ``raw`` ``(K + 1, N)``."""
        preds, bads = [], []
        if self.sums is not None:
            total, _, bad = self.sums.parts(raw)
            preds.append(total)
            bads.append(bad)
        if self.ratios is not None:
            _, _, expected, bad = self.ratios.parts(raw)
            preds.append(expected)
            bads.append(bad)
        pred = preds[0] if len(preds) == 1 else torch.cat(preds)
        bad = bads[0] if len(bads) == 1 else torch.cat(bads)
        if self.perm is not None:
            pred, bad = pred.index_select(0, self.perm), bad.index_select(0, self.perm)
        value = self.conv_t.model_(self.conv_t.quantize_(pred.expand_as(bad).clone()))
        far = guard.too_far((value.to(xk.dtype) - self.conv_t.select(x0k)).abs_())
        restore = (self.member @ (bad & far).to(torch.float32)) > 0  # (U, N)
        u = self.conv_u
        x0u = u.select(x0k)
        u.put_(xk, select(restore, x0u, u.select(xk)))
        u.put_(raw, select(restore, u.raw(x0u), u.select(raw)))
