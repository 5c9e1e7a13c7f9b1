"""Adversarial training: data enhancement, PGD adversarial training and fast (FGSM) AT.

- **Data enhancement** (the KDD Cup 99 study): adversarial examples of the training set are
  generated once, with a chosen attack, against the *trained* model; they are added to the
  training data with their true labels (default ratio 1:1) and training continues.
- **PGD-AT** (Madry et al. 2018): every batch is replaced by PGD examples crafted against the
  *current* network, so the model is trained on its own worst cases as it changes.
- **Fast AT** (Wong, Rice, Kolter 2020): the same with one FGSM step of ``1.25 * eps`` from a
  uniform random start: about the cost of clean training times two.

All three take an optional :class:`~advsec.features.FeatureSpace`: the attack then moves only
mutable columns, keeps bounds at every step and repairs its result, so every training example
is a valid record. Each returns a :class:`~advsec.defenses.DefenseResult` with the clean metrics
of the hardened detector when ``eval_data`` is given.
"""

from __future__ import annotations

import copy
import itertools
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from advsec.attacks.base import Attack, as_module
from advsec.attacks.gradient import GradientAttack
from advsec.attacks.pgd import PGD
from advsec.defenses._common import (
    ArrayLike,
    DefenseResult,
    as_labels,
    as_tensor,
    finish,
    prepare_copy,
)
from advsec.errors import ConfigError
from advsec.models.detector import Detector
from advsec.models.inference import batched_logits

if TYPE_CHECKING:
    from advsec.features.space import FeatureSpace

__all__ = [
    "BatchTransform",
    "adversarial_batch_transform",
    "data_enhancement_training",
    "enhance_training_set",
    "fast_adversarial_training",
    "fgsm_random_start",
    "pgd_adversarial_training",
]

log = logging.getLogger(__name__)

BatchTransform = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


# ---------------------------------------------------------------------------- data enhancement
def enhance_training_set(
    model: Any,
    x: ArrayLike,
    y: torch.Tensor | np.ndarray,
    *,
    attack: Attack,
    ratio: float = 1.0,
    attack_labels: str = "true",
    target: str | None = None,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The training set enhanced with adversarial examples crafted against ``model``.

    Args:
        model: the network to attack (an ``nn.Module`` or a Detector). Pass a module wrapped
            in ``nn.Softmax`` to reproduce a loss computed on probabilities.
        x: training inputs ``(N, D)``.
        y: true class indices ``(N,)`` (int).
        attack: the attack (its ``eps`` is used).
        ratio: adversarial rows per clean row (``1.0``: 1:1). Below 1 a seeded random subset of
            the rows is attacked; above 1 rows are attacked several times (with a different
            seed each pass, which changes random starts).
        attack_labels: labels given to the attack: ``"true"`` (``y``) or ``"predicted"`` (the
            model's own predictions, as the original study did).
        target: ``None`` (untargeted) or ``"predicted"``: a targeted attack whose target is the
            model's own prediction (the original study's "targeted" BIM/MIM with no target
            given). Needs an attack built with ``targeted=True``.
        seed: seed of the row choice.

    Returns:
        ``(x_aug, y_aug, x_adv)``: the clean rows followed by the adversarial rows ``(N + M, D)``,
        their **true** labels ``(N + M,)``, and the adversarial rows alone ``(M, D)``.
    """
    if ratio <= 0:
        raise ConfigError(f"ratio must be > 0, got {ratio}")
    if attack_labels not in ("true", "predicted"):
        raise ConfigError(f"attack_labels must be 'true' or 'predicted', got {attack_labels!r}")
    if target not in (None, "predicted"):
        raise ConfigError(f"target must be None or 'predicted', got {target!r}")
    xt = as_tensor(x)
    yt = torch.as_tensor(np.asarray(y) if not isinstance(y, torch.Tensor) else y).long().cpu()
    n = len(xt)
    m = round(ratio * n)
    gen = torch.Generator().manual_seed(seed)
    passes = [torch.randperm(n, generator=gen) for _ in range(max(1, -(-m // n)))]
    rows = torch.cat(passes)[:m] if m < n or len(passes) > 1 else torch.arange(n)
    module = as_module(model)
    parts: list[torch.Tensor] = []
    for k, start in enumerate(range(0, m, n)):
        idx = rows[start : start + n]
        atk = copy.copy(attack)
        atk.seed = attack.seed + k
        xb, yb = xt[idx], yt[idx]
        labels = _predict(module, xb) if attack_labels == "predicted" or target else yb
        if target == "predicted":
            if not atk.targeted:
                raise ConfigError("target='predicted' needs an attack built with targeted=True")
            parts.append(_one(atk(module, xb, labels if attack_labels == "predicted" else yb,
                                  target=labels)).detach().cpu())
        else:
            parts.append(_one(atk(module, xb, labels)).detach().cpu())
    x_adv = torch.cat(parts) if parts else xt[:0]
    return torch.cat([xt, x_adv]), torch.cat([yt, yt[rows[:m]]]), x_adv


def data_enhancement_training(
    detector: Detector,
    x: ArrayLike,
    y: ArrayLike,
    *,
    attack: Attack,
    ratio: float = 1.0,
    epochs: int | None = None,
    attack_labels: str = "true",
    target: str | None = None,
    eval_data: tuple[ArrayLike, ArrayLike] | None = None,
    benign_class: int | str | None = None,
    seed: int = 0,
) -> DefenseResult:
    """Adversarial training by data enhancement, as in the KDD Cup 99 study.

    Adversarial examples of the training set are generated with ``attack`` against the trained
    ``detector``, added with their true labels (``ratio`` adversarial rows per clean row) and
    training continues on clean + adversarial data for ``epochs`` (default: the detector's).
    The examples are crafted once, against the model *before* hardening; the hardened model
    must still be attacked afresh to measure its robustness (see
    :func:`advsec.evaluation.adaptive_evaluation`).

    Args:
        detector: a fitted Detector (left unchanged; a copy is trained).
        x: training inputs ``(N, D)``; y: their labels ``(N,)`` (the detector's labels).
        attack: the attack that crafts the examples (give it ``feature_space`` for valid records).
        ratio, attack_labels, target: see :func:`enhance_training_set`.
        epochs: epochs of continued training.
        eval_data: ``(x, y)`` for the clean metrics of the result.
        benign_class: the benign class (label or index; default from the detector).
        seed: seed of the row choice when ``ratio`` is not 1.

    Returns:
        A :class:`DefenseResult`.
    """
    t0 = time.perf_counter()
    if not hasattr(detector, "module_"):
        raise ConfigError("data enhancement attacks the trained model: fit the detector first")
    det, _ = prepare_copy(detector, epochs=epochs)
    y_idx = detector.encode_labels(as_labels(y))
    x_aug, y_aug, x_adv = enhance_training_set(detector, x, y_idx, attack=attack, ratio=ratio,
                                               attack_labels=attack_labels, target=target,
                                               seed=seed)
    log.info("data enhancement: %d clean + %d adversarial rows (%s), %d epochs", len(y_idx),
             len(x_adv), getattr(attack, "name", type(attack).__name__), det.epochs)
    det.fit(x_aug, det.classes_[y_aug.numpy()])
    info = {"attack": getattr(attack, "name", type(attack).__name__),
            "eps": getattr(attack, "eps", None), "ratio": ratio, "epochs": det.epochs,
            "adversarial_rows": len(x_adv), "attack_labels": attack_labels,
            "target": target or "none"}
    return finish("data-enhancement", det, time.perf_counter() - t0, info, eval_data,
                  benign_class)


# ---------------------------------------------------------------------------- on-the-fly AT
def adversarial_batch_transform(
    attack: Attack, *, adv_share: float = 1.0, seed: int = 0
) -> BatchTransform:
    """``fn(module, xb, yb) -> xb'`` for ``Detector.fit(batch_transform=...)``.

    The first ``round(adv_share * len(xb))`` rows of each (already shuffled) batch are replaced
    by adversarial examples crafted with ``attack`` against the *current* network (in eval
    mode); the others stay clean. Each call uses a new attack seed (``seed``, ``seed + 1``, ...)
    so random starts differ between batches.
    """
    if not 0 < adv_share <= 1:
        raise ConfigError(f"adv_share must be in (0, 1], got {adv_share}")
    counter = itertools.count()

    def transform(module: nn.Module, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        k = next(counter)
        atk = copy.copy(attack)
        atk.seed = seed + k
        n_adv = len(xb) if adv_share >= 1 else round(adv_share * len(xb))
        if n_adv == 0:
            return xb
        x_adv = _one(atk(module, xb[:n_adv], yb[:n_adv])).detach()
        return x_adv if n_adv == len(xb) else torch.cat([x_adv, xb[n_adv:]])

    return transform


def pgd_adversarial_training(
    detector: Detector,
    x: ArrayLike,
    y: ArrayLike,
    *,
    eps: float = 0.1,
    steps: int = 7,
    step_size: float | None = None,
    rel_step_size: float | None = None,
    feature_space: FeatureSpace | None = None,
    bounds: tuple[float, float] | None = (0.0, 1.0),
    adv_share: float = 1.0,
    epochs: int | None = None,
    loss: str = "ce",
    eval_data: tuple[ArrayLike, ArrayLike] | None = None,
    benign_class: int | str | None = None,
    seed: int = 0,
) -> DefenseResult:
    """PGD adversarial training (Madry et al., "Towards Deep Learning Models Resistant to
    Adversarial Attacks", ICLR 2018, https://arxiv.org/abs/1706.06083).

    Every training batch is replaced by L-inf PGD examples (random start, ``steps`` steps)
    crafted against the current network, with their true labels.

    Args:
        detector: a Detector; fitted: training continues (fine-tuning); unfitted: trained from
            scratch. Left unchanged (a copy is trained).
        x: training inputs ``(N, D)``; y: labels ``(N,)`` (the detector's labels).
        eps: L-inf budget in model-input units.
        steps: PGD steps per batch.
        step_size / rel_step_size: absolute step, or step as a fraction of eps (default
            ``2.5 / steps``, so the steps can cross the ball: step * steps = 2.5 eps).
        feature_space: craft valid records (mutable columns only, bounds, final repair).
        bounds: the input box without a feature space (``None``: unbounded, e.g. standardised
            features).
        adv_share: share of each batch replaced by adversarial rows (1.0: Madry's min-max).
        epochs: epochs (default: the detector's).
        loss: the attack's objective (``"ce"`` on logits, or ``"margin"``).
        eval_data, benign_class: for the clean metrics of the result.
        seed: base seed of the random starts.

    Returns:
        A :class:`DefenseResult`.
    """
    rel = (2.5 / steps) if rel_step_size is None else rel_step_size
    attack = PGD(eps=eps, steps=steps, step_size=step_size, rel_step_size=rel,
                 feature_space=feature_space, bounds=bounds, loss=loss, seed=seed)
    return _on_the_fly("pgd-at", detector, x, y, attack, adv_share=adv_share, epochs=epochs,
                       eval_data=eval_data, benign_class=benign_class, seed=seed,
                       info={"eps": eps, "steps": steps, "step_size": step_size,
                             "rel_step_size": rel, "adv_share": adv_share,
                             "constrained": feature_space is not None})


def fgsm_random_start(
    *,
    eps: float,
    alpha: float | None = None,
    feature_space: FeatureSpace | None = None,
    bounds: tuple[float, float] | None = (0.0, 1.0),
    seed: int = 0,
) -> GradientAttack:
    """The attack of fast AT: a uniform random start in the eps-ball, then one sign step of
    ``alpha`` (default ``1.25 * eps``) and projection back onto the ball."""
    rel = 1.25 if alpha is None else alpha / eps if eps > 0 else 1.0
    atk = GradientAttack(eps=eps, steps=1, rel_step_size=rel, random_start=True,
                         feature_space=feature_space, bounds=bounds, seed=seed)
    atk.name = "fgsm-rs"
    return atk


def fast_adversarial_training(
    detector: Detector,
    x: ArrayLike,
    y: ArrayLike,
    *,
    eps: float = 0.1,
    alpha: float | None = None,
    feature_space: FeatureSpace | None = None,
    bounds: tuple[float, float] | None = (0.0, 1.0),
    epochs: int | None = None,
    eval_data: tuple[ArrayLike, ArrayLike] | None = None,
    benign_class: int | str | None = None,
    seed: int = 0,
) -> DefenseResult:
    """Fast adversarial training (Wong, Rice, Kolter, "Fast is better than free: Revisiting
    adversarial training", ICLR 2020, https://arxiv.org/abs/2001.03994).

    Like :func:`pgd_adversarial_training` with one FGSM step of ``alpha`` (default
    ``1.25 * eps``) from a uniform random start. Cheap, but it can collapse ("catastrophic
    overfitting": robust to FGSM, not to PGD); always re-attack the result with PGD.

    Args: see :func:`pgd_adversarial_training`.
    """
    attack = fgsm_random_start(eps=eps, alpha=alpha, feature_space=feature_space, bounds=bounds,
                               seed=seed)
    return _on_the_fly("fast-at", detector, x, y, attack, adv_share=1.0, epochs=epochs,
                       eval_data=eval_data, benign_class=benign_class, seed=seed,
                       info={"eps": eps, "alpha": eps * attack.rel_step_size,
                             "constrained": feature_space is not None})


def _on_the_fly(
    name: str,
    detector: Detector,
    x: ArrayLike,
    y: ArrayLike,
    attack: Attack,
    *,
    adv_share: float,
    epochs: int | None,
    eval_data: tuple[ArrayLike, ArrayLike] | None,
    benign_class: int | str | None,
    seed: int,
    info: dict[str, Any],
) -> DefenseResult:
    t0 = time.perf_counter()
    det, fitted = prepare_copy(detector, epochs=epochs)
    transform = adversarial_batch_transform(attack, adv_share=adv_share, seed=seed)
    log.info("%s: %s, %d epochs (%s)", name, attack, det.epochs,
             "fine-tuning" if fitted else "from scratch")
    det.fit(as_tensor(x), as_labels(y), batch_transform=transform)
    return finish(name, det, time.perf_counter() - t0,
                  {**info, "epochs": det.epochs, "from_scratch": not fitted}, eval_data,
                  benign_class)


def _predict(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return batched_logits(module, x).argmax(1)


def _one(x_adv: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
    """The adversarial inputs of an attack built with one eps (training crafts at one budget)."""
    if isinstance(x_adv, list):
        raise ConfigError("adversarial training needs an attack with one eps, not a list")
    return x_adv
