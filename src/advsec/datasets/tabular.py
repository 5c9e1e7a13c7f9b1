"""Any labelled CSV or Parquet table, with its schema inferred or read from a schema file.

``load("tabular", path=FILE, label_column=..., benign_label=...)``. The label column is read as
text; the ``binary`` scheme maps the benign label to itself and every other value to
``"attack"``, the ``attack`` scheme keeps the values.

Schema inference (training rows only; a schema file's ``override``/``drop``/relations apply on
top, a schema file with a ``features`` list replaces it):

- integer columns whose values increase strictly from row to row (a row id or sequence number)
  and all-empty columns are left out, with a note;
- numeric columns: ``binary`` if every value is 0 or 1, ``integer`` if every value is whole,
  ``continuous`` otherwise; lower bound 0 when no value is negative; upper bound 1 for
  continuous columns within [0, 1] (shares); ``log1p`` for non-negative columns whose maximum
  exceeds 100 times (median + 1) (heavy tails); all mutable;
- text columns: a numeric column with a stray word in it (at least 90 % of values numbers) is an
  error naming the row; otherwise ``categorical`` and immutable if it has at most
  ``max_categories`` values, else left out with a note (addresses, timestamps, free text).

Bad input gives one-line :class:`~advsec.errors.DataError`: a missing label column, a numeric
column with an empty value or a stray word, a benign label that never occurs, a test file without
the training columns. A test label never seen in training is kept: under ``binary`` it is an
attack, under ``attack`` it becomes a class of its own and a note lists it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from advsec.datasets._common import (
    LABEL,
    check_scheme,
    coerce_dtypes,
    drop_duplicate_rows,
    finish,
    order_classes,
)
from advsec.datasets._readers import read_csv, read_parquet
from advsec.datasets._split import split_table
from advsec.datasets.base import Dataset, register
from advsec.errors import ConfigError, DataError
from advsec.features.schema import Feature, FeatureKind, FeatureSchema

__all__ = ["infer_schema", "load_tabular", "read_table"]

log = logging.getLogger(__name__)

NAME = "tabular"
SCHEMES = ("binary", "attack")
_BENIGN_GUESSES = ("benign", "BENIGN", "Benign", "normal", "Normal", "NORMAL", "0")
_PARQUET = (".parquet", ".pq")


def read_table(
    path: str | Path, *, label_column: str, delimiter: str = ","
) -> pd.DataFrame:
    """A CSV (header line; plain or gzip) or Parquet file as pandas; the label column as text."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if path.suffix.lower() in _PARQUET:
        table = read_parquet(path, required=[label_column])
        columns = table.column_names
    else:
        read = read_csv(path, header=True, types={label_column: pa.string()},
                        required=[label_column], delimiter=delimiter,
                        what=f"a CSV table with a header and a {label_column!r} column")
        table, columns = read.table, read.columns
    df = table.to_pandas()
    df.columns = list(columns)
    labels = df[label_column]
    if labels.isna().any():
        row = int(np.flatnonzero(labels.isna().to_numpy())[0]) + 1
        raise DataError(f"{path}, row {row}, column {label_column!r}: empty label")
    df[label_column] = labels.astype("string").str.strip()
    df.attrs["path"] = str(path)
    return df


def _is_row_id(values: pd.Series) -> bool:
    if not pd.api.types.is_integer_dtype(values) or len(values) < 2:
        return False
    return bool(np.all(np.diff(values.to_numpy()) > 0))


def infer_schema(
    df: pd.DataFrame,
    *,
    label_column: str,
    benign_label: str,
    max_categories: int = 100,
    notes: list[str] | None = None,
) -> FeatureSchema:
    """A :class:`FeatureSchema` for every usable column of ``df`` but the label (module rules)."""
    notes = notes if notes is not None else []
    where = df.attrs.get("path", "table")
    feats: list[Feature] = []
    for name in df.columns:
        if name == label_column:
            continue
        col = df[name]
        if col.isna().all():
            notes.append(f"column {name!r} left out: every value is empty")
            continue
        if pd.api.types.is_bool_dtype(col):
            feats.append(Feature(name, FeatureKind.BINARY))
            continue
        if pd.api.types.is_numeric_dtype(col):
            if col.isna().any():
                row = int(np.flatnonzero(col.isna().to_numpy())[0]) + 1
                raise DataError(f"{where}, row {row}, column {name!r}: empty value, "
                                f"expected a number")
            if _is_row_id(col):
                notes.append(f"column {name!r} left out: a row id (strictly increasing integers)")
                continue
            feats.append(_numeric_feature(name, col.to_numpy(dtype=np.float64)))
            continue
        text = col.astype("string")
        numbers = pd.to_numeric(text, errors="coerce")
        non_null = int(text.notna().sum())
        parsed = int(numbers.notna().sum())
        if non_null and parsed >= 0.9 * non_null:
            bad = numbers.isna() & text.notna()
            row = int(np.flatnonzero(bad.to_numpy())[0]) + 1 if bad.any() else int(
                np.flatnonzero(text.isna().to_numpy())[0]) + 1
            raise DataError(f"{where}, row {row}, column {name!r}: expected a number, "
                            f"got {col.iloc[row - 1]!r}")
        n_values = int(text.nunique(dropna=True))
        if n_values > max_categories:
            notes.append(f"column {name!r} left out: text with {n_values:,} distinct values "
                         f"(more than max_categories={max_categories})")
            continue
        feats.append(Feature(name, FeatureKind.CATEGORICAL, mutable=False))
    if not feats:
        raise DataError(f"{where}: no usable feature columns besides {label_column!r}")
    return FeatureSchema(features=tuple(feats), label=LABEL, benign_label=benign_label)


def _numeric_feature(name: str, values: np.ndarray) -> Feature:
    finite = values[np.isfinite(values)]
    if finite.size != values.size:
        raise DataError(f"column {name!r}: infinite values; replace them or drop the column")
    lo, hi = float(finite.min()), float(finite.max())
    whole = bool(np.array_equal(np.floor(finite), finite))
    if whole and lo >= 0 and hi <= 1:
        return Feature(name, FeatureKind.BINARY)
    kind = FeatureKind.INTEGER if whole else FeatureKind.CONTINUOUS
    lower = 0.0 if lo >= 0 else None
    upper = 1.0 if kind is FeatureKind.CONTINUOUS and lo >= 0 and hi <= 1 else None
    heavy = lower == 0.0 and hi > 100.0 * (float(np.median(finite)) + 1.0)
    return Feature(name, kind, lower=lower, upper=upper, transform="log1p" if heavy else "none")


@register(NAME, description="Any labelled CSV or Parquet file (label column, benign label, "
          "optional schema file)")
def load_tabular(
    *,
    path: str | Path | None = None,
    root: str | Path | None = None,
    label_column: str = "label",
    benign_label: str | None = None,
    test_path: str | Path | None = None,
    schema_file: str | Path | None = None,
    scheme: str = "binary",
    seed: int = 0,
    test_size: float = 0.3,
    delimiter: str = ",",
    max_categories: int = 100,
    drop_duplicates: bool = False,
    **unused: object,
) -> Dataset:
    """Load a labelled table.

    Args:
        path: the CSV or Parquet file (``root`` is accepted instead, for a uniform CLI).
        root: see ``path``.
        label_column: the column holding the labels.
        benign_label: the benign label value; guessed among ``benign``, ``normal``, ``0`` (any
            case) when not given.
        test_path: an optional test file with the same columns; else a seeded split stratified on
            the label holds out ``test_size``.
        schema_file: a TOML/YAML schema file: a complete ``features`` list, or changes
            (``override``, ``drop``, relations) to the inferred schema.
        scheme: ``"binary"`` (benign label / ``"attack"``) or ``"attack"`` (the label values).
        seed, test_size: the split.
        delimiter: the CSV field separator.
        max_categories: text columns with more distinct values are left out.
        drop_duplicates: drop exact duplicate rows of each file, before any split.
    """
    check_scheme(NAME, scheme, SCHEMES)
    if unused:
        log.debug("%s: ignoring options %s", NAME, sorted(unused))
    source = path if path is not None else root
    if source is None:
        raise ConfigError("tabular: pass the file to read (path=... or --root FILE)")
    notes: list[str] = []
    train_df = read_table(source, label_column=label_column, delimiter=delimiter)
    notes.append(f"file {train_df.attrs['path']}")
    labels = train_df[label_column]
    if benign_label is None:
        present = set(labels.unique())
        guess = next((g for g in _BENIGN_GUESSES if g in present), None)
        if guess is None:
            shown = ", ".join(sorted(map(str, present))[:8])
            raise DataError(f"{train_df.attrs['path']}: cannot tell the benign label of column "
                            f"{label_column!r} (values: {shown}); pass --benign-label")
        benign_label = guess
        notes.append(f"benign label guessed: {guess!r}")
    elif not (labels == str(benign_label)).any():
        shown = ", ".join(sorted(map(str, labels.unique()))[:8])
        raise DataError(f"{train_df.attrs['path']}, column {label_column!r}: no row has the "
                        f"benign label {benign_label!r} (values: {shown})")
    benign = str(benign_label)
    if drop_duplicates:
        attrs = dict(train_df.attrs)
        train_df = drop_duplicate_rows(train_df, list(train_df.columns), split="file",
                                       notes=notes)
        train_df.attrs.update(attrs)
        labels = train_df[label_column]
    if test_path is not None:
        test_df = read_table(test_path, label_column=label_column, delimiter=delimiter)
        notes.append(f"test file {test_df.attrs['path']}")
        if drop_duplicates:
            test_df = drop_duplicate_rows(test_df, list(test_df.columns), split="test file",
                                          notes=notes)
    else:
        attrs = dict(train_df.attrs)
        train_df, test_df = split_table(train_df, labels.to_numpy(dtype=object),
                                        test_size=test_size, seed=seed)
        train_df.attrs.update(attrs)
        notes.append(f"split: test_size={test_size}, seed={seed}, stratified on {label_column!r}")
    if schema_file is not None and _has_feature_list(schema_file):
        schema = FeatureSchema.from_file(schema_file, columns=list(train_df.columns))
    else:
        schema = infer_schema(train_df, label_column=label_column, benign_label=benign,
                              max_categories=max_categories, notes=notes)
        if schema_file is not None:
            schema = FeatureSchema.from_file(schema_file, base=schema,
                                             columns=list(train_df.columns))
    schema = FeatureSchema(features=schema.features, label=LABEL, benign_label=benign,
                           relations=schema.relations)
    missing = [c for c in [*schema.names, label_column] if c not in test_df.columns]
    if missing:
        raise DataError(f"{test_df.attrs.get('path', 'test table')}: no column {missing[0]!r} "
                        f"(the training table has it)")
    train_df, test_df = coerce_dtypes(train_df, schema), coerce_dtypes(test_df, schema)
    raw_name = "raw_label" if label_column == LABEL else label_column
    for table in (train_df, test_df):
        raw = table[label_column].astype("string")
        table[raw_name] = raw
        values = raw.to_numpy(dtype=object)
        table[LABEL] = pd.array(values if scheme == "attack" else np.where(
            values == benign, benign, "attack"), dtype="string")
    unseen = sorted(set(test_df[raw_name].unique()) - set(train_df[raw_name].unique()))
    if unseen:
        how = "kept as classes of their own" if scheme == "attack" else "labelled 'attack'"
        notes.append(f"test: labels never seen in training ({how}): {', '.join(unseen)}")
        log.warning("%s: %s", NAME, notes[-1])
    if scheme == "binary":
        classes = [benign, "attack"]
    else:
        classes = order_classes(benign, train_df[LABEL], test_df[LABEL])
    return finish(name=NAME, train=train_df, test=test_df, schema=schema, scheme=scheme,
                  classes=classes, notes=notes, extra=(raw_name,))


def _has_feature_list(schema_file: str | Path) -> bool:
    from advsec.features.schema import read_schema_file

    return "features" in read_schema_file(schema_file)
