"""Keeping a valid-record attack inside its eps-ball after the FeatureSpace repair.

A repair into a valid record (whole counts, rates zeroed over an empty window) can move a
feature farther than eps. Such a record is valid but not an eps-bounded adversarial example;
:class:`WithinBudget` sets those rows back to their clean input (the attack failed there) and
counts them, so that valid-record attacks are not credited with successes outside the ball.

A row is out of budget when its L-inf distance exceeds ``eps (1 + 1e-6) + tol``: the test of
:func:`advsec.evaluation.checks.check_budget`, per row, with the absolute slack ``tol``
(float32 round-off of the repaired values).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from advsec.attacks.base import as_module
from advsec.attacks.result import AttackResult
from advsec.models.inference import batched_logits

__all__ = ["BUDGET_TOL", "WithinBudget", "beyond_budget", "budget_table_rows"]

#: Absolute slack of the per-row budget test (model-input units).
BUDGET_TOL = 1e-6


def beyond_budget(x_adv: torch.Tensor, x: torch.Tensor, eps: float, *,
                  tol: float = BUDGET_TOL) -> tuple[torch.Tensor, torch.Tensor]:
    """``(over, dist)``: ``(N,)`` bool, rows of ``x_adv`` farther than ``eps`` (L-inf, with
    slack) from ``x`` ``(N, D)``, and ``(N,)`` their L-inf distances."""
    dist = (x_adv - x).abs().amax(dim=1)
    return dist > eps * (1 + 1e-6) + tol, dist


class WithinBudget:
    """An attack whose results must stay in the eps-ball: rows that left it are set back.

    A :class:`~advsec.attacks.protocol.Crafter`: ``craft(model, x, y, eps=[...])`` runs the
    wrapped attack unscored and returns its result with the out-of-budget rows of every
    ``x_adv`` replaced by ``x``, so it plugs into :func:`advsec.evaluation.worst_case` and
    :func:`advsec.evaluation.evaluate_attack` like the attack itself.

    Attributes:
        attack: the wrapped attack; ``name``: its name.
        stats: ``{eps: (rows attacked, rows set back, set-back rows that fooled the model,
            max L-inf seen)}``, accumulated over calls.
    """

    evasion = False

    def __init__(self, attack: Any, *, tol: float = BUDGET_TOL) -> None:
        self.attack = attack
        self.name = attack.name
        self.tol = tol
        self.stats: dict[float, tuple[int, int, int, float]] = {}

    def craft(self, model: Any, x: torch.Tensor, y: torch.Tensor, *,
              eps: Sequence[float]) -> AttackResult:
        """The wrapped attack's result for every eps, out-of-budget rows set back to ``x``."""
        res = self.attack.craft(model, x, y, eps=eps)
        module = as_module(model)
        out = []
        for e, xa in zip(eps, res.x_adv, strict=True):
            over, dist = beyond_budget(xa, x, e, tol=self.tol)
            fooled = 0
            if bool(over.any()):
                pred = batched_logits(module, xa[over]).argmax(dim=1)
                fooled = int((pred != y[over].cpu()).sum())
                xa = torch.where(over[:, None], x, xa)
            n0, o0, f0, m0 = self.stats.get(e, (0, 0, 0, 0.0))
            self.stats[e] = (n0 + len(x), o0 + int(over.sum()), f0 + fooled,
                             max(m0, float(dist.max()) if len(dist) else 0.0))
            out.append(xa)
        res.x_adv = out
        return res


def budget_table_rows(guards: Sequence[WithinBudget],
                      eps: Sequence[float]) -> list[dict[str, Any]]:
    """Per eps, over the guarded attacks ``guards``: rows attacked, the shares set back and set
    back although they fooled the model (NaN when no row was attacked), and the largest L-inf
    distance seen."""
    rows = []
    for e in eps:
        st = [g.stats.get(e, (0, 0, 0, 0.0)) for g in guards]
        n = sum(t[0] for t in st)
        rows.append({
            "eps": e, "attacked_rows": n,
            "repaired_beyond_eps": sum(t[1] for t in st) / n if n else float("nan"),
            "of_which_fooling_the_model": sum(t[2] for t in st) / n if n else float("nan"),
            "max_linf_after_repair": max(t[3] for t in st)})
    return rows
