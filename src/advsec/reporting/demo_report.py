"""The report of ``advsec demo``: the synthetic FGSM study, evasion first.

Same building blocks as the run report: the headline from the valid-record attack (the only
attack of the demo, so its own worst case) with the unconstrained number as the aside, a
clean-metrics card computed on the rows of the ε = 0 row (the whole test split), a data
section, readable tables and the figures.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any

import pandas as pd

from advsec.reporting.headline import Headline, clean_cards, clean_table, headline
from advsec.reporting.html import Section, figure_html, kv_html, render_report, versions
from advsec.reporting.tables import nice_table

__all__ = ["build_demo_report", "demo_headline"]

#: the columns of the demo's sweep table, in order (those present are shown)
SWEEP_COLUMNS = ["attack", "eps", "detection_rate", "evasion_rate", "false_alarm_rate",
                 "accuracy", "fpr", "precision", "f1", "attack_success_rate", "mean_linf",
                 "max_linf", "valid_share", "n"]


def _as_run_sweep(sweep: pd.DataFrame) -> pd.DataFrame:
    """The demo's sweep (attacks ``fgsm`` and ``fgsm-valid``) in the run report's shape: one
    detector, no defence, threat ``box`` or ``valid``, attack ``fgsm``, seed 0."""
    s = sweep.copy()
    s["threat"] = ["valid" if str(a).endswith("-valid") else "box" for a in s.attack]
    s["attack"] = [str(a).removesuffix("-valid") for a in s.attack]
    return s.assign(detector="mlp", defense="none", seed=0, evaluation="adaptive")


def demo_headline(sweep: pd.DataFrame, fe: float) -> Headline | None:
    """The headline of the demo at ``fe`` (valid-record FGSM, the box FGSM as the aside)."""
    return headline(_as_run_sweep(sweep), pd.DataFrame(), fe, benign_attacked=True)


def build_demo_report(
    *,
    cfg_toml: str,
    seed: int,
    notes: Sequence[str],
    sweep: pd.DataFrame,
    figures: dict[str, Path],
    timings: dict[str, float],
    classes: Sequence[str],
    benign: str,
    fe: float,
    n_train: int,
    n_test: int,
    space: Any,
) -> str:
    """The demo's report as one HTML string.

    Args:
        cfg_toml: the configuration as TOML text; notes: loading notes and raised red flags.
        sweep: both sweeps (``fgsm`` and ``fgsm-valid``), with the evasion columns.
        figures: ``robustness``, ``confusion`` and ``projection`` PNG paths.
        benign: the benign class; space: the fitted FeatureSpace (the attacker's features).
    """
    head = demo_headline(sweep, fe)
    cleans = clean_table(_as_run_sweep(sweep))
    immutable = [f.name for f in space.schema if not f.mutable]
    summary = Section("Summary", [
        head.html() if head else "",
        "<h3>Clean metrics of every detector</h3>", clean_cards(cleans),
        "<p>A feed-forward detector was trained on synthetic network flows and attacked with "
        "FGSM (x′ = x + ε·sign(∇ₓ loss), loss = cross-entropy on the logits and the true "
        "labels), every test record perturbed. ε is an L∞ budget measured as a fraction of each "
        "feature's range in the detector's [0, 1] input space. <b>fgsm-valid</b> may change "
        f"only attacker-controlled features (not {escape(', '.join(immutable))}), keeps every "
        "feature in its physical bounds and rounds counts and flags, so every adversarial "
        "record it produces could really be sent; <b>fgsm</b> is the unconstrained attack of "
        "the original study. <b>Evasion rate</b>: malicious records caught before the attack "
        "and called benign after it; <b>induced false-alarm rate</b>: benign records passed "
        "before the attack and flagged after it.</p>",
    ])
    rows = {"training rows": f"{n_train:,}", "test rows": f"{n_test:,}",
            "evaluation subset": f"the whole test split ({n_test:,} records): the clean card, "
                                 "the ε = 0 rows and every attack use the same records",
            "label scheme": f"binary: classes {', '.join(classes)}; benign class {benign}",
            "classes seen only in test": "none (synthetic data, one generator)"}
    feats = pd.DataFrame([{"feature": f.name, "kind": f.kind.value,
                           "direction": str(getattr(f, "direction", "any") or "any")}
                          for f in space.schema if f.mutable])
    data = Section("Data", [
        kv_html({"dataset": "synthetic flows (advsec's generator)", **rows}),
        "<h3>Loading notes</h3><ul>" + "".join(f"<li>{escape(n)}</li>" for n in notes)
        + "</ul>" if notes else "",
        f"<h3>What the attacker may change</h3><p>{len(feats)} attacker-controlled features "
        f"in valid-record attacks; fixed: {escape(', '.join(immutable) or 'none')}.</p>",
        nice_table(feats, caption="Attacker-controlled features", fold=False, collapse=10)
        if not feats.empty else "",
        "<h3>Files of this run</h3><ul><li><a href=\"sweep.csv\">sweep.csv</a>: every attack × "
        "ε</li><li><a href=\"metrics.json\">metrics.json</a>: clean metrics, red flags, the "
        "sweep</li><li><a href=\"config.toml\">config.toml</a>: the configuration</li>"
        "<li><a href=\"run.log\">run.log</a>: the log</li></ul>",
    ])
    cols = [c for c in SWEEP_COLUMNS if c in sweep.columns]
    results = Section("Robustness curves", [
        figure_html(figures["robustness"], "Accuracy and detection rate against ε (evenly "
                    "spaced ticks). Unconstrained FGSM overstates the attacker: its records "
                    "are not valid flows."),
        nice_table(sweep[cols], caption="Sweep: one row per attack and ε (whole test split)"),
    ])
    pictures = Section("What the attack does", [
        figure_html(figures["confusion"], f"Confusion matrices on the test set: clean, then "
                    f"under unconstrained and valid-record FGSM at ε = {fe:g} (rows: true "
                    "class)."),
        figure_html(figures["projection"], "Test records in the plane of the first two principal "
                    "components of the clean numeric features, coloured by the detector's "
                    "prediction; background: the prediction held by most of the nearest "
                    "records in that plane (left: clean, right: adversarial)."),
    ])
    setup = Section("Configuration and environment", [
        "<h3>Configuration</h3>", f"<pre>{escape(cfg_toml)}</pre>",
        "<h3>Timings (s)</h3>", kv_html({k: f"{v:.2f}" for k, v in timings.items()}),
        "<h3>Versions</h3>", kv_html(versions()),
    ])
    return render_report("advsec — synthetic FGSM study",
                         [summary, data, results, pictures, setup], subtitle=f"seed {seed}")
