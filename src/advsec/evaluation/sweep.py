"""Run attacks over an epsilon grid and tabulate the result: one row per (attack, eps)."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from advsec.attacks.base import as_module
from advsec.attacks.validity import clean_validity, valid_records
from advsec.evaluation.metrics import attack_success_rate, detection_metrics
from advsec.models.inference import batched_logits

__all__ = ["SWEEP_COLUMNS", "Sweep", "evaluate_attack", "valid_share"]

log = logging.getLogger(__name__)

SWEEP_COLUMNS = [
    "attack", "eps", "accuracy", "precision", "detection_rate", "f1", "fpr", "roc_auc",
    "attack_success_rate", "mean_linf", "max_linf", "mean_l2", "valid_share", "n", "seconds",
]


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


def _predict(module: torch.nn.Module, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    logits = batched_logits(module, x)
    return logits.argmax(1).numpy(), torch.softmax(logits, 1).numpy()


def valid_share(space: Any, x_adv: torch.Tensor, x: torch.Tensor, *, tol: float = 1e-4,
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
    model: Any,
    attack: Any,
    x: torch.Tensor | np.ndarray,
    y: torch.Tensor | np.ndarray,
    *,
    eps: Sequence[float],
    name: str | None = None,
    space: Any = None,
    benign_class: int = 0,
    keep_inputs: bool = True,
) -> Sweep:
    """Attack ``model`` at every ``eps`` and score each result.

    Args:
        model: an ``nn.Module`` returning logits or an advsec ``Detector``.
        attack: a callable attack with a ``run(model, x, y, eps=[...])`` method (all advsec
            gradient attacks), ``evasion`` attribute optional.
        x: inputs ``(N, D)``; y: true class indices ``(N,)``.
        eps: the grid; 0 gives the clean row.
        name: the ``attack`` column (default: the attack's ``name``).
        space: the FeatureSpace the inputs came from, to measure ``valid_share`` (whether or
            not the attack itself was constrained).
        benign_class: index of the benign class.

    Returns:
        A :class:`Sweep`; its table has one row per eps with :data:`SWEEP_COLUMNS`.
    """
    module = as_module(model)
    x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).float()
    y_np = np.asarray(y.cpu() if isinstance(y, torch.Tensor) else y).astype(np.int64)
    evasion = bool(getattr(attack, "evasion", False))
    pred_clean, _ = _predict(module, x)
    eps_list = [float(e) for e in eps]
    # the attack only crafts: every result is scored once, below
    options = {"evaluate": False} if _accepts(attack.run, "evaluate") else {}
    result = attack.run(model, x, torch.as_tensor(y_np), eps=eps_list, **options)
    clean_valid = None if space is None else clean_validity(space, x)
    per_eps = result.seconds / max(len(eps_list), 1)
    rows, sweep = [], Sweep(pd.DataFrame(), pred_clean=pred_clean)
    for e, xa in zip(eps_list, result.x_adv, strict=True):
        xa = xa.detach().cpu()
        pred, proba = _predict(module, xa)
        delta = xa - x
        row = {
            "attack": name or getattr(attack, "name", type(attack).__name__.lower()),
            "eps": e,
            **detection_metrics(y_np, pred, proba=proba, benign_class=benign_class),
            "attack_success_rate": attack_success_rate(
                y_np, pred_clean, pred, evasion=evasion, benign_class=benign_class),
            "mean_linf": float(delta.abs().amax(dim=1).mean()) if len(x) else 0.0,
            "max_linf": float(delta.abs().max()) if len(x) else 0.0,
            "mean_l2": float(delta.norm(dim=1).mean()) if len(x) else 0.0,
            "valid_share": valid_share(space, xa, x, clean_valid=clean_valid),
            "n": len(x),
            "seconds": per_eps,
        }
        rows.append(row)
        sweep.pred_adv[e] = pred
        if keep_inputs:
            sweep.x_adv[e] = xa
    sweep.table = pd.DataFrame(rows, columns=SWEEP_COLUMNS)
    return sweep


def _accepts(fn: Any, name: str) -> bool:
    """Whether ``fn`` takes the keyword ``name`` (explicitly or through ``**kwargs``)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD
                                 for p in params.values())
