"""Defences: adversarial training (data enhancement, PGD-AT, fast AT), TRADES and certified
training (CROWN-IBP).

Every defence takes a Detector and training data, trains a hardened *copy* and returns a
:class:`DefenseResult` with the clean accuracy, detection rate and false-positive rate of the
hardened detector (a detector that flags everything is not robust, it is useless). Robustness is
measured afterwards by attacking the hardened detector afresh
(:func:`advsec.evaluation.adaptive_evaluation`), never only with examples crafted against the
undefended model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from advsec.defenses._common import DefenseResult, benign_index, clean_metrics
from advsec.defenses.adversarial_training import (
    BatchTransform,
    adversarial_batch_transform,
    data_enhancement_training,
    enhance_training_set,
    fast_adversarial_training,
    fgsm_random_start,
    pgd_adversarial_training,
)
from advsec.defenses.certified import crown_ibp_loss, crown_ibp_training, worst_case_logits
from advsec.defenses.trades import trades_adversarial_examples, trades_loss, trades_training
from advsec.errors import ConfigError
from advsec.models.detector import Detector

if TYPE_CHECKING:
    from advsec.features.space import FeatureSpace

__all__ = [
    "METHODS",
    "BatchTransform",
    "DefenseResult",
    "adversarial_batch_transform",
    "benign_index",
    "clean_metrics",
    "crown_ibp_loss",
    "crown_ibp_training",
    "data_enhancement_training",
    "defend",
    "enhance_training_set",
    "fast_adversarial_training",
    "fgsm_random_start",
    "harden",
    "pgd_adversarial_training",
    "trades_adversarial_examples",
    "trades_loss",
    "trades_training",
    "worst_case_logits",
]

#: Defence names accepted by :func:`defend` / :func:`harden` (``-`` and ``_`` both accepted).
METHODS = ("data_augmentation", "pgd_at", "fast_at", "trades", "crown_ibp")
_ALIASES = {"data_enhancement": "data_augmentation", "augmentation": "data_augmentation",
            "madry": "pgd_at", "fgsm_at": "fast_at", "certified": "crown_ibp"}


def defend(
    detector: Detector,
    *,
    method: str,
    x: Any,
    y: Any,
    eps: float = 0.1,
    steps: int = 7,
    epochs: int | None = 10,
    ratio: float = 1.0,
    beta: float = 6.0,
    attack: str = "fgsm",
    feature_space: FeatureSpace | None = None,
    bounds: tuple[float, float] | None = (0.0, 1.0),
    eval_data: tuple[Any, Any] | None = None,
    benign_class: int | str | None = None,
    seed: int = 0,
) -> DefenseResult:
    """Apply the defence ``method`` to a copy of ``detector``.

    Args:
        detector: a Detector (fitted for ``data_augmentation``; the others also train from
            scratch).
        method: ``"data_augmentation"`` (data enhancement with ``attack``, ``ratio``),
            ``"pgd_at"`` (``steps``), ``"fast_at"``, ``"trades"`` (``beta``, ``steps``) or
            ``"crown_ibp"`` (certified training; eps ramped from 0, see
            :mod:`advsec.defenses.certified`).
        x: training inputs ``(N, D)`` in model space; y: their labels ``(N,)``.
        eps: L-inf budget in model-input units.
        steps: PGD steps (PGD-AT, TRADES; data augmentation with an iterative ``attack``).
        epochs: training epochs of the hardening (``None``: the detector's).
        ratio: adversarial rows per clean row (data augmentation).
        beta: TRADES trade-off.
        attack: registry name of the data-augmentation attack (``fgsm``, ``pgd``, ...).
        feature_space: craft valid records only (constraint-aware training).
        bounds: input box without a feature space (``None`` for standardised inputs).
        eval_data: ``(x, y)`` for the clean metrics of the result.
        benign_class: the benign class (label or index).
        seed: seed of the attacks' random draws.
    """
    key = method.lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    common: dict[str, Any] = {"epochs": epochs, "eval_data": eval_data,
                              "benign_class": benign_class, "seed": seed}
    if key == "data_augmentation":
        from advsec.attacks.registry import attack_spec, make_attack

        opts: dict[str, Any] = {"eps": eps, "feature_space": feature_space, "bounds": bounds,
                                "seed": seed}
        try:
            if attack_spec(attack).budget == "steps":
                opts["steps"] = steps
            atk = make_attack(attack, **opts)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        return data_enhancement_training(detector, x, y, attack=atk, ratio=ratio, **common)
    if key == "pgd_at":
        return pgd_adversarial_training(detector, x, y, eps=eps, steps=steps,
                                        feature_space=feature_space, bounds=bounds, **common)
    if key == "fast_at":
        return fast_adversarial_training(detector, x, y, eps=eps, feature_space=feature_space,
                                         bounds=bounds, **common)
    if key == "trades":
        return trades_training(detector, x, y, eps=eps, beta=beta, steps=steps,
                               feature_space=feature_space, bounds=bounds, **common)
    if key == "crown_ibp":
        return crown_ibp_training(detector, x, y, eps=eps, feature_space=feature_space,
                                  bounds=bounds, **common)
    raise ConfigError(f"unknown defence {method!r}; known: {', '.join(METHODS)}")


def harden(detector: Detector, **options: Any) -> Detector:
    """:func:`defend` returning only the hardened Detector (same keyword options)."""
    return defend(detector, **options).detector
