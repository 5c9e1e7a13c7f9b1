"""Which bound or relation each raw record breaks (``FeatureSpace.validate``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from advsec.features.codec import labels
from advsec.features.constraints import VIOLATION_EPS
from advsec.features.schema import FeatureKind

if TYPE_CHECKING:
    from advsec.features.space import FeatureSpace

__all__ = ["validate_table"]


def validate_table(space: FeatureSpace, raw: pd.DataFrame,
                   reference: pd.DataFrame | None = None) -> pd.DataFrame:
    """``FeatureSpace.validate`` of the raw table ``raw`` (N rows, checked by the caller): a
    boolean ``(N, checks)`` DataFrame, True = violated, indexed like ``raw``; with
    ``reference`` (the N original records), the action-model checks too."""
    n = len(raw)
    checks: dict[str, np.ndarray] = {}
    moves: dict[str, np.ndarray] = {}
    mat = np.zeros((len(space.numeric_features_), n), dtype=np.float64)  # used as mat.T
    for k, name in enumerate(space.numeric_features_):
        f = space.schema[name]
        values = _numbers(raw[name])
        finite = np.isfinite(values)
        bad = ~finite
        with np.errstate(invalid="ignore"):
            if f.lower is not None:
                bad |= values < f.lower
            if f.upper is not None:
                bad |= values > f.upper
            if f.kind is not FeatureKind.CONTINUOUS:
                bad |= np.floor(values) != values
        checks[f"bound:{name}"] = bad
        allowed = space.values_.get(name)
        if allowed is not None:
            checks[f"values:{name}"] = ~np.isin(values, np.asarray(allowed, dtype=np.float64))
        if reference is not None and f.mutable and f.direction != "any":
            ref = _numbers(reference[name])
            with np.errstate(invalid="ignore"):
                moves[f"direction:{name}"] = (values < ref) if f.direction == "increase" else (
                    values > ref)
        mat[k] = np.where(finite, values, 0.0)
    if space.relations_:
        tensor = torch.from_numpy(mat).T
        for rel in space.relations_:
            checks[f"relation:{rel.name}"] = (rel.violation(tensor) > VIOLATION_EPS).numpy()
    if reference is not None:
        checks.update(moves)
        for f in space.schema:
            if f.mutable:
                continue
            if f.is_numeric:
                changed = _numbers(raw[f.name]) != _numbers(reference[f.name])
            else:
                a = labels(raw[f.name]).to_numpy(dtype=object)
                b = labels(reference[f.name]).to_numpy(dtype=object)
                changed = np.array([x != y for x, y in zip(a, b, strict=True)], dtype=bool)
            checks[f"immutable:{f.name}"] = changed
    return pd.DataFrame(checks, index=raw.index)


def _numbers(col: pd.Series) -> np.ndarray:
    if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
        return col.to_numpy(dtype=np.float64, na_value=np.nan)
    return pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
