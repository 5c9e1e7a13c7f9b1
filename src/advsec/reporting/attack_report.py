"""The report of an ``advsec attack`` folder: ``report.html`` beside results.csv.

One self-contained page (the look of ``advsec run``'s report, the same building blocks): the
model, data and attack, the result table per ε (first row ε = 0, the clean baseline),
accuracy and detection rate against ε, the red-flag checks, and a few adversarial records in
their original columns with the cells the attack changed highlighted.
"""

from __future__ import annotations

import io
import json
import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from html import escape
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from advsec.evaluation.checks import Flag, check_model, check_sweep
from advsec.evaluation.honesty import check_clean
from advsec.reporting.html import Section, figure_html, kv_html, render_report
from advsec.reporting.html import versions as library_versions
from advsec.reporting.plots import SAVE_DPI, plot_robustness
from advsec.reporting.run_report import flags_section, honesty_warning
from advsec.reporting.run_sections import verified_summary
from advsec.reporting.tables import fmt, nice_table
from advsec.runio import write_text

__all__ = ["RESULT_COLUMNS", "SAMPLE_ROWS", "attack_flags", "attack_headline",
           "write_attack_report"]

#: the columns of the page's result table (all of them are in results.csv)
RESULT_COLUMNS = ["eps", "accuracy", "detection_rate", "evasion_rate", "false_alarm_rate", "fpr",
                  "attack_success_rate", "valid_share", "mean_linf", "max_linf", "mean_l2",
                  "n_attacked", "seconds"]
#: adversarial records shown in the sample
SAMPLE_ROWS = 6
#: the most feature columns the sample shows (those the attack changed most often)
SAMPLE_FEATURES = 6
#: records the gradient and logit checks probe
PROBE_ROWS = 256

_FRONT = ["record_id", "label", "pred_clean", "pred_adv", "success", "valid"]
#: the headers of the sample's first columns (then one per shown feature)
_SAMPLE_HEAD = ("Record id", "True label", "Prediction (clean → adversarial)", "Attack succeeded",
                "Valid record")
#: added to the report's style sheet: wrapped, left-aligned flag texts; changed cells
_CSS = ("#red-flag-checks td,#red-flag-checks th{text-align:left;white-space:normal}"
        "#sample-records td:nth-child(-n+3),#sample-records th:nth-child(-n+3)"
        "{text-align:left} #sample-records th{white-space:normal;vertical-align:bottom}"
        "#sample-records td.changed{background:#fde68a}"
        "#sample-records .was{display:block;color:#6b7280;font-size:.75rem}")


def write_attack_report(
    out_dir: str | Path,
    *,
    settings: Mapping[str, Any],
    table: pd.DataFrame,
    records: pd.DataFrame,
    clean: pd.DataFrame | None = None,
    model: Any = None,
    x: torch.Tensor | None = None,
    y: torch.Tensor | None = None,
    verify: pd.DataFrame | None = None,
    verify_flags: Sequence[Flag] = (),
) -> Path:
    """Write ``out_dir/report.html`` and ``out_dir/checks.csv`` (the red-flag checks: scope,
    check, ok, detail) and return the report's path.

    Args:
        out_dir: the attack's output folder.
        settings: what attack.json holds (model, dataset, split, attack, eps, norm, valid,
            evasion, classes, benign_class, ...).
        table: the result table (results.csv), one row per ε, ε = 0 first.
        records: the exported records (adversarial.csv): the front columns, then the
            features in their original columns, one block of rows per exported ε.
        clean: the attacked records as read (same order as each block of ``records``): the
            clean values the sample compares with (default: the ε = 0 block, when exported).
        model, x, y: the detector and its encoded inputs ``(N, D)`` and class indices ``(N,)``
            for the gradient and logit checks (skipped without them or for a tree ensemble).
        verify, verify_flags: ``advsec attack --verify``: the verified-against-attacked rows
            (:data:`advsec.evaluation.verified.VERIFY_COLUMNS`) and the soundness flags
            (a "Verified vs attacked" section; none without them).
    """
    scoped = _scoped_flags(table, records, settings=settings, model=model, x=x, y=y)
    scoped += [("verification", f) for f in verify_flags]
    checks = pd.DataFrame([{"scope": scope, "check": f.name, "ok": f.ok, "detail": f.detail}
                           for scope, f in scoped])
    summary = _summary(settings, table)
    raised = [f"{f.name}: {f.detail}" for scope, f in scoped
              if not f.ok and scope not in ("clean", "verification")]  # those: honesty_warning
    summary.body[:0] = honesty_warning(checks) + ([
        '<p class="flag-bad">Red flag: ' + "; ".join(escape(r) for r in raised)
        + " (see Red-flag checks).</p>"] if raised else [])
    notes = [str(n) for n in settings.get("encoding_notes") or []]
    if notes:  # the model did not see these records exactly as the file holds them
        summary.body.append(
            '<p class="note" id="encoding-notes">The model scored (and the attack started '
            "from) these records as the model's feature space encodes them: "
            + "; ".join(escape(n) for n in notes) + ".</p>")
    sections = [summary, _results(settings, table), _curve(settings, table),
                _verified(settings, verify), flags_section(checks),
                _sample(settings, records, clean), _settings(settings)]
    name = Path(str(settings.get("model", "model"))).name
    html = render_report(
        f"advsec attack — {settings.get('attack', '?')} against {name}",
        [s for s in sections if s is not None],
        subtitle=f"dataset {settings.get('dataset', '?')} ({settings.get('split', '?')}) · "
                 f"{settings.get('rows', len(clean) if clean is not None else '?')} records",
        css=_CSS)
    path = Path(out_dir) / "report.html"
    write_text(path, html)
    checks.to_csv(Path(out_dir) / "checks.csv", index=False)
    return path


def attack_flags(
    table: pd.DataFrame,
    records: pd.DataFrame,
    *,
    settings: Mapping[str, Any],
    model: Any = None,
    x: torch.Tensor | None = None,
    y: torch.Tensor | None = None,
) -> list[Flag]:
    """The red-flag checks of one attack: the sweep checks of
    :func:`~advsec.evaluation.checks.check_sweep` (accuracy non-increasing in ε, perturbations
    within budget), no success at ε = 0, valid adversarial records, the honesty checks of the
    clean predictions (:func:`~advsec.evaluation.honesty.check_clean`, from the records'
    ``label`` and ``pred_clean``) and, given ``model``, ``x`` and ``y`` of a network, the
    gradient and logit checks on the first :data:`PROBE_ROWS` records."""
    return [f for _, f in _scoped_flags(table, records, settings=settings, model=model, x=x,
                                        y=y)]


def attack_headline(settings: Mapping[str, Any], table: pd.DataFrame) -> str:
    """The one-line headline of an attack at its largest ε (the report's, and the terminal's
    line before the report path): who attacked (valid records or unconstrained), the detection
    rate clean → attacked, the evasion rate and, apart, the induced false-alarm rate (when
    benign records were attacked too), then accuracy and attack success."""
    if table.empty:
        return ""
    base, top = table.iloc[0], table.loc[table["eps"].idxmax()]
    who = "Valid-record" if settings.get("valid", True) else "Unconstrained (box)"
    evasion = bool(settings.get("evasion"))
    goal = "evasion: malicious records only" if evasion else "every record attacked"
    text = (f"{who} {settings.get('attack', '?')} at ε {top.eps:g} (the worst case: the only "
            f"attack; {goal}): detection rate {_num(base.detection_rate)} → "
            f"{_num(top.detection_rate)}")
    if "evasion_rate" in table.columns:
        text += (f"; evasion rate {_pct(top.evasion_rate)} of the malicious records caught "
                 "before the attack")
        text += ("; benign records are not attacked" if evasion else
                 f"; induced false-alarm rate {_pct(top.false_alarm_rate)} of the benign "
                 "records passed before the attack")
    return (f"{text}; accuracy {_num(base.accuracy)} → {_num(top.accuracy)}, attack success "
            f"{_pct(top.attack_success_rate)} of {fmt(top.n_attacked)} attacked records.")


# ---------------------------------------------------------------------- checks
def _scoped_flags(table: pd.DataFrame, records: pd.DataFrame, *,
                  settings: Mapping[str, Any], model: Any, x: torch.Tensor | None,
                  y: torch.Tensor | None) -> list[tuple[str, Flag]]:
    """:func:`attack_flags`, each with its scope: ``attack``, ``clean`` or ``model``."""
    flags = [("attack", f) for f in check_sweep(table)]
    flags += [("attack", _check_baseline(table)),
              ("attack", _check_valid(table, valid=bool(settings.get("valid"))))]
    classes = [str(c) for c in settings.get("classes", [])]
    if classes and not records.empty:
        first = records[records["eps"] == records["eps"].iloc[0]]
        index = {c: i for i, c in enumerate(classes)}
        y_np = first["label"].astype(str).map(index)
        pred = first["pred_clean"].astype(str).map(index)
        if y_np.notna().all() and pred.notna().all():
            with _quiet("advsec.evaluation.honesty"):  # the page shows them, not the log
                flags += [("clean", f) for f in check_clean(
                    y_np.to_numpy(dtype=int), pred.to_numpy(dtype=int),
                    benign_class=int(settings.get("benign_class", 0)), classes=classes)]
    if model is not None and x is not None and y is not None and hasattr(model, "as_module"):
        flags += [("model", f) for f in check_model(model.as_module(), x[:PROBE_ROWS],
                                                    y[:PROBE_ROWS])]
    return flags


def _check_baseline(table: pd.DataFrame) -> Flag:
    """Raised when the ε = 0 row shows attack success or a perturbation (it must be clean)."""
    name = "no attack success at ε = 0"
    zero = table[table["eps"] == 0]
    if zero.empty:
        return Flag(name, True, "n/a: no ε = 0 row")
    row = zero.iloc[0]
    asr, moved = float(row["attack_success_rate"]), float(row["max_linf"])
    if (not math.isnan(asr) and asr > 0) or moved > 0:
        return Flag(name, False, f"attack success rate {asr:.1%}, max L-inf {moved:.3g} at "
                    "ε = 0: the clean baseline is not clean")
    return Flag(name, True, "ε = 0 row: clean predictions, no record changed")


def _check_valid(table: pd.DataFrame, *, valid: bool) -> Flag:
    """Raised when some adversarial records at ε > 0 are not valid records."""
    name = "adversarial records are valid records"
    rows = table[(table["eps"] > 0) & table["valid_share"].notna()]
    if rows.empty:
        return Flag(name, True, "n/a: no attacked ε with a validity check")
    bad = rows[rows["valid_share"] < 1.0]
    if bad.empty:
        return Flag(name, True, f"every attacked record valid at {len(rows)} ε")
    items = "; ".join(f"{1 - r.valid_share:.1%} invalid at ε={r.eps:g}" for r in bad.itertuples())
    why = ("the attack was told to keep records valid" if valid else
           "unconstrained (box) attack: its accuracy overstates what a real attacker can do")
    return Flag(name, False, f"{items} ({why})")


# ---------------------------------------------------------------------- sections
def _summary(settings: Mapping[str, Any], table: pd.DataFrame) -> Section:
    """Headline cards (clean and at the largest ε), one sentence, model, data and attack."""
    base, top = table.iloc[0], table.loc[table["eps"].idxmax()]
    name = Path(str(settings.get("model", "model"))).name
    alarms = ("benign records not attacked" if settings.get("evasion") else
              f"induced false alarms {_pct(top.get('false_alarm_rate', math.nan))}")
    cards = [("clean accuracy (ε = 0)", base.accuracy, f"{name}: detection rate "
              f"{_num(base.detection_rate)} · FPR {_num(base.fpr)}"),
             (f"detection rate at ε = {top.eps:g}", top.detection_rate,
              f"evasion rate {_pct(top.get('evasion_rate', math.nan))} · {alarms}"),
             (f"attack success at ε = {top.eps:g}", top.attack_success_rate,
              f"of {fmt(top.n_attacked)} attacked records"),
             (f"valid share at ε = {top.eps:g}", top.valid_share,
              "adversarial records that are real records")]
    body = [f'<p class="headline" id="headline">{escape(attack_headline(settings, table))}</p>',
            '<div class="cards">' + "".join(
                f'<div class="card{" clean-card" if i == 0 else ""}"'
                + (f' data-detector="{escape(name)}"' if i == 0 else "")
                + f'>{escape(title)}<b>{_num(value)}</b><span class="sub">{escape(note)}</span>'
                "</div>" for i, (title, value, note) in enumerate(cards)) + "</div>"]
    body.append(kv_html({
        "model": settings.get("model", "?"),
        "data": f"{settings.get('dataset', '?')} ({settings.get('split', '?')} split, "
                f"{settings.get('rows', '?')} records)",
        "classes": ", ".join(str(c) for c in settings.get("classes", [])),
        "attack": _attack_label(settings),
        "threat mode": settings.get("mode") or ("evasion" if settings.get("evasion") else "all"),
        "steps": settings.get("steps") if settings.get("steps") is not None
        else "the attack's default",
        "ε": ", ".join(f"{e:g}" for e in table["eps"]),
    }))
    return Section("Summary", body)


def _results(settings: Mapping[str, Any], table: pd.DataFrame) -> Section:
    """The result table per ε (the columns of :data:`RESULT_COLUMNS`)."""
    cols = [c for c in RESULT_COLUMNS if c in table.columns]
    unit = "L2" if settings.get("norm") == "l2" else "L∞"
    return Section("Results per ε", [
        f"<p class=\"note\">ε: the {unit} budget in the detector's [0, 1] input space (a "
        "fraction of each feature's range). <b>ε = 0 is the clean baseline</b>: the "
        "detector's predictions on the unmodified records, never attacked. <b>Evasion "
        "rate</b>: malicious records the detector caught before the attack that it calls "
        "benign after it; <b>induced false-alarm rate</b>: benign records it passed before the "
        "attack that it flags after it (0 in evasion mode: benign records are not attacked). "
        "Attack success rate: share of the records the attack could break (correctly "
        "classified before; evasion: the malicious records the detector caught) that it broke. "
        "Valid records, perturbations (mean/max L∞, mean L2) and records attacked are over "
        "the attacked records; time: the attack's per ε. Every column is in results.csv.</p>",
        nice_table(table[cols], caption="Results per ε (ε = 0: the clean baseline)",
                   fold=False, table_id="results-table")])


def _curve(settings: Mapping[str, Any], table: pd.DataFrame) -> Section:
    """Accuracy and detection rate against ε (a PNG, inlined)."""
    fig = plot_robustness(table, title=f"{_attack_label(settings)}: robustness against ε")
    unit = "L2" if settings.get("norm") == "l2" else "L∞"
    for ax in fig.axes:
        ax.set_xlabel(f"ε ({unit}, fraction of feature range)")
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", bbox_inches="tight", dpi=SAVE_DPI)
    finally:
        plt.close(fig)
    return Section("Robust accuracy against ε", [figure_html(
        buf.getvalue(), "Accuracy (left) and detection rate (right) of the detector under the "
        "attack at each ε; the point at ε = 0 is the clean baseline.")])


def _verified(settings: Mapping[str, Any], verify: pd.DataFrame | None) -> Section | None:
    """Verified against attacked per verifier and ε (None without ``--verify``)."""
    if verify is None or verify.empty:
        return None
    region = ("the valid-record box" if settings.get("valid", True) else "the plain [0, 1] box")
    who = "the malicious records" if settings.get("evasion") else "every record"
    t = verified_summary(verify, by=("verifier", "eps"))
    return Section("Verified vs attacked", [
        f"<p class=\"note\">On the attacked records ({who}), at each ε of the L∞ region "
        f"around each record ({region}, which contains the attack's L2 ball as well). "
        "<b>Verified accuracy</b> is certified, a <i>lower bound</i> on the robust accuracy; "
        "the <b>attacked accuracy</b> (records this attack did not break) is an <i>upper "
        "bound</i>; the gap is what neither settles. A record both verified and broken is a "
        "soundness bug (a red flag). Every column is in verify.csv.</p>",
        '<div id="verified-table">'
        + nice_table(t, caption="Verified vs attacked per ε", fold=False) + "</div>"])


def _sample(settings: Mapping[str, Any], records: pd.DataFrame,
            clean: pd.DataFrame | None) -> Section:
    """A few adversarial records at the largest exported ε in their original columns, the cells
    the attack changed highlighted with the clean value below (successes first)."""
    title = "Sample of adversarial records"
    attacked = records[records["eps"] > 0] if not records.empty else records
    if attacked.empty:
        return Section(title, ["<p>No attacked ε was exported (only ε = 0).</p>"])
    e = float(attacked["eps"].max())
    block = records[records["eps"] == e].reset_index(drop=True)
    features = [c for c in records.columns if c not in (*_FRONT, "eps", "attacked")]
    if clean is None and (records["eps"] == 0).any():
        clean = records[records["eps"] == 0]
    ref = None if clean is None else clean[features].reset_index(drop=True)
    if ref is not None and len(ref) != len(block):
        ref = None
    changed = (pd.DataFrame(False, index=block.index, columns=features) if ref is None
               else pd.DataFrame({c: _differs(block[c], ref[c]) for c in features}))
    order = np.lexsort((~changed.any(axis=1).to_numpy(),
                        ~block["success"].astype(bool).to_numpy()))
    rows = order[:SAMPLE_ROWS]
    moved = changed.iloc[rows].sum(axis=0)
    shown = [c for c in moved.sort_values(ascending=False, kind="stable").index
             if moved[c] > 0][:SAMPLE_FEATURES] or features[:SAMPLE_FEATURES]
    shown = [c for c in features if c in shown]  # schema order
    head = "".join(f'<th scope="col">{escape(t)}</th>' for t in _SAMPLE_HEAD) + "".join(
        f'<th scope="col" title="column {escape(str(c))}">{escape(_feature_header(c))}</th>'
        for c in shown)
    lines = []
    for i in rows:
        cells = [f"<td>{escape(_cell(block.at[i, 'record_id']))}</td>",
                 f"<td>{escape(_cell(block.at[i, 'label']))}</td>",
                 f"<td>{escape(_cell(block.at[i, 'pred_clean']))} → "
                 f"{escape(_cell(block.at[i, 'pred_adv']))}</td>"]
        cells += [f"<td>{escape(_cell(block.at[i, c]))}</td>" for c in ("success", "valid")]
        for c in shown:
            value = escape(_cell(block.at[i, c]))
            if bool(changed.at[i, c]) and ref is not None:
                was = escape(_cell(ref.at[i, c]))
                cells.append(f'<td class="changed" title="clean: {was}">{value}'
                             f'<span class="was">was {was}</span></td>')
            else:
                cells.append(f"<td>{value}</td>")
        lines.append("<tr>" + "".join(cells) + "</tr>")
    hidden = len(features) - len(shown)
    note = (f"{len(rows)} of {len(block)} records at ε = {e:g}, successful attacks first; "
            "prediction: clean → adversarial. "
            + ("Highlighted: the values the attack changed, the clean value below. "
               if ref is not None else "No clean values to compare with. ")
            + (f"Shown: {len(shown)} of {len(features)} features, those changed most often "
               "in these rows. " if hidden else "")
            + "Feature headers: the original column names, underscores shown as spaces. "
            + "Every record is in adversarial.csv (or .parquet).")
    return Section(title, [f'<p class="note">{escape(note)}</p>',
                           f'<div id="sample-records"><table><thead><tr>{head}</tr></thead>'
                           f"<tbody>{''.join(lines)}</tbody></table></div>"])


def _settings(settings: Mapping[str, Any]) -> Section:
    """attack.json and the library versions."""
    return Section("Settings and environment", [
        "<h3>Settings (attack.json)</h3>",
        kv_html({k: v if isinstance(v, str) else json.dumps(v, default=str)
                 for k, v in settings.items()}),
        "<h3>Versions</h3>", kv_html(library_versions()),
    ])


# ---------------------------------------------------------------------- helpers
def _attack_label(settings: Mapping[str, Any]) -> str:
    """``pgd (valid records, L∞, evasion)``."""
    parts = ["valid records" if settings.get("valid", True) else "unconstrained box",
             "L2" if settings.get("norm") == "l2" else "L∞"]
    if settings.get("evasion"):
        parts.append("evasion")
    return f"{settings.get('attack', '?')} ({', '.join(parts)})"


def _feature_header(column: Any) -> str:
    """A feature's column name as a table header: underscores as spaces (long names wrap)."""
    return str(column).replace("_", " ")


def _differs(adv: pd.Series, ref: pd.Series) -> np.ndarray:
    """``(N,)`` bool: cells of ``adv`` that differ from ``ref`` (numbers beyond float noise)."""
    a, b = pd.to_numeric(adv, errors="coerce"), pd.to_numeric(ref, errors="coerce")
    both = a.notna().to_numpy() & b.notna().to_numpy()
    num = ~np.isclose(a.to_numpy(dtype=float), b.to_numpy(dtype=float), rtol=1e-9, atol=1e-12)
    text = adv.astype(str).to_numpy() != ref.astype(str).to_numpy()
    return np.where(both, num, text)


def _cell(value: Any) -> str:
    """A record value as text (floats to 6 significant digits, booleans as yes/no, missing
    values as n/a)."""
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (float, np.floating)):
        return "n/a" if math.isnan(value) else f"{float(value):.6g}"
    return str(value)


def _num(value: Any) -> str:
    """A metric as 0.123 (NaN as n/a)."""
    v = float(value)
    return "n/a" if math.isnan(v) else f"{v:.3f}"


def _pct(value: Any) -> str:
    """A share as 12.3 % (NaN as n/a)."""
    v = float(value)
    return "n/a" if math.isnan(v) else f"{v:.1%}"


@contextmanager
def _quiet(logger: str) -> Iterator[None]:
    """Drop the warnings of ``logger`` inside the block (the report shows the flags they
    would repeat on stderr)."""
    log = logging.getLogger(logger)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)
