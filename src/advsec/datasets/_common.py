"""Helpers shared by the dataset loaders: built-in schemas, label schemes, duplicates, Dataset."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import replace
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from advsec.datasets._checks import SOURCE_COLUMNS, check_classes, check_values
from advsec.datasets.base import Dataset
from advsec.errors import ConfigError, DataError
from advsec.features.schema import FeatureKind, FeatureSchema

__all__ = [
    "LABEL",
    "builtin_schema",
    "check_scheme",
    "coerce_dtypes",
    "counts_note",
    "drop_duplicate_rows",
    "finish",
    "order_classes",
    "to_pandas",
]

log = logging.getLogger(__name__)

#: Name of the scheme label column in every loaded table.
LABEL = "label"
SCHEMA_DIR = Path(__file__).with_name("schemas")


@cache
def _builtin(name: str) -> FeatureSchema:
    return FeatureSchema.from_file(SCHEMA_DIR / f"{name}.toml")


def builtin_schema(
    name: str, *, benign_label: str, schema_file: str | Path | None = None,
    columns: Sequence[str] | None = None,
) -> FeatureSchema:
    """The packaged schema ``schemas/<name>.toml`` with ``label`` = :data:`LABEL` and the given
    benign label, changed by the user's ``schema_file`` (TOML/YAML) when one is given."""
    schema = replace(_builtin(name), label=LABEL, benign_label=benign_label)
    if schema_file is not None:
        schema = FeatureSchema.from_file(schema_file, base=schema, columns=columns)
        schema = replace(schema, label=LABEL, benign_label=benign_label)
    return schema


def check_scheme(dataset: str, scheme: str, allowed: Sequence[str]) -> str:
    """``scheme`` if it is one of ``allowed``; a one-line :class:`ConfigError` otherwise."""
    if scheme not in allowed:
        raise ConfigError(
            f"{dataset}: label scheme must be one of {', '.join(allowed)}; got {scheme!r}"
        )
    return scheme


def order_classes(
    benign: str, train: Iterable[str], test: Iterable[str], *, fixed: Sequence[str] = ()
) -> list[str]:
    """Class labels, benign first, then ``fixed`` (in that order), then the other training labels
    sorted, then labels only the test split has, sorted."""
    seen_train = set(map(str, train))
    seen_test = set(map(str, test))
    out = [benign, *[c for c in fixed if c != benign]]
    out += sorted(seen_train - set(out))
    out += sorted(seen_test - set(out))
    return out


def drop_duplicate_rows(
    table: pd.DataFrame, columns: Sequence[str], *, split: str, notes: list[str]
) -> pd.DataFrame:
    """``table`` without exact duplicate rows over ``columns`` (first kept); adds a note."""
    dup = table.duplicated(subset=list(columns), keep="first").to_numpy()
    if dup.any():
        notes.append(f"{split}: dropped {int(dup.sum()):,} exact duplicate rows "
                     f"({len(table) - int(dup.sum()):,} kept)")
        table = table.loc[~dup].reset_index(drop=True)
    return table


def counts_note(split: str, labels: pd.Series) -> str:
    """A short note with the label counts of one split."""
    counts = labels.value_counts()
    body = ", ".join(f"{k}: {v:,}" for k, v in counts.items())
    return f"{split}: {len(labels):,} rows ({body})"


def to_pandas(table: pa.Table, schema: FeatureSchema) -> pd.DataFrame:
    """A pyarrow table as pandas, typed by :func:`coerce_dtypes`."""
    return coerce_dtypes(table.to_pandas(), schema)


def coerce_dtypes(df: pd.DataFrame, schema: FeatureSchema) -> pd.DataFrame:
    """``df`` with categorical features as strings, continuous ones as float64 and integer and
    binary ones as int64 (when every value is a whole number of magnitude at most 2**53; left as
    float64 otherwise)."""
    for f in schema:
        if f.name not in df.columns:
            continue
        if f.kind is FeatureKind.CATEGORICAL:
            if not pd.api.types.is_string_dtype(df[f.name].dtype):
                df[f.name] = df[f.name].astype("string")
        elif f.kind is FeatureKind.CONTINUOUS:
            if df[f.name].dtype != np.float64:
                df[f.name] = df[f.name].astype(np.float64)
        elif df[f.name].dtype != np.int64:
            values = df[f.name].to_numpy(dtype=np.float64, na_value=np.nan)
            # whole numbers that int64 holds exactly (beyond 2**53 float64 is not exact)
            if (np.all(np.isfinite(values)) and np.array_equal(np.floor(values), values)
                    and bool(np.all(np.abs(values) <= 2.0**53))):
                df[f.name] = values.astype(np.int64)
    return df


def finish(
    *,
    name: str,
    train: pd.DataFrame,
    test: pd.DataFrame,
    schema: FeatureSchema,
    scheme: str,
    classes: list[str],
    notes: list[str],
    extra: Sequence[str] = (),
    label_column: str | None = None,
    source: str | None = None,
    allow_below: bool = False,
) -> Dataset:
    """The :class:`Dataset`: tables restricted to features, label and ``extra`` columns.

    Both splits are checked first (:func:`~advsec.datasets._checks.check_values`: numbers,
    finite, within the schema's bounds or clipped; ``allow_below`` keeps values below a lower
    bound) and typed (:func:`coerce_dtypes`); the training split must hold two classes or more
    (an error names ``source`` (default ``name``) and ``label_column``, the column the labels
    came from). The hidden source columns are dropped.
    """
    keep = [*schema.names, schema.label, *[c for c in extra if c not in schema.names]]
    out: list[pd.DataFrame] = []
    notes = list(notes)
    for split, table in (("train", train), ("test", test)):
        missing = [c for c in keep if c not in table.columns]
        if missing:
            raise DataError(f"{name}: {split} table lacks column(s) {missing}")
        if len(table) == 0:
            raise DataError(f"{name}: the {split} split is empty")
        hidden = [c for c in SOURCE_COLUMNS if c in table.columns]
        table = table[[*keep, *hidden]].reset_index(drop=True)
        table = check_values(table, schema, fallback=f"{name} {split} split", notes=notes,
                             allow_below=allow_below, training=split == "train")
        table = coerce_dtypes(table[keep], schema)
        table[schema.label] = table[schema.label].astype("string")
        out.append(table)
    train, test = out
    check_classes(train[schema.label], column=label_column or schema.label,
                  where=source or name, scheme=scheme)
    notes = [*notes, counts_note("train", train[schema.label]),
             counts_note("test", test[schema.label])]
    for note in notes:
        log.info("%s: %s", name, note)
    return Dataset(name=name, train=train, test=test, schema=schema, scheme=scheme,
                   classes=classes, notes=notes)
