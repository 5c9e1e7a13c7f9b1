"""Raw records <-> model inputs of a fitted :class:`~advsec.features.space.FeatureSpace`:
the NumPy/pandas side (``FeatureSpace.encode``, ``decode`` and the helpers ``fit`` shares).

Shapes: ``N`` records, ``D`` model columns.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from advsec.errors import DataError
from advsec.features.schema import Feature, FeatureKind

if TYPE_CHECKING:
    from advsec.features.space import FeatureSpace

__all__ = ["MAX_DECIMALS", "OTHER", "decimals", "decode_array", "decode_numeric",
           "encode_table", "forward", "labels", "numeric_values"]

OTHER = "<other>"
#: the most decimals ``fit`` learns for a continuous feature
MAX_DECIMALS = 9


def encode_table(space: FeatureSpace, raw: pd.DataFrame) -> np.ndarray:
    """``FeatureSpace.encode``: the raw table ``raw`` (N rows, checked by the caller) ->
    float32 ``(N, D)`` in ``[0, 1]``."""
    n = len(raw)
    out = np.zeros((len(space.columns_), n), dtype=np.float32)  # filled row by row, then .T
    rows = np.arange(n)
    for f, a, _ in space.blocks_:
        if f.kind is FeatureKind.CATEGORICAL:
            cats = space.categories_[f.name]
            codes, uniques = pd.factorize(labels(raw[f.name]))
            slot = pd.Index(cats, dtype=object).get_indexer(np.asarray(uniques, dtype=object))
            slot = np.append(np.where(slot < 0, len(cats), slot), len(cats))  # -1: missing
            out[a + slot[codes], rows] = 1.0
        else:
            out[a] = np.clip(unit_scaled(space, f, numeric_values(raw, f)), 0.0, 1.0)
    return np.ascontiguousarray(out.T)


def decode_array(space: FeatureSpace, x: np.ndarray | torch.Tensor,
                 reference: pd.DataFrame | None) -> pd.DataFrame:
    """``FeatureSpace.decode``: model inputs ``x`` ``(N, D)`` -> raw records (see there)."""
    arr = x.detach().to("cpu").numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if arr.ndim != 2 or arr.shape[1] != len(space.columns_):
        raise DataError(
            f"decode expects an array of shape (N, {len(space.columns_)}), got {arr.shape}"
        )
    n = arr.shape[0]
    same: np.ndarray | None = None
    if reference is not None:
        if len(reference) != n:
            raise DataError(f"decode: reference has {len(reference)} rows, x has {n}")
        same = space.encode(reference) == arr.astype(np.float32, copy=False)
    data: dict[str, Any] = {}
    for f, a, b in space.blocks_:
        if f.kind is FeatureKind.CATEGORICAL:
            names = pd.array([*space.categories_[f.name], OTHER], dtype="string")
            values = names[np.argmax(arr[:, a:b], axis=1)]
            if same is not None and reference is not None:
                keep = same[:, a:b].all(axis=1)
                if keep.all():
                    values = pd.array(labels(reference[f.name]), dtype="string")
                elif keep.any():
                    values = pd.array(np.where(
                        keep, labels(reference[f.name]).to_numpy(dtype=object),
                        values.to_numpy(dtype=object)), dtype="string")
            data[f.name] = values
            continue
        col = decode_numeric(space, arr[:, a], f)
        if same is not None and reference is not None:
            ref = reference[f.name].to_numpy(dtype=np.float64, na_value=np.nan) if (
                pd.api.types.is_numeric_dtype(reference[f.name])) else pd.to_numeric(
                reference[f.name], errors="coerce").to_numpy(dtype=np.float64,
                                                             na_value=np.nan)
            col = np.where(same[:, a], ref, col)
        if f.kind is FeatureKind.CONTINUOUS or not np.all(np.isfinite(col)):
            data[f.name] = col.astype(np.float64, copy=False)
        else:
            data[f.name] = col.astype(np.int64)
    index = reference.index if reference is not None else None
    return pd.DataFrame(data, index=index)


def decode_numeric(space: FeatureSpace, column: np.ndarray, f: Feature) -> np.ndarray:
    """One numeric model column ``(N,)`` -> float64 raw values, rounded as
    :func:`advsec.features.torch_view.quantize` rounds (NumPy twin of the torch path used by
    the repair)."""
    t = np.clip(column.astype(np.float64), 0.0, 1.0) * space.span_[f.name] + space.lo_[f.name]
    values = np.expm1(t) if f.transform == "log1p" else t
    if f.lower is not None or f.upper is not None:
        values = np.clip(values, f.lower if f.lower is not None else -np.inf,
                         f.upper if f.upper is not None else np.inf)
    if f.kind is not FeatureKind.CONTINUOUS:
        return np.floor(values + 0.5)
    if f.name in space.decimals_:
        scale = 10.0 ** space.decimals_[f.name]
        return np.round(values * scale) / scale
    return values


def unit_scaled(space: FeatureSpace, f: Feature, values: np.ndarray) -> np.ndarray:
    """Raw values ``(N,)`` of numeric feature ``f`` clipped to its schema bounds, transformed
    and min-max scaled by the fitted range: the model input before ``encode`` clips it to
    ``[0, 1]`` (outside it exactly where the fitted range does not hold the value)."""
    if f.lower is not None or f.upper is not None:
        lower = f.lower if f.lower is not None else -np.inf
        upper = f.upper if f.upper is not None else np.inf
        values = np.clip(values, lower, upper)
    return (forward(values, f.transform) - space.lo_[f.name]) / space.span_[f.name]


def numeric_values(raw: pd.DataFrame, f: Feature) -> np.ndarray:
    """The column of numeric feature ``f`` as float64 ``(N,)``; :class:`DataError` naming the
    table (``raw.attrs["path"]`` when set), the 1-based row and the column when a value is
    missing, non-numeric or infinite."""
    col = raw[f.name]
    if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
        values = col.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        values = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64,
                                                              na_value=np.nan)
    bad = ~np.isfinite(values)
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        value = col.iloc[pos]
        got = ("an empty value" if pd.isna(value) else
               f"{float(value)}" if isinstance(value, (int, float, np.number)) else
               repr(str(value)[:60]))
        where = f"{raw.attrs['path']}, " if raw.attrs.get("path") else ""
        raise DataError(f"{where}row {pos + 1}, column {f.name!r}: expected a finite number, "
                        f"got {got}")
    return values


def labels(col: pd.Series) -> pd.Series:
    """A categorical column as strings (missing values stay missing)."""
    if pd.api.types.is_string_dtype(col.dtype) or isinstance(col.dtype, pd.CategoricalDtype):
        return col
    return col.astype("string")


def forward(values: np.ndarray, transform: str) -> np.ndarray:
    """The feature transform (``"log1p"`` or none) of raw ``values``, elementwise."""
    return np.log1p(values) if transform == "log1p" else values


def decimals(values: np.ndarray) -> int | None:
    """The fewest decimals (0..9) that represent every value of ``values`` exactly, or None."""
    uniq = pd.unique(values)
    top = float(np.max(np.abs(uniq))) if len(uniq) else 0.0
    for d in range(MAX_DECIMALS + 1):
        scale = 10.0**d
        if top * scale >= 2.0**52:
            return None
        if np.array_equal(np.round(uniq * scale) / scale, uniq):
            return d
    return None
