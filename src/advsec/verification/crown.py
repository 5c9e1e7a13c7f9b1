"""CROWN: backward linear relaxation bounds of a
:class:`~advsec.verification.network.ReluNetwork` over input boxes.

Paper: Zhang, Weng, Chen, Hsieh, Daniel, "Efficient Neural Network Robustness Certification
with General Activation Functions", NeurIPS 2018. https://arxiv.org/abs/1811.00866

Every ReLU with pre-activation bounds ``[l, u]`` gets two linear bounds: active (``l >= 0``)
``a = z``; inactive (``u <= 0``) ``a = 0``; unstable ``alpha z <= a <= u (z - l) / (u - l)``
with the adaptive lower slope ``alpha = 1`` if ``u >= -l`` else ``0``. A linear function of a
layer's output is pushed back to the input (through each affine map exactly; through each
ReLU with the lower bound where its coefficient is positive and the upper one where it is
negative, for a lower bound) and minimised over the box in closed form. Pre-activation bounds
of the hidden layers come from CROWN itself, layer by layer, intersected with IBP's
(both sound), and only for the units IBP leaves unstable in some row of the batch (a unit IBP
proves stable has the same relaxation whatever its bounds). The margins ``logit[y] -
logit[j]`` are bounded with the specification folded into the last layer (``C W_K``), not by
subtracting logit bounds.

Soundness holds in exact arithmetic; in floating point the bounds carry round-off of the
order of the dtype's epsilon times the magnitudes involved (use float64 where that matters).

Shapes: ``N`` boxes, ``D`` inputs, ``n_k`` units of layer ``k``, ``C`` logits, ``m`` linear
functions bounded at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from advsec.verification.bounds import Bounds, margin_spec
from advsec.verification.ibp import ibp_layers
from advsec.verification.network import ReluNetwork

__all__ = ["Relaxation", "alpha_crown_margin", "crown_bounds", "crown_layers", "crown_margin",
           "relax_relu"]


@dataclass(frozen=True)
class Relaxation:
    """The linear bounds ``lower_slope z <= relu(z) <= upper_slope (z + offset)`` of one
    ReLU layer (``offset = -l`` on unstable units, 0 elsewhere); every field ``(N, n)``."""

    lower_slope: torch.Tensor
    upper_slope: torch.Tensor
    offset: torch.Tensor


def relax_relu(pre: Bounds) -> Relaxation:
    """The CROWN relaxation of ``relu`` on the pre-activation bounds ``pre`` ``(N, n)``
    (adaptive lower slope)."""
    lo, hi = pre.lower, pre.upper
    unstable = (lo < 0) & (hi > 0)
    active = lo >= 0
    width = torch.where(unstable, hi - lo, torch.ones_like(hi))
    up = torch.where(unstable, hi / width, active.to(hi.dtype))
    low = torch.where(unstable, (hi >= -lo).to(hi.dtype), active.to(hi.dtype))
    return Relaxation(low, up, torch.where(unstable, -lo, torch.zeros_like(lo)))


@dataclass(frozen=True)
class _Box:
    """The input boxes as ``center``, ``radius`` ``(N, D)``, with the model columns whose
    radius is positive in some row (``moving``, ``(M,)``) and ``z_1`` at the centres."""

    center: torch.Tensor
    radius: torch.Tensor
    moving: torch.Tensor
    z1: torch.Tensor

    @classmethod
    def of(cls, net: ReluNetwork, lower: torch.Tensor, upper: torch.Tensor) -> _Box:
        center, radius = (upper + lower) / 2, (upper - lower) / 2
        moving = (radius > 0).any(0).nonzero().flatten()
        return cls(center, radius, moving, torch.addmm(net.biases[0], center, net.weights[0].T))


def _backward(net: ReluNetwork, relax: list[Relaxation], a: torch.Tensor, bias: torch.Tensor,
              rec: torch.Tensor, k: int, box: _Box,
              slopes: list[torch.Tensor] | None = None) -> torch.Tensor:
    """``(P,)`` lower bounds of ``P`` linear functions ``a[p] @ relu(z_k) + bias[p]`` over
    the box of record ``rec[p]``.

    ``a``: ``(P, n_k)`` coefficients on the output of ReLU layer ``k`` (``k = 0``: on the
    input); ``relax[j - 1]`` is layer ``j``'s relaxation, ``j <= k``. Rows are independent
    (ragged: each record brings only the functions it needs), so every product is one flat
    matrix product; the last one multiplies by ``W_1`` only on the moving columns (the others
    have radius 0). ``slopes``: per ReLU layer ``(P, n_j)`` lower slopes to use instead of the
    relaxations' (alpha-CROWN; differentiable)."""
    if k == 0:
        return (a * box.center[rec]).sum(1) - (a.abs() * box.radius[rec]).sum(1) + bias
    for j in range(k, 0, -1):
        r = relax[j - 1]
        low_slope = r.lower_slope[rec] if slopes is None else slopes[j - 1]
        a = a * torch.where(a < 0, r.upper_slope[rec], low_slope)
        bias = bias + (a.clamp(max=0) * r.offset[rec]).sum(1)
        if j > 1:
            bias = torch.addmv(bias, a, net.biases[j - 1])
            a = a @ net.weights[j - 1]
    # a: coefficients on z_1 = W_1 x + b_1, minimised over the box
    low = bias + (a * box.z1[rec]).sum(1)
    if len(box.moving):
        w = net.weights[0][:, box.moving]
        low = low - ((a @ w).abs() * box.radius[rec][:, box.moving]).sum(1)
    return low


def crown_layers(net: ReluNetwork, lower: torch.Tensor, upper: torch.Tensor) -> list[Bounds]:
    """Pre-activation bounds of the hidden layers ``[z_1, ..., z_{K-1}]``, each ``(N, n_k)``:
    CROWN intersected with IBP (``z_1``: exact interval arithmetic). CROWN bounds only the
    units IBP leaves unstable, record by record.

    Args:
        net: the network; lower, upper: ``(N, D)`` the input boxes, in the network's dtype.
    """
    box = _Box.of(net, lower, upper)
    ibp = ibp_layers(net, lower, upper)
    out: list[Bounds] = [ibp[0]] if net.depth > 1 else []
    relax = [relax_relu(out[0])] if out else []
    for k in range(2, net.depth):  # layer k's pre-activation, from relaxations 1..k-1
        pre = ibp[k - 1]
        rec, unit = ((pre.lower < 0) & (pre.upper > 0)).nonzero(as_tuple=True)
        if len(rec):
            w, b = net.weights[k - 1][unit], net.biases[k - 1][unit]
            both = _backward(net, relax, torch.cat([w, -w]), torch.cat([b, -b]),
                             torch.cat([rec, rec]), k - 1, box)  # lower bounds of z and -z
            lo, hi = pre.lower.clone(), pre.upper.clone()
            lo[rec, unit] = torch.maximum(lo[rec, unit], both[:len(rec)])
            hi[rec, unit] = torch.minimum(hi[rec, unit], -both[len(rec):])
            pre = Bounds(lo, hi)
        out.append(pre)
        relax.append(relax_relu(pre))
    return out


def _relaxations(net: ReluNetwork, lower: torch.Tensor, upper: torch.Tensor,
                 layers: list[Bounds] | None) -> list[Relaxation]:
    return [relax_relu(p) for p in (layers if layers is not None
                                     else crown_layers(net, lower, upper))]


def crown_bounds(net: ReluNetwork, lower: torch.Tensor, upper: torch.Tensor, *,
                 layers: list[Bounds] | None = None) -> Bounds:
    """``(N, C)`` CROWN bounds of the logits over the boxes ``lower``, ``upper`` ``(N, D)``.

    ``layers``: :func:`crown_layers` of the same boxes, when already computed."""
    relax = _relaxations(net, lower, upper, layers)
    n, c = len(lower), net.n_outputs
    w, b = net.weights[-1], net.biases[-1]
    a = torch.cat([w, -w]).repeat(n, 1)  # (N * 2C, n_{K-1})
    rec = torch.arange(n, device=lower.device).repeat_interleave(2 * c)
    both = _backward(net, relax, a, torch.cat([b, -b]).repeat(n), rec, net.depth - 1,
                     _Box.of(net, lower, upper)).view(n, 2 * c)
    return Bounds(both[:, :c], -both[:, c:])


def crown_margin(net: ReluNetwork, lower: torch.Tensor, upper: torch.Tensor, y: torch.Tensor,
                 *, layers: list[Bounds] | None = None) -> torch.Tensor:
    """``(N, C - 1)`` CROWN lower bounds of ``logit[y] - logit[j]`` for ``j != y`` (increasing
    ``j``) over the boxes ``lower``, ``upper`` ``(N, D)``, the specification folded into the
    last layer; ``y``: ``(N,)`` class indices. ``layers``: :func:`crown_layers`, if known."""
    relax = _relaxations(net, lower, upper, layers)
    a, bias, rec, box = _margin_functions(net, lower, upper, y)
    return _backward(net, relax, a, bias, rec, net.depth - 1, box).view(len(lower), -1)


def _margin_functions(net: ReluNetwork, lower: torch.Tensor, upper: torch.Tensor,
                      y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, _Box]:
    """``(a, bias, rec, box)`` of the ``N (C - 1)`` margins ``logit[y] - logit[j]`` as linear
    functions of the last hidden layer's output (the specification folded into the last
    layer), for :func:`_backward`."""
    n, m = len(lower), net.n_outputs - 1
    spec = margin_spec(y, net.n_outputs, dtype=net.dtype)  # (N, C-1, C)
    a = (spec @ net.weights[-1]).reshape(n * m, -1)
    rec = torch.arange(n, device=lower.device).repeat_interleave(m)
    return a, (spec @ net.biases[-1]).reshape(-1), rec, _Box.of(net, lower, upper)


def alpha_crown_margin(net: ReluNetwork, lower: torch.Tensor, upper: torch.Tensor,
                       y: torch.Tensor, *, layers: list[Bounds] | None = None,
                       iterations: int = 20, lr: float = 0.5) -> torch.Tensor:
    """``(N, C - 1)`` alpha-CROWN lower bounds of the margins ``logit[y] - logit[j]``.

    Paper: Xu, Zhang, Wang, Wang, Jana, Lin, Hsieh, "Fast and Complete: Enabling Complete
    Neural Network Verification with Rapid and Massively Parallel Incomplete Verifiers", ICLR
    2021. https://arxiv.org/abs/2011.13824

    :func:`crown_margin` with the lower slope of every unstable ReLU a free parameter in
    ``[0, 1]``, one per margin and unit (any such slope gives a sound bound), raised by
    ``iterations`` steps of projected Adam (step ``lr``) on the sum of the bounds, started from
    CROWN's adaptive slopes. Each margin keeps the best bound of any iterate, so the result is
    never below CROWN's. The hidden-layer bounds are CROWN's (``layers``), not re-optimised.
    """
    layers = crown_layers(net, lower, upper) if layers is None else layers
    relax = [relax_relu(p) for p in layers]
    a, bias, rec, box = _margin_functions(net, lower, upper, y)
    n, k = len(lower), net.depth - 1
    best = _backward(net, relax, a, bias, rec, k, box)  # CROWN's
    free = [((p.lower < 0) & (p.upper > 0))[rec] for p in layers]  # (P, n_j) unstable
    if iterations < 1 or not any(bool(f.any()) for f in free):
        return best.view(n, -1)
    alphas = [r.lower_slope[rec].clone().requires_grad_(True) for r in relax]

    def bound() -> torch.Tensor:  # the margins' lower bounds with the current slopes
        slopes = [torch.where(f, al, r.lower_slope[rec])
                  for f, al, r in zip(free, alphas, relax, strict=True)]
        return _backward(net, relax, a, bias, rec, k, box, slopes=slopes)

    opt = torch.optim.Adam(alphas, lr=lr)
    with torch.enable_grad():
        for _ in range(iterations):
            low = bound()
            best = torch.maximum(best, low.detach())
            # gradients for the slopes only (never into the network's weights)
            grads = torch.autograd.grad(-low.sum(), alphas)
            for al, g in zip(alphas, grads, strict=True):
                al.grad = g
            opt.step()
            with torch.no_grad():
                for al in alphas:
                    al.clamp_(0.0, 1.0)
    with torch.no_grad():  # the last iterate
        best = torch.maximum(best, bound())
    return best.view(n, -1)
