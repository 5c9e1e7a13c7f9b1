"""CIC-IDS2017 (Canadian Institute for Cybersecurity): CICFlowMeter "MachineLearningCVE" CSVs.

Input: one day file (e.g. ``Tuesday-WorkingHours.pcap_ISCX.csv``) or a folder of them (also its
``MachineLearningCVE/`` subfolder), plain or .gz. Quirks of the published files and how they are
handled (each counted in ``Dataset.notes``):

- header names with stray leading spaces: stripped;
- ``Fwd Header Length`` twice: the second copy is dropped (the note says whether it was identical);
- ``Infinity`` in rate columns (zero-duration flows): replaced by the column's largest finite
  value over the loaded rows (``-Infinity`` by the smallest); ``NaN``: replaced by 0;
- rows whose every field is empty (some day files end with many): dropped;
- negative values in columns that cannot be negative (a CICFlowMeter bug: durations, inter-arrival
  times, header lengths): rows dropped (``negative="drop"``, default) or kept (``"keep"``: the
  FeatureSpace clips them and ``validate`` flags them);
- labels in Windows-1252 (``Web Attack \\x96 Brute Force``): decoded, the dash normalised to ``-``.

There is no published train/test partition: a seeded split stratified on the attack label holds
out ``test_size`` of the rows.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from advsec.datasets._checks import tag_source
from advsec.datasets._common import (
    LABEL,
    builtin_schema,
    check_scheme,
    coerce_dtypes,
    drop_duplicate_rows,
    finish,
    order_classes,
)
from advsec.datasets._readers import read_csv, search_dirs
from advsec.datasets._split import split_table
from advsec.datasets.base import Dataset, register
from advsec.datasets.fetch import hint
from advsec.errors import ConfigError, DataError
from advsec.features.schema import FeatureSchema

__all__ = ["ATTACK", "CATEGORIES", "find_day_files", "load_cicids2017", "read_day_file"]

log = logging.getLogger(__name__)

NAME = "cicids2017"
RAW_LABEL = "Label"
#: Column holding the raw attack label (``BENIGN`` normalised to ``benign``).
ATTACK = "attack"
DUPLICATE = "Fwd Header Length.1"
BENIGN = "benign"
SCHEMES = ("binary", "category", "attack")
#: Attack label -> category for the ``category`` scheme (the grouping used in most papers).
CATEGORIES: dict[str, str] = {
    "DoS Hulk": "dos", "DoS GoldenEye": "dos", "DoS slowloris": "dos",
    "DoS Slowhttptest": "dos", "DDoS": "ddos", "PortScan": "portscan", "Bot": "botnet",
    "FTP-Patator": "bruteforce", "SSH-Patator": "bruteforce",
    "Web Attack - Brute Force": "webattack", "Web Attack - XSS": "webattack",
    "Web Attack - Sql Injection": "webattack", "Infiltration": "infiltration",
    "Heartbleed": "heartbleed",
}
_CATEGORY_ORDER = ("benign", "dos", "ddos", "portscan", "botnet", "bruteforce", "webattack",
                   "infiltration", "heartbleed")
_PATTERNS = ("*.csv", "*.csv.gz")


def find_day_files(root: str | Path | None, files: Sequence[str] | None = None) -> list[Path]:
    """The day CSVs under ``root`` (a file, or a folder and its ``MachineLearningCVE/``), else
    under ``$ADVSEC_DATA/cicids2017`` and the fetch cache; ``files`` keeps only names containing
    one of its strings (e.g. ``["Tuesday", "Wednesday"]``). Sorted by name."""
    if root is not None and Path(root).expanduser().is_file():
        found = [Path(root).expanduser()]
    else:
        found = []
        for d in search_dirs(NAME, root):
            for sub in (d, d / "MachineLearningCVE"):
                if sub.is_dir():
                    found += [p for pat in _PATTERNS for p in sub.glob(pat)]
            if found:
                break
    found = sorted(set(found), key=lambda p: p.name)
    if files:
        found = [p for p in found if any(s in p.name for s in files)]
    if not found:
        where = ", ".join(str(d) for d in search_dirs(NAME, root))
        which = f" matching {list(files)}" if files else ""
        raise DataError(f"{NAME}: no MachineLearningCVE CSV files{which} (e.g. "
                        f"'Tuesday-WorkingHours.pcap_ISCX.csv') in {where}; {hint(NAME)}")
    return found


def _decode_labels(column: pa.ChunkedArray) -> np.ndarray:
    """Binary label column -> object array of clean strings ('' for missing)."""
    encoded = pc.dictionary_encode(column.combine_chunks())
    words = []
    for value in encoded.dictionary.to_pylist():
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError:
            text = value.decode("cp1252", errors="replace")
        text = text.replace("\u2013", "-").replace("\ufffd", "-").strip()
        words.append(" ".join(text.split()))
    idx = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False)
    lookup = np.array([*words, ""], dtype=object)
    return lookup[idx]


def read_day_file(path: Path, schema: FeatureSchema, notes: list[str]) -> pd.DataFrame:
    """One day CSV -> the schema's features (float64 before cleaning) and ``attack``."""
    types: dict[str, pa.DataType] = {name: pa.float64() for name in schema.names}
    types[DUPLICATE] = pa.float64()
    types[RAW_LABEL] = pa.binary()
    read = read_csv(path, header=True, types=types, required=[*schema.names, RAW_LABEL],
                    what="a CICFlowMeter MachineLearningCVE CSV (79 columns with a header)")
    table = read.table
    labels = _decode_labels(table.column(RAW_LABEL))
    if DUPLICATE in read.columns:
        same = pc.all(pc.equal(table.column(DUPLICATE), table.column("Fwd Header Length")),
                      skip_nulls=True).as_py()
        notes.append(f"{path.name}: dropped the duplicate 'Fwd Header Length' column "
                     f"({'identical' if same in (True, None) else 'NOT identical'} to the first)")
    df = table.select(schema.names).to_pandas()
    df[ATTACK] = labels
    tag_source(df, path)
    empty = labels == ""
    if empty.any():
        if not df.loc[empty, schema.names].isna().all(axis=None):
            row = int(np.flatnonzero(empty)[0]) + 1
            raise DataError(f"{path}, row {row}, column 'Label': empty label")
        notes.append(f"{path.name}: dropped {int(empty.sum()):,} empty rows")
        df = df.loc[~empty].reset_index(drop=True)
    return df


def _clean(df: pd.DataFrame, schema: FeatureSchema, *, negative: str,
           notes: list[str]) -> pd.DataFrame:
    for f in schema:
        values = df[f.name].to_numpy(dtype=np.float64, na_value=np.nan)
        pos_inf, neg_inf, nan = np.isposinf(values), np.isneginf(values), np.isnan(values)
        if not (pos_inf.any() or neg_inf.any() or nan.any()):
            continue
        finite = values[np.isfinite(values)]
        top = float(finite.max()) if finite.size else 0.0
        bottom = float(finite.min()) if finite.size else 0.0
        values = np.where(pos_inf, top, np.where(neg_inf, bottom, np.where(nan, 0.0, values)))
        df[f.name] = values
        parts = []
        if pos_inf.any():
            parts.append(f"{int(pos_inf.sum()):,} Infinity -> column max {top:g}")
        if neg_inf.any():
            parts.append(f"{int(neg_inf.sum()):,} -Infinity -> column min {bottom:g}")
        if nan.any():
            parts.append(f"{int(nan.sum()):,} NaN/empty -> 0")
        notes.append(f"{f.name!r}: {', '.join(parts)}")
    lows = {f.name: f.lower for f in schema if f.lower is not None}
    bad = np.zeros(len(df), dtype=bool)
    bad_cols = []
    for name, low in lows.items():
        below = df[name].to_numpy() < low
        if below.any():
            bad |= below
            bad_cols.append(name)
    if bad.any():
        if negative == "drop":
            notes.append(f"dropped {int(bad.sum()):,} rows with values below the physical lower "
                         f"bound in {bad_cols}")
            df = df.loc[~bad].reset_index(drop=True)
        else:
            notes.append(f"kept {int(bad.sum()):,} rows with values below the physical lower "
                         f"bound in {bad_cols} (validate flags them)")
    return df


@register(
    NAME,
    description="CIC-IDS2017 (CIC/UNB): CICFlowMeter MachineLearningCVE CSVs, one per day",
    files=("MachineLearningCVE/*.pcap_ISCX.csv",),
    url="https://www.unb.ca/cic/datasets/ids-2017.html",
)
def load_cicids2017(
    *,
    root: str | Path | None = None,
    scheme: str = "binary",
    seed: int = 0,
    files: Sequence[str] | None = None,
    test_size: float = 0.3,
    negative: str = "drop",
    drop_duplicates: bool = False,
    schema_file: str | Path | None = None,
    **unused: object,
) -> Dataset:
    """Load CIC-IDS2017 day files.

    Args:
        root: a day CSV or a folder of them (else ``$ADVSEC_DATA`` and the fetch cache).
        scheme: ``"binary"`` (``benign``/``attack``), ``"category"`` (benign, dos, ddos,
            portscan, botnet, bruteforce, webattack, infiltration, heartbleed) or ``"attack"``
            (the published labels, ``BENIGN`` as ``benign``).
        seed: seed of the stratified split.
        files: keep only day files whose name contains one of these strings.
        test_size: held-out share, in (0, 1).
        negative: rows with impossible negative values: ``"drop"`` (default) or ``"keep"``.
        drop_duplicates: drop exact duplicate rows (features and label) before splitting.
        schema_file: TOML/YAML file changing the built-in schema (``schemas/cicids2017.toml``).

    Returns:
        A :class:`Dataset` with the 77 features, ``label`` and ``attack`` (published label).
    """
    check_scheme(NAME, scheme, SCHEMES)
    if negative not in ("drop", "keep"):
        raise ConfigError(f"{NAME}: negative must be 'drop' or 'keep', got {negative!r}")
    if unused:
        log.debug("%s: ignoring options %s", NAME, sorted(unused))
    notes: list[str] = []
    paths = find_day_files(root, files)
    base = builtin_schema(NAME, benign_label=BENIGN)
    frames = []
    for path in paths:
        frames.append(read_day_file(path, base, notes))
        notes.append(f"file {path} ({len(frames[-1]):,} rows)")
    table = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    table = _clean(table, base, negative=negative, notes=notes)
    raw = table[ATTACK].to_numpy(dtype=object)
    table[ATTACK] = pd.array(np.where(raw == "BENIGN", BENIGN, raw), dtype="string")
    table = coerce_dtypes(table, base)
    schema = builtin_schema(NAME, benign_label=BENIGN, schema_file=schema_file,
                            columns=list(table.columns))
    if drop_duplicates:
        table = drop_duplicate_rows(table, [*base.names, ATTACK], split="all", notes=notes)
    attack = table[ATTACK].to_numpy(dtype=object)
    if scheme == "binary":
        labels = np.where(attack == BENIGN, BENIGN, "attack")
    elif scheme == "category":
        unknown = sorted({a for a in set(attack) if a != BENIGN and a not in CATEGORIES})
        if unknown:
            raise DataError(f"{NAME}: label(s) {unknown} have no category; use scheme='attack'")
        labels = np.array([BENIGN if a == BENIGN else CATEGORIES[a] for a in attack],
                          dtype=object)
    else:
        labels = attack
    table[LABEL] = pd.array(labels, dtype="string")
    train_df, test_df = split_table(table, attack, test_size=test_size, seed=seed)
    notes.append(f"split {len(table):,} rows: test_size={test_size}, seed={seed}, stratified on "
                 f"the published label")
    if scheme == "binary":
        classes = [BENIGN, "attack"]
    elif scheme == "category":
        present = set(labels)
        classes = [c for c in _CATEGORY_ORDER if c in present or c == BENIGN]
    else:
        classes = order_classes(BENIGN, train_df[LABEL], test_df[LABEL])
    return finish(name=NAME, train=train_df, test=test_df, schema=schema, scheme=scheme,
                  classes=classes, notes=notes, extra=(ATTACK,), label_column=RAW_LABEL,
                  source=str(paths[0]) if len(paths) == 1 else NAME,
                  allow_below=negative == "keep")
