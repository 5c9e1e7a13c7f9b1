"""Scoring an attack's output: the one path from adversarial inputs to a result table.

:func:`score_result` predicts the clean and adversarial inputs of an
:class:`~advsec.attacks.result.AttackResult` and checks their validity; :func:`result_table`
turns a scored result into one row per epsilon with :data:`TABLE_COLUMNS`. ``Attack.run``,
:func:`advsec.evaluation.evaluate_attack` and the CLI all go through these two functions, so
their tables have the same columns and the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
from torch import nn

from advsec.attacks.success import success_rate
from advsec.attacks.validity import clean_validity, valid_records
from advsec.models.inference import batched_logits
from advsec.models.metrics import detection_metrics
from advsec.models.types import AnyModel

if TYPE_CHECKING:
    from advsec.attacks.result import AttackResult
    from advsec.features.space import FeatureSpace

__all__ = ["TABLE_COLUMNS", "result_table", "score_result", "scorer"]

#: columns of every attack result table (``AttackResult.table()``, ``evaluate_attack``):
#: detection metrics on all ``n`` rows; success, perturbation norms and ``valid_share`` on the
#: ``n_attacked`` rows the attack could change; ``seconds`` the call's time per epsilon
TABLE_COLUMNS = [
    "attack", "eps", "accuracy", "precision", "detection_rate", "f1", "fpr", "roc_auc",
    "attack_success_rate", "mean_linf", "max_linf", "mean_l2", "valid_share", "n",
    "n_attacked", "seconds",
]

Scores = Callable[[torch.Tensor], torch.Tensor]


def scorer(model: AnyModel, *, batch_size: int = 8192) -> Scores:
    """``x (N, D) -> scores (N, C)`` on the CPU, without gradient, ``batch_size`` rows at a
    time: logits of an ``nn.Module`` (or a Detector's network), else the outputs of a callable
    (e.g. a score-based attack's ``predict_proba`` wrapper)."""
    if isinstance(model, nn.Module) or hasattr(model, "as_module"):
        module = model if isinstance(model, nn.Module) else model.as_module()
        return lambda x: batched_logits(module, x, batch_size=batch_size)

    if not callable(model):
        raise TypeError(f"cannot score with {type(model).__name__}: expected a module, a "
                        f"Detector or a callable returning scores")
    call = model

    def scores(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            parts = [torch.as_tensor(call(c)).detach().cpu() for c in x.split(batch_size)]
        return torch.cat(parts) if parts else torch.zeros((0, 0))

    return scores


def score_result(
    result: AttackResult,
    model: AnyModel,
    *,
    space: FeatureSpace | None = None,
    clean_valid: np.ndarray | None = None,
) -> AttackResult:
    """Predict ``result``'s clean and adversarial inputs with ``model`` and check validity.

    Fills ``clean_pred``, ``adv_pred``, ``adv_proba`` and ``valid`` and moves ``y``,
    ``attacked`` and ``target`` to the CPU (every scored field is a CPU tensor).

    Args:
        result: an unscored result (``result.x`` set: every frame-made result has it).
        model: what to predict with (see :func:`scorer`).
        space: FeatureSpace to check validity against (``None``: ``valid`` entries are None).
        clean_valid: :func:`~advsec.attacks.validity.clean_validity` of ``result.x``, when
            already known (computed here otherwise).

    Returns:
        ``result``, scored in place.
    """
    if result.x is None:
        raise ValueError("score_result needs result.x, the clean inputs")
    predict = scorer(model)
    x = result.x
    result.clean_pred = predict(x).argmax(dim=1)
    result.adv_pred, result.adv_proba, result.valid = [], [], []
    if space is not None and clean_valid is None:
        clean_valid = clean_validity(space, x)
    for xa in result.x_adv:
        s = predict(xa)
        result.adv_pred.append(s.argmax(dim=1))
        result.adv_proba.append(torch.softmax(s, dim=1))
        result.valid.append(None if space is None else
                            valid_records(space, xa, x, clean_valid=clean_valid))
    result.y = result.y.cpu()
    result.attacked = result.attacked.cpu()
    result.target = None if result.target is None else result.target.cpu()
    return result


def result_table(result: AttackResult, *, name: str | None = None,
                 benign_class: int | None = None) -> pd.DataFrame:
    """One row per epsilon of a scored ``result``, columns :data:`TABLE_COLUMNS`.

    Args:
        name: the ``attack`` column (default: ``result.attack``).
        benign_class: the benign class of the metrics (default: ``result.benign_class``).
    """
    if result.clean_pred is None or result.x is None:
        raise RuntimeError("this result was produced with evaluate=False; nothing to score")
    benign = result.benign_class if benign_class is None else int(benign_class)
    y = result.y.cpu().numpy()
    att = result.attacked.cpu()
    clean = result.clean_pred.cpu().numpy()
    target = None if result.target is None else result.target.cpu().numpy()
    x = result.x.detach().cpu()
    rows = []
    for i, e in enumerate(result.eps):
        pred = result.adv_pred[i].cpu().numpy()
        proba = result.adv_proba[i].cpu().numpy() if result.adv_proba else None
        delta = (result.x_adv[i].detach().cpu() - x)[att]
        has = len(delta) > 0
        valid = result.valid[i] if result.valid else None
        rows.append({
            "attack": name or result.attack,
            "eps": e,
            **detection_metrics(y, pred, proba=proba, benign_class=benign),
            "attack_success_rate": success_rate(clean, pred, y, target=target,
                                                evasion=result.evasion, benign_class=benign,
                                                attacked=att.numpy()),
            "mean_linf": float(delta.abs().amax(dim=1).mean()) if has else 0.0,
            "max_linf": float(delta.abs().max()) if has else 0.0,
            "mean_l2": float(delta.norm(dim=1).mean()) if has else 0.0,
            "valid_share": math.nan if valid is None or not has else float(
                np.asarray(valid)[att.numpy()].mean()),
            "n": len(y),
            "n_attacked": int(att.sum()),
            "seconds": result.seconds / max(len(result.eps), 1),
        })
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)
