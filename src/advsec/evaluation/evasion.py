"""Evasion and induced false alarms, stated separately.

An attack that perturbs every record does two different things: it pushes malicious records
past the detector (*evasion*) and it pushes benign records into alarms (*induced false alarms*).
Accuracy under attack mixes both; a security reader needs them apart:

- **evasion rate**: among malicious records the detector caught before the attack, the share
  predicted benign after it;
- **induced false-alarm rate**: among benign records the detector passed before the attack, the
  share predicted malicious after it (0 when the threat model leaves benign records alone).

:class:`WorstCase` gives the same numbers over an ensemble of attacks: a record counts against
the detector when *any* attack of the ensemble turns it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["EVASION_COLUMNS", "WorstCase", "add_evasion_columns", "evasion_counts"]

#: the columns :func:`evasion_counts` adds to a sweep row
EVASION_COLUMNS = ["n_detected_clean", "n_evaded", "evasion_rate", "n_benign_passed",
                   "n_false_alarm", "false_alarm_rate"]


def _rate(hit: int, n: int) -> float:
    """``hit / n``, NaN when ``n`` is 0."""
    return hit / n if n else math.nan


def evasion_counts(y: np.ndarray, pred_clean: np.ndarray, pred_adv: np.ndarray,
                   benign_class: int) -> dict[str, float | int]:
    """Evasion and induced false alarms of one attack at one ε (arrays of class indices
    ``(N,)``): the counts and rates of :data:`EVASION_COLUMNS` (rates NaN without records)."""
    y, pc, pa = (np.asarray(a) for a in (y, pred_clean, pred_adv))
    detected = (y != benign_class) & (pc != benign_class)
    passed = (y == benign_class) & (pc == benign_class)
    evaded = int((detected & (pa == benign_class)).sum())
    alarms = int((passed & (pa != benign_class)).sum())
    return {"n_detected_clean": int(detected.sum()), "n_evaded": evaded,
            "evasion_rate": _rate(evaded, int(detected.sum())),
            "n_benign_passed": int(passed.sum()), "n_false_alarm": alarms,
            "false_alarm_rate": _rate(alarms, int(passed.sum()))}


def add_evasion_columns(table: pd.DataFrame, y: np.ndarray, pred_clean: np.ndarray | None,
                        pred_adv: Mapping[float, np.ndarray], benign_class: int) -> pd.DataFrame:
    """``table`` (one row per ``eps``) with the :data:`EVASION_COLUMNS` of each row's ε added
    (``pred_adv``: ε -> predictions; NaN columns without clean predictions)."""
    rows = []
    for e in table["eps"]:
        pred = pred_adv.get(float(e))
        rows.append({c: math.nan for c in EVASION_COLUMNS} if pred is None or pred_clean is None
                    else evasion_counts(y, pred_clean, pred, benign_class))
    extra = pd.DataFrame(rows, index=table.index, columns=EVASION_COLUMNS)
    return pd.concat([table, extra], axis=1)


class WorstCase:
    """Per-record worst case over an ensemble of attacks, accumulated one attack at a time.

    ``add(eps, pred_clean, pred_adv)`` for every attack; :meth:`rows` then gives per ε the
    worst-case accuracy (correct clean and under every attack), detection rate (malicious
    records detected clean and under every attack), evasion rate (caught clean, evading at least
    one attack) and induced false-alarm rate (passed clean, alarmed by at least one attack).
    The clean input is in every ball, so it counts as one more attack: a record misclassified
    clean is never robust, whatever an attack made of it (as in
    :func:`advsec.evaluation.worst_case`).
    """

    def __init__(self, y: np.ndarray, benign_class: int) -> None:
        self.y = np.asarray(y)
        self.benign = int(benign_class)
        self._state: dict[float, dict[str, Any]] = {}

    def add(self, eps: float, pred_clean: np.ndarray | None, pred_adv: np.ndarray) -> None:
        """Fold one attack's predictions at ``eps`` into the worst case (``pred_clean``: the
        clean predictions, required)."""
        if pred_clean is None:
            raise ValueError("the worst case needs the clean predictions")
        y, b = self.y, self.benign
        pc, pa = np.asarray(pred_clean), np.asarray(pred_adv)
        s = self._state.setdefault(float(eps), {
            "correct": pc == y, "detected": (y != b) & (pc != b),
            "evaded": np.zeros(len(y), dtype=bool), "alarmed": np.zeros(len(y), dtype=bool),
            "caught": (y != b) & (pc != b), "passed": (y == b) & (pc == b)})
        s["correct"] &= pa == y
        s["detected"] &= pa != b
        s["evaded"] |= s["caught"] & (pa == b)
        s["alarmed"] |= s["passed"] & (pa != b)

    def correct(self, eps: float) -> np.ndarray:
        """``(N,)`` bool: the records classified correctly under every attack added at ``eps``
        (a KeyError when no attack was added at it)."""
        return self._state[float(eps)]["correct"].copy()

    def rows(self) -> list[dict[str, float]]:
        """One dict per ε (sorted): ``eps``, ``worst_case_accuracy``,
        ``worst_case_detection_rate``, ``worst_case_evasion_rate``,
        ``worst_case_false_alarm_rate``."""
        n_mal = int((self.y != self.benign).sum())
        out = []
        for e, s in sorted(self._state.items()):
            out.append({
                "eps": e,
                "worst_case_accuracy": float(s["correct"].mean()) if len(self.y) else math.nan,
                "worst_case_detection_rate": _rate(int(s["detected"].sum()), n_mal),
                "worst_case_evasion_rate": _rate(int(s["evaded"].sum()), int(s["caught"].sum())),
                "worst_case_false_alarm_rate": _rate(int(s["alarmed"].sum()),
                                                     int(s["passed"].sum())),
            })
        return out
