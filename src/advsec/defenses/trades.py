"""TRADES: a clean loss plus ``beta`` times the KL divergence between clean and adversarial
predictions (Zhang, Yu, Jiao, Xing, El Ghaoui, Jordan, "Theoretically Principled Trade-off
between Robustness and Accuracy", ICML 2019, https://arxiv.org/abs/1901.08573).

Per batch: the inner maximisation starts at ``x + 0.001 * N(0, 1)`` and takes ``steps`` L-inf
sign steps that increase ``KL(p(x) || p(x'))`` (network in eval mode), projecting onto the
eps-ball and the valid region after each; the outer loss is
``CE(f(x), y) + beta * KL(p(x) || p(x'))`` (batch mean). ``beta`` trades clean accuracy
(small) for robustness (large); the paper uses 1 to 6.
"""

from __future__ import annotations

import logging
import math
import time
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from advsec.attacks.base import eval_mode
from advsec.attacks.projection import Projector
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

if TYPE_CHECKING:
    from advsec.features.space import FeatureSpace

__all__ = ["trades_adversarial_examples", "trades_loss", "trades_training"]

log = logging.getLogger(__name__)


def trades_adversarial_examples(
    module: nn.Module,
    x: torch.Tensor,
    *,
    eps: float,
    steps: int = 7,
    step_size: float | None = None,
    feature_space: FeatureSpace | None = None,
    bounds: tuple[float, float] | None = (0.0, 1.0),
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """TRADES' inner maximisation: ``x'`` in the eps-ball maximising ``KL(p(x) || p(x'))``.

    Args:
        module: logits network; x: inputs ``(N, D)`` on the module's device.
        eps: L-inf budget; steps: sign steps of ``step_size`` (default ``2.5 * eps / steps``).
        feature_space: keep mutable columns only and the valid region; the result is repaired
            into valid records.
        bounds: input box without a feature space (``None``: unbounded).
        generator: for the small Gaussian start.

    Returns:
        ``(N, D)`` adversarial inputs (no gradient).
    """
    alpha = 2.5 * eps / steps if step_size is None else step_size
    x0 = x.detach()
    eps_t = torch.full((len(x0), 1), float(eps), device=x0.device, dtype=x0.dtype)
    lower: torch.Tensor | float | None
    upper: torch.Tensor | float | None
    if feature_space is not None:
        view = feature_space.torch_view(x0.device)
        lower, upper, mutable = view.lower.to(x0.dtype), view.upper.to(x0.dtype), view.mutable
    else:
        lower, upper = (None, None) if bounds is None else (float(bounds[0]), float(bounds[1]))
        mutable = None
    project = Projector(x0, eps_t, norm="linf", lower=lower, upper=upper, mutable=mutable,
                        space=feature_space)
    with eval_mode(module), torch.no_grad():
        logp_clean = F.log_softmax(module(x0), dim=1)
    noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    if mutable is not None:
        noise = noise * mutable.to(x0.dtype)
    xa = project(x0 + 0.001 * noise)
    with eval_mode(module):
        for _ in range(steps):
            with torch.enable_grad():
                xg = xa.detach().requires_grad_(True)
                kl = F.kl_div(F.log_softmax(module(xg), dim=1), logp_clean, reduction="sum",
                              log_target=True)
                (grad,) = torch.autograd.grad(kl, xg)
            if mutable is not None:
                grad = grad * mutable.to(grad.dtype)
            xa = project(xa.detach() + alpha * grad.sign())
    if feature_space is not None:
        xa = feature_space.repair(xa, x0)
    return xa.detach()


def trades_loss(
    module: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    x_adv: torch.Tensor,
    *,
    beta: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(total, natural CE, KL)``: ``CE(f(x), y) + beta * KL(p(x) || p(x_adv))`` (batch means).

    Shapes: ``x``, ``x_adv`` ``(N, D)``; ``y`` ``(N,)`` class indices.
    """
    logits = module(x)
    natural = F.cross_entropy(logits, y)
    # log-space target: the gradient through softmax(f(x)) stays finite where a probability
    # underflows to 0 (t * log t has an infinite derivative at t = 0)
    robust = F.kl_div(F.log_softmax(module(x_adv), dim=1), F.log_softmax(logits, dim=1),
                      reduction="batchmean", log_target=True)
    return natural + beta * robust, natural, robust


def trades_training(
    detector: Detector,
    x: ArrayLike,
    y: ArrayLike,
    *,
    eps: float = 0.1,
    beta: float = 6.0,
    steps: int = 7,
    step_size: float | None = None,
    feature_space: FeatureSpace | None = None,
    bounds: tuple[float, float] | None = (0.0, 1.0),
    epochs: int | None = None,
    eval_data: tuple[ArrayLike, ArrayLike] | None = None,
    benign_class: int | str | None = None,
    seed: int = 0,
) -> DefenseResult:
    """Train (or fine-tune) ``detector`` with the TRADES objective.

    Uses the detector's ``batch_size``, ``lr`` (Adam), ``weight_decay`` and ``epochs`` (unless
    ``epochs`` is given); no validation split. A fitted detector is fine-tuned, an unfitted one
    trained from scratch; the input detector is left unchanged.

    Args:
        detector: the Detector.
        x: training inputs ``(N, D)``; y: labels ``(N,)`` (the detector's labels).
        eps: L-inf budget in model-input units.
        beta: weight of the robustness (KL) term.
        steps, step_size, feature_space, bounds: see :func:`trades_adversarial_examples`.
        epochs: epochs (default: the detector's).
        eval_data, benign_class: for the clean metrics of the result.
        seed: seed of shuffling, the inner start and dropout.

    Returns:
        A :class:`DefenseResult`; ``detector.history_`` gains one entry per epoch with
        ``loss``, ``natural_loss`` and ``robust_loss``.
    """
    if beta < 0 or not math.isfinite(beta):
        raise ConfigError(f"beta must be a finite number >= 0, got {beta}")
    if steps < 1:
        raise ConfigError(f"steps must be >= 1, got {steps}")
    t0 = time.perf_counter()
    det, fitted = prepare_copy(detector, epochs=epochs)
    xt = as_tensor(x)
    y_raw = as_labels(y)
    if not fitted:
        init_network(det, xt, y_raw)
    yt = det.encode_labels(y_raw)
    dev = resolve_device(det.device)
    det.device_ = dev
    module = det.module_.to(dev)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(det.seed + seed)
        gen = torch.Generator().manual_seed(det.seed + seed)
        noise_gen = torch.Generator(device=dev).manual_seed(det.seed + seed + 1)
        opt = torch.optim.Adam(module.parameters(), lr=det.lr, weight_decay=det.weight_decay)
        start_epoch = len(det.history_)
        x_dev, y_dev = xt.to(dev), yt.to(dev)
        for epoch in range(det.epochs):
            order = torch.randperm(len(xt), generator=gen).to(dev)
            losses = EpochLosses(next(module.parameters()).device)
            for s in range(0, len(order), det.batch_size):
                idx = order[s : s + det.batch_size]
                xb, yb = x_dev[idx], y_dev[idx]
                xa = trades_adversarial_examples(module, xb, eps=eps, steps=steps,
                                                 step_size=step_size,
                                                 feature_space=feature_space, bounds=bounds,
                                                 generator=noise_gen)
                module.train()
                opt.zero_grad(set_to_none=True)
                total, natural, robust = trades_loss(module, xb, yb, xa, beta=beta)
                total.backward()
                opt.step()
                losses.add(len(idx), total, natural, robust)
            entry = losses.entry(start_epoch + epoch + 1, len(order))
            det.history_.append(entry)
            log.debug("trades epoch %d: %s", epoch + 1, entry)
    info = {"eps": eps, "beta": beta, "steps": steps,
            "step_size": 2.5 * eps / steps if step_size is None else step_size,
            "epochs": det.epochs, "from_scratch": not fitted,
            "constrained": feature_space is not None}
    return finish("trades", det, time.perf_counter() - t0, info, eval_data, benign_class)
