"""The bound-propagation verifiers: :class:`IBP`, :class:`CROWN` and :class:`AlphaCROWN`."""

from __future__ import annotations

from typing import Any

import torch

from advsec.errors import ConfigError
from advsec.verification.base import Verifier
from advsec.verification.bounds import Bounds
from advsec.verification.crown import (
    alpha_crown_margin,
    crown_bounds,
    crown_layers,
    crown_margin,
)
from advsec.verification.ibp import ibp_bounds, ibp_margin
from advsec.verification.network import ReluNetwork

__all__ = ["CROWN", "IBP", "AlphaCROWN"]


class IBP(Verifier):
    r"""Interval bound propagation: certified robustness of a ReLU MLP on the valid region.

    Paper: Gowal, Dvijotham, Stanforth, Bunel, Qin, Uesato, Arandjelovic, Mann, Kohli, "On the
    Effectiveness of Interval Bound Propagation for Training Verifiably Robust Models", 2018.
    https://arxiv.org/abs/1810.12715

    Norm: L-inf. The region of each record is the box the L-inf attacks search (the eps-ball
    as a fraction of each feature's range, the FeatureSpace's bounds, immutable columns fixed,
    directions one way; whole-number grids, value sets and relations relaxed to the box, so it
    is a superset of the valid records: :mod:`advsec.verification.region`). Intervals go
    through every layer; the margins ``logit[y] - logit[j]`` are bounded with the
    specification folded into the last layer. A record is certified when every margin lower
    bound is positive. Sound, incomplete, the cheapest bound (one forward pass per box).

    Arguments:
        eps: default budget(s); feature_space: the fitted FeatureSpace (``None``: the plain
            box ``bounds``); categorical, switch_categories, max_boxes: mutable one-hot blocks;
            batch_size: boxes at once; dtype: float32 (default) or float64; device: default
            the model's. See :class:`~advsec.verification.base.Verifier`.

    Shapes: ``x`` ``(N, D)`` in ``[0, 1]``, ``y`` ``(N,)`` -> ``VerifyResult.verified``
    ``(E, N)`` for ``E`` epsilons.

    Example:
        >>> res = IBP(feature_space=space)(detector, x, y, eps=[0.01, 0.05])
        >>> res.certified_accuracy
        [0.91, 0.62]
    """

    name = "ibp"

    def margins(self, net: ReluNetwork, lower: torch.Tensor, upper: torch.Tensor,
                y: torch.Tensor) -> torch.Tensor:
        return ibp_margin(net, lower, upper, y)

    def logit_bounds(self, net: ReluNetwork, lower: torch.Tensor, upper: torch.Tensor
                     ) -> Bounds:
        return ibp_bounds(net, lower, upper)


class CROWN(Verifier):
    r"""CROWN: certified robustness of a ReLU MLP on the valid region by backward linear
    relaxation.

    Paper: Zhang, Weng, Chen, Hsieh, Daniel, "Efficient Neural Network Robustness Certification
    with General Activation Functions", NeurIPS 2018. https://arxiv.org/abs/1811.00866

    Norm: L-inf, on the same region as :class:`IBP`. Every unstable ReLU is bounded by two
    lines (upper: the chord; lower: slope 1 if ``u >= -l`` else 0, the adaptive choice);
    the margins ``logit[y] - logit[j]`` (specification folded into the last layer) are pushed
    back through the network to a linear function of the input and minimised over the box in
    closed form. Hidden-layer bounds come from CROWN itself, intersected with IBP's. Sound,
    incomplete; tighter than IBP in practice, at the cost of one backward pass per hidden layer
    and per unstable unit. CROWN is not tighter than IBP on every margin (the adaptive lower
    slope 1 bounds an unstable unit below by ``l < 0`` where IBP has 0), so by default each
    margin keeps the better of the two sound bounds: the records CROWN certifies are then a
    superset of IBP's.

    Arguments:
        with_ibp: keep, per margin, the better of CROWN's and IBP's lower bound (default True;
            False: CROWN's alone).
        eps: default budget(s); feature_space: the fitted FeatureSpace (``None``: the plain
            box ``bounds``); categorical, switch_categories, max_boxes: mutable one-hot blocks;
            batch_size: boxes at once; dtype: float32 (default) or float64; device: default
            the model's. See :class:`~advsec.verification.base.Verifier`.

    Shapes: ``x`` ``(N, D)`` in ``[0, 1]``, ``y`` ``(N,)`` -> ``VerifyResult.verified``
    ``(E, N)`` for ``E`` epsilons.

    Example:
        >>> res = CROWN(feature_space=space)(detector, x, y, eps=[0.01, 0.05])
        >>> res.table()[["eps", "certified_accuracy", "seconds"]]
    """

    name = "crown"

    def __init__(self, *, with_ibp: bool = True, **options: Any) -> None:
        super().__init__(**options)
        self.with_ibp = bool(with_ibp)

    def margins(self, net: ReluNetwork, lower: torch.Tensor, upper: torch.Tensor,
                y: torch.Tensor) -> torch.Tensor:
        out = self.linear_margins(net, lower, upper, y, crown_layers(net, lower, upper))
        return torch.maximum(out, ibp_margin(net, lower, upper, y)) if self.with_ibp else out

    def linear_margins(self, net: ReluNetwork, lower: torch.Tensor, upper: torch.Tensor,
                       y: torch.Tensor, layers: list[Bounds]) -> torch.Tensor:
        """``(N, C - 1)`` the margins' lower bounds by backward linear relaxation over the
        hidden-layer bounds ``layers`` (the extension point of :class:`AlphaCROWN`)."""
        return crown_margin(net, lower, upper, y, layers=layers)

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "with_ibp": self.with_ibp}

    def logit_bounds(self, net: ReluNetwork, lower: torch.Tensor, upper: torch.Tensor
                     ) -> Bounds:
        return crown_bounds(net, lower, upper)


class AlphaCROWN(CROWN):
    r"""alpha-CROWN: CROWN with the lower slopes of the unstable ReLUs optimised per margin.

    Paper: Xu, Zhang, Wang, Wang, Jana, Lin, Hsieh, "Fast and Complete: Enabling Complete
    Neural Network Verification with Rapid and Massively Parallel Incomplete Verifiers", ICLR
    2021. https://arxiv.org/abs/2011.13824

    Norm: L-inf, on the same region as :class:`IBP` and :class:`CROWN`. Any lower slope in
    ``[0, 1]`` bounds an unstable ReLU soundly; instead of CROWN's fixed choice each margin gets
    its own slopes, raised by projected Adam on the margins' lower bounds (the hidden-layer
    bounds stay CROWN's). Every margin keeps its best bound, so the records alpha-CROWN
    certifies are a superset of CROWN's (and, with ``with_ibp``, of IBP's), at about
    ``iterations`` times the cost of CROWN's last backward pass.

    Arguments:
        iterations: optimisation steps (default 20; 0 is CROWN); lr: Adam's step size on the
            slopes (default 0.5); with_ibp: as for :class:`CROWN`; eps, feature_space,
            categorical, switch_categories, max_boxes, batch_size, dtype, device: see
            :class:`~advsec.verification.base.Verifier`.

    Shapes: ``x`` ``(N, D)`` in ``[0, 1]``, ``y`` ``(N,)`` -> ``VerifyResult.verified``
    ``(E, N)`` for ``E`` epsilons.

    Example:
        >>> res = AlphaCROWN(feature_space=space, iterations=30)(detector, x, y, eps=[0.05])
        >>> res.certified_accuracy
    """

    name = "alpha-crown"

    def __init__(self, *, iterations: int = 20, lr: float = 0.5, with_ibp: bool = True,
                 **options: Any) -> None:
        if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 0:
            raise ConfigError(f"iterations: expected a whole number >= 0, got {iterations!r}")
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
            raise ConfigError(f"lr: expected a number > 0, got {lr!r}")
        super().__init__(with_ibp=with_ibp, **options)
        self.iterations, self.lr = int(iterations), float(lr)

    def linear_margins(self, net: ReluNetwork, lower: torch.Tensor, upper: torch.Tensor,
                       y: torch.Tensor, layers: list[Bounds]) -> torch.Tensor:
        return alpha_crown_margin(net, lower, upper, y, layers=layers,
                                  iterations=self.iterations, lr=self.lr)

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "iterations": self.iterations, "lr": self.lr}
