"""Objectives that gradient attacks maximise, computed on logits (never on softmax outputs).

An objective is ``fn(logits (N, C), labels (N,), targeted) -> (N,)``; the attack ascends it.
Untargeted: ``labels`` are the true classes and the objective grows as the true class loses.
Targeted: ``labels`` are the targets and the objective grows as the target wins.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

__all__ = [
    "OBJECTIVES",
    "Objective",
    "ce_objective",
    "dlr_objective",
    "get_objective",
    "margin_objective",
]

Objective = Callable[[torch.Tensor, torch.Tensor, bool], torch.Tensor]


def ce_objective(logits: torch.Tensor, labels: torch.Tensor, targeted: bool) -> torch.Tensor:
    """Cross-entropy of ``labels``; negated when targeted. Shape ``(N,)``."""
    ce = F.cross_entropy(logits, labels, reduction="none")
    return -ce if targeted else ce


def margin_objective(logits: torch.Tensor, labels: torch.Tensor, targeted: bool) -> torch.Tensor:
    """Logit margin: ``max_{j != y} z_j - z_y`` (untargeted) or ``z_t - max_{j != t} z_j``.

    Positive exactly when the attack has succeeded; defined for any number of classes >= 2
    (unlike DLR, which needs 3). Shape ``(N,)``.
    """
    z_label = logits.gather(1, labels[:, None]).squeeze(1)
    others = logits.masked_fill(F.one_hot(labels, logits.shape[1]).bool(), -torch.inf)
    z_other = others.max(dim=1).values
    return z_label - z_other if targeted else z_other - z_label


def dlr_objective(logits: torch.Tensor, labels: torch.Tensor, targeted: bool) -> torch.Tensor:
    """Difference of logits ratio (Croce & Hein 2020), untargeted, for 3+ classes.

    ``-(z_y - max_{j != y} z_j) / (z_(1) - z_(3))`` with ``z_(i)`` the i-th largest logit; scale
    invariant. Binary detectors have no third logit: use ``"margin"`` there. Shape ``(N,)``.
    """
    if logits.shape[1] < 3:
        raise ValueError("the DLR loss needs 3 or more classes; use loss='margin' for binary "
                         "detectors")
    if targeted:
        raise ValueError("the DLR objective is untargeted only; use 'ce' or 'margin'")
    top = logits.topk(3, dim=1).values
    return margin_objective(logits, labels, False) / (top[:, 0] - top[:, 2] + 1e-12)


OBJECTIVES: dict[str, Objective] = {
    "ce": ce_objective,
    "margin": margin_objective,
    "dlr": dlr_objective,
}


def get_objective(loss: str | Objective) -> Objective:
    """``"ce"`` / ``"margin"`` / ``"dlr"`` or a callable objective."""
    if callable(loss):
        return loss
    if loss not in OBJECTIVES:
        raise ValueError(f"unknown loss {loss!r}; known: {sorted(OBJECTIVES)}")
    return OBJECTIVES[loss]
