"""Run attacks over an epsilon grid and tabulate the result: one row per (attack, eps)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from advsec.attacks.protocol import Crafter
from advsec.attacks.scoring import TABLE_COLUMNS, result_table, score_result
from advsec.attacks.targets import class_indices, eps_values
from advsec.attacks.validity import clean_validity, valid_records
from advsec.models.types import Model

if TYPE_CHECKING:
    from advsec.features.space import FeatureSpace

__all__ = ["SWEEP_COLUMNS", "Sweep", "evaluate_attack", "valid_share"]

log = logging.getLogger(__name__)

#: the columns of a sweep table: those of every attack result table
SWEEP_COLUMNS = TABLE_COLUMNS


@dataclass
class Sweep:
    """A sweep's table plus the adversarial inputs and predictions behind it.

    Attributes:
        table: one row per eps, columns :data:`SWEEP_COLUMNS`.
        x_adv: eps -> adversarial inputs ``(N, D)`` (CPU float32).
        pred_adv: eps -> predicted class indices ``(N,)``.
        pred_clean: predicted class indices on the clean inputs ``(N,)``.
    """

    table: pd.DataFrame
    x_adv: dict[float, torch.Tensor] = field(default_factory=dict)
    pred_adv: dict[float, np.ndarray] = field(default_factory=dict)
    pred_clean: np.ndarray | None = None


def valid_share(space: FeatureSpace | None, x_adv: torch.Tensor, x: torch.Tensor, *,
                tol: float = 1e-4,
                clean_valid: np.ndarray | None = None) -> float:
    """Share of rows of ``x_adv`` ``(N, D)`` that are valid records derived from ``x``.

    :func:`advsec.attacks.validity.valid_records`, where checks the decoded clean record already
    fails are not held against the attack (``clean_valid``: its
    :func:`~advsec.attacks.validity.clean_validity`, computed here when not given). NaN without
    a space or rows.
    """
    if space is None or len(x_adv) == 0:
        return float("nan")
    if clean_valid is None:
        clean_valid = clean_validity(space, x)
    return float(valid_records(space, x_adv, x, tol=tol, clean_valid=clean_valid).mean())


def evaluate_attack(
    model: Model,
    attack: Crafter,
    x: torch.Tensor | np.ndarray,
    y: torch.Tensor | np.ndarray,
    *,
    eps: float | Sequence[float],
    name: str | None = None,
    space: FeatureSpace | None = None,
    benign_class: int | None = None,
    keep_inputs: bool = True,
) -> Sweep:
    """Attack ``model`` at every ``eps`` and score each result once.

    Args:
        model: an ``nn.Module`` returning logits or an advsec ``Detector`` (attacked and
            scored).
        attack: a :class:`~advsec.attacks.protocol.Crafter`: every advsec attack, or a
            wrapper with ``craft(model, x, y, eps=[...])``.
        x: inputs ``(N, D)``; y: true class indices ``(N,)``.
        eps: the grid; 0 gives the clean row.
        name: the ``attack`` column (default: the attack's ``name``).
        space: the FeatureSpace the inputs came from, to measure ``valid_share`` (whether or
            not the attack itself was constrained).
        benign_class: index of the benign class of the metrics (default: the attack's).
        keep_inputs: keep the adversarial inputs in :attr:`Sweep.x_adv`.

    Returns:
        A :class:`Sweep`; its table has one row per eps with :data:`SWEEP_COLUMNS`
        (:func:`advsec.attacks.scoring.result_table`).
    """
    x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).float()
    y_t = class_indices(model, y).cpu()  # raw labels of a Detector are encoded
    eps_list = eps_values(eps)  # a float is a grid of one
    result = attack.craft(model, x, y_t, eps=eps_list)
    result.x, result.y = x, y_t  # scored against the caller's inputs and true classes
    result.x_adv = [xa.detach().cpu() for xa in result.x_adv]
    score_result(result, model, space=space)
    table = result_table(result, name=name or getattr(attack, "name", None),
                         benign_class=benign_class)
    assert result.clean_pred is not None
    sweep = Sweep(table, pred_clean=result.clean_pred.numpy())
    for e, xa, pred in zip(eps_list, result.x_adv, result.adv_pred, strict=True):
        sweep.pred_adv[e] = pred.numpy()
        if keep_inputs:
            sweep.x_adv[e] = xa
    return sweep
