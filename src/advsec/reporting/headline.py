"""The headline of a report, from the realistic numbers, and the clean-metrics cards.

The headline leads with the valid-record threat model (records a real attacker could send),
worst case over every configured attack, at the report's ε; evasion and induced false alarms
are stated separately; the unconstrained (box) number is the aside. The cards give every
detector's clean accuracy, detection rate and false-positive rate on the same rows as the ε = 0
row of the tables.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["Headline", "clean_cards", "clean_table", "headline"]


@dataclass
class Headline:
    """The sentence (plain text), its aside and the numbers behind them."""

    sentence: str
    aside: str
    numbers: dict[str, Any]

    def text(self) -> str:
        """Sentence and aside on one line (the terminal's)."""
        return f"{self.sentence} {self.aside}".strip()

    def html(self) -> str:
        """The headline paragraph of the report."""
        aside = f'<span class="aside">{escape(self.aside)}</span>' if self.aside else ""
        return f'<p class="headline" id="headline">{escape(self.sentence)}{aside}</p>'


def _num(v: Any, digits: int = 2) -> str:
    """``v`` with ``digits`` decimals, "n/a" when missing."""
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def _pct(v: Any) -> str:
    """``v`` as a percentage, "n/a" when missing."""
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.1%}"


def _mean(df: pd.DataFrame, col: str) -> float:
    """Mean of ``col`` (NaN when absent or empty)."""
    return float(df[col].mean()) if col in df.columns and len(df) else math.nan


def _threat_numbers(sweep: pd.DataFrame, worst: pd.DataFrame, threat: str,
                    fe: float) -> dict[str, Any]:
    """Clean and worst-case numbers of one threat model at ``fe`` (means over seeds)."""
    s = sweep[sweep.threat == threat]
    at = s[np.isclose(s.eps, fe)]
    per_attack = at.groupby("attack", sort=False)[["detection_rate"]].mean()
    attacks = list(dict.fromkeys(s.attack))
    w = worst[(worst.threat == threat) & np.isclose(worst.eps, fe)] if not worst.empty else worst
    exact = "worst_case_detection_rate" in w.columns and len(w) > 0
    out: dict[str, Any] = {
        "threat": threat, "eps": fe, "attacks": attacks,
        "clean_detection_rate": _mean(s[s.eps == 0], "detection_rate"),
        "clean_fpr": _mean(s[s.eps == 0], "fpr"),
        "strongest": str(per_attack.detection_rate.idxmin()) if len(per_attack) else "?",
        "valid_share": _mean(at, "valid_share"),
    }
    if exact:
        out.update(worst_case=True,
                   detection_rate=_mean(w, "worst_case_detection_rate"),
                   evasion_rate=_mean(w, "worst_case_evasion_rate"),
                   false_alarm_rate=_mean(w, "worst_case_false_alarm_rate"))
    else:  # older runs, or a single attack: the strongest attack alone
        by = at.groupby("attack", sort=False).mean(numeric_only=True)
        out.update(worst_case=len(attacks) == 1,
                   detection_rate=float(by.detection_rate.min()) if len(by) else math.nan,
                   evasion_rate=float(by.evasion_rate.max())
                   if "evasion_rate" in by and len(by) else math.nan,
                   false_alarm_rate=float(by.false_alarm_rate.max())
                   if "false_alarm_rate" in by and len(by) else math.nan)
    return out


def headline(sweep: pd.DataFrame, worst: pd.DataFrame, fe: float, *,
             benign_attacked: bool = True, detector: str | None = None) -> Headline | None:
    """The headline of the undefended ``detector`` (default: the first) at ``fe``.

    Without an ε above 0 (``eps = [0]``) no attack changed a record: the sentence gives the
    clean numbers and claims nothing about attacks (no box aside).

    Args:
        sweep: adaptive sweep rows (``detector``, ``defense``, ``threat``, ``attack``, ``eps``,
            ``detection_rate``, ... and the evasion columns when recorded).
        worst: the worst-case table (``worst_case_*`` columns per ε).
        benign_attacked: whether the threat model perturbs benign records too (``mode =
            "all"``); otherwise no false alarm can be induced and the sentence says so.
    """
    if sweep.empty:
        return None
    det = detector or str(sweep.detector.iloc[0])
    base = sweep[(sweep.detector == det) & (sweep.defense == "none")]
    if base.empty:
        base = sweep[sweep.detector == det]
    wb = worst[(worst.detector == det) & (worst.defense == "none")] if not worst.empty else worst
    threats = list(dict.fromkeys(base.threat))
    main = "valid" if "valid" in threats else threats[0]
    n = _threat_numbers(base, wb, main, fe)
    if not (base.eps > 0).any():  # eps = [0]: nothing was attacked, nothing to claim
        return Headline(
            f"No attack budget above ε = 0 was swept: {det} detection rate "
            f"{_num(n['clean_detection_rate'])}, FPR {_num(n['clean_fpr'])} on clean records; "
            "no robustness claim (set [threat] eps above 0 to attack).", "",
            {"main": {**n, "attacked": False}})
    k = len(n["attacks"])
    who = "Valid-record" if main == "valid" else "Unconstrained (box)"
    if k == 1:
        lead = f"{who} {n['strongest']} at ε {fe:g} (the worst case: the only attack)"
    elif n["worst_case"]:
        lead = (f"{who} attacks at ε {fe:g}, worst case over {k} attacks (strongest alone: "
                f"{n['strongest']})")
    else:
        lead = f"{who} attacks at ε {fe:g}, strongest single attack of {k}: {n['strongest']}"
    sentence = (f"{lead}: {det} "
                f"detection rate {_num(n['clean_detection_rate'])} → "
                f"{_num(n['detection_rate'])}; evasion rate {_pct(n['evasion_rate'])} of the "
                "malicious records caught before the attack")
    if benign_attacked:
        sentence += (f"; induced false-alarm rate {_pct(n['false_alarm_rate'])} of the benign "
                     "records passed before the attack.")
    else:
        sentence += "; benign records are not attacked (evasion threat model)."
    if main != "valid":
        sentence += " No valid-record attack was configured."
    aside, numbers = "", {"main": n}
    if main == "valid" and "box" in threats:
        b = _threat_numbers(base, wb, "box", fe)
        numbers["box"] = b
        aside = (f"Unconstrained (box) attacks would claim a detection rate of "
                 f"{_num(b['detection_rate'])}, but only {_pct(b['valid_share'])} of their "
                 "records are valid.")
    return Headline(sentence, aside, numbers)


def clean_table(sweep: pd.DataFrame, clean: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per (detector, defence): clean accuracy, detection rate and FPR of the ε = 0
    rows of ``sweep`` (every evaluation: adaptive and transfer; mean over seeds), the rows they
    were computed on, and the whole-test-set accuracy of ``clean`` when it has the detector."""
    zero = sweep[sweep.eps == 0]
    if zero.empty:
        return pd.DataFrame()
    keys = ["detector", "defense"]
    first = zero.drop_duplicates(keys + (["seed"] if "seed" in zero else []))
    t = first.groupby(keys, sort=False).agg(
        accuracy=("accuracy", "mean"), detection_rate=("detection_rate", "mean"),
        fpr=("fpr", "mean"), n=("n", "mean")).reset_index()
    t["n"] = t["n"].round().astype(int)
    t["seeds"] = first.groupby(keys, sort=False).size().to_numpy()
    if clean is not None and not clean.empty and "accuracy" in clean:
        whole = clean.groupby(keys, sort=False).agg(
            test_accuracy=("accuracy", "mean"), test_rows=("n", "mean")).reset_index()
        t = t.merge(whole, on=keys, how="left")
    return t


def clean_cards(table: pd.DataFrame) -> str:
    """A card per row of :func:`clean_table` (HTML)."""
    cards = []
    for r in table.to_dict(orient="records"):
        label = str(r["detector"]) + ("" if r["defense"] == "none" else f" + {r['defense']}")
        whole = ""
        if not math.isnan(float(r.get("test_accuracy", math.nan))):
            whole = (f'<span class="sub">whole test set ({int(r["test_rows"]):,} records): '
                     f"accuracy {r['test_accuracy']:.3f}</span>")
        cards.append(
            f'<div class="card clean-card" data-detector="{escape(label)}">{escape(label)}'
            f"<b>{r['accuracy']:.3f}</b>clean accuracy"
            f'<span class="sub">detection rate {r["detection_rate"]:.3f} · '
            f"FPR {r['fpr']:.3f}</span>"
            f'<span class="sub">on the {r["n"]:,}-record evaluation subset (the ε = 0 rows), '
            f"mean over {r['seeds']} seed(s)</span>{whole}</div>")
    return '<div class="cards">' + "".join(cards) + "</div>"
