"""PGD: projected gradient descent with random start (L-inf or L2)."""

from __future__ import annotations

from typing import Any

from advsec.attacks.base import Eps
from advsec.attacks.gradient import GradientAttack

__all__ = ["PGD"]


class PGD(GradientAttack):
    r"""Projected Gradient Descent.

    Paper: Madry, Makelov, Schmidt, Tsipras, Vladu, "Towards Deep Learning Models Resistant to
    Adversarial Attacks", ICLR 2018. https://arxiv.org/abs/1706.06083

    Norm: L-inf (sign steps) or L2 (steps along :math:`\nabla / \|\nabla\|_2`). Uniform random
    start in the eps-ball (``random_start=True``), ``steps`` steps of ``rel_step_size * eps``
    (default 0.25) or ``step_size``, projection onto the ball and the valid region after each
    step, ``restarts`` random restarts keeping per row the first that fools the model.

    Args:
        eps: budget (float or list).
        norm: ``"linf"`` (default) or ``"l2"``.
        steps: iterations (default 10).
        restarts: random restarts (default 1).
        random_start: default True; False starts from the clean input (then PGD is BIM).
        Other options: see :class:`~advsec.attacks.gradient.GradientAttack`.

    Shapes: ``x`` ``(N, D)``, ``y`` ``(N,)`` -> ``(N, D)``.

    Example:
        >>> x_adv = PGD(eps=0.1, steps=20, restarts=3)(detector, x, y)
        >>> x_l2 = PGD(eps=0.5, norm="l2")(detector, x, y)
    """

    name = "pgd"

    def __init__(self, *, eps: Eps = 0.1, steps: int = 10, **options: Any) -> None:
        options.setdefault("random_start", True)
        super().__init__(eps=eps, steps=steps, **options)
