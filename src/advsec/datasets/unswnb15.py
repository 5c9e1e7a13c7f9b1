"""UNSW-NB15 (Cyber Range Lab, UNSW Canberra): the training/testing partition CSVs.

Files (header line, may start with a UTF-8 BOM and use CRLF, plain or .gz):
``UNSW_NB15_training-set.csv`` (175,341 rows) and ``UNSW_NB15_testing-set.csv`` (82,332 rows),
45 columns: ``id``, 42 features, ``attack_cat`` (``Normal`` or one of 9 attack categories) and
``label`` (0 normal, 1 attack). Copies circulate with the two names swapped, so a partition is
recognised by its row count, not by its name.

Default split: the published partitions when both are found (``test="auto"``); with only one
partition (or ``test="split"``) a seeded split stratified on ``attack_cat`` holds out
``test_size`` of the rows.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from advsec.datasets._checks import check_labels, tag_source
from advsec.datasets._common import (
    LABEL,
    builtin_schema,
    check_scheme,
    drop_duplicate_rows,
    finish,
    order_classes,
    to_pandas,
)
from advsec.datasets._csv_errors import first_null
from advsec.datasets._readers import find_file, read_csv
from advsec.datasets._split import split_table
from advsec.datasets.base import Dataset, register
from advsec.datasets.fetch import hint
from advsec.errors import ConfigError, DataError
from advsec.features.schema import FeatureKind

__all__ = ["ATTACK_CAT", "PARTITION_ROWS", "load_unsw_nb15"]

log = logging.getLogger(__name__)

NAME = "unsw-nb15"
ATTACK_CAT = "attack_cat"
_RAW_LABEL = "label"
FILES = ("UNSW_NB15_training-set.csv", "UNSW_NB15_testing-set.csv")
#: Rows of each published partition.
PARTITION_ROWS = {"train": 175_341, "test": 82_332}
SCHEMES = ("binary", "category")


def _read_partition(path: Path) -> pd.DataFrame:
    schema = builtin_schema("unsw-nb15", benign_label="normal")
    types: dict[str, pa.DataType] = {ATTACK_CAT: pa.string(), _RAW_LABEL: pa.int64()}
    for f in schema:
        types[f.name] = {FeatureKind.CATEGORICAL: pa.string(),
                         FeatureKind.CONTINUOUS: pa.float64()}.get(f.kind, pa.int64())
    read = read_csv(path, header=True, types=types,
                    required=[*schema.names, ATTACK_CAT, _RAW_LABEL],
                    what="the UNSW-NB15 partition CSV (45 columns with a header)")
    null = first_null(read.table, [*schema.names, _RAW_LABEL])
    if null is not None:
        raise DataError(f"{path}, row {null[1]}, column {null[0]!r}: empty value")
    df = to_pandas(read.table, schema)
    labels = df[_RAW_LABEL].to_numpy()
    bad = ~np.isin(labels, (0, 1))
    if bad.any():
        row = int(np.flatnonzero(bad)[0]) + 1
        raise DataError(
            f"{path}, row {row}, column 'label': expected 0 or 1, got {labels[row - 1]}")
    check_labels(df, ATTACK_CAT, fallback=str(path))
    df[ATTACK_CAT] = df[ATTACK_CAT].astype("string").str.strip()
    return tag_source(df, path)


@register(
    NAME,
    description="UNSW-NB15 (UNSW Canberra): 42 flow features, training/testing partition CSVs",
    files=FILES,
    url="https://research.unsw.edu.au/projects/unsw-nb15-dataset",
)
def load_unsw_nb15(
    *,
    root: str | Path | None = None,
    scheme: str = "binary",
    seed: int = 0,
    test: str = "auto",
    test_size: float = 0.3,
    drop_duplicates: bool = False,
    schema_file: str | Path | None = None,
    **unused: object,
) -> Dataset:
    """Load UNSW-NB15.

    Args:
        root: folder with the files (else ``$ADVSEC_DATA`` and the fetch cache are searched).
        scheme: ``"binary"`` (``normal``/``attack`` from ``label``) or ``"category"``
            (``attack_cat``: ``Normal`` and 9 attack categories).
        seed: seed of the stratified split (used only when splitting).
        test: ``"auto"`` (published partitions when both are found, else a split),
            ``"published"`` (both required) or ``"split"`` (split every row found).
        test_size: held-out share when splitting, in (0, 1).
        drop_duplicates: drop exact duplicate rows (features and attack_cat) of each partition,
            before any split.
        schema_file: TOML/YAML file changing the built-in schema (``schemas/unsw-nb15.toml``).

    Returns:
        A :class:`Dataset` with the 42 features, ``label`` (scheme labels) and ``attack_cat``.
    """
    check_scheme(NAME, scheme, SCHEMES)
    if test not in ("auto", "published", "split"):
        raise ConfigError(f"{NAME}: test must be 'auto', 'published' or 'split', got {test!r}")
    if unused:
        log.debug("%s: ignoring options %s", NAME, sorted(unused))
    notes: list[str] = []
    parts: dict[str, pd.DataFrame] = {}
    paths: list[Path] = []
    for name in FILES:
        try:
            paths.append(find_file(NAME, (name,), root=root, hint=hint(NAME)))
        except DataError:
            continue
    if not paths:
        find_file(NAME, (FILES[1], FILES[0]), root=root, hint=hint(NAME))  # raises, names both
    for path in paths:
        df = _read_partition(path)
        role = next((k for k, n in PARTITION_ROWS.items() if n == len(df)), None)
        if role is None or role in parts:
            role = f"extra{len(parts)}"
        elif role not in path.name:
            notes.append(f"{path.name} has {len(df):,} rows: it is the published {role}ing "
                         f"partition (copies swap the two names)")
        notes.append(f"file {path} ({len(df):,} rows, {role} partition)")
        parts[role] = df
    schema = builtin_schema("unsw-nb15", benign_label="normal" if scheme == "binary" else "Normal",
                            schema_file=schema_file, columns=list(next(iter(parts.values()))))
    if drop_duplicates:
        cols = [*schema.names, ATTACK_CAT]
        parts = {k: drop_duplicate_rows(v, cols, split=f"{k} partition", notes=notes)
                 for k, v in parts.items()}
    if test != "split" and {"train", "test"} <= set(parts):
        train_df, test_df = parts["train"], parts["test"]
    elif test == "published":
        raise DataError(f"{NAME}: test='published' needs both partitions "
                        f"({PARTITION_ROWS['train']:,} and {PARTITION_ROWS['test']:,} rows); "
                        f"found {sorted(parts)}")
    else:
        table = pd.concat(list(parts.values()), ignore_index=True)
        train_df, test_df = split_table(table, table[ATTACK_CAT].to_numpy(),
                                        test_size=test_size, seed=seed)
        notes.append(f"split {len(table):,} rows: test_size={test_size}, seed={seed}, "
                     f"stratified on attack_cat")
    for table in (train_df, test_df):
        if scheme == "binary":
            table[LABEL] = pd.array(np.where(table[_RAW_LABEL].to_numpy() == 0, "normal",
                                             "attack"), dtype="string")
        else:
            table[LABEL] = table[ATTACK_CAT]
    if scheme == "binary":
        classes = ["normal", "attack"]
    else:
        classes = order_classes("Normal", train_df[LABEL], test_df[LABEL])
    return finish(name=NAME, train=train_df, test=test_df, schema=schema, scheme=scheme,
                  classes=classes, notes=notes, extra=(ATTACK_CAT,),
                  label_column=_RAW_LABEL if scheme == "binary" else ATTACK_CAT,
                  source=str(paths[0]) if len(paths) == 1 else NAME)
