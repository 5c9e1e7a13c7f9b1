"""Readable report tables: plain-language headers with units, 3 significant digits, text
left-aligned and numbers right-aligned, "n/a" for missing values, constant columns folded into
the caption, long tables collapsed and every table sortable (by :data:`SORT_SCRIPT`)."""

from __future__ import annotations

import html
import math
import re
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["COLLAPSE_ROWS", "LABELS", "SORT_SCRIPT", "fmt", "label", "nice_table"]

#: tables with more rows than this are collapsed into a ``<details>`` block
COLLAPSE_ROWS = 15

#: the header of each known column (units in parentheses)
LABELS: dict[str, str] = {
    "detector": "Detector", "defense": "Defence", "threat": "Threat model", "attack": "Attack",
    "attacks": "Attacks", "eps": "ε (share of range)", "seed": "Seed",
    "evaluation": "Evaluation", "accuracy": "Accuracy", "precision": "Precision",
    "detection_rate": "Detection rate", "f1": "F1", "fpr": "False-positive rate",
    "roc_auc": "ROC AUC", "attack_success_rate": "Attack success rate",
    "mean_linf": "Mean L∞ change (share of range)", "max_linf": "Max L∞ change (share of range)",
    "mean_l2": "Mean L2 change", "valid_share": "Valid records (share)", "n": "Records",
    "n_attacked": "Records attacked", "seconds": "Time (s)",
    "evasion_rate": "Evasion rate (malicious → benign)",
    "false_alarm_rate": "Induced false-alarm rate (benign → malicious)",
    "n_detected_clean": "Malicious caught before attack", "n_evaded": "Evaded",
    "n_benign_passed": "Benign passed before attack", "n_false_alarm": "False alarms induced",
    "worst_case_accuracy": "Worst-case accuracy",
    "worst_case_detection_rate": "Worst-case detection rate",
    "worst_case_evasion_rate": "Worst-case evasion rate",
    "worst_case_false_alarm_rate": "Worst-case induced false-alarm rate",
    "class": "Class", "role": "Role", "recall_clean": "Kept in class, clean (share)",
    "recall_attacked": "Kept in class, under attack (share)",
    "outcome": "What the attack does", "change": "Change under attack (share)",
    "feature": "Feature", "kind": "Kind", "mutable": "Attacker may change",
    "direction": "Direction", "mean_abs_change": "Mean change (feature units)",
    "share_changed": "Records changed (share)", "scope": "Scope", "check": "Check",
    "ok": "Status", "status": "Status", "detail": "Detail", "split": "Split", "rows": "Rows",
    "accuracy_adaptive": "Accuracy, attacked afresh", "seeds": "Seeds",
    "verifier": "Verifier", "verified": "Records verified",
    "verified_accuracy": "Verified accuracy (certified, lower bound)",
    "attacked_accuracy": "Worst-case attacked accuracy (upper bound)",
    "gap": "Gap (attacked − verified)", "verified_broken": "Verified yet broken (must be 0)",
    "boxes": "Boxes bounded", "verify_seconds": "Verification time (s)", "note": "Note",
    "test_accuracy": "Accuracy, whole test set", "test_rows": "Rows, whole test set",
}

#: sorts any ``table.sortable`` by a click on its header (numbers by ``data-v``); opens
#: collapsed tables before printing
SORT_SCRIPT = """
document.querySelectorAll('table.sortable th').forEach(function(th){
 th.addEventListener('click',function(){
  var t=th.closest('table'),b=t.tBodies[0];
  var i=Array.prototype.indexOf.call(th.parentNode.children,th);
  var up=th.getAttribute('aria-sort')!=='ascending';
  t.querySelectorAll('th').forEach(function(h){h.removeAttribute('aria-sort');});
  th.setAttribute('aria-sort',up?'ascending':'descending');
  var key=function(r){var c=r.children[i];var v=c.getAttribute('data-v');
   return v===null?c.textContent:parseFloat(v);};
  Array.prototype.slice.call(b.rows).sort(function(a,c){var x=key(a),y=key(c);
   if(typeof x==='number'&&typeof y==='number'){return up?x-y:y-x;}
   return up?String(x).localeCompare(String(y)):String(y).localeCompare(String(x));})
   .forEach(function(r){b.appendChild(r);});
 });});
window.addEventListener('beforeprint',function(){
 document.querySelectorAll('details').forEach(function(d){d.open=true;});});
"""

_SNAKE = re.compile(r"[a-z0-9]_[a-z0-9]")


def label(column: Any) -> str:
    """The human-readable header of ``column`` (:data:`LABELS`, else words from snake_case)."""
    name = str(column)
    if name in LABELS:
        return LABELS[name]
    words = name.replace("_", " ").strip() if _SNAKE.search(name) else name
    return words[:1].upper() + words[1:]


def _missing(v: Any) -> bool:
    """Whether ``v`` is None or a NaN float."""
    return v is None or (isinstance(v, (float, np.floating)) and math.isnan(float(v)))


def fmt(v: Any) -> str:
    """A cell as text: 3 significant digits (thousands as whole numbers with separators),
    integers with separators, booleans as yes/no, missing values as "n/a"."""
    if _missing(v):
        return "n/a"
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    if isinstance(v, (float, np.floating)):
        f = float(v)
        if f == 0:
            return "0"
        if abs(f) >= 1000:
            return f"{f:,.0f}"
        if f.is_integer() and abs(f) >= 1:
            return f"{int(f)}"
        return f"{f:.3g}"
    return str(v)


def _numeric(v: Any) -> bool:
    """Whether ``v`` is shown right-aligned and sorted as a number."""
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(
        v, (bool, np.bool_))


def nice_table(df: pd.DataFrame, *, caption: str = "", fold: bool = True,
               keep: Iterable[str] = (), collapse: int = COLLAPSE_ROWS,
               table_id: str = "") -> str:
    """``df`` as a readable, sortable HTML table inside a scrolling box.

    Args:
        caption: what the table shows (its ``<caption>``).
        fold: move text columns with one value on every row (``defense = none``) into the
            caption (numeric columns always stay).
        keep: columns never folded.
        collapse: wrap the table in a closed ``<details>`` when it has more rows than this.
        table_id: the ``id`` of the table (none when empty).
    """
    t = df.reset_index(drop=True)
    folded = []
    if fold and len(t) > 1:
        for c in list(t.columns):
            if c in set(keep) or len(t.columns) <= 2:
                continue
            values = t[c].tolist()
            if any(_numeric(v) for v in values if not _missing(v)):
                continue  # numbers stay in the table: equal results are results
            if all(_missing(v) for v in values) or (
                    not any(_missing(v) for v in values) and len({fmt(v) for v in values}) == 1):
                folded.append(f"{label(c)}: {fmt(values[0])}")
                t = t.drop(columns=c)
    cap = caption + ((" — every row: " if caption else "Every row: ") + "; ".join(folded)
                     if folded else "")
    head = "".join(f'<th scope="col">{html.escape(label(c))}</th>' for c in t.columns)
    lines = []
    numbers = [any(_numeric(v) and not _missing(v) for v in t[c]) for c in t.columns]
    for row in t.itertuples(index=False):
        cells = []
        for v, number in zip(row, numbers, strict=True):
            text = html.escape(fmt(v))
            if _numeric(v) and not _missing(v):
                cells.append(f'<td class="num" data-v="{float(v)!r}">{text}</td>')
            elif number and _missing(v):  # "n/a" aligned with the numbers of its column
                cells.append(f'<td class="num">{text}</td>')
            else:
                cells.append(f"<td>{text}</td>")
        lines.append("<tr>" + "".join(cells) + "</tr>")
    ident = f' id="{html.escape(table_id)}"' if table_id else ""
    table = (f'<div class="table-wrap"><table class="sortable"{ident}>'
             + (f"<caption>{html.escape(cap)}</caption>" if cap else "")
             + f"<thead><tr>{head}</tr></thead><tbody>{''.join(lines)}</tbody></table></div>")
    if len(t) > collapse:
        summary = html.escape(caption or "Table") + f" ({len(t)} rows; click to expand)"
        return f"<details><summary>{summary}</summary>{table}</details>"
    return table
