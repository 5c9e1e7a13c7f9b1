"""The constrained path's final step: a FeatureSpace repair that stays inside the eps-ball.

After the loop, an iterate of a constrained attack lies in the ball and the per-step relaxed
region (bounds, immutables). :func:`repair_in_ball` turns it into the encoding of a valid record
without leaving the ball, in one pass of the space's compiled repair in the common case, with
the ball (:class:`~advsec.attacks.ball.Ball`) as the repair's guard:

1. quantised numeric columns go onto their grid, inside the ball (:func:`round_to_grid`);
2. what the repair would push out of the ball is kept at the original up front
   (:meth:`~advsec.features.repair.RepairPlan.guard_prefix`): a ``zero_if_zero`` gate the
   iterate closed gets its original value back when zeroing the relation's features would leave
   the ball; a broken relation whose new target (sum, ratio) would leave it keeps its original
   columns; a one-hot block whose flip would leave it keeps its original category;
3. the space's repair (:meth:`~advsec.features.FeatureSpace.repair_plan`) fixes one-hot blocks
   and relations, and flags, without a host sync, the rows that left the ball anyway or need
   more rounds of its violation check; one sync decides whether any row needs the fallback.
   Steps 1-3 run fused, in one pass over the numeric columns
   (:meth:`~advsec.features.repair.RepairPlan.repair_guarded`);
4. fallback (flagged rows only): finish the violation check, then, while a row is outside the
   ball, restore from the original the entries that left it and what put them there (the gate,
   or the other columns of the relation: :meth:`~advsec.features.repair.RepairPlan.blame`) and
   repair again; a row still outside the ball after that is set back to its original.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from advsec.attacks.ball import Ball
from advsec.features.repair import RepairPlan

if TYPE_CHECKING:
    from advsec.features.space import FeatureSpace

__all__ = ["repair_in_ball", "round_to_grid"]


def repair_in_ball(space: FeatureSpace, x: torch.Tensor, x0: torch.Tensor, eps: torch.Tensor, *,
                   norm: str, reference: bool = False) -> torch.Tensor:
    """The FeatureSpace's repair of ``x`` ``(M, D)``, kept inside the ball around ``x0``.

    Rows of the result encode valid records (when ``x0``'s do), columns that neither the attack
    nor a repair changed are bit-identical to ``x0``, immutable columns are ``x0``'s, and every
    row stays in the ball: L-inf ``|xr - x0| <= eps + 1e-6``; L2 ``||xr - x0|| <= eps (1 + 1e-5)
    + 1e-6``, or no entry farther from ``x0`` than in ``x``. See the module docstring for the
    steps; the common case is one pass of the space's compiled repair and one host sync.

    Args:
        space: the fitted FeatureSpace; x, x0: ``(M, D)`` iterate and original; eps: ``(M, 1)``
            radii; norm: ``"linf"`` or ``"l2"``.
        reference: use the space's per-relation :meth:`~advsec.features.FeatureSpace.
            repair_reference` instead of the compiled repair (slow; for tests).
    """
    if not len(x):
        return space.repair(x, x0)
    rp = space.repair_plan(x.device)
    ball = Ball(eps, norm, x)
    if reference:
        xg = rp.round_to_grid(x, x0, ball)
        xr = space.repair_reference(rp.guard_prefix(xg, x0, ball), x0)
        pending = ball.bad(xr, x0).any(1)
    else:
        xr, pending = rp.repair_in_ball(x, x0, ball, grid=rp.grid is not None)
    if not bool(pending.any()):  # the one host sync of the common path
        return xr
    rows = torch.nonzero(pending).flatten()
    sub = ball.subset(rows)
    xg = rp.round_to_grid(x[rows], x0[rows], sub)
    xr[rows] = _settle(space, rp, xr[rows], xg, x0[rows], sub, reference=reference)
    return xr


def _settle(space: FeatureSpace, rp: RepairPlan, xr: torch.Tensor, xg: torch.Tensor,
            x0: torch.Tensor, ball: Ball, *, reference: bool) -> torch.Tensor:
    """The fallback for rows ``(n, D)`` a first repair left outside the ball or unfinished
    (``xg``: their iterate on the grid)."""
    restore = torch.zeros_like(xr, dtype=torch.bool)
    rounds = len(rp.relations) + 2
    for attempt in range(rounds + 1):
        if not reference:
            xr = rp.finish(xr, x0)
        bad = ball.bad(xr, x0)
        rows = bad.any(1)
        if not bool(rows.any()):
            break
        if attempt == rounds:  # nothing else worked: the original record
            xr = torch.where(rows[:, None], x0, xr)
            break
        restore |= rp.blame(bad, xr)
        xin = torch.where(restore, x0, xg)
        redo = (space.repair_reference(rp.guard_prefix(xin, x0, ball), x0) if reference
                else rp.repair_guarded(xin, x0, ball, grid=False)[0])
        xr = torch.where(rows[:, None], redo, xr)
    return xr


def round_to_grid(space: FeatureSpace, x: torch.Tensor, x0: torch.Tensor, eps: torch.Tensor, *,
                  norm: str) -> torch.Tensor:
    """``x`` ``(N, D)`` with the mutable quantised numeric columns of ``space`` (integers;
    continuous values it rounds to fixed decimals) on their grid, inside the ball.

    Each quantised value goes to the nearest grid value when that stays in the ball (L2: when
    the row's nearest grid values together stay in it), else to the grid value next to the
    iterate on the original's side (never farther from the original than the iterate, when the
    original is on the grid). An entry the iterate left at the original, or whose grid value is
    within 4e-7 of it, keeps the original's bits. Float32 arithmetic (the repair that follows
    recomputes raw values in float64); no host sync.
    """
    return space.repair_plan(x.device).round_to_grid(x, x0, Ball(eps, norm, x))
