"""The figure and table sections of the run report (:mod:`advsec.reporting.run_report`)."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.patches import Patch

from advsec.reporting.html import Section, figure_html, kv_html, versions
from advsec.reporting.plots import (
    STYLE,
    attack_style,
    eps_positions,
    plot_confusions,
    save_figure,
    set_eps_axis,
)
from advsec.reporting.tables import nice_table

__all__ = ["confusions", "curves", "features", "fname", "per_class", "setup", "strongest",
           "threats", "transfer", "verified", "verified_summary"]

_KEYS = ["detector", "defense", "threat", "attack", "eps"]


def strongest(sweep: pd.DataFrame) -> pd.DataFrame:
    """The attack with the lowest mean detection rate (then accuracy) per (detector, defence,
    threat, eps > 0)."""
    if sweep.empty:
        return sweep
    cols = [c for c in ("accuracy", "detection_rate", "attack_success_rate", "evasion_rate",
                        "false_alarm_rate") if c in sweep.columns]
    m = sweep.groupby(_KEYS, sort=False)[cols].mean().reset_index()
    m = m[m.eps > 0].sort_values(["detection_rate", "accuracy"], kind="stable")
    return m.drop_duplicates(["detector", "defense", "threat", "eps"]).sort_index().reset_index(
        drop=True)


def _at_strongest(table: pd.DataFrame, sweep: pd.DataFrame, fe: float) -> pd.DataFrame:
    """The rows of ``table`` of the strongest attack at ``fe`` per (detector, defence, threat)."""
    s = strongest(sweep)
    keys = ["detector", "defense", "threat", "attack"]
    return table.merge(s[np.isclose(s.eps, fe)][keys], on=keys)


def fname(text: str) -> str:
    """``text`` as a safe PNG file name."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text) + ".png"


def _band(ax: Any, g: pd.DataFrame, metric: str, label: str, pos: dict[float, int],
          style: dict[str, Any]) -> bool:
    """Plot the mean of ``metric`` against ε positions, shaded between min and max over seeds;
    whether a band was drawn."""
    s = g.groupby("eps")[metric].agg(["mean", "min", "max"]).sort_index()
    xs = [pos[float(e)] for e in s.index]
    ax.plot(xs, s["mean"], label=label, **style)
    if (s["max"] > s["min"]).any():
        ax.fill_between(xs, s["min"], s["max"], color=style.get("color", "k"), alpha=0.12)
        return True
    return False


def curves(sweep: pd.DataFrame, worst: pd.DataFrame, figs: Path, *,
           benign_attacked: bool = True) -> Section:
    """Detection rate and induced false-alarm rate against ε per detector and threat model
    (the evasion rate instead when benign records are not attacked: evasion mode)."""
    body = []
    pos = eps_positions(sweep.eps)
    second = next((c for c in ("false_alarm_rate" if benign_attacked else "evasion_rate",
                               "accuracy")
                   if c in sweep.columns and sweep[c].notna().any()), "accuracy")
    labels = {"detection_rate": "detection rate (malicious recall)",
              "false_alarm_rate": "induced false-alarm rate\n(benign → malicious)",
              "evasion_rate": "evasion rate\n(malicious → benign)", "accuracy": "accuracy"}
    for (det, threat), g in sweep.groupby(["detector", "threat"], sort=False):
        defenses = list(dict.fromkeys(g.defense))
        banded = False
        with plt.rc_context(STYLE):
            fig, axes = plt.subplots(2, len(defenses), figsize=(max(4.8 * len(defenses), 7), 7),
                                     sharex=True, sharey=True, squeeze=False)
            for j, dfn in enumerate(defenses):
                sub = g[g.defense == dfn]
                for i, (attack, ga) in enumerate(sub.groupby("attack", sort=False)):
                    for row, metric in enumerate(("detection_rate", second)):
                        banded |= _band(axes[row, j], ga, metric, str(attack), pos,
                                        attack_style(i))
                wc = worst[(worst.detector == det) & (worst.defense == dfn)
                           & (worst.threat == threat)] if not worst.empty else worst
                wstyle = {"color": "black", "linestyle": (0, (1, 1)), "linewidth": 2.2}
                for row, col in enumerate((f"worst_case_{'detection_rate'}",
                                           f"worst_case_{second}")):
                    if not wc.empty and col in wc.columns:
                        banded |= _band(axes[row, j], wc, col, "worst case", pos, wstyle)
                axes[0, j].set_title("undefended" if dfn == "none" else f"defence: {dfn}")
                set_eps_axis(axes[1, j], pos, "ε (share of each feature's range)")
            axes[0, 0].set_ylabel(labels["detection_rate"])
            axes[1, 0].set_ylabel(labels[second])
            for ax in axes.ravel():
                ax.set_ylim(-0.02, 1.02)
            handles, names = axes[0, 0].get_legend_handles_labels()
            if banded:
                handles.append(Patch(color="grey", alpha=0.25))
                names.append("min–max over seeds")
            axes[0, 0].legend(handles, names, fontsize=8, title="attack")
            fig.suptitle(f"{det}: {threat} attacks (mean over seeds)")
            fig.tight_layout()
            name = fname(f"curves_{det}_{threat}")
            save_figure(fig, figs / name)
        cols = " Columns: undefended, then each defence." if len(defenses) > 1 else ""
        body.append(figure_html(figs / name, f"{det}, {threat} threat model: detection rate "
                                f"(top) and {labels[second].replace(chr(10), ' ')} (bottom) "
                                "against ε (evenly spaced ticks), one line per attack; dotted "
                                f"black: worst case over all attacks.{cols}"))
    return Section("Robustness curves", body)


def threats(sweep: pd.DataFrame, fe: float) -> Section | None:
    """Box against valid-record attacks at the figure eps (None with one threat model)."""
    if sweep.threat.nunique() < 2:
        return None
    s = sweep[np.isclose(sweep.eps, fe)].groupby(["detector", "defense", "attack", "threat"],
                                                 sort=False)[["detection_rate",
                                                              "valid_share"]].mean()
    t = s.unstack("threat")
    t.columns = [f"{'Detection rate' if m == 'detection_rate' else 'Valid records (share)'}, "
                 f"{th}" for m, th in t.columns]
    t = t.reset_index()
    return Section("Valid records vs unconstrained", [
        f"<p>At ε = {fe:g}: detection rate under the unconstrained (box) attack and under the "
        "same attack restricted to valid records, with the share of adversarial records that "
        "are valid. A box attack whose records are mostly invalid overstates what a real "
        "attacker can do.</p>",
        nice_table(t, caption=f"Box against valid records, ε = {fe:g}, mean over seeds")])


def confusions(conf: list[dict[str, Any]], sweep: pd.DataFrame, fe: float,
               figs: Path) -> Section | None:
    """One figure per detector: the clean confusion matrix once, then one panel per threat
    model under its strongest attack (None without any)."""
    if not conf:
        return None
    st = strongest(sweep)
    body = []
    for (det, dfn), g in sweep.groupby(["detector", "defense"], sort=False):
        mats: list[np.ndarray] = []
        titles: list[str] = []
        classes: list[str] | None = None
        for threat in dict.fromkeys(g.threat):
            row = st[(st.detector == det) & (st.defense == dfn) & (st.threat == threat)
                     & np.isclose(st.eps, fe)]
            if row.empty:
                continue
            attack = row.iloc[0].attack
            items = [c for c in conf if c["detector"] == det and c["defense"] == dfn
                     and c["threat"] == threat and c["attack"] == attack]
            if not items:
                continue
            if not mats:
                mats.append(np.sum([np.array(c["clean"]) for c in items], axis=0))
                titles.append("clean")
                classes = items[0]["classes"]
            mats.append(np.sum([np.array(c["attacked"]) for c in items], axis=0))
            titles.append(f"{attack} ({threat}), ε = {fe:g}")
        if not mats or classes is None:
            continue
        name = fname(f"confusion_{det}_{dfn}")
        save_figure(plot_confusions(mats, titles, classes), figs / name)
        label = det + ("" if dfn == "none" else f" + {dfn}")
        body.append(figure_html(figs / name, f"{label}: confusion matrices on the evaluation "
                                "subset, summed over seeds: clean, then under the strongest "
                                "attack of each threat model (rows: true class)."))
    return Section("Confusion matrices", body) if body else None


def per_class(table: pd.DataFrame, sweep: pd.DataFrame, fe: float, figs: Path,
              benign: str | None) -> Section | None:
    """Share of each true class kept in its class, clean and under the strongest attack; the
    benign class's drop is named induced false alarms, never evasion (None without data)."""
    if table.empty:
        return None
    pc = _at_strongest(table, sweep, fe)
    t = pc.groupby(["detector", "defense", "threat", "attack", "class"], sort=False)[
        ["n", "recall_clean", "recall_attacked"]].mean().reset_index()
    t["change"] = t.recall_attacked - t.recall_clean
    t["role"] = ["benign" if str(c) == str(benign) else "malicious" for c in t["class"]]
    t["outcome"] = ["drop = benign records pushed into false alarms" if r == "benign" else
                    "drop = records evading or relabelled" for r in t.role]
    t["n"] = t["n"].round().astype(int)
    t = t[["detector", "defense", "threat", "attack", "class", "role", "n", "recall_clean",
           "recall_attacked", "change", "outcome"]]
    first = t[t.defense == "none"]
    first = first[first.detector == first.detector.iloc[0]] if not first.empty else t
    body = []
    if not first.empty:
        threat_list = list(dict.fromkeys(first.threat))
        with plt.rc_context(STYLE):
            fig, axes = plt.subplots(1, len(threat_list), figsize=(5.5 * len(threat_list), 3.8),
                                     squeeze=False)
            for ax, threat in zip(axes[0], threat_list, strict=True):
                g = first[first.threat == threat]
                xs = np.arange(len(g))
                ax.bar(xs - 0.2, g.recall_clean, 0.4, label="clean", color="#7a9cc6")
                ax.bar(xs + 0.2, g.recall_attacked, 0.4, color="#c0504d",
                       label=f"{g.attack.iloc[0]}, ε={fe:g}")
                names = [f"{c}\n(benign)" if r == "benign" else str(c)
                         for c, r in zip(g["class"], g.role, strict=True)]
                ax.set_xticks(xs, names, rotation=30, ha="right")
                ax.set_ylabel("share kept in its class")
                ax.set_ylim(0, 1.05)
                ax.set_title(f"{threat} threat model")
                ax.legend(fontsize=8)
            fig.tight_layout()
            name = fname("per_class")
            save_figure(fig, figs / name)
        body.append(figure_html(figs / name, "Share of each true class the detector keeps in "
                                "its class, clean and under the strongest attack (undefended "
                                "detector). For malicious classes a drop is evasion or "
                                "relabelling; for the benign class it is induced false alarms."))
    body.append(nice_table(t, caption=f"Per-class outcome at ε = {fe:g}, mean over seeds"))
    return Section("Per-class recall under attack", body)


def features(table: pd.DataFrame, sweep: pd.DataFrame, fe: float,
             figs: Path) -> Section | None:
    """Which features the strongest attacks change (None without data)."""
    if table.empty:
        return None
    f = _at_strongest(table, sweep, fe)
    f = f[f.defense == "none"]
    if f.empty:
        return None
    t = f.groupby(["threat", "attack", "feature", "kind", "mutable"], sort=False)[
        ["mean_abs_change", "share_changed"]].mean().reset_index()
    body = []
    threat_list = list(dict.fromkeys(t.threat))
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, len(threat_list), figsize=(5.5 * len(threat_list), 5),
                                 squeeze=False)
        for ax, threat in zip(axes[0], threat_list, strict=True):
            g = t[t.threat == threat].sort_values("share_changed").tail(15)
            colors = ["#2b6cb0" if m else "#c53030" for m in g.mutable]
            ax.barh(g.feature, g.share_changed, color=colors)
            ax.set_xlabel("share of records whose value changed")
            ax.set_xlim(0, 1.02)
            ax.set_title(f"{threat}: {g.attack.iloc[0]} at ε={fe:g}")
        fig.legend(handles=[Patch(color="#2b6cb0", label="attacker may change"),
                            Patch(color="#c53030", label="attacker cannot control")],
                   loc="lower center", ncol=2, fontsize=8)
        fig.suptitle("Features the strongest attack changes")
        fig.tight_layout(rect=(0, 0.05, 1, 1))
        name = fname("features")
        save_figure(fig, figs / name)
    body.append(figure_html(figs / name, "Share of records whose decoded value changed, per "
                            "feature (the 15 most changed)."))
    body.append("<p>Mean change is in each feature's original units (bytes, seconds, counts, "
                "rates); categorical features show only the share changed (n/a).</p>")
    body.append(nice_table(t.sort_values(["threat", "share_changed"], ascending=[True, False]),
                           caption=f"Feature changes at ε = {fe:g} (undefended detector)"))
    return Section("What the attacks change", body)


def transfer(sweep: pd.DataFrame, fe: float) -> Section | None:
    """Transfer evaluations beside the adaptive ones (None without any)."""
    other = sweep[(sweep.evaluation != "adaptive") & np.isclose(sweep.eps, fe)]
    if other.empty:
        return None
    cols = ["evaluation", "detector", "defense", "threat", "attack", "accuracy",
            "detection_rate", "evasion_rate", "false_alarm_rate"]
    cols = [c for c in cols if c in other.columns]
    body = [f"<p>At ε = {fe:g}; clean metrics of every detector are in the Summary cards.</p>"]
    kinds = list(dict.fromkeys(other.evaluation))
    adaptive = sweep[(sweep.evaluation == "adaptive") & np.isclose(sweep.eps, fe)]
    for kind in kinds:
        t = other[other.evaluation == kind].groupby(cols[:5], sort=False)[
            cols[5:]].mean().reset_index()
        if kind == "transfer-from-undefended":
            a = adaptive.groupby(["detector", "defense", "threat", "attack"], sort=False)[
                "accuracy"].mean().rename("accuracy_adaptive").reset_index()
            t = t.merge(a, on=["detector", "defense", "threat", "attack"], how="left")
            text = ("a defended detector scored on examples crafted against the undefended one "
                    "— the protocol that overstates robustness; compare with <i>Accuracy, "
                    "attacked afresh</i>, the same defended detector attacked adaptively.")
        else:
            text = (f"scikit-learn baselines scored on examples crafted against the "
                    f"{escape(kind.removeprefix('transfer-from-'))} surrogate (they have no "
                    "gradients).")
        body += [f"<p><b>{escape(kind)}</b>: {text}</p>",
                 nice_table(t, caption=f"{kind}, ε = {fe:g}, mean over seeds")]
    return Section("Transfer evaluations (reported separately)", body)


def verified_summary(table: pd.DataFrame, *, by: Sequence[str] = ("detector", "defense",
                                                                  "threat", "verifier", "eps")
                     ) -> pd.DataFrame:
    """Verified against attacked per ``by`` (mean over seeds; records verified-yet-broken
    summed), from rows of :data:`advsec.evaluation.verified.VERIFY_COLUMNS`; a ``note``
    column only when some row has one (why a verifier did not run)."""
    keys = [k for k in by if k in table.columns]
    agg: dict[str, Any] = {}
    for c in ("records", "verified_accuracy", "attacked_accuracy", "gap", "verified_broken",
              "verify_seconds"):
        if c in table.columns:
            agg[c] = (lambda s: s.sum(min_count=1)) if c == "verified_broken" else "mean"
    if "note" in table.columns:
        agg["note"] = lambda s: next((str(v) for v in s if isinstance(v, str) and v), "")
    t = table.groupby(keys, sort=False, dropna=False).agg(agg).reset_index()
    if "note" in t.columns and not t["note"].astype(bool).any():
        t = t.drop(columns="note")
    return t


def verified(table: pd.DataFrame) -> Section | None:
    """The "Verified vs attacked" section: per detector, threat model and ε the certified
    accuracy of each verifier beside the worst-case accuracy under every attack, on the same
    records (None without ``[[verifiers]]``)."""
    if table.empty:
        return None
    t = verified_summary(table)
    return Section("Verified vs attacked", [
        "<p>On the records the attacks were measured on (the evaluation subset; in evasion "
        "mode its malicious records), at each ε (L∞, a share of each feature's range, over "
        "the same region as the attacks: the valid-record box or the plain [0, 1] box). "
        "<b>Verified accuracy</b> is certified: a sound bound proves that no input of the "
        "record's region changes its class, so it is a <i>lower bound</i> on the robust "
        "accuracy. <b>Worst-case attacked accuracy</b> counts the records no attack broke: "
        "an <i>upper bound</i>. The truth lies in the gap between them. A record both "
        "verified and broken is a soundness bug (a red flag below). crown and ibp bound ReLU "
        "MLPs; tree-milp bounds tree ensembles exactly: its own adversarial records count "
        "as attacks, so where it decides every record the gap is zero (the exact robust "
        "accuracy). A detector no verifier bounds shows n/a.</p>",
        nice_table(t, caption="Verified vs attacked per ε, mean over seeds (accuracies are "
                   "shares of the verified records)", keep=("threat", "verifier"))])


def setup(run: Path, meta: list[dict[str, Any]]) -> Section:
    """Seconds per combination, the configuration and the library versions."""
    toml = (run / "config.toml").read_text() if (run / "config.toml").exists() else ""
    secs = {m["key"]: f"{m['seconds']:.1f}" for m in meta}
    return Section("Configuration, cost and environment", [
        "<h3>Seconds per combination</h3>", kv_html(secs),
        "<h3>Configuration</h3>", f"<pre>{escape(toml)}</pre>",
        "<h3>Versions</h3>", kv_html(versions()),
    ])
