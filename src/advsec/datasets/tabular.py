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
  exceeds 100 times (median + 1) (heavy tails); all mutable. Inferred bounds (and ``binary``)
  also hold for every test row, so that inference never rejects a test record;
- text columns: a numeric column with a stray word in it (at least 90 % of values numbers) is an
  error naming the row; otherwise ``categorical`` and immutable if it has at most
  ``max_categories`` values, else left out with a note (addresses, timestamps, free text).

Bad input gives one-line :class:`~advsec.errors.DataError` naming the file and the row (the
1-based data row of the file, also after a split): a missing label column, an empty label, a
numeric column with an empty value, an infinite value or a stray word, a value outside the bounds
a schema file declares (unless it says ``on_bound_violation = "clip"``), a benign label that
never occurs, a training split with a single class, a test file without the training columns.
A test label never seen in training is kept: under ``binary`` it is an attack, under ``attack``
it becomes a class of its own and a note lists it.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from advsec.datasets._checks import SOURCE_COLUMNS, check_labels, row_name, tag_source
from advsec.datasets._common import (
    LABEL,
    check_scheme,
    drop_duplicate_rows,
    finish,
    order_classes,
)
from advsec.datasets._readers import read_csv, read_parquet
from advsec.datasets._split import split_table
from advsec.datasets._text import check_file, shown
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
    check_file(path, "a CSV or Parquet table")
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
    check_labels(df, label_column, fallback=str(path))
    df[label_column] = df[label_column].astype("string").str.strip()
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
    also: pd.DataFrame | None = None,
) -> FeatureSchema:
    """A :class:`FeatureSchema` for every usable column of ``df`` but the label (module rules);
    inferred bounds also hold for the rows of ``also`` (the test split), where given."""
    notes = notes if notes is not None else []
    where = df.attrs.get("path", "table")
    feats: list[Feature] = []
    for name in df.columns:
        if name == label_column or name in SOURCE_COLUMNS:
            continue
        col = df[name]
        if col.isna().all():
            notes.append(f"column {name!r} left out: every value is empty")
            continue
        if pd.api.types.is_bool_dtype(col):
            feats.append(Feature(name, FeatureKind.BINARY))
            continue
        if not pd.api.types.is_numeric_dtype(col):
            text = col.astype("string")
            numbers = pd.to_numeric(text, errors="coerce")
            non_null = int(text.notna().sum())
            bad = (numbers.isna() & text.notna()).to_numpy(dtype=bool)
            if non_null and not bad.any() and not text.isna().any():
                col = numbers  # numbers read as text (a word elsewhere, e.g. in the test split)
            elif non_null and int(numbers.notna().sum()) >= 0.9 * non_null:
                pos = int(np.flatnonzero(bad)[0]) if bad.any() else int(
                    np.flatnonzero(text.isna().to_numpy())[0])
                raise DataError(f"{row_name(df, pos, where)}, column {name!r}: expected a "
                                f"number, got {shown(df[name].iloc[pos])}")
        if pd.api.types.is_numeric_dtype(col):
            if col.isna().any():
                pos = int(np.flatnonzero(col.isna().to_numpy())[0])
                raise DataError(f"{row_name(df, pos, where)}, column {name!r}: empty value, "
                                f"expected a number (blank or NaN)")
            if _is_row_id(col):
                notes.append(f"column {name!r} left out: a row id (strictly increasing integers)")
                continue
            values = col.to_numpy(dtype=np.float64)
            if not np.isfinite(values).all():
                pos = int(np.flatnonzero(~np.isfinite(values))[0])
                raise DataError(f"{row_name(df, pos, where)}, column {name!r}: got "
                                f"{values[pos]}; expected a finite number")
            extra = np.array([])
            if also is not None and name in also.columns:
                extra = pd.to_numeric(also[name], errors="coerce").to_numpy(
                    dtype=np.float64, na_value=np.nan)
            feats.append(_numeric_feature(name, values, extra[np.isfinite(extra)]))
            continue
        n_values = int(text.nunique(dropna=True))
        if n_values > max_categories:
            notes.append(f"column {name!r} left out: text with {n_values:,} distinct values "
                         f"(more than max_categories={max_categories})")
            continue
        feats.append(Feature(name, FeatureKind.CATEGORICAL, mutable=False))
    if not feats:
        raise DataError(f"{where}: no usable feature columns besides {label_column!r}")
    return FeatureSchema(features=tuple(feats), label=LABEL, benign_label=benign_label)


def _numeric_feature(name: str, finite: np.ndarray, extra: np.ndarray) -> Feature:
    both = np.concatenate([finite, extra]) if extra.size else finite
    lo, hi = float(both.min()), float(both.max())
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
    where = str(train_df.attrs["path"])
    tag_source(train_df, where)
    notes.append(f"file {where}")
    labels = train_df[label_column]
    if benign_label is None:
        present = set(labels.unique())
        guess = next((g for g in _BENIGN_GUESSES if g in present), None)
        if guess is None:
            shown = ", ".join(repr(v) for v in sorted(map(str, present))[:8])
            raise DataError(f"{train_df.attrs['path']}: cannot tell the benign label of column "
                            f"{label_column!r} (values: {shown}); set the benign label "
                            f"(--benign-label, or [data] benign_label in an experiment file)")
        benign_label = guess
        notes.append(f"benign label guessed: {guess!r}")
    elif not (labels == str(benign_label)).any():
        shown = ", ".join(repr(v) for v in sorted(map(str, labels.unique()))[:8])
        raise DataError(f"{train_df.attrs['path']}, column {label_column!r}: no row has the "
                        f"benign label {benign_label!r} (values: {shown})")
    benign = str(benign_label)
    if drop_duplicates:
        attrs = dict(train_df.attrs)
        train_df = drop_duplicate_rows(train_df, _data_columns(train_df), split="file",
                                       notes=notes)
        train_df.attrs.update(attrs)
        labels = train_df[label_column]
    if test_path is not None:
        test_df = read_table(test_path, label_column=label_column, delimiter=delimiter)
        tag_source(test_df, test_df.attrs["path"])
        notes.append(f"test file {test_df.attrs['path']}")
        if drop_duplicates:
            test_df = drop_duplicate_rows(test_df, _data_columns(test_df), split="test file",
                                          notes=notes)
    else:
        attrs = dict(train_df.attrs)
        train_df, test_df = split_table(train_df, labels.to_numpy(dtype=object),
                                        test_size=test_size, seed=seed)
        train_df.attrs.update(attrs)
        notes.append(f"split: test_size={test_size}, seed={seed}, stratified on {label_column!r}")
    if schema_file is not None and _has_feature_list(schema_file):
        schema = FeatureSchema.from_file(schema_file, columns=list(train_df.columns),
                                         replaces=True)
    else:
        schema = infer_schema(train_df, label_column=label_column, benign_label=benign,
                              max_categories=max_categories, notes=notes, also=test_df)
        if schema_file is not None:
            schema = FeatureSchema.from_file(schema_file, base=schema,
                                             columns=list(train_df.columns))
    schema = replace(schema, label=LABEL, benign_label=benign)
    missing = [c for c in [*schema.names, label_column] if c not in test_df.columns]
    if missing:
        raise DataError(f"{test_df.attrs.get('path', 'test table')}: no column {missing[0]!r} "
                        f"(the training table has it)")
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
                  classes=classes, notes=notes, extra=(raw_name,), label_column=label_column,
                  source=where)


def _data_columns(df: pd.DataFrame) -> list[str]:
    return [c for c in df.columns if c not in SOURCE_COLUMNS]


def _has_feature_list(schema_file: str | Path) -> bool:
    from advsec.features.schema import read_schema_file

    return "features" in read_schema_file(schema_file)
