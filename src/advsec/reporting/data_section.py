"""The data section of a run report: dataset, rows per split, the evaluation subset and how it
was drawn, the label scheme, classes seen only in test, the features the attacker may change
(and in which direction), and links to the run's tables.

:func:`data_facts` is what ``advsec run`` records per seed (``data/s<seed>.json``);
:func:`data_section` turns those files into the report section.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

import pandas as pd

from advsec.reporting.combo_checks import read_json
from advsec.reporting.html import Section, kv_html
from advsec.reporting.tables import nice_table

__all__ = ["data_facts", "data_section", "read_data_facts"]

#: run-directory files the section links to, when present
LINKS = (("sweep.csv", "every attack × ε × seed"), ("worst_case.csv", "worst case over attacks"),
         ("metrics.json", "headline, clean and worst-case numbers"),
         ("adversarial.csv", "adversarial records (advsec export)"),
         ("adversarial.parquet", "adversarial records (advsec export)"),
         ("config.toml", "the configuration"), ("run.log", "the log"))


def data_facts(ds: Any, *, seed: int, n_train: int, n_eval: int,
               max_train_rows: int | None, max_eval_rows: int | None,
               encoding_notes: list[str] | None = None) -> dict[str, Any]:
    """What a report states about the data of one seed (JSON-able).

    Args:
        ds: the loaded :class:`~advsec.datasets.Dataset`.
        n_train: training rows used (after ``max_train_rows``); n_eval: evaluation rows.
        encoding_notes: what the FeatureSpace changes when it encodes the evaluation records
            (:func:`advsec.features.coverage.encoding_notes`).
    """
    y_train, y_test = ds.labels("train"), ds.labels("test")
    train_classes = sorted(set(y_train))
    test_counts = pd.Series(y_test).value_counts()
    features = [{"feature": f.name, "kind": f.kind.value, "mutable": bool(f.mutable),
                 "direction": str(getattr(f, "direction", "any") or "any") if f.mutable else ""}
                for f in ds.schema]
    return {
        "seed": seed, "dataset": ds.name, "scheme": ds.scheme, "label": ds.label,
        "benign_label": str(ds.benign_label), "classes": [str(c) for c in ds.classes],
        "rows": {"train (loaded)": len(ds.train), "train (used)": n_train,
                 "test": len(ds.test), "evaluation subset": n_eval},
        "max_train_rows": max_train_rows, "max_eval_rows": max_eval_rows,
        "test_class_counts": {str(k): int(v) for k, v in test_counts.items()},
        "test_only_classes": sorted(set(str(c) for c in y_test) - set(train_classes)),
        "notes": [str(n) for n in ds.notes],
        "encoding_notes": [str(n) for n in encoding_notes or []],
        "features": features,
    }


def read_data_facts(run: Path) -> list[dict[str, Any]]:
    """The ``data/s<seed>.json`` files of ``run``, by seed (empty for older runs); one that is
    not a JSON object is a one-line DataError naming it."""
    folder = run / "data"
    if not folder.is_dir():
        return []
    return [read_json(p) for p in sorted(folder.glob("s*.json"))]


def data_section(run: Path, cfg: dict[str, Any], *, n_eval: int | None = None) -> Section:
    """The "Data" section of run directory ``run`` (configuration ``cfg``)."""
    facts = read_data_facts(run)
    data_cfg = cfg.get("data", {})
    body: list[str] = []
    if not facts:
        body.append(f"<p>Dataset {escape(str(data_cfg.get('dataset', '?')))}; this run "
                    "directory records no data facts (made by an older advsec).</p>")
    else:
        f = facts[0]
        rows = f["rows"]
        cap = f.get("max_eval_rows")
        drawn = (f"{rows['evaluation subset']:,} of the {rows['test']:,} test records, drawn "
                 "uniformly at random without replacement with each seed's generator "
                 f"(max_eval_rows = {cap}); every attack and the clean ε = 0 row use the same "
                 "records" if rows["evaluation subset"] < rows["test"] else
                 f"the whole test split ({rows['test']:,} records)")
        train = (f"{rows['train (used)']:,} of {rows['train (loaded)']:,} (max_train_rows = "
                 f"{f.get('max_train_rows')}, drawn at random)"
                 if rows["train (used)"] < rows["train (loaded)"] else f"{rows['train (used)']:,}")
        only = f.get("test_only_classes") or []
        hidden = [n for n in f.get("notes", []) if "absent from training" in n]
        body.append(kv_html({
            "dataset": f"{f['dataset']} (label column {f['label']})",
            "label scheme": f"{f['scheme']}: classes {', '.join(f['classes'])}; benign class "
                            f"{f['benign_label']}, every other class counts as malicious",
            "training rows": train,
            "test rows": f"{rows['test']:,} ("
                         + ", ".join(f"{k}: {v:,}" for k, v in f["test_class_counts"].items())
                         + ")",
            "evaluation subset": drawn,
            "classes seen only in test": ", ".join(only) if only else
            ("; ".join(hidden) if hidden else "none"),
            "seeds": ", ".join(str(x["seed"]) for x in facts)
                     + (" (row counts of the first seed shown)" if len(facts) > 1 else ""),
        }))
        if f.get("notes"):
            body.append("<h3>Loading notes</h3><ul>" + "".join(
                f"<li>{escape(n)}</li>" for n in f["notes"]) + "</ul>")
        if f.get("encoding_notes"):
            body.append('<h3 id="encoding-notes">How the detectors see the evaluation records'
                        "</h3><p>Every detector scores (and every attack starts from) a record "
                        "as the FeatureSpace fitted on the training split encodes it: values "
                        "outside the training range are clipped to it, categories it never saw "
                        "become &lt;other&gt;.</p><ul>" + "".join(
                            f"<li>{escape(n)}</li>" for n in f["encoding_notes"]) + "</ul>")
        feats = pd.DataFrame(f.get("features", []))
        if not feats.empty:
            mut = feats[feats.mutable]
            fixed = feats[~feats.mutable].feature.tolist()
            body.append(f"<h3>What the attacker may change</h3><p>{len(mut)} of {len(feats)} "
                        "features are attacker-controlled in valid-record attacks"
                        + (f"; fixed: {escape(', '.join(fixed))}" if fixed else "")
                        + ". Direction <i>increase</i>: the attacker can only add (bytes, "
                        "duration); <i>any</i>: up or down.</p>")
            if not mut.empty:
                body.append(nice_table(mut[["feature", "kind", "direction"]],
                                       caption="Attacker-controlled features", fold=False,
                                       collapse=10))
    if n_eval is not None and not facts:
        body.append(f"<p>Evaluation subset: {n_eval:,} test records per seed.</p>")
    links = [f'<li><a href="{name}">{name}</a>: {escape(what)}</li>'
             for name, what in LINKS if (run / name).exists()]
    if links:
        body.append("<h3>Files of this run</h3><ul>" + "".join(links) + "</ul>")
    return Section("Data", body)
