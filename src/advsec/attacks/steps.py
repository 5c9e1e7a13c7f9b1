"""Step rules: how :class:`~advsec.attacks.gradient.GradientAttack` turns an input gradient into
the next iterate (sign steps, normalised L2 steps, MI-FGSM momentum; APGD plugs in its own)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from advsec.attacks.projection import Projector

if TYPE_CHECKING:
    from advsec.attacks.gradient import GradientAttack

__all__ = ["FixedStep", "StepRule"]


class StepRule:
    """How :class:`GradientAttack` turns the gradient at the current iterate into the next one.

    The engine calls :meth:`start` once per run (per restart) and :meth:`step` once per
    iteration with the current iterate ``x`` ``(M, D)``, the objective's input gradient there
    (masked to mutable columns when the rule asks for it) and the objective ``(M,)``. ``step``
    returns the next iterate, already projected with ``project``; it may overwrite ``grad``.
    """

    #: whether the gradient must be zeroed on immutable columns before :meth:`step`
    needs_mask = False

    #: whether :meth:`step` uses the objective (else the engine may skip computing it per row)
    needs_objective = False
    #: set by the engine when nothing else holds the iterate: ``step`` may update it in place
    owns_x = False

    def start(
        self,
        attack: GradientAttack,
        x0: torch.Tensor,
        eps: torch.Tensor,
        alpha: torch.Tensor | float,
        project: Projector,
    ) -> None:
        """``alpha``: the step size, ``(M, 1)`` per row or one float for every row."""
        self.attack, self.x0, self.eps, self.alpha, self.project = attack, x0, eps, alpha, project

    def step(self, it: int, x: torch.Tensor, grad: torch.Tensor, obj: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def direction_step(self, x: torch.Tensor, grad: torch.Tensor, size: torch.Tensor | float,
                       *, inplace: bool = True, signed: bool = False) -> torch.Tensor:
        """``x + size * d(grad)``, ``d`` the steepest-ascent direction of the norm.

        L-inf: ``d = sign(grad)``; L2: ``d = grad / ||grad||_2``. ``size``: ``(M, 1)`` or a
        float. ``inplace`` lets the sign overwrite ``grad``; ``signed``: ``grad`` already is a
        sign. The result is a new tensor, or ``x`` updated in place when the rule owns it.
        """
        if self.attack.norm == "linf":
            d = grad if signed else grad.sign_() if inplace else torch.sign(grad)
            if self.owns_x:
                return x.add_(d, alpha=size) if isinstance(size, float) else x.addcmul_(size, d)
            # d is ours to overwrite: the new iterate takes its memory (no allocation)
            if isinstance(size, float):
                return torch.add(x, d, alpha=size, out=d)
            return torch.addcmul(x, size, d, out=d)
        norm = torch.linalg.vector_norm(grad, dim=1, keepdim=True).clamp_min_(1e-12)
        scale = norm.reciprocal_().mul_(size)
        if self.owns_x:
            return x.addcmul_(scale, grad)
        return torch.addcmul(x, scale, grad, out=grad) if inplace else torch.addcmul(x, scale, grad)


class FixedStep(StepRule):
    """Fixed step size ``alpha``: sign steps (L-inf) or normalised-gradient steps (L2), with
    optional MI-FGSM momentum ``g <- decay * g + grad / mean|grad|`` (per row)."""

    #: FixedStep keeps no reference to past iterates: the engine may let it step in place
    may_own_x = True

    def __init__(self, decay: float | None = None) -> None:
        self.decay = decay
        self.needs_mask = decay is not None
        self.momentum: torch.Tensor | None = None

    def start(self, attack: GradientAttack, x0: torch.Tensor, eps: torch.Tensor,
              alpha: torch.Tensor | float, project: Projector) -> None:
        super().start(attack, x0, eps, alpha, project)
        self.needs_mask = self.decay is not None or attack.norm == "l2"
        self.momentum = None

    def step(self, it: int, x: torch.Tensor, grad: torch.Tensor, obj: torch.Tensor) -> torch.Tensor:
        if self.decay is not None:
            if self.momentum is None:
                self.buffer = torch.empty_like(grad)  # reused every step: no allocation
                scale = torch.abs(grad, out=self.buffer).mean(dim=1, keepdim=True)
                self.momentum = grad.div_(scale.clamp_min_(1e-12))
                return self.project(self.direction_step(x, self.momentum, self.alpha,
                                                        inplace=False))
            scale = torch.abs(grad, out=self.buffer).mean(dim=1, keepdim=True)
            if self.decay != 1.0:
                self.momentum.mul_(self.decay)
            self.momentum.addcdiv_(grad, scale.clamp_min_(1e-12))
            if self.attack.norm == "linf":  # sign(momentum) into the spent gradient's memory
                return self.project(self.direction_step(
                    x, torch.sign(self.momentum, out=grad), self.alpha, signed=True))
            return self.project(self.direction_step(x, self.momentum, self.alpha,
                                                    inplace=False))
        return self.project(self.direction_step(x, grad, self.alpha))
