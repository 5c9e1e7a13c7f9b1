"""Interval bound propagation (IBP) through a :class:`~advsec.verification.network.ReluNetwork`.

Paper: Gowal, Dvijotham, Stanforth, Bunel, Qin, Uesato, Arandjelovic, Mann, Kohli, "On the
Effectiveness of Interval Bound Propagation for Training Verifiably Robust Models", 2018.
https://arxiv.org/abs/1810.12715

An affine layer maps the box ``|a - c| <= r`` to ``|z - (W c + b)| <= |W| r`` (exact for the
layer alone); a ReLU maps ``[l, u]`` to ``[relu(l), relu(u)]``. The margins ``logit[y] -
logit[j]`` are bounded with the specification folded into the last layer (``C W_K``, as in the
paper's elision of the last layer), which is tighter than subtracting logit bounds.

Shapes: ``N`` boxes, ``D`` inputs, ``n_k`` units of layer ``k``, ``C`` logits.
"""

from __future__ import annotations

import torch

from advsec.verification.bounds import Bounds, box_lower, margin_spec
from advsec.verification.network import ReluNetwork

__all__ = ["ibp_bounds", "ibp_layers", "ibp_margin"]


def _affine(w: torch.Tensor, b: torch.Tensor, center: torch.Tensor, radius: torch.Tensor
            ) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.addmm(b, center, w.T), radius @ w.abs().T


def ibp_layers(net: ReluNetwork, lower: torch.Tensor, upper: torch.Tensor) -> list[Bounds]:
    """Pre-activation bounds of every layer, ``[z_1, ..., z_K]`` (``z_K``: the logits).

    Args:
        net: the network; lower, upper: ``(N, D)`` the input boxes, in the network's dtype.

    Returns:
        ``K`` :class:`Bounds`, the ``k``-th of shape ``(N, n_k)``.
    """
    out: list[Bounds] = []
    center, radius = (upper + lower) / 2, (upper - lower) / 2
    for k, (w, b) in enumerate(zip(net.weights, net.biases, strict=True)):
        if k:
            lo, hi = out[-1].lower.clamp_min(0), out[-1].upper.clamp_min(0)
            center, radius = (hi + lo) / 2, (hi - lo) / 2
        c, r = _affine(w, b, center, radius)
        out.append(Bounds(c - r, c + r))
    return out


def ibp_bounds(net: ReluNetwork, lower: torch.Tensor, upper: torch.Tensor) -> Bounds:
    """``(N, C)`` IBP bounds of the logits over the boxes ``lower``, ``upper`` ``(N, D)``."""
    return ibp_layers(net, lower, upper)[-1]


def ibp_margin(net: ReluNetwork, lower: torch.Tensor, upper: torch.Tensor, y: torch.Tensor,
               *, layers: list[Bounds] | None = None) -> torch.Tensor:
    """``(N, C - 1)`` lower bounds of ``logit[y] - logit[j]`` for ``j != y`` (increasing ``j``)
    over the boxes ``lower``, ``upper`` ``(N, D)``; ``y``: ``(N,)`` class indices.

    ``layers``: :func:`ibp_layers` of the same boxes, when already computed.
    """
    spec = margin_spec(y, net.n_outputs, dtype=net.dtype)  # (N, C-1, C)
    a = spec @ net.weights[-1]  # (N, C-1, n_{K-1})
    bias = spec @ net.biases[-1]
    if net.depth == 1:
        lo, hi = lower, upper
    else:
        pre = (layers or ibp_layers(net, lower, upper))[-2]
        lo, hi = pre.lower.clamp_min(0), pre.upper.clamp_min(0)
    return box_lower(a, bias, (hi + lo) / 2, (hi - lo) / 2)
