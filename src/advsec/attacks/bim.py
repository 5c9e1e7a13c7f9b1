"""BIM / I-FGSM: iterated FGSM."""

from __future__ import annotations

from typing import Any

from advsec.attacks.base import Eps
from advsec.attacks.gradient import GradientAttack

__all__ = ["BIM"]


class BIM(GradientAttack):
    r"""Basic Iterative Method (iterative FGSM).

    Paper: Kurakin, Goodfellow, Bengio, "Adversarial Examples in the Physical World",
    ICLR workshop 2017. https://arxiv.org/abs/1607.02533

    Norm: L-inf. From the clean input, ``steps`` sign steps
    :math:`x_{t+1} = \Pi_{B_\infty(x, \epsilon) \cap V}(x_t + \alpha\,\mathrm{sign}(\nabla_x L))`,
    no random start. :math:`\alpha` is ``step_size``, or ``rel_step_size * eps`` (default
    0.25 * eps, so 10 steps can travel 2.5 eps; torchattacks' defaults are the same ratio,
    alpha = 2/255 for eps = 8/255).

    Args:
        eps: budget (float or list).
        steps: iterations (default 10).
        step_size / rel_step_size: absolute step, or step as a fraction of eps (default 0.25).
        Other options: see :class:`~advsec.attacks.gradient.GradientAttack`.

    Shapes: ``x`` ``(N, D)``, ``y`` ``(N,)`` -> ``(N, D)``.

    Example:
        >>> x_adv = BIM(eps=0.1, steps=10)(detector, x, y)
    """

    name = "bim"

    def __init__(self, *, eps: Eps = 0.1, steps: int = 10, **options: Any) -> None:
        options.setdefault("random_start", False)
        super().__init__(eps=eps, steps=steps, **options)
