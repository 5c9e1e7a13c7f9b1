"""What one attack call produced: :class:`AttackResult` (adversarial inputs per epsilon, and once
scored, predictions, validity, success rates and a result table)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from advsec.attacks.success import eligible, succeeded
from advsec.attacks.success import success_rate as rate

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
        adv_proba: per epsilon, ``(N, C)`` softmax of the model's scores on them.
        valid: per epsilon, ``(N,)`` bool NumPy array, True where the adversarial row decodes
            to a valid record (``None`` without a FeatureSpace to check against).
        x: ``(N, D)`` the clean inputs, as the attack saw them.
        info: attack settings and extra counters.

    Scored results (``run`` with ``evaluate=True``, or
    :func:`~advsec.attacks.scoring.score_result`) hold predictions, labels and masks on the CPU.
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
    adv_proba: list[torch.Tensor] = field(default_factory=list, repr=False)
    valid: list[np.ndarray | None] = field(default_factory=list)
    x: torch.Tensor | None = field(default=None, repr=False)
    info: dict[str, Any] = field(default_factory=dict)

    def eligible(self) -> torch.Tensor:
        """``(N,)`` bool: rows the success rate is measured on (attacked rows that are
        :func:`~advsec.attacks.success.eligible`).

        Untargeted: attacked rows classified correctly before the attack. Targeted: attacked rows
        not already predicted as their target. Evasion: malicious rows the detector caught.
        """
        self._check_scored()
        assert self.clean_pred is not None
        return self.attacked & eligible(self.clean_pred, self.y, target=self.target,
                                        evasion=self.evasion, benign_class=self.benign_class)

    def success(self, i: int = 0) -> torch.Tensor:
        """``(N,)`` bool: the ``i``-th epsilon's (repaired) adversarial row reached its goal
        (:func:`~advsec.attacks.success.succeeded`)."""
        self._check_scored()
        return self.attacked & succeeded(self.adv_pred[i], self.y, target=self.target,
                                         evasion=self.evasion, benign_class=self.benign_class)

    @property
    def success_rate(self) -> list[float]:
        """Per epsilon: share of :meth:`eligible` rows where the attack succeeded (NaN if none)."""
        self._check_scored()
        assert self.clean_pred is not None
        return [rate(self.clean_pred, p, self.y, target=self.target, evasion=self.evasion,
                     benign_class=self.benign_class, attacked=self.attacked)
                for p in self.adv_pred]

    @property
    def valid_share(self) -> list[float | None]:
        """Per epsilon: share of attacked rows whose record passes validation after decoding."""
        att = self.attacked.cpu().numpy()
        out: list[float | None] = []
        for v in self.valid:
            out.append(None if v is None or not att.any() else float(v[att].mean()))
        return out

    def table(self, *, name: str | None = None) -> pd.DataFrame:
        """One row per epsilon, columns :data:`~advsec.attacks.scoring.TABLE_COLUMNS` (the
        same table :func:`advsec.evaluation.evaluate_attack` gives; see
        :func:`~advsec.attacks.scoring.result_table`).

        ``seconds`` is the call's time divided evenly between its epsilons (one call answers
        them all). Success, perturbation norms and validity are over attacked rows.
        """
        from advsec.attacks.scoring import result_table

        return result_table(self, name=name)

    def _check_scored(self) -> None:
        if self.clean_pred is None or self.x is None:
            raise RuntimeError("this result was produced with evaluate=False; nothing to score")
