"""Projection of iterates onto the eps-ball intersected with the valid region."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from advsec.features.threat import restrict

if TYPE_CHECKING:
    from advsec.features.space import FeatureSpace

__all__ = ["Projector"]


class Projector:
    """Projection onto the eps-ball around ``x0`` intersected with the valid region.

    L-inf: the ball, the box and, with a FeatureSpace, its per-column bounds and immutable
    columns (pinned to ``x0``) and the attacker's directions (an ``increase`` column never
    below ``x0``) fold into one per-element ``[lo, hi]`` computed once, so a step
    costs one in-place clamp; that is exactly the FeatureSpace's relaxed per-step projection
    (bounds and immutables from its ``torch_view``), whose full ``project`` then runs once, at
    the start of its final ``repair``. L2 (and L-inf without the ball): radial shrink onto the
    ball, the box, then the FeatureSpace's ``project`` at every step. Calls may modify their
    argument in place.

    Args:
        x0: ``(M, D)`` centres; eps: ``(M, 1)`` radii; norm: ``"linf"`` or ``"l2"``.
        lower, upper: box bounds (scalars, ``(D,)`` tensors or ``None``).
        mutable: ``(D,)`` bool or ``None``; space: FeatureSpace or ``None``.
        ball: False skips the ball (only when the caller knows every iterate stays inside it).
    """

    def __init__(
        self,
        x0: torch.Tensor,
        eps: torch.Tensor,
        *,
        norm: str,
        lower: Any,
        upper: Any,
        mutable: torch.Tensor | None,
        space: FeatureSpace | None,
        ball: bool = True,
    ) -> None:
        self.x0, self.eps, self.norm, self.space = x0, eps, norm, space
        self.lower, self.upper = lower, upper
        self.lo: torch.Tensor | None = None
        self.hi: torch.Tensor | None = None
        if norm == "linf" and ball:
            lo, hi = x0 - eps, x0 + eps
            if lower is not None:
                lo = torch.maximum(lo, lower) if isinstance(lower, torch.Tensor) else lo.clamp_(
                    min=lower)
                hi = torch.minimum(hi, upper) if isinstance(upper, torch.Tensor) else hi.clamp_(
                    max=upper)
            if mutable is not None:
                lo = torch.where(mutable, lo, x0)
                hi = torch.where(mutable, hi, x0)
            if space is not None and space.threat_view(x0.device).directed:
                tv = space.threat_view(x0.device)
                lo = torch.where(tv.increase, torch.maximum(lo, x0), lo)
                hi = torch.where(tv.decrease, torch.minimum(hi, x0), hi)
            self.lo, self.hi = lo, hi
        self.ball = ball

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.lo is not None:
            return x.clamp_(self.lo, self.hi)
        if self.ball and self.norm == "l2":
            delta = x - self.x0
            norm = torch.linalg.vector_norm(delta, dim=1, keepdim=True).clamp_min_(1e-12)
            x = torch.addcmul(self.x0, delta, torch.clamp(self.eps / norm, max=1.0))
        if self.space is not None:  # its project clamps to the same bounds (the box's)
            return restrict(self.space.threat_view(x.device), self.space.project(x, self.x0),
                            self.x0, inplace=True)  # project's result is a new tensor
        if self.lower is not None:
            x = x.clamp_(self.lower, self.upper)
        return x

    def subset(self, rows: torch.Tensor) -> Projector:
        """The projector for the rows ``rows`` only."""
        p = object.__new__(Projector)
        p.__dict__.update(self.__dict__)
        p.x0, p.eps = self.x0[rows], self.eps[rows]
        if self.lo is not None and self.hi is not None:
            p.lo, p.hi = self.lo[rows], self.hi[rows]
        return p
