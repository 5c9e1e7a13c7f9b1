"""FGSM: the fast gradient sign method."""

from __future__ import annotations

from typing import Any

from advsec.attacks.base import Eps
from advsec.attacks.gradient import GradientAttack

__all__ = ["FGSM"]


class FGSM(GradientAttack):
    r"""Fast Gradient Sign Method.

    Paper: Goodfellow, Shlens, Szegedy, "Explaining and Harnessing Adversarial Examples",
    ICLR 2015. https://arxiv.org/abs/1412.6572

    Norm: L-inf. One step :math:`x' = \Pi(x + \epsilon \cdot \mathrm{sign}(\nabla_x L(f(x), y)))`
    with :math:`L` the cross-entropy on logits and :math:`\Pi` the projection onto the valid
    region (the ``[0, 1]`` box, or a FeatureSpace's region followed by the final repair).

    Args:
        eps: budget (float or list of floats; a list returns one result per value and costs
            one gradient per row in all, shared by every eps).
        loss, targeted, feature_space, bounds, evasion, benign_class, batch_size: see
            :class:`~advsec.attacks.gradient.GradientAttack`.

    Shapes: ``x`` ``(N, D)`` float32 in ``[0, 1]``, ``y`` ``(N,)`` int64 class indices ->
    ``(N, D)`` (a list of them for a list of eps).

    Example:
        >>> attack = FGSM(eps=[0.01, 0.05, 0.1])
        >>> x_adv_list = attack(detector, x, y)   # three (N, D) tensors
    """

    name = "fgsm"
    budget = None

    def __init__(self, *, eps: Eps = 0.1, **options: Any) -> None:
        options.setdefault("steps", 1)
        options.setdefault("rel_step_size", 1.0)
        super().__init__(eps=eps, **options)
