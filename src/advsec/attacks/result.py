"""What one attack call produced: :class:`AttackResult` (adversarial inputs per epsilon, and once
scored, predictions, validity, success rates and a result table)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

__all__ = ["AttackResult"]


@dataclass
class AttackResult:
    """What one attack call produced (one entry per epsilon, in call order).

    Attributes:
        attack: the attack's name.
        eps: the epsilons.
        x_adv: one ``(N, D)`` tensor per epsilon, on the input's device. Rows that were not
            attacked (benign rows in evasion mode) are the clean inputs.
        attacked: ``(N,)`` bool, rows the attack was allowed to change.
        y: ``(N,)`` true class indices.
        target: ``(N,)`` target class indices, or ``None`` for an untargeted attack.
        evasion: whether this was an evasion attack (malicious rows -> benign).
        benign_class: index of the benign class (for detection rate and evasion).
        seconds: wall time of the attack itself (excluding the scoring below).
        gradients: input-gradient evaluations (batched forward+backward passes).
        queries: forward-only model evaluations (batched), e.g. best-point checks or Square.
        clean_pred: ``(N,)`` predicted classes on the clean inputs (``None`` if not scored).
        adv_pred: per epsilon, ``(N,)`` predicted classes on the (repaired) adversarial inputs.
        valid: per epsilon, ``(N,)`` bool NumPy array, True where the adversarial row decodes
            to a valid record (``None`` without a FeatureSpace to check against).
        info: attack settings and extra counters.
    """

    attack: str
    eps: list[float]
    x_adv: list[torch.Tensor]
    attacked: torch.Tensor
    y: torch.Tensor
    target: torch.Tensor | None
    evasion: bool
    benign_class: int
    seconds: float
    gradients: int = 0
    queries: int = 0
    clean_pred: torch.Tensor | None = None
    adv_pred: list[torch.Tensor] = field(default_factory=list)
    valid: list[np.ndarray | None] = field(default_factory=list)
    x: torch.Tensor | None = field(default=None, repr=False)
    info: dict[str, Any] = field(default_factory=dict)

    def eligible(self) -> torch.Tensor:
        """``(N,)`` bool: rows the success rate is measured on.

        Untargeted: attacked rows classified correctly before the attack. Targeted: attacked rows
        not already predicted as their target. Evasion: malicious rows the detector caught.
        """
        self._check_scored()
        assert self.clean_pred is not None
        if self.evasion:
            return self.attacked & (self.y != self.benign_class) & (
                self.clean_pred != self.benign_class)
        if self.target is not None:
            return self.attacked & (self.clean_pred != self.target)
        return self.attacked & (self.clean_pred == self.y)

    def success(self, i: int = 0) -> torch.Tensor:
        """``(N,)`` bool: the ``i``-th epsilon's (repaired) adversarial row reached its goal."""
        self._check_scored()
        pred = self.adv_pred[i]
        if self.evasion:
            return self.attacked & (pred == self.benign_class)
        if self.target is not None:
            return self.attacked & (pred == self.target)
        return self.attacked & (pred != self.y)

    @property
    def success_rate(self) -> list[float]:
        """Per epsilon: share of :meth:`eligible` rows where the attack succeeded (NaN if none)."""
        pool = self.eligible()
        n = int(pool.sum())
        return [float((self.success(i) & pool).sum()) / n if n else math.nan
                for i in range(len(self.eps))]

    @property
    def valid_share(self) -> list[float | None]:
        """Per epsilon: share of attacked rows whose record passes validation after decoding."""
        att = self.attacked.cpu().numpy()
        out: list[float | None] = []
        for v in self.valid:
            out.append(None if v is None or not att.any() else float(v[att].mean()))
        return out

    def table(self) -> pd.DataFrame:
        """One row per epsilon: ``attack, eps, accuracy, detection_rate, attack_success_rate,
        mean_linf, max_linf, mean_l2, valid_share, n_attacked, seconds``.

        ``seconds`` is the call's time divided evenly between its epsilons (one call answers
        them all). Perturbation norms are over attacked rows.
        """
        self._check_scored()
        rows = []
        y, att = self.y, self.attacked
        mal = y != self.benign_class
        rates, shares = self.success_rate, self.valid_share
        for i, e in enumerate(self.eps):
            pred = self.adv_pred[i]
            delta = (self.x_adv[i] - self.x.to(self.x_adv[i].device))[att.to(self.x_adv[i].device)]
            has = len(delta) > 0
            rows.append({
                "attack": self.attack,
                "eps": e,
                "accuracy": float((pred == y).float().mean()) if len(y) else math.nan,
                "detection_rate": float((pred[mal] != self.benign_class).float().mean())
                if bool(mal.any()) else math.nan,
                "attack_success_rate": rates[i],
                "mean_linf": float(delta.abs().amax(dim=1).mean()) if has else 0.0,
                "max_linf": float(delta.abs().max()) if has else 0.0,
                "mean_l2": float(delta.norm(dim=1).mean()) if has else 0.0,
                "valid_share": math.nan if shares[i] is None else shares[i],
                "n_attacked": int(att.sum()),
                "seconds": self.seconds / max(len(self.eps), 1),
            })
        return pd.DataFrame(rows)

    def _check_scored(self) -> None:
        if self.clean_pred is None or self.x is None:
            raise RuntimeError("this result was produced with evaluate=False; nothing to score")
