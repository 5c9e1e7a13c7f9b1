"""When a record counts as broken: the one definition of attack success.

Three goals, one rule each, for torch tensors and NumPy arrays alike (``(N,)`` class indices):

- untargeted: the prediction differs from the true class;
- targeted: the prediction is the target class;
- evasion: a malicious record is predicted benign (the target is the benign class).

:func:`eligible` gives the records a success rate is measured on: those the attack had
something to do on (correct before the attack; not already at the target; malicious and
detected). Every success rate in advsec — the attack loop's early stop, :class:`AttackResult`,
the sweep and worst-case tables, the CLI's exports — is computed with these two functions.
"""

from __future__ import annotations

import math
from typing import TypeVar

import numpy as np
import torch

__all__ = ["eligible", "succeeded", "success_rate"]

Labels = TypeVar("Labels", torch.Tensor, np.ndarray)


def succeeded(
    pred: Labels,
    y: Labels,
    *,
    target: Labels | None = None,
    evasion: bool = False,
    benign_class: int = 0,
) -> Labels:
    """``(N,)`` bool: the prediction ``pred`` reached the attack's goal.

    Args:
        pred: predicted class indices after the attack ``(N,)``.
        y: true class indices ``(N,)``.
        target: target class indices ``(N,)`` of a targeted attack (``None``: untargeted).
        evasion: malicious records pushed towards ``benign_class`` (overrides ``target``).
        benign_class: index of the benign class.
    """
    if evasion:
        return pred == benign_class
    if target is not None:
        return pred == target
    return pred != y


def eligible(
    pred_clean: Labels,
    y: Labels,
    *,
    target: Labels | None = None,
    evasion: bool = False,
    benign_class: int = 0,
) -> Labels:
    """``(N,)`` bool: records a success rate is measured on, from the clean predictions.

    Untargeted: classified correctly before the attack. Targeted: not already predicted as
    their target. Evasion: malicious records the detector caught.
    """
    if evasion:
        return (y != benign_class) & (pred_clean != benign_class)
    if target is not None:
        return pred_clean != target
    return pred_clean == y


def success_rate(
    pred_clean: Labels,
    pred_adv: Labels,
    y: Labels,
    *,
    target: Labels | None = None,
    evasion: bool = False,
    benign_class: int = 0,
    attacked: Labels | None = None,
) -> float:
    """Share of :func:`eligible` records (among ``attacked`` ones, when given) that
    :func:`succeeded`; NaN when there is none."""
    pool = eligible(pred_clean, y, target=target, evasion=evasion, benign_class=benign_class)
    if attacked is not None:
        pool = pool & attacked
    hit = succeeded(pred_adv, y, target=target, evasion=evasion, benign_class=benign_class)
    n = int(pool.sum())
    return float((hit & pool).sum()) / n if n else math.nan
