"""Certified training: CROWN-IBP (Zhang, Chen, Xiao, Gowal, Stanforth, Li, Boning, Hsieh,
"Towards Stable and Efficient Training of Verifiably Robust Neural Networks", ICLR 2020,
https://arxiv.org/abs/1906.06316).

Per batch, the valid region of each record at the current budget (the attacks' own box:
:func:`advsec.verification.linf_region`, immutable columns pinned, directions kept, the
record's own category of each mutable one-hot block) is bounded through the network: the
lower bounds ``m_j`` of the margins ``logit[y] - logit[j]`` mix CROWN-IBP (the CROWN backward
pass over the last layer with IBP's hidden-layer bounds) and IBP,
``m = beta * m_CROWN-IBP + (1 - beta) * m_IBP``. The robust loss is the cross-entropy of the
worst-case logits ``(0, -m_j)`` (class ``y`` first), which bounds the loss of every record in
the region; the training loss is ``kappa * CE(f(x), y) + (1 - kappa) * robust``.

Schedules, over the epochs after ``warmup`` clean ones, for the first ``ramp`` fraction of the
remaining steps: eps grows linearly from 0 to ``eps``, ``beta`` falls from 1 to 0 and
``kappa`` from 1 to ``kappa_end`` (the paper's choices; the region is ramped because bounds of
an untrained network at the full budget are too loose to learn from).

A model trained so is verified (:func:`advsec.verification.make_verifier`) and attacked afresh
like every defence; its certified accuracy is the number to look at.

Shapes: ``N`` records of a batch, ``B >= N`` boxes of their regions, ``D`` inputs, ``C``
classes.
"""

from __future__ import annotations

import logging
import math
import time
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from advsec.defenses._common import (
    ArrayLike,
    DefenseResult,
    EpochLosses,
    as_labels,
    as_tensor,
    finish,
    init_network,
    prepare_copy,
)
from advsec.errors import ConfigError
from advsec.models.detector import Detector, resolve_device
from advsec.verification import crown_margin, ibp_layers, ibp_margin, linf_region, relu_network

if TYPE_CHECKING:
    from advsec.features.space import FeatureSpace
    from advsec.verification import ReluNetwork

__all__ = ["crown_ibp_loss", "crown_ibp_training", "worst_case_logits"]

log = logging.getLogger(__name__)


def worst_case_logits(margins: torch.Tensor) -> torch.Tensor:
    """``(B, C)`` logits ``(0, -m_1, ..., -m_{C-1})`` from margin lower bounds ``(B, C - 1)``:
    their cross-entropy with class 0 bounds the cross-entropy of every point of the box."""
    return torch.cat([torch.zeros_like(margins[:, :1]), -margins], dim=1)


def crown_ibp_loss(net: ReluNetwork, lower: torch.Tensor, upper: torch.Tensor,
                   y: torch.Tensor, *, beta: float) -> torch.Tensor:
    """The robust loss: mean over boxes of the CE of the worst-case logits, the margins
    ``beta * CROWN-IBP + (1 - beta) * IBP``.

    Args:
        net: a :class:`~advsec.verification.ReluNetwork` built with ``detach=False``.
        lower, upper: ``(B, D)`` the boxes; y: ``(B,)`` their class indices.
        beta: weight of CROWN-IBP in ``[0, 1]`` (``0``: pure IBP, cheaper).
    """
    layers = ibp_layers(net, lower, upper)
    margin = ibp_margin(net, lower, upper, y, layers=layers)
    if beta > 0:
        crown = crown_margin(net, lower, upper, y, layers=layers[:-1])
        margin = beta * crown + (1 - beta) * margin
    target = torch.zeros(len(y), dtype=torch.long, device=y.device)
    return F.cross_entropy(worst_case_logits(margin), target)


def _schedule(step: int, start: int, length: int) -> float:
    """0 before ``start``, linear to 1 over ``length`` steps, then 1."""
    if step < start:
        return 0.0
    return 1.0 if length <= 0 else min(1.0, (step - start + 1) / length)


def crown_ibp_training(
    detector: Detector,
    x: ArrayLike,
    y: ArrayLike,
    *,
    eps: float = 0.1,
    kappa_end: float = 0.5,
    warmup: int | None = None,
    ramp: float = 0.5,
    feature_space: FeatureSpace | None = None,
    bounds: tuple[float, float] | None = (0.0, 1.0),
    epochs: int | None = None,
    eval_data: tuple[ArrayLike, ArrayLike] | None = None,
    benign_class: int | str | None = None,
    seed: int = 0,
) -> DefenseResult:
    """Train (or fine-tune) ``detector`` with the CROWN-IBP objective (module docstring).

    Uses the detector's ``batch_size``, ``lr`` (Adam), ``weight_decay`` and ``epochs`` (unless
    ``epochs`` is given); no validation split. The network must be ReLU (the verifiers' class);
    the input detector is left unchanged.

    Args:
        detector: the Detector (``activation="relu"``; dropout is allowed).
        x: training inputs ``(N, D)`` in model space; y: labels ``(N,)`` (the detector's).
        eps: the final L-inf budget in model-input units.
        kappa_end: the final weight of the clean loss, in ``[0, 1]``.
        warmup: clean epochs before the ramp (``< epochs``; default 1, none with one epoch).
        ramp: fraction of the remaining steps over which eps, beta and kappa move, ``(0, 1]``.
        feature_space: bound over the valid region (immutables, directions, one-hot blocks);
            ``None``: the box ``bounds`` with every column mutable.
        bounds: the input box without a feature space.
        epochs: epochs (default: the detector's).
        eval_data, benign_class: for the clean metrics of the result.
        seed: seed of shuffling and dropout.

    Returns:
        A :class:`~advsec.defenses.DefenseResult`; ``detector.history_`` gains one entry per
        epoch with ``loss``, ``natural_loss``, ``robust_loss`` and the epoch's final ``eps``.
    """
    if not (0 < eps <= 1) or not math.isfinite(eps):
        raise ConfigError(f"eps must be in (0, 1], got {eps}")
    if not 0 <= kappa_end <= 1:
        raise ConfigError(f"kappa_end must be in [0, 1], got {kappa_end}")
    if not 0 < ramp <= 1:
        raise ConfigError(f"ramp must be in (0, 1], got {ramp}")
    if detector.activation != "relu":
        raise ConfigError(f"crown_ibp trains ReLU networks, the detector has "
                          f"activation={detector.activation!r}")
    t0 = time.perf_counter()
    det, fitted = prepare_copy(detector, epochs=epochs)
    if warmup is None:
        warmup = min(1, det.epochs - 1)
    if not 0 <= warmup < det.epochs:
        raise ConfigError(f"warmup must be in [0, epochs - 1] = [0, {det.epochs - 1}], "
                          f"got {warmup}")
    xt = as_tensor(x)
    y_raw = as_labels(y)
    if not fitted:
        init_network(det, xt, y_raw)
    yt = det.encode_labels(y_raw)
    dev = resolve_device(det.device)
    det.device_ = dev
    module = det.module_.to(dev)
    per_epoch = max(1, math.ceil(len(xt) / det.batch_size))
    start = warmup * per_epoch
    length = max(1, round(ramp * (det.epochs - warmup) * per_epoch))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(det.seed + seed)
        gen = torch.Generator().manual_seed(det.seed + seed)
        opt = torch.optim.Adam(module.parameters(), lr=det.lr, weight_decay=det.weight_decay)
        start_epoch = len(det.history_)
        x_dev, y_dev = xt.to(dev), yt.to(dev)
        step = 0
        for epoch in range(det.epochs):
            order = torch.randperm(len(xt), generator=gen).to(dev)
            losses = EpochLosses(next(module.parameters()).device)
            e_now = 0.0
            for s in range(0, len(order), det.batch_size):
                idx = order[s : s + det.batch_size]
                xb, yb = x_dev[idx], y_dev[idx]
                t = _schedule(step, start, length)
                e_now, beta, kappa = eps * t, 1.0 - t, 1.0 - (1.0 - kappa_end) * t
                module.train()
                opt.zero_grad(set_to_none=True)
                natural = F.cross_entropy(module(xb), yb)
                robust = torch.zeros((), device=dev)
                if t > 0:
                    region = linf_region(xb, e_now, space=feature_space, bounds=bounds)
                    net = relu_network(module, detach=False)
                    robust = crown_ibp_loss(net, region.lower, region.upper,
                                            yb[region.owner], beta=beta)
                total = kappa * natural + (1 - kappa) * robust
                total.backward()
                opt.step()
                step += 1
                losses.add(len(idx), total, natural, robust)
            entry = {**losses.entry(start_epoch + epoch + 1, len(order)), "eps": e_now}
            det.history_.append(entry)
            log.debug("crown_ibp epoch %d: %s", epoch + 1, entry)
    info = {"eps": eps, "kappa_end": kappa_end, "warmup": warmup, "ramp": ramp,
            "epochs": det.epochs, "from_scratch": not fitted,
            "constrained": feature_space is not None}
    return finish("crown_ibp", det, time.perf_counter() - t0, info, eval_data, benign_class)
