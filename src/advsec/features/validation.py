"""Which bound or relation each raw record breaks (``FeatureSpace.validate``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from advsec.features.constraints import VIOLATION_EPS
from advsec.features.schema import FeatureKind

if TYPE_CHECKING:
    from advsec.features.space import FeatureSpace

__all__ = ["validate_table"]


def validate_table(space: FeatureSpace, raw: pd.DataFrame) -> pd.DataFrame:
    """``FeatureSpace.validate`` of the raw table ``raw`` (N rows, checked by the caller): a
    boolean ``(N, checks)`` DataFrame, True = violated, indexed like ``raw``."""
    n = len(raw)
    checks: dict[str, np.ndarray] = {}
    mat = np.zeros((len(space.numeric_features_), n), dtype=np.float64)  # used as mat.T
    for k, name in enumerate(space.numeric_features_):
        f = space.schema[name]
        col = raw[name]
        if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
            values = col.to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            values = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64,
                                                                  na_value=np.nan)
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
        mat[k] = np.where(finite, values, 0.0)
    if space.relations_:
        tensor = torch.from_numpy(mat).T
        for rel in space.relations_:
            checks[f"relation:{rel.name}"] = (rel.violation(tensor) > VIOLATION_EPS).numpy()
    return pd.DataFrame(checks, index=raw.index)
