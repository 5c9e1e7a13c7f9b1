"""Any labelled CSV or Parquet table, with its schema inferred or read from a schema file.

``load("tabular", path=FILE, label_column=..., benign_label=...)``. The label column is read as
text; the ``binary`` scheme maps the benign label to itself and every other value to
``"attack"``, the ``attack`` scheme keeps the values.

Schema inference (:mod:`advsec.datasets.inference`, on the training rows: row ids, constant,
empty, label-like and high-cardinality text columns are left out with a note; bounds hold for the
test rows too) gives the features; constraint discovery (:mod:`advsec.features.discovery`, on the
training rows; ``discover=False`` turns it off) adds the relations that hold on every training
row and the value sets of low-cardinality integer features (widened by the test rows' values, so
that no clean test record breaks them); one note sums them up. A schema file's ``override`` /
``drop`` / ``relations`` (replace) / ``add_relations`` (append) apply on top of that; a schema
file with a ``features`` list (and ``replace = true``) replaces it, and nothing is inferred or
discovered.

:func:`infer_file_schema` infers the schema of a whole file (no split), for
``advsec data schema``.

Bad input gives one-line :class:`~advsec.errors.DataError` naming the file and the row (the
1-based data row of the file, also after a split): a missing label column, an empty label, a
CSV header naming a column twice, a schema feature on a nested Parquet column (lists, structs:
inference leaves those out with a note), a boolean column with a missing value, an integer beyond
2**53 in a numeric feature, a numeric column with an empty value, an infinite value or a stray
word, a range whose width overflows float64, a value outside the bounds
a schema file declares (unless it says ``on_bound_violation = "clip"``), a benign label that
never occurs, a training split with a single class, a test file without the training columns.
A test label never seen in training is kept: under ``binary`` it is an attack, under ``attack``
it becomes a class of its own and a note lists it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from advsec.datasets._checks import SOURCE_COLUMNS, check_labels, tag_source
from advsec.datasets._common import (
    LABEL,
    check_scheme,
    drop_duplicate_rows,
    finish,
    order_classes,
)
from advsec.datasets._parquet import nested_columns, read_parquet
from advsec.datasets._readers import read_csv
from advsec.datasets._split import split_table
from advsec.datasets._text import check_file
from advsec.datasets.base import Dataset, register
from advsec.datasets.inference import LABEL_LIKE, NESTED, describe_features, infer_schema
from advsec.errors import ConfigError, DataError
from advsec.features import discovery
from advsec.features.schema import FeatureSchema

__all__ = ["FileSchema", "apply_discovery", "benign_label_of", "check_nested",
           "infer_file_schema", "infer_schema", "load_tabular", "read_table", "scheme_labels"]

log = logging.getLogger(__name__)

NAME = "tabular"
SCHEMES = ("binary", "attack")
_BENIGN_GUESSES = ("benign", "BENIGN", "Benign", "normal", "Normal", "NORMAL", "0", "False",
                   "false")
_PARQUET = (".parquet", ".pq")
#: ``df.attrs`` key of :func:`read_table`'s notes on the header (empty cells it named)
HEADER_NOTES = "header_notes"


def read_table(
    path: str | Path, *, label_column: str, delimiter: str = ","
) -> pd.DataFrame:
    """A CSV (header line; plain or gzip) or Parquet file as pandas; the label column as text.

    Parquet columns of nested values (lists, structs, maps: no feature holds them) are not read;
    ``df.attrs[NESTED]`` names them (``{column: kind}``) for inference's notes and
    :func:`check_nested`. A nested label column is an error, and so is a CSV header naming a
    column twice (which one would be the feature?); an empty header cell is named
    ``column_<0-based position>`` and ``df.attrs[HEADER_NOTES]`` says so. Whole numbers beyond
    the int64 range come back as exact ``uint64`` (:func:`~advsec.datasets._readers.read_csv`'s
    ``exact_ints``); a boolean Parquet column with missing values as pandas ``boolean``."""
    path = Path(path).expanduser()
    check_file(path, "a CSV or Parquet table")
    nested: dict[str, str] = {}
    header_notes: list[str] = []
    if path.suffix.lower() in _PARQUET:
        table = read_parquet(path, required=[label_column])
        nested = nested_columns(table)
        if label_column in nested:
            raise DataError(f"{path}, column {label_column!r}: nested values "
                            f"({nested[label_column]}); expected a class name per row")
        table = table.drop_columns(list(nested))
        columns = table.column_names
    else:
        read = read_csv(path, header=True, types={label_column: pa.string()},
                        required=[label_column], delimiter=delimiter, utf8=True,
                        exact_ints=True,
                        what=f"a CSV table with a header and a {label_column!r} column")
        table, columns = read.table, read.columns
        if read.duplicates:
            _check_unique(path, [read.duplicates.get(c, c) for c in columns])
        header_notes = [f"{path}, header: column {i + 1} has no name; it is called "
                        f"{columns[i]!r}" for i in read.unnamed]
        for note in header_notes:
            log.warning("%s", note)
    df = table.to_pandas()
    df.columns = list(columns)
    for spec, name in zip(table.schema, columns, strict=True):
        if pa.types.is_boolean(spec.type) and table.column(spec.name).null_count:
            df[name] = df[name].astype("boolean")  # not object: a missing flag stays missing
    check_labels(df, label_column, fallback=str(path))
    df[label_column] = df[label_column].astype("string").str.strip()
    df.attrs["path"] = str(path)
    df.attrs[NESTED] = nested
    df.attrs[HEADER_NOTES] = header_notes
    return df


def _check_unique(path: Path, columns: list[str]) -> None:
    """A one-line :class:`DataError` naming the file and the first column name that appears
    more than once in ``columns`` (a duplicated column is ambiguous: which one is the
    feature?)."""
    seen: dict[str, int] = {}
    for i, name in enumerate(columns, start=1):
        if name in seen:
            raise DataError(f"{path}, header: column name {name!r} appears more than once "
                            f"(columns {seen[name]} and {i}); expected each name once: rename "
                            f"or remove the duplicate")
        seen[name] = i


def check_nested(df: pd.DataFrame, schema: FeatureSchema) -> None:
    """A one-line :class:`DataError` naming the file and the column when ``schema`` has a feature
    whose column of ``df`` held nested values (:data:`NESTED`; such columns are not read)."""
    nested = df.attrs.get(NESTED, {})
    name = next((n for n in schema.names if n in nested), None)
    if name is not None:
        raise DataError(f"{df.attrs.get('path', 'table')}, column {name!r}: nested values "
                        f"({nested[name]}); a feature holds one number or one category per "
                        f"row: leave the column out of the schema")


def scheme_labels(values: np.ndarray, *, scheme: str, benign: str) -> np.ndarray:
    """``(N,)`` object array of the labels under ``scheme``: ``binary`` keeps ``benign`` and
    names every other label ``"attack"``; ``attack`` keeps each label (``values``: ``(N,)``
    raw label strings)."""
    values = np.asarray(values, dtype=object)
    if scheme == "attack":
        return values
    return np.where(values == benign, benign, "attack").astype(object)


def benign_label_of(df: pd.DataFrame, *, label_column: str, benign_label: str | None,
                    notes: list[str]) -> str:
    """The benign label of ``df``'s ``label_column``: ``benign_label`` when some row has it
    (else a DataError), or the first of ``benign``, ``normal``, ``0``, ``False`` present (a note
    says so)."""
    labels = df[label_column]
    where = df.attrs.get("path", "table")
    if benign_label is None:
        present = set(labels.unique())
        guess = next((g for g in _BENIGN_GUESSES if g in present), None)
        if guess is None:
            values = ", ".join(repr(v) for v in sorted(map(str, present))[:8])
            raise DataError(f"{where}: cannot tell the benign label of column "
                            f"{label_column!r} (values: {values}); set the benign label "
                            f"(--benign-label, or [data] benign_label in an experiment file)")
        notes.append(f"benign label guessed: {guess!r}")
        return guess
    if not (labels == str(benign_label)).any():
        values = ", ".join(repr(v) for v in sorted(map(str, labels.unique()))[:8])
        raise DataError(f"{where}, column {label_column!r}: no row has the "
                        f"benign label {benign_label!r} (values: {values})")
    return str(benign_label)


#: derived-value relations (formula, ratio) holding on this share of the training rows are
#: enforced with their holds_on (:func:`apply_discovery`)
DERIVED_SHARE = 0.98


def apply_discovery(
    df: pd.DataFrame, schema: FeatureSchema, *, notes: list[str],
    also: pd.DataFrame | None = None,
) -> tuple[FeatureSchema, list[dict[str, Any]], list[str]]:
    """``(schema, candidates, discovery notes)``: ``schema`` with the relations that hold on
    every row of ``df`` (:func:`advsec.features.discovery.discover`) and the discovered value
    sets (widened by the values of ``also``, the test rows); adds one summary note to ``notes``.
    Derived-value relations (``formula``, ``ratio``: a rate, a load, a mean size) holding on
    at least :data:`DERIVED_SHARE` of the rows are enforced too, with their ``holds_on`` (an
    attack may not break them where the original record satisfies them): such a template does
    not hold that often by accident, and the rows it misses are records whose inputs were
    rounded (a duration of 0) or disagree in the source. Other near-holding relations (at
    least 99 % of rows) are candidates, not enforced."""
    found = discovery.discover(df, schema, min_share=DERIVED_SHARE)
    derived = [c for c in found.candidates if c["type"] in ("formula", "ratio")]
    others = [c for c in found.candidates if c not in derived and c["holds_on"] >= 0.99]
    feats = []
    widened = 0
    for f in schema.features:
        allowed = found.value_sets.get(f.name)
        if allowed is None or not f.is_numeric:
            feats.append(f)
            continue
        values = {float(v) for v in allowed}
        if also is not None and f.name in also.columns:
            extra = pd.to_numeric(also[f.name], errors="coerce").to_numpy(
                dtype=np.float64, na_value=np.nan)
            new = set(extra[np.isfinite(extra)].tolist()) - values
            widened += bool(new)
            values |= new
        feats.append(replace(f, values=tuple(sorted(values))))
    with_sets = [f.name for f in feats if f.values is not None and f.name in found.value_sets]
    enforced = [*found.relations, *derived]
    schema = replace(schema, features=tuple(feats), relations=tuple(dict(r) for r in enforced))
    shown = ", ".join(with_sets[:8]) + (", ..." if len(with_sets) > 8 else "")
    notes.append(f"constraint discovery: {len(found.relations)} relation(s) hold on every "
                 f"training row and {len(derived)} derived-value relation(s) on at least "
                 f"{100 * DERIVED_SHARE:g} % (enforced), {len(others)} near-holding candidate(s) "
                 f"not enforced, value sets for {len(with_sets)} feature(s)"
                 + (f" ({shown})" if with_sets else "")
                 + (f", {widened} widened by test values" if widened else ""))
    targets = tuple(f"{r['target']} == " for r in derived)
    found_notes = [n.replace(" [candidate]", " [enforced with its holds_on]")
                   if n.startswith(targets) else n for n in found.notes] if targets else list(
                       found.notes)
    for note in found_notes:
        log.info("%s: discovery: %s", NAME, note)
    return schema, [dict(c) for c in others], found_notes


@dataclass(frozen=True)
class FileSchema:
    """The schema inferred for a whole table file (:func:`infer_file_schema`).

    Attributes:
        schema: the features (``label`` = the file's label column) and discovered relations.
        path: the file; rows: its number of data rows.
        notes: what inference and discovery did (left-out columns and why, ...).
        candidates: near-holding relation tables (``holds_on < 1``), not in ``schema``.
        feature_notes: per feature, its observed range and number of distinct values.
    """

    schema: FeatureSchema
    path: str
    rows: int
    notes: tuple[str, ...]
    candidates: tuple[Mapping[str, Any], ...]
    feature_notes: Mapping[str, str]


def infer_file_schema(
    path: str | Path,
    *,
    label_column: str,
    benign_label: str | None = None,
    delimiter: str = ",",
    max_categories: int = 100,
    discover: bool = True,
    label_like: float | None = LABEL_LIKE,
) -> FileSchema:
    """Read ``path`` (:func:`read_table`) and infer the schema of all its rows (no split:
    bounds, value sets and relations describe the whole file), then discover its constraints
    (unless ``discover`` is false). One-line DataError/ConfigError on bad input."""
    df = read_table(path, label_column=label_column, delimiter=delimiter)
    notes: list[str] = list(df.attrs[HEADER_NOTES])
    benign = benign_label_of(df, label_column=label_column, benign_label=benign_label,
                             notes=notes)
    schema = infer_schema(df, label_column=label_column, benign_label=benign,
                          max_categories=max_categories, notes=notes, label_like=label_like)
    candidates: list[dict[str, Any]] = []
    if discover:
        schema, candidates, found = apply_discovery(df, schema, notes=notes)
        notes += [f"discovery: {n}" for n in found]
    schema = replace(schema, label=label_column, benign_label=benign)
    return FileSchema(schema=schema, path=str(df.attrs["path"]), rows=len(df), notes=tuple(notes),
                      candidates=tuple(candidates), feature_notes=describe_features(df, schema))


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
    discover: bool = True,
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
        discover: run constraint discovery on the inferred schema (module docstring).
    """
    check_scheme(NAME, scheme, SCHEMES)
    if not isinstance(discover, bool):
        raise ConfigError(f"{NAME}: discover must be true or false, got {discover!r}")
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
    notes += train_df.attrs[HEADER_NOTES]
    benign = benign_label_of(train_df, label_column=label_column, benign_label=benign_label,
                             notes=notes)
    labels = train_df[label_column]
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
        notes += test_df.attrs[HEADER_NOTES]
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
        schema = FeatureSchema.from_file(schema_file, replaces=True, columns=[
            *train_df.columns, *train_df.attrs.get(NESTED, {})])
        check_nested(train_df, schema)
    else:
        schema = infer_schema(train_df, label_column=label_column, benign_label=benign,
                              max_categories=max_categories, notes=notes, also=test_df)
        if discover:
            schema = apply_discovery(train_df, schema, notes=notes, also=test_df)[0]
        if schema_file is not None:
            schema = FeatureSchema.from_file(schema_file, base=schema,
                                             columns=list(train_df.columns))
    # the scheme's labels go in a column of their own: "label" unless a feature has that name
    lab = _free_name(LABEL, train_df, test_df) if label_column != LABEL else LABEL
    schema = replace(schema, label=lab, benign_label=benign)
    check_nested(test_df, schema)
    missing = [c for c in [*schema.names, label_column] if c not in test_df.columns]
    if missing:
        raise DataError(f"{test_df.attrs.get('path', 'test table')}: no column {missing[0]!r} "
                        f"(the training table has it)")
    # the raw labels keep their column, or need a name of their own when it is "label"
    raw_name = label_column if label_column != LABEL else _free_name("raw_label", train_df,
                                                                       test_df)
    for table in (train_df, test_df):
        raw = table[label_column].astype("string")
        table[raw_name] = raw
        values = raw.to_numpy(dtype=object)
        table[lab] = pd.array(scheme_labels(values, scheme=scheme, benign=benign),
                              dtype="string")
    unseen = sorted(set(test_df[raw_name].unique()) - set(train_df[raw_name].unique()))
    if unseen:
        how = "kept as classes of their own" if scheme == "attack" else "labelled 'attack'"
        notes.append(f"test: labels never seen in training ({how}): {', '.join(unseen)}")
        log.warning("%s: %s", NAME, notes[-1])
    if scheme == "binary":
        classes = [benign, "attack"]
    else:
        classes = order_classes(benign, train_df[lab], test_df[lab])
    return finish(name=NAME, train=train_df, test=test_df, schema=schema, scheme=scheme,
                  classes=classes, notes=notes, extra=(raw_name,), label_column=label_column,
                  source=where)


def _free_name(name: str, *tables: pd.DataFrame) -> str:
    """``name``, or ``name_2``, ``name_3``, ...: the first that no column of ``tables`` has."""
    taken = {c for t in tables for c in t.columns}
    return next(c for c in (name, *(f"{name}_{i}" for i in range(2, len(taken) + 3)))
                if c not in taken)


def _data_columns(df: pd.DataFrame) -> list[str]:
    return [c for c in df.columns if c not in SOURCE_COLUMNS]


def _has_feature_list(schema_file: str | Path) -> bool:
    from advsec.features.schema import read_schema_file

    return "features" in read_schema_file(schema_file)
