"""Checks of loaded tables against their schema, naming the source file and row of each problem.

Loaders tag each table read from a file with two hidden columns (:func:`tag_source`): the file
and the 1-based data row of every record. They survive de-duplication, label filtering and
splits, so a problem found after any of those still names the row of the file it came from;
:func:`~advsec.datasets._common.finish` drops them.

- :func:`check_labels`: an empty label (missing value, empty or blank text) is an error.
- :func:`check_values`: numeric features must hold finite numbers, within the schema's bounds;
  a value outside them is an error, or is clipped to the bound when the feature's
  ``on_bound_violation`` is ``"clip"`` (a warning and a note count the clipped values). A missing
  value of a boolean column, an integer beyond 2**53 in magnitude (float64 does not hold it
  exactly) and a range (bounds, else the values' extremes) whose width overflows float64 are
  errors too.
- :func:`check_classes`: the training split needs at least two classes.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd

from advsec.datasets._text import shown
from advsec.errors import DataError
from advsec.features.schema import Feature, FeatureKind, FeatureSchema

__all__ = ["EMPTY_FLAG", "EXACT_INT", "FILE", "ROW", "SOURCE_COLUMNS", "check_classes",
           "check_labels", "check_values", "first_inexact", "row_name", "tag_source"]

log = logging.getLogger(__name__)

#: Hidden column: the 1-based data row of each record in its file.
ROW = "__advsec_row__"
#: Hidden column: the file each record was read from.
FILE = "__advsec_file__"
SOURCE_COLUMNS = (ROW, FILE)
#: whole numbers up to this magnitude are exact in float64 (every feature is computed in it)
EXACT_INT = 2**53
#: the error for a missing value in a boolean column
EMPTY_FLAG = "empty value, expected true or false"


def tag_source(df: pd.DataFrame, path: str | Path) -> pd.DataFrame:
    """``df`` (rows in file order) with the hidden :data:`ROW` and :data:`FILE` columns."""
    n = len(df)
    df[ROW] = np.arange(1, n + 1, dtype=np.int64)
    df[FILE] = pd.Categorical.from_codes(np.zeros(n, dtype=np.int8), categories=[str(path)])
    return df


def first_inexact(col: pd.Series) -> int | None:
    """Position of the first value of the integer column ``col`` (``(N,)``, no missing values)
    beyond :data:`EXACT_INT` in magnitude, where float64 no longer holds every whole number
    (``uint64`` values near 2**64 collapse onto a few floats); ``None`` when there is none or
    ``col`` is not an integer column. Compared as integers, so the answer is exact."""
    if not pd.api.types.is_integer_dtype(col) or pd.api.types.is_bool_dtype(col):
        return None
    dtype = np.dtype(getattr(col.dtype, "numpy_dtype", col.dtype))
    if dtype.itemsize < 8:
        return None
    ints = col.to_numpy(dtype=dtype)
    big = ints > EXACT_INT
    if dtype.kind == "i":
        big |= ints < -EXACT_INT
    return int(np.flatnonzero(big)[0]) if big.any() else None


def row_name(df: pd.DataFrame, pos: int, fallback: str) -> str:
    """``"FILE, row N"`` of the record at position ``pos`` of ``df``; ``"FALLBACK, row pos+1"``
    for an untagged table."""
    if ROW in df.columns and FILE in df.columns:
        return f"{df[FILE].iloc[pos]}, row {int(df[ROW].iloc[pos])}"
    return f"{fallback}, row {pos + 1}"


def check_labels(df: pd.DataFrame, column: str, *, fallback: str, shown_as: str = "") -> None:
    """A :class:`DataError` naming the row if ``df[column]`` has an empty or blank label."""
    text = df[column].astype("string")
    empty = (text.isna() | (text.str.strip() == "")).to_numpy(dtype=bool, na_value=True)
    if empty.any():
        pos = int(np.flatnonzero(empty)[0])
        raise DataError(f"{row_name(df, pos, fallback)}, column {shown_as or column!r}: empty "
                        f"label; expected a class name")


def check_values(
    df: pd.DataFrame, schema: FeatureSchema, *, fallback: str, notes: list[str],
    allow_below: bool = False, training: bool = False,
) -> pd.DataFrame:
    """``df`` with every numeric feature checked: numbers, finite, within the bounds; with
    ``training`` (the training split, which the schema must describe) also whole numbers for
    integer and binary features and the listed value sets, naming the file row.

    A value outside a feature's bounds raises a :class:`DataError` naming the row, the column and
    the bound, unless the feature says ``on_bound_violation = "clip"``: then it is clipped and
    counted in ``notes`` and a log warning. ``allow_below``: values below a lower bound are left
    as they are (a loader's own documented policy, e.g. CIC-IDS2017's ``negative="keep"``).
    """
    for f in schema:
        if not f.is_numeric or f.name not in df.columns:
            continue
        col = df[f.name]
        if pd.api.types.is_bool_dtype(col):
            if col.isna().any():
                pos = int(np.flatnonzero(col.isna().to_numpy())[0])
                raise DataError(f"{row_name(df, pos, fallback)}, column {f.name!r}: "
                                f"{EMPTY_FLAG}")
            continue
        if not pd.api.types.is_numeric_dtype(col):
            numbers = pd.to_numeric(col, errors="coerce")
            bad = (numbers.isna() & col.notna()).to_numpy(dtype=bool)
            if bad.any():
                pos = int(np.flatnonzero(bad)[0])
                raise DataError(f"{row_name(df, pos, fallback)}, column {f.name!r}: expected a "
                                f"number, got {shown(col.iloc[pos])}")
            df[f.name] = col = numbers
        values = col.to_numpy(dtype=np.float64, na_value=np.nan)
        finite = np.isfinite(values)
        if not finite.all():
            pos = int(np.flatnonzero(~finite)[0])
            what = ("empty value, expected a number (blank or NaN)" if np.isnan(values[pos])
                    else f"got {values[pos]}; expected a finite number")
            raise DataError(f"{row_name(df, pos, fallback)}, column {f.name!r}: {what}")
        inexact = first_inexact(col)
        if inexact is not None:
            raise DataError(f"{row_name(df, inexact, fallback)}, column {f.name!r}: "
                            f"{col.iloc[inexact]} is beyond 2**53 in magnitude, where float64 "
                            f"does not hold every whole number; expected at most "
                            f"{EXACT_INT:,} (a category, kind = \"categorical\", keeps it "
                            f"exact)")
        _check_range(df, f, values, fallback)
        if training:
            _check_kind_and_values(df, f, values, fallback)
        low = -np.inf if f.lower is None or allow_below else f.lower
        high = np.inf if f.upper is None else f.upper
        outside = (values < low) | (values > high)
        if not outside.any():
            continue
        if f.on_bound_violation == "error":
            pos = int(np.flatnonzero(outside)[0])
            value = values[pos]
            side, bound = ("below the lower", f.lower) if value < low else ("above the upper",
                                                                             f.upper)
            raise DataError(f"{row_name(df, pos, fallback)}, column {f.name!r}: {value:g} is "
                            f"{side} bound {bound:g} of the schema; expected a value in "
                            f"{_interval(f.lower, f.upper)} (or set on_bound_violation = "
                            f"\"clip\" for this feature in a schema file)")
        clipped = np.clip(values, low, high)
        if pd.api.types.is_integer_dtype(col) and np.array_equal(np.floor(clipped), clipped):
            df[f.name] = clipped.astype(col.dtype)
        else:
            df[f.name] = clipped
        n = int(outside.sum())
        notes.append(f"{fallback}: clipped {n:,} value(s) of column {f.name!r} to "
                     f"{_interval(f.lower, f.upper)} (on_bound_violation = 'clip')")
        log.warning("%s", notes[-1])
    return df


def _check_kind_and_values(df: pd.DataFrame, f: Feature, values: np.ndarray,
                           fallback: str) -> None:
    """A :class:`DataError` naming the file row of the first value ``values`` ``(N,)`` that is
    not whole for an integer or binary feature ``f``, or outside its listed value set: the
    checks :meth:`FeatureSpace.check_training` makes later, which can name only a position in
    the split. (``values = "observed"`` is learned from these rows: nothing to check.)"""
    if f.kind is not FeatureKind.CONTINUOUS:
        frac = values != np.floor(values)
        if frac.any():
            pos = int(np.flatnonzero(frac)[0])
            raise DataError(f"{row_name(df, pos, fallback)}, column {f.name!r}: {values[pos]:g} "
                            f"is not a whole number; the schema says kind = "
                            f"\"{f.kind.value}\" (use \"continuous\" for fractions)")
    if isinstance(f.values, tuple):
        outside = ~np.isin(values, np.asarray(f.values, dtype=np.float64))
        if outside.any():
            pos = int(np.flatnonzero(outside)[0])
            listed = ", ".join(f"{v:g}" for v in f.values[:8]) + (", ..." if len(f.values) > 8
                                                                   else "")
            raise DataError(f"{row_name(df, pos, fallback)}, column {f.name!r}: "
                            f"{values[pos]:g} is not one of the schema's values ({listed})")


def _check_range(df: pd.DataFrame, f: Feature, values: np.ndarray, fallback: str) -> None:
    """A :class:`DataError` when the range the feature space scales ``f`` by (its bounds, else
    the least and greatest of ``values`` ``(N,)``) is wider than float64 holds: ``upper -
    lower`` overflows to infinity (values near +-1.7e308), and every encoded value with it."""
    if f.transform != "none" or not values.size:
        return
    lo = f.lower if f.lower is not None else float(values.min())
    hi = f.upper if f.upper is not None else float(values.max())
    if math.isfinite(hi - lo):
        return
    pos = int(np.argmax(values) if f.upper is None else np.argmin(values))
    raise DataError(f"{row_name(df, pos, fallback)}, column {f.name!r}: its range {lo:.3g} .. "
                    f"{hi:.3g} overflows float64 (upper - lower is not a finite number); "
                    f"expected values whose range float64 holds (leave the column out of the "
                    f"schema)")


def check_classes(labels: pd.Series, *, column: str, where: str, scheme: str) -> None:
    """A :class:`DataError` if the training labels hold fewer than two classes."""
    classes = sorted(map(str, pd.unique(labels.dropna())))
    if len(classes) == 1:
        raise DataError(f"{where}: the training split has a single class {classes[0]!r} "
                        f"(column {column!r}, scheme {scheme!r}); a detector needs at least "
                        f"two classes")


def _interval(lower: float | None, upper: float | None) -> str:
    lo = "-inf" if lower is None else f"{lower:g}"
    hi = "inf" if upper is None else f"{upper:g}"
    return f"[{lo}, {hi}]"
