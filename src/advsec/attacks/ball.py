"""The attacker's eps-ball as a repair guard: what keeps a FeatureSpace repair inside the
L-inf or L2 ball around the original ``x0``.

:class:`Ball` implements :class:`~advsec.features.repair.guard.RepairGuard`, the budget-free
hooks of the compiled repair (:meth:`~advsec.features.repair.plan.RepairPlan.repair_guarded`):

- a single entry farther than ``eps`` from ``x0`` leaves the ball in either norm, so a one-hot
  flip, a zeroed feature or a relation's new target that far is refused (the parts go back to
  ``x0``): L-inf never refuses what the ball allows;
- quantised columns take their nearest grid value when it stays in the ball (L2: when the
  row's nearest grid values together stay in it);
- L2 also refuses closed ``zero_if_zero`` gates whose zeroing adds to the row's squared
  distance when the row's numeric columns plus what the closed gates' zeroing adds would exceed
  ``eps**2`` (an estimate: the final check below is exact);
- after the repair, a row is refused when it is outside the ball: L-inf ``|xr - x0| > eps +
  BALL_TOL``; L2 ``||xr - x0|| > eps (1 + 1e-5) + BALL_TOL`` with an entry farther from ``x0``
  than the iterate's.

Shapes: ``N`` rows, ``D`` model columns; ``(C, N)`` for the columns-first working layout of
the guard hooks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from collections.abc import Sequence

    from advsec.features.repair import ChangedPart, GateClosing

__all__ = ["BALL_TOL", "Ball"]

#: slack of the eps-ball checks, in model units (float32 round-off of the repaired values)
BALL_TOL = 1e-6
_F64 = torch.float64


@dataclass(frozen=True)
class Ball:
    """The eps-ball a repair must stay in (a :class:`~advsec.features.repair.RepairGuard`).

    Attributes:
        eps: ``(N, 1)`` radii; norm: ``"linf"`` or ``"l2"``; x: ``(N, D)`` the attack's
            iterate (L2: a repaired entry may move as far from the original as the iterate did).
    """

    eps: torch.Tensor
    norm: str
    x: torch.Tensor

    # ------------------------------------------------------------------ guard hooks
    def too_far(self, dist: torch.Tensor, *, records_first: bool = False) -> torch.Tensor:
        """Bool: entries of ``dist`` (``(C, N)``, or ``(N, C)`` with ``records_first``) farther
        than ``eps + BALL_TOL``."""
        return dist > (self.eps if records_first else self.eps.T) + BALL_TOL

    def accepts_nearest(self, near: torch.Tensor, cur: torch.Tensor, orig: torch.Tensor,
                        x: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        """Where the nearest grid values ``near`` ``(C, N)`` of the quantised entries ``cur``
        stay in the ball: L-inf per entry, ``(C, N)``; L2 per row, ``(N,)``, with the other
        columns' distance from the ``(N, D)`` ``x`` and ``x0``."""
        if self.norm == "linf":
            return (near - orig).abs_() <= self.eps.T
        rest = (x - x0).square_().sum(1).to(_F64) - (cur - orig).square_().sum(0).to(_F64)
        return (rest + (near - orig).square_().sum(0).to(_F64)) <= self.eps[:, 0].to(_F64) ** 2

    def refuses_closing(self, closing: GateClosing) -> torch.Tensor:
        """``(G, N)`` bool: gates whose zeroing would leave the ball.

        L-inf: a zeroed feature would be farther than eps from the original. L2 as well, and
        in a row whose squared distance (numeric columns) plus what the closed gates' zeroing
        adds would exceed eps², every closed gate whose zeroing adds to it."""
        c = closing
        leave = (c.member @ self.too_far(c.dist).to(torch.float32)) > 0
        if self.norm != "linf":
            gain = c.member @ (c.dist.square() - (c.current() - c.orig).square_())
            grows = c.closed & (gain > 0)  # (G, N)
            total = (c.xk - c.x0k).square_().sum(0) + (gain * grows).sum(0)
            leave |= grows & (total > self.eps[:, 0].square())
        return leave

    def refuses(self, parts: Sequence[ChangedPart]) -> torch.Tensor:
        """``(N,)`` rows outside the ball, from the columns a repair may move: ``parts`` holds
        their new and original values, each ``(C, N)`` (the other columns are the original's;
        L-inf does not read the iterate's)."""
        if self.norm == "linf":
            if not parts:
                return torch.zeros(self.eps.shape[0], dtype=torch.bool, device=self.eps.device)
            far = [(p.new - p.orig).abs_().amax(0) for p in parts]
            top = far[0] if len(far) == 1 else torch.stack(far).amax(0)
            return top > self.eps[:, 0] + BALL_TOL
        if not parts:
            return torch.zeros(self.eps.shape[0], dtype=torch.bool, device=self.eps.device)
        sq: torch.Tensor | None = None  # (N,) squared distance
        further: torch.Tensor | None = None  # (N,) an entry farther than the iterate's
        for p in parts:
            d = (p.new - p.orig).abs_()
            s = d.square().sum(0)
            f = (d > (p.take(self.x) - p.orig).abs_() + BALL_TOL).any(0)
            if sq is None and s.dtype != self.eps.dtype:  # as a sum started at eps's zeros
                s = s.to(torch.promote_types(s.dtype, self.eps.dtype))
            sq = s if sq is None else sq + s
            further = f if further is None else further | f
        assert sq is not None and further is not None
        return further & (sq.sqrt() > self.eps[:, 0] * (1 + 1e-5) + BALL_TOL)

    # ------------------------------------------------------------------ whole inputs
    def bad(self, xr: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        """``(N, D)`` bool: entries of ``xr`` that break the ball. L-inf: farther than eps from
        ``x0``; L2: in a row outside the ball, entries farther from ``x0`` than the iterate's."""
        d = (xr - x0).abs()
        if self.norm == "linf":
            return d > self.eps + BALL_TOL
        over = torch.linalg.vector_norm(xr - x0, dim=1, keepdim=True) > (
            self.eps * (1 + 1e-5) + BALL_TOL)
        return over & (d > (self.x - x0).abs() + BALL_TOL)

    def subset(self, rows: torch.Tensor) -> Ball:
        """The ball of the rows ``rows`` (``(n,)`` indices) only."""
        return Ball(self.eps[rows], self.norm, self.x[rows])
