"""What one verifier call produced: :class:`VerifyResult` (which records are certified at each
epsilon, their worst margin bound, and timings)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch

__all__ = ["TABLE_COLUMNS", "VerifyResult"]

#: the columns of :meth:`VerifyResult.table`
TABLE_COLUMNS: tuple[str, ...] = ("verifier", "eps", "records", "boxes", "certified",
                                  "certified_accuracy", "seconds")


@dataclass
class VerifyResult:
    """What one verifier call produced (one entry per epsilon, in call order).

    Attributes:
        verifier: the verifier's name.
        eps: the epsilons (L-inf, model-input units: a fraction of each feature's range).
        verified: ``(E, N)`` bool (CPU): record ``n`` is certified at ``eps[e]``: every record
            in its valid region (every one of its boxes) gets class ``y[n]``, proven by a
            positive lower bound on every margin ``logit[y] - logit[j]``. A certified record is
            classified correctly.
        margin: ``(E, N)`` (CPU, the verifier's dtype): the lowest margin lower bound over the
            record's boxes and classes ``j != y`` (positive exactly where ``verified``).
        y: ``(N,)`` the class indices the records were verified for (CPU).
        boxes: per epsilon, the number of boxes bounded (``N`` unless categories were
            enumerated).
        seconds: per epsilon, wall time of the region and the bounds.
        info: the verifier's settings.
    """

    verifier: str
    eps: list[float]
    verified: torch.Tensor
    margin: torch.Tensor
    y: torch.Tensor
    boxes: list[int]
    seconds: list[float]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def records(self) -> int:
        """``N``."""
        return int(self.verified.shape[1])

    @property
    def certified_accuracy(self) -> list[float]:
        """Per epsilon: the share of records certified (NaN without records)."""
        if not self.records:
            return [float("nan")] * len(self.eps)
        return [float(v) for v in self.verified.float().mean(1)]

    def table(self, *, name: str | None = None) -> pd.DataFrame:
        """One row per epsilon, columns :data:`TABLE_COLUMNS` (``name``: the verifier label)."""
        return pd.DataFrame({
            "verifier": name or self.verifier, "eps": self.eps, "records": self.records,
            "boxes": self.boxes, "certified": [int(v) for v in self.verified.sum(1)],
            "certified_accuracy": self.certified_accuracy, "seconds": self.seconds,
        }, columns=list(TABLE_COLUMNS))
