"""What KDD Cup 1999 and NSL-KDD share: the 41 features, the file reader and the label schemes."""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from advsec.datasets._common import LABEL, SCHEMA_DIR, order_classes
from advsec.datasets._csv_errors import first_null
from advsec.datasets._readers import read_csv
from advsec.errors import ConfigError, DataError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "ATTACK",
    "KDD_FEATURES",
    "KDD_SCHEMES",
    "attack_categories",
    "kdd_frame",
    "kdd_labels",
    "kdd_types",
    "kdd_what",
    "read_kdd_file",
]

log = logging.getLogger(__name__)

#: The 41 features, in file order (KDD'99 and NSL-KDD).
KDD_FEATURES: tuple[str, ...] = (
    "duration", "protocol_type", "service", "flag", "src_bytes", "dst_bytes", "land",
    "wrong_fragment", "urgent", "hot", "num_failed_logins", "logged_in", "num_compromised",
    "root_shell", "su_attempted", "num_root", "num_file_creations", "num_shells",
    "num_access_files", "num_outbound_cmds", "is_host_login", "is_guest_login", "count",
    "srv_count", "serror_rate", "srv_serror_rate", "rerror_rate", "srv_rerror_rate",
    "same_srv_rate", "diff_srv_rate", "srv_diff_host_rate", "dst_host_count",
    "dst_host_srv_count", "dst_host_same_srv_rate", "dst_host_diff_srv_rate",
    "dst_host_same_src_port_rate", "dst_host_srv_diff_host_rate", "dst_host_serror_rate",
    "dst_host_srv_serror_rate", "dst_host_rerror_rate", "dst_host_srv_rerror_rate",
)
_SYMBOLIC = ("protocol_type", "service", "flag")
#: Column holding the raw attack name (``normal`` or e.g. ``smurf``, no trailing dot).
ATTACK = "attack"
#: Label schemes: binary (normal/attack), the 5 standard categories, raw attack names.
KDD_SCHEMES = ("binary", "category", "attack")
_UNKNOWN_POLICIES = ("drop", "error", "keep")


def kdd_types(names: tuple[str, ...]) -> dict[str, pa.DataType]:
    """pyarrow types of KDD-format columns: strings for the symbolic features and the label,
    float64 for the ``*_rate`` shares, int64 for the other features (and ``extra`` columns)."""
    out: dict[str, pa.DataType] = {}
    for name in names:
        if name in _SYMBOLIC or name == ATTACK:
            out[name] = pa.string()
        elif name.endswith("_rate"):
            out[name] = pa.float64()
        else:
            out[name] = pa.int64()
    return out


def kdd_what(extra: tuple[str, ...] = ()) -> str:
    """How a KDD-format file is described in read errors."""
    return (f"{len(KDD_FEATURES) + 1 + len(extra)} comma-separated fields (41 features, label"
            f"{', ' + ', '.join(extra) if extra else ''}), no header")


def read_kdd_file(path: Path, *, extra: tuple[str, ...] = ()) -> pd.DataFrame:
    """One headerless KDD-format file -> the 41 features, ``attack`` and ``extra`` columns.

    ``attack`` is the raw label with any trailing dot removed (``"smurf."`` -> ``"smurf"``).
    Numeric columns are int64 (counts) or float64 (rates); symbolic ones are strings.
    """
    names = (*KDD_FEATURES, ATTACK, *extra)
    read = read_csv(path, header=False, names=names, types=kdd_types(names), quoted=False,
                    what=kdd_what(extra))
    return kdd_frame(read.table, path, extra=extra)


def kdd_frame(table: pa.Table, path: Path, *, extra: tuple[str, ...] = (),
              offset: int = 0) -> pd.DataFrame:
    """Parsed KDD-format rows (a whole file, or a chunk whose first row is data row
    ``offset + 1`` of ``path``) -> the frame :func:`read_kdd_file` returns; empty values are
    :class:`DataError` naming the file and the row."""
    null = first_null(table, [*KDD_FEATURES, *extra])
    if null is not None:
        raise DataError(f"{path}, row {offset + null[1]}, column {null[0]!r}: empty value, "
                        f"expected a number")
    df = table.to_pandas()
    codes, uniques = pd.factorize(df[ATTACK])
    cleaned = np.array([str(u).strip().rstrip(".") for u in uniques], dtype=object)
    df[ATTACK] = pd.array(cleaned[codes], dtype="string")
    for name in (*_SYMBOLIC, ATTACK):
        empty = (df[name].isna() | (df[name] == "")).to_numpy()
        if empty.any():
            row = offset + int(np.flatnonzero(empty)[0]) + 1
            shown = "label" if name == ATTACK else name
            raise DataError(f"{path}, row {row}, column {shown!r}: empty value, expected a label")
    return df


@lru_cache(maxsize=1)
def _category_file() -> tuple[str, tuple[str, ...], dict[str, str]]:
    with (SCHEMA_DIR / "kdd_categories.toml").open("rb") as fh:
        data = tomllib.load(fh)
    table = {name: cat for cat, names in data["categories"].items() for name in names}
    return str(data["benign"]), tuple(data["order"]), table


def attack_categories(overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """The attack-name -> category table (``schemas/kdd_categories.toml``) with ``overrides``."""
    benign, order, table = _category_file()
    table = {benign: benign, **table}
    for name, cat in (overrides or {}).items():
        if cat not in order:
            raise ConfigError(f"category_map: {name!r} -> {cat!r}; categories are {list(order)}")
        table[str(name)] = str(cat)
    return table


def kdd_labels(
    train: pd.DataFrame,
    test: pd.DataFrame,
    *,
    dataset: str,
    scheme: str,
    category_map: Mapping[str, str] | None,
    unknown_attacks: str,
    notes: list[str],
) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Add the scheme's :data:`LABEL` column to both splits; returns ``(train, test, classes)``.

    - ``binary``: ``"normal"`` / ``"attack"``.
    - ``category``: ``normal, dos, probe, r2l, u2r`` by :func:`attack_categories`. Attack names
      outside the table are dropped with a note (``unknown_attacks="drop"``), raise a
      :class:`DataError` (``"error"``) or become the class ``"unknown"`` (``"keep"``).
    - ``attack``: the raw attack names; names only the test split has are listed in a note.
    """
    benign, order, _ = _category_file()
    if unknown_attacks not in _UNKNOWN_POLICIES:
        raise ConfigError(f"unknown_attacks must be one of {_UNKNOWN_POLICIES}, "
                          f"got {unknown_attacks!r}")
    train_names = set(train[ATTACK].unique())
    test_only = sorted(set(test[ATTACK].unique()) - train_names)
    if scheme == "binary":
        for table in (train, test):
            table[LABEL] = pd.array(
                np.where(table[ATTACK].to_numpy() == benign, benign, "attack"), dtype="string")
        if test_only:
            notes.append(f"test: {len(test_only)} attack names absent from training "
                         f"(labelled 'attack'): {', '.join(test_only)}")
        return train, test, [benign, "attack"]
    if scheme == "attack":
        for table in (train, test):
            table[LABEL] = table[ATTACK]
        if test_only:
            notes.append(f"test: {len(test_only)} attack names absent from training: "
                         f"{', '.join(test_only)}")
        return train, test, order_classes(benign, train[LABEL], test[LABEL])
    table_map = attack_categories(category_map)
    out: list[pd.DataFrame] = []
    classes = list(order)
    for split, table in (("train", train), ("test", test)):
        codes, uniques = pd.factorize(table[ATTACK])
        cats = np.array([table_map.get(str(u), "") for u in uniques], dtype=object)
        unknown = [str(u) for u, c in zip(uniques, cats, strict=True) if not c]
        if unknown:
            counts = table[ATTACK].value_counts()
            listed = ", ".join(f"{u} ({counts[u]:,})" for u in sorted(unknown))
            if unknown_attacks == "error":
                raise DataError(f"{dataset}: {split} has attack name(s) outside the category "
                                f"table: {listed}; pass category_map or unknown_attacks='drop'")
            if unknown_attacks == "drop":
                keep = cats[codes] != ""
                notes.append(f"{split}: dropped {int((~keep).sum()):,} rows whose attack name is "
                             f"outside the category table: {listed}")
                log.warning("%s: %s", dataset, notes[-1])
                table = table.loc[keep].reset_index(drop=True)
                codes = codes[keep]
            else:
                cats = np.where(cats == "", "unknown", cats)
                if "unknown" not in classes:
                    classes.append("unknown")
                notes.append(f"{split}: attack names outside the category table labelled "
                             f"'unknown': {listed}")
        table[LABEL] = pd.array(cats[codes], dtype="string")
        out.append(table)
    if test_only:
        mapped = ", ".join(f"{n}->{table_map[n]}" for n in test_only if n in table_map)
        if mapped:
            notes.append(f"test: attack names absent from training, mapped by the category "
                         f"table: {mapped}")
    return out[0], out[1], classes
