"""MIM / MI-FGSM: momentum iterative FGSM."""

from __future__ import annotations

from typing import Any

from advsec.attacks.base import Eps
from advsec.attacks.gradient import GradientAttack

__all__ = ["MIM"]


class MIM(GradientAttack):
    r"""Momentum Iterative Method.

    Paper: Dong, Liao, Pang, Su, Zhu, Hu, Li, "Boosting Adversarial Attacks with Momentum",
    CVPR 2018. https://arxiv.org/abs/1710.06081

    Norm: L-inf. :math:`g_{t+1} = \mu g_t + \nabla_x L / \mathrm{mean}|\nabla_x L|` (per row,
    over mutable columns), :math:`x_{t+1} = \Pi(x_t + \alpha\,\mathrm{sign}(g_{t+1}))`, from the
    clean input. :math:`\alpha` = ``step_size`` or ``rel_step_size * eps`` (default 0.25 * eps).

    Args:
        eps: budget (float or list).
        steps: iterations (default 10).
        decay: momentum decay :math:`\mu` (default 1.0).
        Other options: see :class:`~advsec.attacks.gradient.GradientAttack`.

    Shapes: ``x`` ``(N, D)``, ``y`` ``(N,)`` -> ``(N, D)``.

    Example:
        >>> x_adv = MIM(eps=0.1, steps=10, decay=1.0)(detector, x, y)
    """

    name = "mim"

    def __init__(
        self, *, eps: Eps = 0.1, steps: int = 10, decay: float = 1.0, **options: Any
    ) -> None:
        options.setdefault("random_start", False)
        super().__init__(eps=eps, steps=steps, decay=decay, **options)
