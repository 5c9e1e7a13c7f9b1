"""``advsec train``: train a detector on a dataset or a CSV/Parquet file and save it with its
FeatureSpace and how its table was read, ready for ``advsec attack --model``.

Errors are :class:`~advsec.errors.AdvsecError` with a one-line message; the main app prints
it and exits 2. Nothing is written before the data, the options and the output path check out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from advsec.cli.common import console, err_console, rate
from advsec.errors import ConfigError

__all__ = ["KINDS", "train_command", "train_detector"]

#: detector kinds ``advsec train`` saves, and the files each writes: the MLP as safetensors +
#: JSON, scikit-learn ensembles in advsec's JSON tree format (:mod:`advsec.models.trees`),
#: XGBoost / LightGBM in their own JSON / text formats beside advsec's JSON
#: (:mod:`advsec.models.boosters`, the extra ``advsec[trees]``)
KINDS = {
    "mlp": "OUT.safetensors + OUT.json",
    "random_forest": "OUT.json",
    "extra_trees": "OUT.json",
    "hist_gradient_boosting": "OUT.json",
    "xgboost": "OUT.json + OUT.xgboost.json",
    "lightgbm": "OUT.json + OUT.lightgbm.txt",
}


def train_command(
    data: str = typer.Argument(..., help="A registered dataset (see `advsec data list`) or a "
                               "CSV/Parquet file."),
    label_column: str | None = typer.Option(None, "--label-column", help="Files: the label "
                                            "column."),
    benign_label: str | None = typer.Option(None, "--benign-label", help="Files: the benign "
                                            "label (default: guessed)."),
    delimiter: str | None = typer.Option(None, "--delimiter", help="Files: the CSV field "
                                         "separator (default ','); kept with the model."),
    schema: Path | None = typer.Option(None, "--schema", help="A TOML/YAML schema file that "
                                       "changes or replaces the feature schema."),
    root: Path | None = typer.Option(None, "--root", help="Registered datasets: the folder "
                                     "with its files."),
    scheme: str | None = typer.Option(None, "--scheme", help="Label scheme (binary by "
                                      "default)."),
    kind: str = typer.Option("mlp", "--kind", help="Detector: mlp, random_forest, "
                             "extra_trees, hist_gradient_boosting, xgboost or lightgbm (the "
                             "last two need the extra advsec[trees])."),
    hidden: str = typer.Option("128,64", "--hidden", help="MLP hidden layer sizes."),
    epochs: int = typer.Option(10, "--epochs", help="Training epochs."),
    batch_size: int = typer.Option(256, "--batch-size", help="Minibatch size."),
    lr: float | None = typer.Option(None, "--lr", help="Learning rate (default: 1e-3 for "
                                    "the MLP's Adam, 0.1 for boosted trees)."),
    n_estimators: int = typer.Option(100, "--n-estimators", help="Tree kinds: number of "
                                     "trees (boosting: of iterations)."),
    max_depth: int | None = typer.Option(None, "--max-depth", help="Tree kinds: depth limit "
                                         "(default: none; XGBoost's own default 6)."),
    max_train_rows: int | None = typer.Option(None, "--max-train-rows", help="Train on a "
                                              "seeded sample of at most N training rows."),
    seed: int = typer.Option(0, "--seed", help="Seed of the split, the sample and training."),
    out: Path = typer.Option(Path("models/detector"), "--out", "-o", help="Model path prefix: "
                             "writes OUT.json (plus OUT.safetensors for the MLP, "
                             "OUT.xgboost.json / OUT.lightgbm.txt for boosters) and "
                             "OUT.metrics.json."),
    force: bool = typer.Option(False, "--force", help="Replace an existing model."),
    device: str = typer.Option("cpu", "--device", help="MLP training device: cpu, cuda "
                               "(cuda:N) or auto (CUDA when present)."),
) -> None:
    """Train a detector on a dataset or a CSV/Parquet file and save it, never as pickle.

    Files: the MLP as OUT.safetensors + OUT.json; random_forest, extra_trees and
    hist_gradient_boosting as OUT.json (advsec's tree format: thresholds, children, leaf
    values); xgboost and lightgbm as OUT.json beside the library's own OUT.xgboost.json /
    OUT.lightgbm.txt. Each reloads with identical predictions.

    Prints the clean accuracy, detection rate and false-positive rate on the test split, and a
    red flag when the detector leaks (near-perfect) or predicts a single class. The model keeps
    its FeatureSpace and how its table was read: `advsec attack --model OUT --data FILE`
    (gradient attacks for the MLP; square and hopskipjump for every kind).
    """
    summary = train_detector(
        data=data, label_column=label_column, benign_label=benign_label, schema=schema,
        delimiter=delimiter, root=root, scheme=scheme, kind=kind, hidden=hidden, epochs=epochs,
        batch_size=batch_size, lr=lr, n_estimators=n_estimators, max_depth=max_depth,
        max_train_rows=max_train_rows, seed=seed, out=out, force=force, device=device)
    m = summary["metrics"]
    for note in summary["notes"]:
        console.print(f"note (test split): {note}", soft_wrap=True, markup=False,
                      highlight=False)
    for flag in summary["red_flags"]:
        err_console.print(f"red flag: {flag}", markup=False, highlight=False)
    console.print(f"wrote {summary['files']}", markup=False, highlight=False)
    # the last lines: the clean metrics in one sentence, then the model path
    console.print(f"{kind} detector on {data}, clean test split: accuracy {rate(m['accuracy'])}, "
                  f"detection rate {rate(m['detection_rate'])}, false-positive rate "
                  f"{rate(m['fpr'])} ({summary['test_rows']:,} records"
                  + (f"; {len(summary['red_flags'])} red flag(s) above" if summary["red_flags"]
                     else "") + ").", soft_wrap=True, markup=False, highlight=False)
    console.print(f"model: {summary['model']}", soft_wrap=True, markup=False, highlight=False)


def train_detector(
    *, data: str, label_column: str | None, benign_label: str | None, schema: Path | None,
    root: Path | None, scheme: str | None, kind: str, hidden: str, epochs: int,
    batch_size: int, lr: float | None, max_train_rows: int | None, seed: int, out: Path,
    force: bool,
    n_estimators: int = 100, max_depth: int | None = None, device: str = "cpu",
    delimiter: str | None = None,
) -> dict[str, Any]:
    """The work behind ``advsec train``; returns ``{"metrics", "model", "files", "test_rows",
    "red_flags", "notes"}`` (``notes``: what the FeatureSpace changes in the test split)."""
    import numpy as np

    from advsec.cli.common import cli_delimiter, parse_floats, table_file
    from advsec.datasets import get_loader, load
    from advsec.evaluation.honesty import check_clean
    from advsec.experiments.dataload import READ_OPTIONS
    from advsec.features.coverage import encoding_notes
    from advsec.features.space import FeatureSpace
    from advsec.models.detector import resolve_device
    from advsec.models.io import split_model_path
    from advsec.models.metrics import detection_metrics
    from advsec.reporting.html import json_text

    if kind not in KINDS:
        raise ConfigError(f"--kind: expected one of {', '.join(KINDS)}, got {kind!r}")
    try:
        dev = str(resolve_device(device))
    except ConfigError as exc:
        raise ConfigError(f"--device: {exc}") from None
    sizes = [int(v) for v in parse_floats(hidden, option="--hidden")]
    if not sizes or any(v < 1 for v in sizes) or any(
            float(v) != f for v, f in zip(sizes, parse_floats(hidden, option="--hidden"),
                                          strict=True)):
        raise ConfigError(f"--hidden: expected positive whole layer sizes, got {hidden!r}")
    if max_depth is not None and max_depth < 1:
        raise ConfigError(f"--max-depth: must be >= 1, got {max_depth}")
    for name, value in (("--epochs", epochs), ("--batch-size", batch_size),
                        ("--n-estimators", n_estimators)):
        if value < 1:
            raise ConfigError(f"{name}: must be >= 1, got {value}")
    if lr is not None and not lr > 0:
        raise ConfigError(f"--lr: must be > 0, got {lr}")
    if kind in ("xgboost", "lightgbm"):
        from advsec.models.boosters import require

        require(kind)
    if max_train_rows is not None and max_train_rows < 1:
        raise ConfigError(f"--max-train-rows: must be >= 1, got {max_train_rows}")
    weights, meta = split_model_path(out)
    existing = [p for p in (weights, meta, *_native_files(meta)) if p.exists()]
    if existing and not force:
        raise ConfigError(f"{existing[0]}: a model already exists (use --force to replace it)")
    if not weights.parent.is_dir():
        raise ConfigError(f"--out: folder {weights.parent} does not exist")
    options: dict[str, Any] = {"seed": seed}
    path = table_file(data)
    if path is not None:
        name = "tabular"
        if label_column is None:
            raise ConfigError(f"{data}: pass --label-column, the column that holds the labels")
        options.update(path=path, label_column=label_column)
        if benign_label is not None:
            options["benign_label"] = benign_label
        if delimiter is not None:
            options["delimiter"] = cli_delimiter(delimiter)
    else:
        name = data
        get_loader(name)
        for option, given in (("--label-column", label_column), ("--benign-label", benign_label),
                              ("--delimiter", delimiter)):
            if given is not None:
                raise ConfigError(f"{option}: only for CSV/Parquet files; {name!r} is a "
                                  f"registered dataset with its own labels")
        if root is not None:
            options["root"] = root
    if scheme is not None:
        options["scheme"] = scheme
    if schema is not None:
        options["schema_file"] = schema
    ds = load(name, **options)
    train = ds.train
    if max_train_rows is not None and len(train) > max_train_rows:
        rng = np.random.default_rng(seed)
        train = train.iloc[np.sort(rng.choice(len(train), max_train_rows, replace=False))]
    space = FeatureSpace(ds.schema).fit(train)
    x_train, y_train = space.encode(train), train[ds.label].astype(str).to_numpy()
    det: Any
    if kind == "mlp":
        det = _fit_mlp(x_train, y_train, sizes=sizes, epochs=epochs, batch_size=batch_size,
                       lr=1e-3 if lr is None else lr, seed=seed, device=dev)
    else:
        det = _fit_trees(x_train, y_train, kind=kind, n_estimators=n_estimators,
                         max_depth=max_depth, lr=0.1 if lr is None else lr, seed=seed)
    classes = [str(c) for c in det.classes_]
    x_test = space.encode(ds.test)
    y_test = det.encode_labels(ds.test[ds.label].astype(str).to_numpy()).numpy()
    proba = det.predict_proba(x_test)
    benign = classes.index(str(ds.benign_label)) if str(ds.benign_label) in classes else 0
    metrics = detection_metrics(y_test, proba.argmax(1), proba=proba, benign_class=benign)
    flags = check_clean(y_test, proba.argmax(1), proba=proba, benign_class=benign,
                        classes=classes)
    kept = {k: v for k, v in options.items() if k in READ_OPTIONS}  # as `advsec run` keeps
    kept.update(benign_label=str(ds.benign_label), scheme=ds.scheme)
    record = {"dataset": name, "options": kept}
    for stale in existing:  # --force: no file of an earlier model of another kind stays
        stale.unlink()
    if kind == "mlp":
        det.save(out, feature_space=space, data=record)
        files = f"{weights} + {meta}"
    else:
        det.feature_space_, det.data_ = space, record
        saved = det.save(meta)
        files = " + ".join(str(p) for p in (saved if isinstance(saved, tuple) else (saved,)))
    notes = encoding_notes(space, ds.test, rows=False)  # what the model sees of the test split
    meta.with_name(meta.stem + ".metrics.json").write_text(json_text(
        {"test": metrics, "test_rows": len(ds.test), "train_rows": len(train),
         "encoding_notes": notes}))
    return {"metrics": metrics, "model": str(out), "files": files, "test_rows": len(ds.test),
            "red_flags": [f"{f.name}: {f.detail}" for f in flags if not f.ok], "notes": notes}


def _fit_mlp(x: Any, y: Any, *, sizes: list[int], epochs: int, batch_size: int, lr: float,
             seed: int, device: str = "cpu") -> Any:
    """An advsec MLP Detector trained on ``x`` ``(N, D)``, labels ``y``, with a progress bar."""
    from advsec.models import Detector

    det = Detector(hidden=tuple(sizes), epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                   device=device)
    with Progress(TextColumn("training"), BarColumn(), TextColumn("{task.description}"),
                  TimeElapsedColumn(), console=err_console, transient=True) as bar:
        task = bar.add_task("", total=epochs)

        def step(entry: dict[str, float]) -> None:
            shown = ", ".join(f"{k} {v:.4f}" for k, v in entry.items() if k != "epoch")
            bar.update(task, advance=1, description=shown)

        det.fit(x, y, callback=step)
    return det


def _fit_trees(x: Any, y: Any, *, kind: str, n_estimators: int, max_depth: int | None,
               lr: float, seed: int) -> Any:
    """A tree ensemble of ``kind`` on ``x`` ``(N, D)``, labels ``y``: scikit-learn's as a
    :class:`~advsec.models.trees.TreeEnsemble`, XGBoost / LightGBM as a
    :class:`~advsec.models.boosters.BoostedTrees` (identical predictions, no pickle)."""
    import torch

    from advsec.models.trees import TreeEnsemble

    threads = torch.get_num_threads()  # the CLI's thread policy
    with err_console.status(f"training {n_estimators} trees ({kind})"):
        if kind in ("xgboost", "lightgbm"):
            from advsec.models.boosters import BoostedTrees

            return BoostedTrees.fit(x, y, kind=kind, n_estimators=n_estimators,
                                    max_depth=max_depth, learning_rate=lr, seed=seed,
                                    threads=threads)
        from sklearn.ensemble import (
            ExtraTreesClassifier,
            HistGradientBoostingClassifier,
            RandomForestClassifier,
        )

        model: Any
        if kind == "hist_gradient_boosting":
            model = HistGradientBoostingClassifier(
                max_iter=n_estimators, max_depth=max_depth, learning_rate=lr,
                early_stopping=False, random_state=seed)
        else:
            cls = RandomForestClassifier if kind == "random_forest" else ExtraTreesClassifier
            model = cls(n_estimators=n_estimators, max_depth=max_depth, random_state=seed,
                        n_jobs=1)
        return TreeEnsemble.from_sklearn(model.fit(x, y))


def _native_files(meta: Path) -> list[Path]:
    """The booster files a model at ``meta`` (``OUT.json``) may have beside it."""
    stem = meta.name[:-5]
    return [meta.with_name(stem + ".xgboost.json"), meta.with_name(stem + ".lightgbm.txt")]
