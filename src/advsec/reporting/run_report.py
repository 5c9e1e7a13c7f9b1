"""The report of an ``advsec run`` directory, rebuilt from its tables alone (``advsec report``).

Answers at a glance, evasion first: how much of the malicious traffic a detector caught before
the attack still gets caught under the strongest valid-record attacks (worst case over the
ensemble), how many benign records the attacks push into false alarms, what the unconstrained
(box) attack would claim instead, and each detector's clean accuracy, detection rate and FPR on
the same rows. The figure and table sections are in :mod:`advsec.reporting.run_sections`, the
headline and cards in :mod:`advsec.reporting.headline`, the data section in
:mod:`advsec.reporting.data_section`.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from collections.abc import Iterator
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from advsec.errors import DataError
from advsec.reporting import run_sections as rs
from advsec.reporting.combo_checks import config_eps, read_json
from advsec.reporting.combos import gather
from advsec.reporting.data_section import data_section
from advsec.reporting.headline import Headline, clean_cards, clean_table, headline
from advsec.reporting.html import Section, json_records, json_text, render_report, versions
from advsec.reporting.tables import nice_table
from advsec.runio import atomic_file

__all__ = ["build_run_report", "flag_counts", "flags_section", "honesty_warning", "mode_note",
           "raised_checks", "raised_flags", "run_headline", "threat_mode"]


def build_run_report(run_dir: str | Path) -> Path:
    """Write ``sweep.csv``, ``worst_case.csv``, ``verify.csv`` (with ``[[verifiers]]``),
    ``metrics.json``, figures and ``report.html``.

    Every combination's files are checked first (:func:`advsec.reporting.combos.gather` with
    ``check=True``): a damaged run directory is a one-line DataError naming the file. The files
    are built in a temporary folder and replace the run's only once all were built, so a
    failure leaves the run directory as it was."""
    run = Path(run_dir)
    if not (run / "combos").is_dir():
        raise DataError(f"{run}: not an advsec run directory (no combos/ folder)")
    _check_targets(run, [run / name for name in OUTPUTS])
    cfg_path = run / "config.json"
    cfg = read_json(cfg_path) if cfg_path.exists() else {}
    for part in ("experiment", "data", "threat"):
        if not isinstance(cfg.get(part, {}), dict):
            raise DataError(f"{cfg_path}: {part!r} must be a JSON object")
    data = gather(run, check=True, eps=config_eps(cfg, cfg_path))
    with _staging(run) as stage:
        _build(run, cfg, data, stage)
    return run / "report.html"


def _build(run: Path, cfg: dict[str, Any], data: dict[str, Any], stage: Path) -> None:
    """Build the report of ``run`` from its checked tables ``data`` into ``stage`` (the
    top-level files, figures in ``stage/figures``)."""
    sweep, clean, worst = data["sweep"], data["clean"], data["worst"]
    if sweep.empty:
        raise DataError(f"{run}: the run has no finished combination to report")
    verify = data["verify"]
    for table, name in ((sweep, "sweep.csv"), (worst, "worst_case.csv"), (verify, "verify.csv")):
        if name == "verify.csv" and verify.empty:
            continue
        table.to_csv(stage / name, index=False)
    adaptive = sweep[sweep.evaluation == "adaptive"]
    fe = _figure_eps(cfg, adaptive)
    figs = stage / "figures"
    mode = threat_mode(data["meta"], cfg)
    head = headline(adaptive, worst, fe, benign_attacked=mode != "evasion")
    cleans = clean_table(sweep, clean)
    flags = _flag_rows(sweep, data["checks"])
    metrics = {
        "experiment": cfg.get("experiment", {}),
        "figure_eps": fe,
        "threat_mode": mode,
        "threat_mode_configured": cfg.get("threat", {}).get("mode", "all"),
        "headline": head.text() if head else "",
        "headline_numbers": head.numbers if head else {},
        "clean": json_records(clean),
        "clean_evaluation_subset": json_records(cleans),
        "worst_case": json_records(worst),
        "strongest_attack": json_records(rs.strongest(adaptive)),
        "verified_vs_attacked": json_records(rs.verified_summary(verify)) if not verify.empty
        else [],
        "checks": flag_counts(flags),
        "red_flags": json_records(raised_checks(flags)),
        "versions": versions(),
    }
    (stage / "metrics.json").write_text(json_text(metrics), encoding="utf-8")
    benign = next((m["classes"][m["benign"]] for m in data["meta"] if "classes" in m), None)
    summary = _summary(head, cleans, adaptive, worst, fe)
    summary.body.insert(1 if head else 0, mode_note(mode, cfg.get("threat", {}).get("mode")))
    summary.body[:0] = honesty_warning(data["checks"])
    sections = [
        summary,
        data_section(run, cfg),
        rs.curves(adaptive, worst, figs, benign_attacked=mode != "evasion"),
        rs.verified(verify),
        rs.threats(adaptive, fe),
        rs.confusions(data["confusion"], adaptive, fe, figs),
        rs.per_class(data["per_class"], adaptive, fe, figs, benign),
        rs.features(data["features"], adaptive, fe, figs),
        rs.transfer(sweep, fe),
        flags_section(flags),
        rs.setup(run, data["meta"]),
    ]
    title = f"advsec — {cfg.get('experiment', {}).get('name', run.name)}"
    seeds = ", ".join(str(s) for s in sorted(clean["seed"].unique())) if "seed" in clean else ""
    html = render_report(title, [s for s in sections if s is not None],
                         subtitle=f"dataset {cfg.get('data', {}).get('dataset', '?')} · "
                                  f"seeds {seeds}")
    (stage / "report.html").write_text(html, encoding="utf-8")


#: The files :func:`build_run_report` writes at the top of a run directory, in the order they
#: replace the old ones (the report last).
OUTPUTS = ("sweep.csv", "worst_case.csv", "verify.csv", "metrics.json", "report.html")


def _check_targets(run: Path, files: list[Path]) -> None:
    """A one-line DataError when ``run/figures`` is not a folder or one of ``files`` (what the
    report replaces) is a folder."""
    figs = run / "figures"
    if figs.exists() and not figs.is_dir():
        raise DataError(f"{figs} is a file; expected a folder (the report's figures)")
    for path in files:
        if path.is_dir():
            raise DataError(f"{path} is a folder; expected a file (the report writes it)")


@contextlib.contextmanager
def _staging(run: Path) -> Iterator[Path]:
    """A temporary folder (with a ``figures`` folder) to build the report of ``run`` in, outside
    it; when the block succeeds its files replace their namesakes in ``run`` (figures in
    ``run/figures``, the report last; each through :func:`advsec.runio.atomic_file`, so a kill
    leaves at most a ``.NAME.tmp`` that ``advsec run --resume`` discards); the folder is
    removed in any case."""
    with tempfile.TemporaryDirectory(prefix="advsec-report-") as tmp:
        stage = Path(tmp)
        (stage / "figures").mkdir()
        yield stage
        pngs = sorted((stage / "figures").iterdir())
        files = [stage / name for name in OUTPUTS if (stage / name).exists()]
        _check_targets(run, [run / "figures" / p.name for p in pngs]
                       + [run / p.name for p in files])
        (run / "figures").mkdir(exist_ok=True)
        for src, dst in [*((p, run / "figures" / p.name) for p in pngs),
                         *((p, run / p.name) for p in files)]:
            with atomic_file(dst) as part:
                shutil.copyfile(src, part)


def threat_mode(meta: list[dict[str, Any]], cfg: dict[str, Any]) -> str:
    """The threat mode a run used, ``"evasion"`` or ``"all"``: as its combinations recorded it
    (``meta.json``), else the configured one (runs before ``mode = "auto"``: ``"all"``)."""
    recorded = [str(m["mode"]) for m in meta if m.get("mode")]
    if recorded:
        return recorded[0]
    configured = str(cfg.get("threat", {}).get("mode", "all"))
    return configured if configured in ("all", "evasion") else "all"


def mode_note(mode: str, configured: str | None = None) -> str:
    """One paragraph stating the threat mode in effect (``configured``: ``[threat] mode``)."""
    if configured == "auto":
        how = (' (the default, <code>mode = "auto"</code>: the data have '
               + ("a" if mode == "evasion" else "no") + " benign class)")
    else:
        how = f' (<code>mode = "{escape(configured)}"</code>)' if configured else ""
    what = ("<b>evasion</b>: only malicious records are attacked, pushed towards the benign "
            "class; benign records are left alone, so no false alarm is induced"
            if mode == "evasion" else
            "<b>every record attacked</b>: malicious records towards evasion and benign records "
            "towards false alarms, stated apart below")
    return f'<p class="mode" id="threat-mode">Threat mode: {what}{how}.</p>'


def run_headline(run_dir: str | Path) -> str:
    """The headline sentence of a reported run directory (from ``metrics.json``; empty when
    there is none)."""
    path = Path(run_dir) / "metrics.json"
    try:
        return str(json.loads(path.read_text(encoding="utf-8")).get("headline", ""))
    except (OSError, ValueError):
        return ""


# ---------------------------------------------------------------------- sections
def _summary(head: Headline | None, cleans: pd.DataFrame, sweep: pd.DataFrame,
             worst: pd.DataFrame, fe: float) -> Section:
    """The headline, a clean-metrics card per detector, evasion and false alarms per ε."""
    body = [head.html()] if head else []
    body.append("<h3>Clean metrics of every detector</h3>")
    body.append(clean_cards(cleans))
    body.append("<p class=\"note\">ε is an L∞ (or L2) budget in the detector's [0, 1] input "
                "space: a fraction of each feature's range. <i>valid</i> attacks change only "
                "attacker-controlled features and produce records that decode to real, in-bounds "
                "values; <i>box</i> attacks may change anything inside [0, 1] (the usual, "
                "optimistic-for-the-attacker baseline). <b>Evasion rate</b>: malicious records "
                "the detector caught before the attack that it calls benign after it. "
                "<b>Induced false-alarm rate</b>: benign records it passed before the attack that "
                "it flags after it. Worst case: a record counts against the detector if any "
                "attack turns it.</p>")
    if not worst.empty:
        cols = [c for c in ("worst_case_detection_rate", "worst_case_evasion_rate",
                            "worst_case_false_alarm_rate", "worst_case_accuracy")
                if c in worst.columns]
        w = worst.groupby(["detector", "defense", "threat", "eps"], sort=False)[cols].mean()
        body += [nice_table(w.reset_index(), caption="Worst case over all attacks per ε, mean "
                            "over seeds", keep=("threat",))]
    st = rs.strongest(sweep)
    if not st.empty:
        keep = [c for c in ("detector", "defense", "threat", "eps", "attack", "detection_rate",
                            "evasion_rate", "false_alarm_rate", "accuracy") if c in st.columns]
        body += [nice_table(st[keep], caption="Strongest single attack per ε (lowest detection "
                            "rate), mean over seeds", keep=("threat",))]
    body.append(nice_table(cleans, caption="Clean metrics on the evaluation subset (ε = 0 rows; "
                           "test accuracy and test rows: whole test set)", fold=False))
    return Section("Summary", body)


def honesty_warning(checks: pd.DataFrame) -> list[str]:
    """A warning paragraph above the summary when a clean-detector, training-data or
    verification-soundness check is raised (the robustness numbers below may not mean what
    they seem); empty otherwise."""
    if checks.empty or "scope" not in checks.columns:
        return []
    bad = checks[checks.scope.isin(["clean", "data", "verification"]) & ~checks.ok.astype(bool)]
    if bad.empty:
        return []
    details = list(dict.fromkeys(escape(str(d)) for d in bad.detail))
    return ['<p class="flag-bad">Red flag before any robustness claim: ' + "; ".join(details[:4])
            + (f"; +{len(details) - 4} more" if len(details) > 4 else "")
            + " (see Red-flag checks).</p>"]


def raised_flags(run_dir: str | Path) -> list[dict[str, Any]]:
    """The red flags a reported run raised (``metrics.json``'s ``red_flags``: one dict per
    failed check with ``detector``, ``defense``, ``threat``, ``check`` and ``detail``); empty
    when none, or when the run has no report yet."""
    path = Path(run_dir) / "metrics.json"
    try:
        flags = json.loads(path.read_text(encoding="utf-8")).get("red_flags", [])
    except (OSError, ValueError):
        return []
    return [f for f in flags if isinstance(f, dict)]


def flag_counts(checks: pd.DataFrame) -> dict[str, int]:
    """``{"red_flags", "passed", "not_run"}``: the checks of ``checks`` (see
    :func:`flags_section`) counted as the report counts them."""
    if checks.empty:
        return {"red_flags": 0, "passed": 0, "not_run": 0}
    ok, not_run = _status(checks)
    bad, skipped = int((~ok).sum()), int((ok & not_run).sum())
    return {"red_flags": bad, "passed": len(checks) - bad - skipped, "not_run": skipped}


def _status(checks: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """``(ok, not_run)`` bool Series of ``checks``: ``ok`` False when the check raised a flag
    (a missing value counts as raised; text, as a CSV may hold it, is ok only as "true" or
    "1"), ``not_run`` when its detail starts with "n/a"."""
    ok = checks.ok.map(_passed).astype(bool)
    return ok, checks.detail.astype(str).str.startswith("n/a")


def _passed(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1")
    return not pd.isna(value) and bool(value)


def raised_checks(checks: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``checks`` (columns ``check``, ``ok``, ``detail``, ...) that raised a red
    flag, as the report counts them."""
    if checks.empty or "ok" not in checks.columns:
        return checks.iloc[:0]
    return checks[~_status(checks)[0]].reset_index(drop=True)


def _flag_rows(sweep: pd.DataFrame, model_checks: pd.DataFrame) -> pd.DataFrame:
    """Red-flag checks of the sweeps, the models, the clean detectors and the training data:
    one row per check (``detector``, ``defense``, ``threat``, ``check``, ``ok``, ``detail``)."""
    from advsec.evaluation.checks import check_sweep

    rows = []
    adaptive = sweep[sweep.evaluation == "adaptive"]
    for key, g in adaptive.groupby(["detector", "defense", "threat"], sort=False):
        for flag in check_sweep(g):
            rows.append({"detector": key[0], "defense": key[1], "threat": key[2],
                         "check": flag.name, "ok": bool(flag.ok), "detail": flag.detail})
    if not model_checks.empty:
        worst = model_checks.sort_values("ok").groupby(
            ["detector", "defense", "check"], sort=False).first().reset_index()
        for r in worst.itertuples():  # scope: model, data or clean (older runs: model only)
            scope = getattr(r, "scope", "model")
            rows.append({"detector": r.detector, "defense": r.defense,
                         "threat": scope if isinstance(scope, str) else "model",
                         "check": r.check, "ok": bool(r.ok), "detail": r.detail})
    return pd.DataFrame(rows)


def flags_section(checks: pd.DataFrame) -> Section:
    """The "Red-flag checks" section of ``checks`` (columns naming what was checked, then
    ``check``, ``ok``: False when raised, ``detail``): the counts, then the table.

    A check that could not run (its detail starts with "n/a") is shown as "not run" and counted
    apart: never as "ok", never as passed."""
    if checks.empty:
        return Section("Red-flag checks", ["<p>No checks could be run.</p>"])
    t = checks.copy()
    ok, not_run = _status(t)
    t["ok"] = np.where(~ok, "RED FLAG", np.where(not_run, "not run", "ok"))
    counts = flag_counts(checks)
    bad, skipped, passed = counts["red_flags"], counts["not_run"], counts["passed"]
    return Section("Red-flag checks", [
        f'<p class="{"flag-bad" if bad else "flag-ok"}">{bad} red flag(s); {passed} check(s) '
        f'passed; <span class="flag-na">{skipped} could not run (shown as "not run", not '
        "counted as passed)</span>.</p>",
        nice_table(t, caption="Red-flag checks (Status: ok, RED FLAG or not run)", fold=False,
                   collapse=40)])


# ---------------------------------------------------------------------- helpers
def _figure_eps(cfg: dict[str, Any], sweep: pd.DataFrame) -> float:
    """The swept eps closest to the configured figure eps (default 0.1)."""
    eps = sorted(e for e in sweep.eps.unique() if e > 0) or [0.0]
    given = cfg.get("threat", {}).get("figure_eps")
    target = 0.1 if given is None else float(given)  # 0 is a value, not "unset"
    return float(min(eps, key=lambda e: abs(e - target)))
