"""Transfer attacks: craft on a differentiable surrogate, evaluate on any detector with predict."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from advsec.attacks.base import Attack, Eps
from advsec.attacks.targets import eps_values

__all__ = ["TransferResult", "transfer_attack"]


@dataclass
class TransferResult:
    """A transfer evaluation.

    Attributes:
        table: one row per (target, eps): ``attack, target, eps, surrogate_success_rate,
            clean_accuracy, adversarial_accuracy, clean_detection_rate,
            adversarial_detection_rate, transfer_success_rate, n_eligible, valid_share``.
        x_adv: eps -> adversarial inputs ``(N, D)`` (float32 NumPy), crafted on the surrogate.
    """

    table: pd.DataFrame
    x_adv: dict[float, np.ndarray] = field(default_factory=dict)


def transfer_attack(
    surrogate: Any,
    targets: Mapping[str, Any] | Any,
    x: np.ndarray | torch.Tensor,
    y: np.ndarray | Any,
    *,
    attack: Attack | str = "pgd",
    eps: Eps | None = None,
    evasion: bool = False,
    benign_label: Any = None,
    attack_options: Mapping[str, Any] | None = None,
) -> TransferResult:
    """Craft adversarial inputs on ``surrogate`` and measure how well they fool ``targets``.

    Paper: Papernot, McDaniel, Goodfellow, "Transferability in Machine Learning: from Phenomena
    to Black-Box Attacks using Adversarial Samples", 2016. https://arxiv.org/abs/1605.07277

    Norm: that of ``attack``.

    Args:
        surrogate: a fitted advsec ``Detector`` (differentiable; its ``classes_`` name labels).
        targets: a fitted detector with ``predict`` (NumPy ``(N, D)`` -> labels ``(N,)``) or a
            mapping name -> detector: RandomForest, HistGradientBoosting, XGBoost, another
            Detector... They must use the same labels as ``y``.
        x: model-space inputs ``(N, D)``.
        y: true labels ``(N,)`` (the raw labels the detectors were trained on).
        attack: an advsec attack, or a registry name built with ``attack_options``.
        eps: budget(s); default: the attack's own.
        evasion: attack only malicious rows, towards benign; success on a target is counted on
            malicious rows that target detected before the attack.
        benign_label: the benign label (default: the surrogate's feature space's, else
            ``"benign"``/``"normal"``/0 as found in the surrogate's classes).
        attack_options: options for a registry-name ``attack``.

    Returns:
        A :class:`TransferResult`. The transfer success rate on a target is, untargeted: among
        rows the target classified correctly before the attack, the share it misclassifies
        after; evasion: among malicious rows it detected, the share it now calls benign.

    Shapes: ``x`` ``(N, D)``, ``y`` ``(N,)``.

    Example:
        >>> forest = RandomForestClassifier().fit(x_train, y_train)
        >>> res = transfer_attack(detector, {"forest": forest}, x_test, y_test, eps=[0.05, 0.1])
        >>> res.table[["target", "eps", "transfer_success_rate"]]
    """
    from advsec.attacks.registry import make_attack

    if isinstance(attack, str):
        opts = dict(attack_options or {})
        opts.setdefault("evasion", evasion)
        if benign_label is not None:
            opts.setdefault("benign_class", benign_label)
        attack = make_attack(attack, **opts)
    elif evasion and not attack.evasion:
        raise ValueError("evasion=True needs an attack built with evasion=True")
    evasion = evasion or attack.evasion
    if not isinstance(targets, Mapping):
        targets = {type(targets).__name__: targets}
    x_np = (x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)).astype(
        np.float32)
    y_raw = np.asarray(y.cpu() if isinstance(y, torch.Tensor) else y)
    if y_raw.dtype.kind in "OUS" or str(y_raw.dtype).startswith("string"):
        y_raw = y_raw.astype(str)
    y_idx = surrogate.encode_labels(y_raw)
    eps_list = eps_values(attack.eps if eps is None else eps)
    result = attack.run(surrogate, torch.from_numpy(x_np), y_idx, eps=eps_list)
    benign = result.benign_class
    benign_value = surrogate.classes_[benign]
    sur_rates = result.success_rate
    rows: list[dict[str, Any]] = []
    out = TransferResult(pd.DataFrame())
    clean_preds = {name: _same_type(np.asarray(t.predict(x_np)), y_raw)
                   for name, t in targets.items()}
    benign_value = _same_type(np.asarray([benign_value]), y_raw)[0]
    malicious = y_raw != benign_value
    for i, e in enumerate(eps_list):
        xa = result.x_adv[i].detach().cpu().numpy().astype(np.float32)
        out.x_adv[e] = xa
        share = result.valid_share[i]
        for name, target in targets.items():
            clean = clean_preds[name]
            adv = _same_type(np.asarray(target.predict(xa)), y_raw)
            correct = clean == y_raw
            if evasion:
                pool = malicious & (clean != benign_value)
                turned = adv == benign_value
            else:
                pool = correct
                turned = adv != y_raw
            rows.append({
                "attack": attack.name,
                "target": name,
                "eps": e,
                "surrogate_success_rate": sur_rates[i],
                "clean_accuracy": float(correct.mean()) if len(y_raw) else math.nan,
                "adversarial_accuracy": float((adv == y_raw).mean()) if len(y_raw) else math.nan,
                "clean_detection_rate": _rate(clean[malicious] != benign_value),
                "adversarial_detection_rate": _rate(adv[malicious] != benign_value),
                "transfer_success_rate": _rate(turned[pool]),
                "n_eligible": int(pool.sum()),
                "valid_share": math.nan if share is None else share,
            })
    out.table = pd.DataFrame(rows)
    return out


def _rate(mask: np.ndarray) -> float:
    return float(mask.mean()) if len(mask) else math.nan


def _same_type(pred: np.ndarray, like: np.ndarray) -> np.ndarray:
    """Predictions compared as strings when the labels are strings."""
    if like.dtype.kind == "U":
        return pred.astype(str)
    return pred
