"""The report of an ``advsec run`` directory, rebuilt from its tables alone (``advsec report``).

Answers at a glance: how robust is each detector, against which attack, at what ε, and at what
cost (clean accuracy and false positives after hardening, seconds per attack).
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from advsec.errors import DataError
from advsec.reporting.combos import gather
from advsec.reporting.html import (
    Section,
    figure_html,
    json_records,
    kv_html,
    render_report,
    table_html,
    versions,
)
from advsec.reporting.plots import STYLE, plot_confusions, save_figure
from advsec.runio import atomic_file, write_text

__all__ = ["build_run_report", "flags_section", "honesty_warning"]

_KEYS = ["detector", "defense", "threat", "attack", "eps"]


def build_run_report(run_dir: str | Path) -> Path:
    """Write ``sweep.csv``, ``worst_case.csv``, ``metrics.json``, figures and ``report.html``."""
    run = Path(run_dir)
    if not (run / "combos").is_dir():
        raise DataError(f"{run}: not an advsec run directory (no combos/ folder)")
    data = gather(run)
    sweep, clean, worst = data["sweep"], data["clean"], data["worst"]
    if sweep.empty:
        raise DataError(f"{run}: the run has no finished combination to report")
    cfg = json.loads((run / "config.json").read_text()) if (run / "config.json").exists() else {}
    for table, name in ((sweep, "sweep.csv"), (worst, "worst_case.csv")):
        with atomic_file(run / name) as tmp:
            table.to_csv(tmp, index=False)
    adaptive = sweep[sweep.evaluation == "adaptive"]
    fe = _figure_eps(cfg, adaptive)
    figs = run / "figures"
    figs.mkdir(exist_ok=True)
    summary = _summary(cfg, clean, adaptive, worst, fe)
    summary.body[:0] = honesty_warning(data["checks"])
    sections = [
        summary,
        _curves(adaptive, worst, figs),
        _threats(adaptive, fe),
        _confusions(data["confusion"], adaptive, fe, figs),
        _per_class(data["per_class"], adaptive, fe, figs),
        _features(data["features"], adaptive, fe, figs),
        _transfer(sweep, fe),
        _flags(sweep, data["checks"]),
        _setup(cfg, run, data["meta"]),
    ]
    metrics = {
        "experiment": cfg.get("experiment", {}),
        "figure_eps": fe,
        "clean": json_records(clean),
        "worst_case": json_records(worst),
        "strongest_attack": json_records(_strongest(adaptive)),
        "versions": versions(),
    }
    write_text(run / "metrics.json", json.dumps(metrics, indent=2))
    title = f"advsec — {cfg.get('experiment', {}).get('name', run.name)}"
    seeds = ", ".join(str(s) for s in sorted(clean["seed"].unique())) if "seed" in clean else ""
    html = render_report(title, [s for s in sections if s is not None],
                         subtitle=f"dataset {cfg.get('data', {}).get('dataset', '?')} · "
                                  f"seeds {seeds}")
    write_text(run / "report.html", html)
    return run / "report.html"


# ---------------------------------------------------------------------- sections
def _summary(cfg: dict[str, Any], clean: pd.DataFrame, sweep: pd.DataFrame,
             worst: pd.DataFrame, fe: float) -> Section:
    """Headline cards, the strongest attack, worst-case and clean tables."""
    body = []
    mlp_clean = clean.groupby(["detector", "defense"], sort=False)[
        ["accuracy", "detection_rate", "fpr", "f1"]].mean().reset_index()
    w = worst[np.isclose(worst.eps, fe)].groupby(["detector", "defense", "threat"], sort=False)[
        "worst_case_accuracy"].mean().reset_index() if not worst.empty else pd.DataFrame()
    strongest = _strongest(sweep)
    s_fe = strongest[np.isclose(strongest.eps, fe)]
    cards = []
    for _, r in mlp_clean.iterrows():
        label = f"{r.detector}" + ("" if r.defense == "none" else f" + {r.defense}")
        wc = w[(w.detector == r.detector) & (w.defense == r.defense)] if not w.empty else w
        robust = ", ".join(f"{t.threat}: {t.worst_case_accuracy:.3f}" for t in wc.itertuples())
        cards.append(f'<div class="card">{label}<b>{r.accuracy:.3f}</b>clean accuracy · '
                     f"FPR {r.fpr:.3f}<br>worst-case accuracy at ε={fe:g}: {robust or '–'}</div>")
    body.append(f'<div class="cards">{"".join(cards)}</div>')
    if not s_fe.empty:
        top = s_fe.sort_values("accuracy").iloc[0]
        body.append(f"<p><b>Strongest attack at ε = {fe:g}:</b> {top.attack} ({top.threat} "
                    f"threat model) brings {top.detector}"
                    + ("" if top.defense == "none" else f" + {top.defense}")
                    + f" to accuracy {top.accuracy:.3f} and detection rate "
                    f"{top.detection_rate:.3f} (attack success rate "
                    f"{top.attack_success_rate:.1%}).</p>")
    body.append("<p class=\"note\">ε is an L∞ (or L2) budget in the detector's [0, 1] input "
                "space: a fraction of each feature's range. <i>valid</i> attacks change only "
                "attacker-controlled features and produce records that decode to real, in-bounds "
                "values; <i>box</i> attacks may change anything inside [0, 1] (the usual, "
                "optimistic-for-the-attacker baseline). Worst case: a record counts as robust only "
                "if it survives every attack.</p>")
    if not w.empty:
        pivot = worst.groupby(["detector", "defense", "threat", "eps"], sort=False)[
            "worst_case_accuracy"].mean().unstack("eps").reset_index()
        pivot.columns = [f"ε={c:g}" if isinstance(c, float) else c for c in pivot.columns]
        body += ["<h3>Worst-case robust accuracy per ε (mean over seeds)</h3>",
                 table_html(pivot)]
    body += ["<h3>Clean metrics (whole test set, mean over seeds)</h3>", table_html(mlp_clean)]
    if not strongest.empty:
        body += ["<h3>Strongest attack per ε</h3>", table_html(strongest[
            ["detector", "defense", "threat", "eps", "attack", "accuracy", "detection_rate",
             "attack_success_rate"]])]
    return Section("Summary", body)


def _curves(sweep: pd.DataFrame, worst: pd.DataFrame, figs: Path) -> Section:
    """Accuracy and detection rate against eps per detector and threat model (figures)."""
    body = []
    for (det, threat), g in sweep.groupby(["detector", "threat"], sort=False):
        defenses = list(dict.fromkeys(g.defense))
        with plt.rc_context(STYLE):
            fig, axes = plt.subplots(2, len(defenses), figsize=(max(4.6 * len(defenses), 7), 7),
                                     sharex=True, sharey=True, squeeze=False)
            for j, dfn in enumerate(defenses):
                sub = g[g.defense == dfn]
                for attack, ga in sub.groupby("attack", sort=False):
                    for i, metric in enumerate(("accuracy", "detection_rate")):
                        _band(axes[i, j], ga, metric, str(attack))
                wc = worst[(worst.detector == det) & (worst.defense == dfn)
                           & (worst.threat == threat)] if not worst.empty else worst
                if not wc.empty:
                    _band(axes[0, j], wc.rename(columns={"worst_case_accuracy": "acc"}), "acc",
                          "worst case", style={"color": "black", "linestyle": "--"})
                axes[0, j].set_title("undefended" if dfn == "none" else f"defence: {dfn}")
                axes[1, j].set_xlabel("ε (fraction of feature range)")
            axes[0, 0].set_ylabel("accuracy")
            axes[1, 0].set_ylabel("detection rate (malicious recall)")
            for ax in axes.ravel():
                ax.set_ylim(-0.02, 1.02)
            axes[0, 0].legend(fontsize=8, title="attack")
            fig.suptitle(f"{det}: robustness under {threat} attacks (mean ± min/max over seeds)")
            fig.tight_layout()
            name = _fname(f"curves_{det}_{threat}")
            save_figure(fig, figs / name)
        body.append(figure_html(figs / name, f"{det}, {threat} threat model: accuracy and "
                                "detection rate against ε, one line per attack; dashed: worst "
                                "case over all attacks. Columns: undefended and each defence."))
    return Section("Robustness curves", body)


def _threats(sweep: pd.DataFrame, fe: float) -> Section | None:
    """Box against valid-record attacks at the figure eps (None with one threat model)."""
    if sweep.threat.nunique() < 2:
        return None
    s = sweep[np.isclose(sweep.eps, fe)].groupby(["detector", "defense", "attack", "threat"],
                                                 sort=False)[["accuracy", "valid_share"]].mean()
    t = s.unstack("threat").reset_index()
    t.columns = [" ".join(str(c) for c in col if c) if isinstance(col, tuple) else col
                 for col in t.columns]
    return Section("Valid records vs unconstrained", [
        f"<p>At ε = {fe:g}: accuracy under the unconstrained (box) attack and under the same "
        "attack restricted to valid records, with the share of adversarial records that are "
        "valid. A box attack whose records are mostly invalid overstates what a real attacker "
        "can do.</p>",
        table_html(t)])


def _confusions(conf: list[dict[str, Any]], sweep: pd.DataFrame, fe: float,
                figs: Path) -> Section | None:
    """Confusion matrices, clean and under the strongest attack (None without any)."""
    if not conf:
        return None
    strongest = _strongest(sweep)
    body = []
    for (det, dfn, threat), _ in sweep.groupby(["detector", "defense", "threat"], sort=False):
        row = strongest[(strongest.detector == det) & (strongest.defense == dfn)
                        & (strongest.threat == threat) & np.isclose(strongest.eps, fe)]
        if row.empty:
            continue
        attack = row.iloc[0].attack
        items = [c for c in conf if c["detector"] == det and c["defense"] == dfn
                 and c["threat"] == threat and c["attack"] == attack]
        if not items:
            continue
        clean = np.sum([np.array(c["clean"]) for c in items], axis=0)
        adv = np.sum([np.array(c["attacked"]) for c in items], axis=0)
        name = _fname(f"confusion_{det}_{dfn}_{threat}")
        save_figure(plot_confusions([clean, adv], ["clean", f"{attack} ({threat}), ε = {fe:g}"],
                                    items[0]["classes"]), figs / name)
        label = det + ("" if dfn == "none" else f" + {dfn}")
        body.append(figure_html(figs / name, f"{label}: confusion matrices (evaluation subset, "
                                "summed over seeds), clean and under the strongest attack."))
    return Section("Confusion matrices", body) if body else None


def _per_class(per_class: pd.DataFrame, sweep: pd.DataFrame, fe: float,
               figs: Path) -> Section | None:
    """Recall per true class, clean and under the strongest attack (None without data)."""
    if per_class.empty:
        return None
    pc = _at_strongest(per_class, sweep, fe)
    t = pc.groupby(["detector", "defense", "threat", "attack", "class"], sort=False)[
        ["n", "recall_clean", "recall_attacked"]].mean().reset_index()
    t["recall_drop"] = t.recall_clean - t.recall_attacked
    first = t[(t.defense == "none")]
    first = first[first.detector == first.detector.iloc[0]] if not first.empty else t
    body = []
    if not first.empty:
        threats = list(dict.fromkeys(first.threat))
        with plt.rc_context(STYLE):
            fig, axes = plt.subplots(1, len(threats), figsize=(5.5 * len(threats), 3.8),
                                     squeeze=False)
            for ax, threat in zip(axes[0], threats, strict=True):
                g = first[first.threat == threat]
                xs = np.arange(len(g))
                ax.bar(xs - 0.2, g.recall_clean, 0.4, label="clean")
                ax.bar(xs + 0.2, g.recall_attacked, 0.4, label=f"{g.attack.iloc[0]}, ε={fe:g}")
                ax.set_xticks(xs, g["class"], rotation=30, ha="right")
                ax.set_ylabel("recall")
                ax.set_ylim(0, 1.05)
                ax.set_title(f"per-class recall, {threat} threat model")
                ax.legend(fontsize=8)
            fig.tight_layout()
            name = _fname("per_class")
            save_figure(fig, figs / name)
        body.append(figure_html(figs / name, "Which classes evade most: recall per true class, "
                                "clean and under the strongest attack (undefended detector)."))
    body.append(table_html(t))
    return Section("Per-class recall under attack", body)


def _features(features: pd.DataFrame, sweep: pd.DataFrame, fe: float,
              figs: Path) -> Section | None:
    """Which features the strongest attacks change (None without data)."""
    if features.empty:
        return None
    f = _at_strongest(features, sweep, fe)
    f = f[f.defense == "none"]
    if f.empty:
        return None
    t = f.groupby(["threat", "attack", "feature", "kind", "mutable"], sort=False)[
        ["mean_abs_change", "share_changed"]].mean().reset_index()
    body = []
    threats = list(dict.fromkeys(t.threat))
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, len(threats), figsize=(5.5 * len(threats), 5), squeeze=False)
        for ax, threat in zip(axes[0], threats, strict=True):
            g = t[t.threat == threat].sort_values("share_changed").tail(15)
            colors = ["#2b6cb0" if m else "#c53030" for m in g.mutable]
            ax.barh(g.feature, g.share_changed, color=colors)
            ax.set_xlabel("share of records whose value changed")
            ax.set_xlim(0, 1.02)
            ax.set_title(f"{threat}: {g.attack.iloc[0]} at ε={fe:g}")
        fig.suptitle("Features the attack changes (red: features the attacker cannot control)")
        fig.tight_layout()
        name = _fname("features")
        save_figure(fig, figs / name)
    body.append(figure_html(figs / name, "Share of records whose decoded value changed, per "
                            "feature (15 most changed)."))
    body.append("<p>Mean absolute change is in each feature's original units (bytes, seconds, "
                "counts, rates); categorical features show only the share changed.</p>")
    body.append(table_html(t.sort_values(["threat", "share_changed"], ascending=[True, False])))
    return Section("What the attacks change", body)


def _transfer(sweep: pd.DataFrame, fe: float) -> Section | None:
    """Transfer evaluations beside the adaptive ones (None without any)."""
    other = sweep[(sweep.evaluation != "adaptive") & np.isclose(sweep.eps, fe)]
    if other.empty:
        return None
    cols = ["evaluation", "detector", "defense", "threat", "attack", "accuracy",
            "detection_rate", "attack_success_rate"]
    t = other.groupby(cols[:5], sort=False)[cols[5:]].mean().reset_index()
    adaptive = sweep[(sweep.evaluation == "adaptive") & np.isclose(sweep.eps, fe)]
    a = adaptive.groupby(["detector", "defense", "threat", "attack"], sort=False)[
        "accuracy"].mean().rename("accuracy_adaptive").reset_index()
    t = t.merge(a, on=["detector", "defense", "threat", "attack"], how="left")
    return Section("Transfer evaluations (reported separately)", [
        f"<p>At ε = {fe:g}. <b>transfer-from-undefended</b>: a defended detector scored on "
        "examples crafted against the undefended one — the protocol that overstates robustness; "
        "compare with <i>accuracy_adaptive</i>, the same defended detector attacked afresh. "
        "<b>transfer-from-MLP</b>: scikit-learn baselines scored on examples crafted against the "
        "MLP surrogate (they have no gradients).</p>", table_html(t)])


def honesty_warning(checks: pd.DataFrame) -> list[str]:
    """A warning paragraph above the summary when a clean-detector or training-data check is
    raised (the robustness numbers below may not mean what they seem); empty otherwise."""
    if checks.empty or "scope" not in checks.columns:
        return []
    bad = checks[checks.scope.isin(["clean", "data"]) & ~checks.ok.astype(bool)]
    if bad.empty:
        return []
    details = list(dict.fromkeys(escape(str(d)) for d in bad.detail))
    return ['<p class="flag-bad">Red flag before any robustness claim: ' + "; ".join(details[:4])
            + (f"; +{len(details) - 4} more" if len(details) > 4 else "")
            + " (see Red-flag checks).</p>"]


def _flags(sweep: pd.DataFrame, model_checks: pd.DataFrame) -> Section:
    """Red-flag checks of the sweeps, the models, the clean detectors and the training data."""
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
    return flags_section(pd.DataFrame(rows))


def flags_section(checks: pd.DataFrame) -> Section:
    """The "Red-flag checks" section of ``checks`` (columns naming what was checked, then
    ``check``, ``ok``: False when raised, ``detail``): the count raised, then the table."""
    if checks.empty:
        return Section("Red-flag checks", ["<p>No checks could be run.</p>"])
    t, bad = checks.copy(), int((~checks.ok.astype(bool)).sum())
    t["ok"] = t.ok.map({True: "ok", False: "RED FLAG"})
    return Section("Red-flag checks", [
        f'<p class="{"flag-bad" if bad else "flag-ok"}">{bad} red flag(s) out of {len(t)} '
        "checks.</p>", table_html(t)])


def _setup(cfg: dict[str, Any], run: Path, meta: list[dict[str, Any]]) -> Section:
    """Seconds per combination, the configuration and the library versions."""
    toml = (run / "config.toml").read_text() if (run / "config.toml").exists() else ""
    secs = {m["key"]: f"{m['seconds']:.1f}" for m in meta}
    return Section("Configuration, cost and environment", [
        "<h3>Seconds per combination</h3>", kv_html(secs),
        "<h3>Configuration</h3>", f"<pre>{escape(toml)}</pre>",
        "<h3>Versions</h3>", kv_html(versions()),
    ])


# ---------------------------------------------------------------------- helpers
def _strongest(sweep: pd.DataFrame) -> pd.DataFrame:
    """The attack with the lowest mean accuracy per (detector, defence, threat, eps > 0)."""
    if sweep.empty:
        return sweep
    m = sweep.groupby(_KEYS, sort=False)[["accuracy", "detection_rate",
                                          "attack_success_rate"]].mean().reset_index()
    m = m[m.eps > 0]
    idx = m.groupby(["detector", "defense", "threat", "eps"], sort=False)["accuracy"].idxmin()
    return m.loc[idx].reset_index(drop=True)


def _at_strongest(table: pd.DataFrame, sweep: pd.DataFrame, fe: float) -> pd.DataFrame:
    """The rows of ``table`` of the strongest attack at ``fe`` per (detector, defence, threat)."""
    strongest = _strongest(sweep)
    keys = ["detector", "defense", "threat", "attack"]
    return table.merge(strongest[np.isclose(strongest.eps, fe)][keys], on=keys)


def _band(ax: Any, g: pd.DataFrame, metric: str, label: str,
          style: dict[str, Any] | None = None) -> None:
    """Plot the mean of ``metric`` against eps on ``ax``, shaded between min and max."""
    s = g.groupby("eps")[metric].agg(["mean", "min", "max"]).sort_index()
    (line,) = ax.plot(s.index, s["mean"], marker="o", ms=3, label=label, **(style or {}))
    if (s["max"] > s["min"]).any():
        ax.fill_between(s.index, s["min"], s["max"], color=line.get_color(), alpha=0.15)


def _figure_eps(cfg: dict[str, Any], sweep: pd.DataFrame) -> float:
    """The swept eps closest to the configured figure eps (default 0.1)."""
    eps = sorted(e for e in sweep.eps.unique() if e > 0) or [0.0]
    target = cfg.get("threat", {}).get("figure_eps") or 0.1
    return float(min(eps, key=lambda e: abs(e - target)))


def _fname(text: str) -> str:
    """``text`` as a safe PNG file name."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text) + ".png"
