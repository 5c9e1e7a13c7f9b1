"""Transfer scoring of a run: a defended detector scored on examples crafted against the
undefended one (the protocol that overstates robustness, reported beside the adaptive one)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import torch

from advsec.attacks import FixedInputs
from advsec.evaluation import evaluate_attack
from advsec.evaluation.evasion import add_evasion_columns
from advsec.experiments.config import ExperimentConfig
from advsec.features.space import FeatureSpace
from advsec.models import Detector

__all__ = ["transfer_from"]


def transfer_from(
    base: Detector, defended: Detector, attack: Any, x: torch.Tensor, y: torch.Tensor,
    cfg: ExperimentConfig, label: str, space: FeatureSpace, benign: int,
    meta: dict[str, Any], threat: str,
) -> pd.DataFrame:
    """Score ``defended`` on examples crafted by ``attack`` against the undefended ``base``.

    Args:
        x: evaluation inputs ``(N, D)``; y: their class indices ``(N,)``.
        label: the attack's name in the table; meta, threat: constant columns added.

    Returns:
        One sweep row per eps of ``cfg.threat.eps``, labelled
        ``evaluation = "transfer-from-undefended"``.
    """
    crafted = attack.run(base, x, y, eps=cfg.threat.eps)
    rows = []
    for e, xa in zip(crafted.eps, crafted.x_adv, strict=True):
        s = evaluate_attack(defended, FixedInputs(xa), x, y, eps=[e], name=label, space=space,
                            benign_class=benign, keep_inputs=False)
        rows.append(add_evasion_columns(s.table, y.numpy(), s.pred_clean, s.pred_adv, benign))
    return pd.concat(rows).assign(**meta, threat=threat, evaluation="transfer-from-undefended")
