"""APGD: auto-PGD with Croce & Hein's step-size schedule, on the shared engine."""

from __future__ import annotations

from typing import Any

import torch

from advsec.attacks.base import Eps
from advsec.attacks.gradient import GradientAttack
from advsec.attacks.projection import Projector
from advsec.attacks.steps import StepRule

__all__ = ["APGD", "APGDMargin", "APGDStep"]


class APGDStep(StepRule):
    """APGD's update: heavy-ball momentum and a step size halved at checkpoints.

    Starting from ``eta = 2 * eps`` per row, each step is
    ``z = P(x + eta * d(grad))`` and ``x' = P(x + a (z - x) + (1 - a)(x - x_prev))`` with
    ``a = 1`` on the first step and ``momentum`` (0.75) after. Checkpoints come after
    ``0.22 * steps`` iterations, then at windows shrinking by ``0.03 * steps`` down to
    ``0.06 * steps``. At a checkpoint a row's step size is halved, and the row restarts from
    its best point, when the objective increased in at most ``rho`` of the window's steps, or
    when the step size was not reduced at the previous checkpoint and the best objective has
    not improved since.

    Args:
        steps: total iterations (sets the checkpoints).
        rho: share of increasing steps below which the step size is halved (0.75).
        momentum: the momentum ``a`` (0.75).
    """

    def __init__(self, *, steps: int, rho: float = 0.75, momentum: float = 0.75) -> None:
        self.rho = rho
        self.momentum = momentum
        self.first_window = max(int(0.22 * steps), 1)
        self.min_window = max(int(0.06 * steps), 1)
        self.window_decrease = max(int(0.03 * steps), 1)

    needs_objective = True

    def start(self, attack: GradientAttack, x0: torch.Tensor, eps: torch.Tensor,
              alpha: torch.Tensor | float, project: Projector) -> None:
        super().start(attack, x0, eps, alpha, project)
        self.needs_mask = attack.norm == "l2"
        self.eta = (torch.full_like(eps, alpha) if isinstance(alpha, float) else alpha.clone())
        self.window = self.first_window
        self.counter = 0
        self.x_prev: torch.Tensor | None = None

    def step(self, it: int, x: torch.Tensor, grad: torch.Tensor, obj: torch.Tensor) -> torch.Tensor:
        if it == 0:
            self.x_best, self.grad_best, self.loss_best = x, grad.clone(), obj.clone()
            self.last_obj = obj
            self.increases = torch.zeros_like(obj)
            self.best_at_check = obj.clone()
            self.reduced_last = torch.ones_like(obj, dtype=torch.bool)
        else:
            self.increases += obj > self.last_obj
            self.last_obj = obj
            better = obj > self.loss_best
            self.x_best = torch.where(better[:, None], x, self.x_best)
            self.grad_best = torch.where(better[:, None], grad, self.grad_best)
            self.loss_best = torch.where(better, obj, self.loss_best)
            self.counter += 1
            if self.counter == self.window:
                x, grad = self._checkpoint(x, grad)
        z = self.project(self.direction_step(x, grad, self.eta))
        if self.x_prev is None:
            x_new = z
        else:
            a = self.momentum
            x_new = torch.lerp(x, z, a).add_(x - self.x_prev, alpha=1.0 - a)
            x_new = self.project(x_new)
        self.x_prev = x
        return x_new

    def _checkpoint(
        self, x: torch.Tensor, grad: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        oscillating = self.increases <= self.window * self.rho
        stalled = ~self.reduced_last & (self.best_at_check >= self.loss_best)
        reduce = oscillating | stalled
        self.reduced_last = reduce
        self.best_at_check = self.loss_best.clone()
        self.increases.zero_()
        self.eta = torch.where(reduce[:, None], self.eta * 0.5, self.eta)
        x = torch.where(reduce[:, None], self.x_best, x)
        grad = torch.where(reduce[:, None], self.grad_best, grad)
        self.counter = 0
        self.window = max(self.window - self.window_decrease, self.min_window)
        return x, grad


class APGD(GradientAttack):
    r"""Auto-PGD (APGD-CE by default): PGD without a step size to tune.

    Paper: Croce, Hein, "Reliable Evaluation of Adversarial Robustness with an Ensemble of
    Diverse Parameter-free Attacks", ICML 2020. https://arxiv.org/abs/2003.01690

    Norm: L-inf (sign steps) or L2. Random start in the eps-ball, step size ``2 * eps`` halved
    per row at checkpoints (see :class:`APGDStep`), momentum 0.75, best point tracked
    (``keep_best``): a row returns its first-best successful iterate, else the iterate with the
    highest objective. The objective is cross-entropy on logits (``loss="ce"``); APGD-DLR needs
    3+ classes (``loss="dlr"``); :class:`APGDMargin` is the variant for binary detectors.

    Args:
        eps: budget (float or list).
        norm: ``"linf"`` (default) or ``"l2"``.
        steps: iterations (default 100, as in the paper).
        restarts: random restarts (default 1).
        rho: checkpoint threshold (default 0.75).
        momentum: heavy-ball momentum (default 0.75).
        loss: ``"ce"`` (default), ``"margin"``, ``"dlr"`` or a callable objective.
        Other options: see :class:`~advsec.attacks.gradient.GradientAttack`.

    Shapes: ``x`` ``(N, D)``, ``y`` ``(N,)`` -> ``(N, D)``.

    Example:
        >>> x_adv = APGD(eps=0.1, steps=50)(detector, x, y)
        >>> x_evade = APGD(eps=0.1, evasion=True)(detector, x, y)  # malicious rows -> benign
    """

    name = "apgd"

    def __init__(
        self,
        *,
        eps: Eps = 0.1,
        steps: int = 100,
        rho: float = 0.75,
        momentum: float = 0.75,
        **options: Any,
    ) -> None:
        options.setdefault("random_start", True)
        options.setdefault("keep_best", True)
        options.setdefault("rel_step_size", 2.0)
        super().__init__(eps=eps, steps=steps, **options)
        if not 0 < rho <= 1 or not 0 < momentum <= 1:
            raise ValueError("rho and momentum must be in (0, 1]")
        self.rho = rho
        self.momentum = momentum

    def step_rule(self) -> StepRule:
        return APGDStep(steps=self.steps, rho=self.rho, momentum=self.momentum)


class APGDMargin(APGD):
    r"""APGD on the logit margin: the APGD-DLR idea for binary detectors.

    Paper: Croce, Hein, ICML 2020 (https://arxiv.org/abs/2003.01690); the DLR loss there needs
    3+ classes, so this variant maximises the margin ``max_{j != y} z_j - z_y`` (targeted:
    ``z_t - max_{j != t} z_j``), positive exactly when the attack succeeds.

    Norm: L-inf or L2, as :class:`APGD`.

    Args:
        Same as :class:`APGD` (``loss`` defaults to ``"margin"``).

    Shapes: ``x`` ``(N, D)``, ``y`` ``(N,)`` -> ``(N, D)``.

    Example:
        >>> x_adv = APGDMargin(eps=0.1, steps=100)(detector, x, y)
    """

    name = "apgd-margin"

    def __init__(self, *, eps: Eps = 0.1, **options: Any) -> None:
        options.setdefault("loss", "margin")
        super().__init__(eps=eps, **options)
