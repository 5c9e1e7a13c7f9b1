"""The records ``advsec attack`` reads and writes back.

Read: every row of a ``--data`` file as the model's training table was read (its stored label
column, benign label, separator; the file's benign label mapped onto the model's), or a split
of a registered dataset; a ``--schema`` file's changes to the model's space (never its
encoding) and the bounds it changes, held on the records. Written: one block of
``adversarial.csv`` per ε, each record in all its original columns.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from advsec.errors import ConfigError, DataError

if TYPE_CHECKING:
    from advsec.features.schema import FeatureSchema
    from advsec.features.space import FeatureSpace

__all__ = ["EXPORT_FRONT", "check_new_bounds", "decode_records", "exported_block",
           "load_split", "read_like_training", "record_columns", "with_schema_file"]


def read_like_training(space: FeatureSpace, stored: dict[str, Any] | None, model: Path,
                       data: Path, *, label_column: str | None, benign_label: str | None,
                       delimiter: str | None, scheme: str | None, notes: list[str]
                       ) -> tuple[pd.DataFrame, np.ndarray, str]:
    """``(table, labels, benign label)`` of every row of the file ``data``, read with the options
    the model was trained with (``stored``, the model JSON's ``data`` record), the CLI's where
    given; labels mapped as :func:`advsec.datasets.tabular.load_tabular` maps them (``binary``:
    the benign label, else ``"attack"``; ``attack``: kept). The model's schema decides the
    features (nothing is inferred). The file's benign label (``benign_label``, else the
    model's) is mapped to the model's benign class; a ``benign_label`` no row has is an error,
    and a file with no benign row gets a note (appended to ``notes``)."""
    from advsec.datasets.tabular import SCHEMES, benign_label_of, read_table

    opts = dict(stored["options"]) if stored else {}
    column = label_column if label_column is not None else opts.get("label_column")
    if column is None:
        raise ConfigError(f"--data: {model} does not say which column holds the labels (it "
                          f"was saved without data options); pass --label-column")
    if str(column) in space.schema.names:
        raise ConfigError(f"--label-column {column!r} is a feature of the model {model}; pass "
                          f"the column that holds the labels")
    how = scheme if scheme is not None else str(opts.get("scheme", "binary"))
    if how not in SCHEMES:
        raise ConfigError(f"--scheme: a --data table has the scheme binary or attack, got "
                          f"{how!r}")
    table = read_table(data, label_column=str(column),
                       delimiter=delimiter if delimiter is not None
                       else str(opts.get("delimiter", ",")))
    missing = [n for n in space.schema.names if n not in table.columns]
    if missing:
        raise DataError(f"{data}: no column {missing[0]!r} (the model {model} was trained "
                        f"with it)")
    benign = benign_label if benign_label is not None else opts.get("benign_label")
    if benign is None:  # guessed as the loader guesses it
        benign = benign_label_of(table, label_column=str(column), benign_label=None, notes=[])
    raw = table[str(column)].astype(str).to_numpy()
    if not (raw == str(benign)).any():
        held = sorted(set(raw))
        shown = ", ".join(map(repr, held[:5])) + (", ..." if len(held) > 5 else "")
        if benign_label is not None:
            raise DataError(f"{data}: no row has the benign label {benign_label!r} given by "
                            f"--benign-label (column {column!r} holds {shown})")
        notes.append(f"no record has the model's benign label {str(benign)!r} (column "
                     f"{column!r} holds {shown}): every record counts as malicious; pass "
                     f"--benign-label when the file names benign records otherwise")
    # the model's own name for the benign class (its training table's benign label)
    model_benign = str(opts.get("benign_label", benign))
    if how == "binary":
        raw = np.where(raw == str(benign), model_benign, "attack")
    elif str(benign) != model_benign:
        raw = np.where(raw == str(benign), model_benign, raw)
    return table, raw, model_benign


def load_split(stored: dict[str, Any] | None, model: Path, dataset: str | None, *,
               root: Path | None, split: str, seed: int, scheme: str | None,
               label_column: str | None, benign_label: str | None
               ) -> tuple[str, pd.DataFrame, np.ndarray, str]:
    """``(dataset, table, labels, benign label)``: the ``split`` of a registered dataset
    (default: the model's), loaded with the model's stored options when it is the model's
    dataset, the CLI's on top."""
    from advsec.datasets import load

    name = dataset or (stored["dataset"] if stored else "synthetic")
    options: dict[str, Any] = dict(stored["options"]) if stored and stored[
        "dataset"] == name else {}
    options["seed"] = seed
    if root is not None:
        options["root"] = str(root)
    elif name == "tabular" and "path" not in options:
        raise ConfigError(f"{model} was trained on a table file: pass --data FILE (every row) "
                          f"or --dataset tabular --root FILE (its --split)")
    for key, value in (("scheme", scheme), ("label_column", label_column),
                       ("benign_label", benign_label)):
        if value is not None:
            options[key] = value
    ds = load(name, **options)
    table = ds.test if split == "test" else ds.train
    return name, table, table[ds.label].astype(str).to_numpy(), str(ds.benign_label)


def with_schema_file(space: FeatureSpace, schema: Path, model: Path) -> FeatureSpace:
    """The model's space under the changes of the schema file ``schema`` (mutability, bounds,
    relations); a change of the encoding (features, their order or kinds) is a ConfigError."""
    from advsec.features.schema import FeatureSchema
    from advsec.features.space import FeatureSpace as Space

    base = space.schema
    new = FeatureSchema.from_file(schema, base=base)
    before = [(f.name, f.kind) for f in base.features]
    after = [(f.name, f.kind) for f in new.features]
    if after != before:
        at = next((i for i, (a, b) in enumerate(zip(after, before, strict=False)) if a != b),
                  min(len(after), len(before)))
        first = (before if at < len(before) else after)[at][0]
        raise ConfigError(f"--schema {schema}: changes feature {first!r} of the encoding the "
                          f"model {model} was trained with (features, their order and kinds "
                          f"are fixed); only mutability, bounds and relations may change")
    return Space.from_dict({**space.to_dict(), "schema": new.to_dict()})


def check_new_bounds(table: pd.DataFrame, before: FeatureSchema, after: FeatureSchema, *,
                     where: str, notes: list[str]) -> pd.DataFrame:
    """``table`` with the numeric bounds a --schema file changed (``before`` -> ``after``)
    enforced as loading enforces a schema's bounds: a value outside is a one-line DataError
    naming the row, or clipped where the feature says ``on_bound_violation = "clip"``."""
    from dataclasses import replace

    from advsec.datasets._checks import check_values

    old = {f.name: (f.lower, f.upper) for f in before}
    changed = tuple(f for f in after if f.is_numeric and (f.lower, f.upper) != old.get(f.name))
    if not changed:
        return table
    return check_values(table.copy(), replace(after, features=changed), fallback=where,
                        notes=notes)


def record_columns(table: pd.DataFrame) -> list[str]:
    """The columns of an exported record: every column of ``table`` as read (features, the
    label, columns the model leaves out), in the table's order, advsec's own source tags
    excluded."""
    from advsec.datasets._checks import SOURCE_COLUMNS

    return [str(c) for c in table.columns if c not in SOURCE_COLUMNS]


#: the exported front columns, renamed ``advsec_NAME`` where a record has a column NAME
EXPORT_FRONT = {"label": "true_label"}


def exported_block(front: pd.DataFrame, raw: pd.DataFrame, table: pd.DataFrame,
                   columns: list[str]) -> pd.DataFrame:
    """One ε block of ``adversarial.csv``: the front columns (the true label as
    ``true_label``), then each record in its original columns: the decoded features ``raw``
    and, for the table's other columns, its values as read (the attack does not touch them)."""
    head = front.rename(columns=EXPORT_FRONT)
    head = head.rename(columns={c: f"advsec_{c}" for c in head.columns if c in columns})
    body = pd.DataFrame({c: raw[c] if c in raw.columns else table[c].reset_index(drop=True)
                         for c in columns})
    return pd.concat([head, body], axis=1)


def decode_records(space: FeatureSpace, xa: torch.Tensor, table: pd.DataFrame) -> pd.DataFrame:
    """Records in their original columns (N rows); every feature the attack left unchanged
    keeps the raw value of ``table`` (N rows), a category unseen in training included, not
    ``<other>``."""
    return space.decode(xa, reference=table[space.schema.names].reset_index(drop=True))
