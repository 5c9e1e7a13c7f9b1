"""The dataset of an experiment: the loader call it makes, and the reading options a saved
detector keeps so that ``advsec attack --model M --data FILE`` reads a table as training did."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from advsec.datasets import Dataset, load
from advsec.experiments.config import FILE_DATASETS

if TYPE_CHECKING:
    from advsec.experiments.config import ExperimentConfig

__all__ = ["READ_OPTIONS", "data_record", "load_dataset", "loader_call"]

#: loader options that say how a table is read (kept with a saved detector); paths, splits and
#: seeds are not among them
READ_OPTIONS = ("label_column", "benign_label", "scheme", "delimiter", "max_categories",
                "drop_duplicates", "discover")


def loader_call(cfg: ExperimentConfig, seed: int) -> tuple[str, dict[str, Any]]:
    """``(loader name, options)`` of the configured dataset for ``seed``."""
    d = cfg.data
    opts: dict[str, Any] = {**d.options, "seed": seed}
    if d.dataset in FILE_DATASETS:
        opts.update(path=d.path, label_column=d.label_column, test_path=d.test_path)
        if d.benign_label is not None:
            opts["benign_label"] = d.benign_label
        name = "tabular"
    else:
        name = d.dataset
        if d.root is not None:
            opts["root"] = d.root
        if d.scheme != "binary" or name != "synthetic":
            opts["scheme"] = d.scheme
    if d.schema_file is not None:
        opts["schema_file"] = d.schema_file
    return name, opts


def load_dataset(cfg: ExperimentConfig, seed: int) -> Dataset:
    """The configured dataset with schema overrides applied (``seed`` for splits/generation)."""
    name, opts = loader_call(cfg, seed)
    ds = load(name, **opts)
    if cfg.data.schema_overrides:
        ds.schema = ds.schema.with_overrides(cfg.data.schema_overrides)
    return ds


def data_record(cfg: ExperimentConfig, ds: Dataset) -> dict[str, Any]:
    """``{"dataset": name, "options": {...}}``: how the detector's training table was read
    (the :data:`READ_OPTIONS` given, and the benign label in effect), JSON-able."""
    name, opts = loader_call(cfg, 0)
    kept = {k: v for k, v in opts.items() if k in READ_OPTIONS and v is not None}
    kept["benign_label"] = str(ds.benign_label)
    kept.setdefault("scheme", ds.scheme)
    return {"dataset": name, "options": kept}
