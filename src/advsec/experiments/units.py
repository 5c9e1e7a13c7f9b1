"""The units of work of ``advsec run``: combinations, and the prepared data of one seed.

A combination (:class:`Combination`) is (seed, detector, defence); :func:`plan` lists them in
execution order. Its result depends only on its seed and the configuration: the data of a seed
are loaded, subsampled and encoded from that seed alone (:func:`prepare`), and every random draw
after that is seeded by it (training, hardening, attacks, baselines), so the executor that runs
it, the worker and the order do not change a number (:mod:`advsec.experiments.executors`).
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from advsec.datasets import Dataset
from advsec.errors import DataError
from advsec.evaluation import Flag
from advsec.evaluation.honesty import check_single_feature
from advsec.experiments.config import (
    FILE_DATASETS,
    DefenseConfig,
    DetectorConfig,
    ExperimentConfig,
)
from advsec.experiments.dataload import data_record, load_dataset
from advsec.features.space import FeatureSpace

__all__ = ["Combination", "Prepared", "check_splits", "data_name", "plan", "prepare",
           "write_data_facts"]


@dataclass(frozen=True)
class Combination:
    """One unit of work: a seed, an MLP detector and a defence (``None``: undefended)."""

    seed: int
    detector: DetectorConfig
    defense: DefenseConfig | None

    @property
    def key(self) -> str:
        """Folder name: ``s<seed>__<detector>__<defence or none>``."""
        d = self.defense.label if self.defense else "none"
        return f"s{self.seed}__{self.detector.name}__{d}"

    @property
    def base_model(self) -> str:
        """The file name (in ``models/``, no suffix) of the undefended MLP this combination
        trains (no defence) or hardens (a defence)."""
        return f"{self.detector.name}-s{self.seed}"


def plan(cfg: ExperimentConfig) -> list[Combination]:
    """All combinations in execution order (seed, then detector, then defence with the
    undefended one first)."""
    mlps = [d for d in cfg.detectors if d.kind == "mlp"]
    defenses: list[DefenseConfig | None] = [None, *cfg.defenses]
    return [Combination(s, d, f) for s in cfg.experiment.seeds for d in mlps for f in defenses]


@dataclass
class Prepared:
    """One seed's data: the dataset, its fitted FeatureSpace, encoded splits, evaluation rows
    and the red flags of its training table."""
    ds: Dataset
    space: FeatureSpace
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    eval_idx: np.ndarray
    flags: list[Flag]
    data: dict[str, Any]


def prepare(cfg: ExperimentConfig, seed: int) -> Prepared:
    """Load and encode the data of ``seed`` (training rows and evaluation subset sampled with
    a generator of that seed only); returns them prepared."""
    ds = load_dataset(cfg, seed)
    rng = np.random.default_rng(seed)
    train = ds.train
    cut = ""
    if cfg.data.max_train_rows and len(train) > cfg.data.max_train_rows:
        train = train.iloc[np.sort(rng.choice(len(train), cfg.data.max_train_rows,
                                              replace=False))]
        cut = f" (max_train_rows = {cfg.data.max_train_rows})"
    check_splits(cfg, ds, train, seed, cut)
    space = FeatureSpace(ds.schema).fit(train)
    x_train = space.encode(train)
    x_test = space.encode(ds.test)
    y_train = train[ds.label].astype(str).to_numpy()
    y_test = ds.test[ds.label].astype(str).to_numpy()
    n_eval = cfg.data.max_eval_rows
    eval_idx = (np.sort(rng.choice(len(x_test), n_eval, replace=False))
                if n_eval and len(x_test) > n_eval else np.arange(len(x_test)))
    flags = [check_single_feature(train, y_train, ds.schema, seed=seed)]
    return Prepared(ds, space, x_train, y_train, x_test, y_test, eval_idx, flags,
                    data_record(cfg, ds))


def write_data_facts(cfg: ExperimentConfig, stage: Path, seed: int, p: Prepared) -> Path:
    """Write ``data/s<seed>.json``: what the report's data section states about the seed;
    returns its path.

    Several workers may write the same file at once (the same content): each writes a
    temporary file of its own (``data/.s<seed>.json.<id>.tmp``) and renames it into place."""
    from advsec.features.coverage import encoding_notes
    from advsec.reporting.data_section import data_facts

    evaluated = p.ds.test.iloc[p.eval_idx].reset_index(drop=True)
    facts = data_facts(p.ds, seed=seed, n_train=len(p.x_train), n_eval=len(p.eval_idx),
                       max_train_rows=cfg.data.max_train_rows,
                       max_eval_rows=cfg.data.max_eval_rows,
                       encoding_notes=encoding_notes(p.space, evaluated, rows=False))
    folder = stage / "data"
    folder.mkdir(exist_ok=True)
    path = folder / f"s{seed}.json"
    tmp = folder / f".{path.name}.{uuid.uuid4().hex}.tmp"
    try:
        tmp.write_text(json.dumps(facts, indent=2), encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def data_name(cfg: ExperimentConfig) -> str:
    """How errors name the data: the file, or the dataset (and its root)."""
    d = cfg.data
    if d.dataset in FILE_DATASETS:  # a file
        return str(d.path)
    return f"dataset {d.dataset!r}" + (f" ({d.root})" if d.root else "")


def check_splits(cfg: ExperimentConfig, ds: Dataset, train: pd.DataFrame, seed: int,
                 cut: str) -> None:
    """One-line DataErrors for splits no detector can be trained or scored on."""
    name = data_name(cfg)
    if len(train) == 0:
        raise DataError(f"{name}: the training split of seed {seed} is empty")
    if len(ds.test) == 0:
        raise DataError(f"{name}: the test split of seed {seed} is empty")
    if ds.label not in train.columns:
        raise DataError(f"{name}: no label column {ds.label!r}")
    classes = sorted(train[ds.label].astype(str).unique())
    if len(classes) < 2:
        raise DataError(f"{name}: the training split of seed {seed}{cut} has a single class "
                        f"({classes[0]!r}); a detector needs at least two")
    if str(ds.benign_label) not in classes:
        raise DataError(f"{name}: the benign label {ds.benign_label!r} does not occur in the "
                        f"training split of seed {seed}{cut} (classes: {', '.join(classes)}); "
                        "set [data] benign_label")
