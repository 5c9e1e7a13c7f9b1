"""What a fitted FeatureSpace changes when it encodes a raw table it was not fitted on.

:meth:`FeatureSpace.encode` clips numeric values to the schema's bounds and to the range seen at
fit time, and encodes categories it never saw as ``<other>``. That is the right thing for a
model, but the records the model scores (and an attack starts from) are then not exactly the
records of the table: :func:`encoding_notes` says, per feature, how many records are affected
and shows the first one, so a command can tell its user before it reports numbers on them.

Shapes: ``raw`` has ``N`` rows and (at least) the schema's columns.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from advsec.features.codec import labels, numeric_values, unit_scaled
from advsec.features.schema import Feature, FeatureKind

if TYPE_CHECKING:
    from advsec.features.space import FeatureSpace

__all__ = ["encoding_notes"]


def encoding_notes(space: FeatureSpace, raw: pd.DataFrame, *, rows: bool = True) -> list[str]:
    """One sentence per feature whose values ``encode`` changes in ``raw``: numeric values
    outside the schema bounds or the fitted range (clipped to it), categories the space never
    saw or empty ones (encoded as ``<other>``), with the first such value and (``rows``) its
    1-based row in ``raw``. Empty when the space encodes every record as it is."""
    notes: list[str] = []
    for f, _, _ in space.blocks_:
        found = ([_category_note(space, raw, f, rows)] if f.kind is FeatureKind.CATEGORICAL
                 else [_numeric_note(space, raw, f, rows), _fraction_note(raw, f, rows)])
        notes += [n for n in found if n]
    return notes


def _fraction_note(raw: pd.DataFrame, f: Feature, rows: bool) -> str | None:
    """Values of an integer feature that are not whole: the model scores them as they are,
    but they are no record of the schema (decoding rounds them, and validity fails)."""
    if f.kind is not FeatureKind.INTEGER:
        return None
    values = numeric_values(raw, f)
    with np.errstate(invalid="ignore"):
        frac = np.isfinite(values) & (values != np.floor(values))
    if not frac.any():
        return None
    pos = int(np.flatnonzero(frac)[0])
    return (f"column {f.name!r}: {int(frac.sum()):,} record(s) with a fractional value of an "
            f"integer feature ({_first(pos, f'{values[pos]:g}', rows)}): scored as it is, "
            f"but not a valid record (exports round it)")


def _first(pos: int, value: str, rows: bool) -> str:
    return f"first: row {pos + 1}, {value}" if rows else f"first: {value}"


def _numeric_note(space: FeatureSpace, raw: pd.DataFrame, f: Feature,
                  rows: bool) -> str | None:
    values = numeric_values(raw, f)
    lower = f.lower if f.lower is not None else -np.inf
    upper = f.upper if f.upper is not None else np.inf
    with np.errstate(divide="ignore", invalid="ignore"):
        scaled = unit_scaled(space, f, values)  # what encode clips to [0, 1]
    out = (values < lower) | (values > upper) | (scaled < 0.0) | (scaled > 1.0)
    if not out.any():
        return None
    low, high = _fitted_range(space, f)
    low, high = max(low, lower), min(high, upper)
    pos = int(np.flatnonzero(out)[0])
    return (f"column {f.name!r}: {int(out.sum()):,} record(s) outside the model's range "
            f"[{low:g}, {high:g}] ({_first(pos, f'{values[pos]:g}', rows)}), encoded as the "
            f"nearest end of it")


def _fitted_range(space: FeatureSpace, f: Feature) -> tuple[float, float]:
    """The raw values the fitted scaling maps to 0 and 1."""
    lo, span = float(space.lo_[f.name]), float(space.span_[f.name])
    ends = np.array([lo, lo + span])
    if f.transform == "log1p":
        ends = np.expm1(ends)
    return float(ends[0]), float(ends[1])


def _category_note(space: FeatureSpace, raw: pd.DataFrame, f: Feature,
                   rows: bool) -> str | None:
    text = labels(raw[f.name])
    known = text.isin(list(space.categories_[f.name])).to_numpy(dtype=bool, na_value=False)
    if known.all():
        return None
    pos = int(np.flatnonzero(~known)[0])
    first = text.iloc[pos]
    shown = "empty" if pd.isna(first) else repr(str(first)[:60])
    distinct = int(text[~known].nunique(dropna=False))
    return (f"column {f.name!r}: {int((~known).sum()):,} record(s) with a category the model "
            f"never saw ({distinct:,} distinct; {_first(pos, shown, rows)}), encoded as "
            f"<other>")
