"""FeatureSpace: raw records <-> model inputs in [0, 1], and the attacker's valid region.

Every detector consumes float32 arrays of shape ``(N, D)`` with values in ``[0, 1]``:

- numeric features (continuous, integer, binary): ``log1p`` first when the schema says so, then
  min-max scaled. The scale uses the feature's physical bounds where the schema gives them and
  the training minimum/maximum otherwise, so epsilon means "a fraction of the feature's range".
- categorical features: one-hot over the categories seen in training plus a final ``<other>`` slot
  that takes categories never seen in training.

The space is fitted on the training split only. Attacks use :meth:`FeatureSpace.torch_view` for the
mutable mask and bounds (no NumPy inside attack loops), :meth:`FeatureSpace.project` at every step
and :meth:`FeatureSpace.repair` once at the end.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from advsec.errors import DataError, SchemaError
from advsec.features.schema import Feature, FeatureKind, FeatureSchema

__all__ = ["OTHER", "FeatureSpace", "TorchView"]

OTHER = "<other>"


@dataclass(frozen=True)
class TorchView:
    """Per-column tensors of a fitted space on one device; every tensor has shape ``(D,)``.

    Attributes:
        lower, upper: model-space bounds of the valid region (float32).
        mutable: True where the attacker may change the column.
        numeric: True for numeric columns (False inside one-hot blocks).
        integer: True for integer and binary columns (repaired by rounding in raw units).
        log1p: True for columns scaled after ``log1p``.
        lo, span: the scaling: ``encoded = (t(raw) - lo) / span`` (float64, for repair).
        raw_lower, raw_upper: physical bounds in raw units (float64, +-inf when unbounded).
    """

    lower: torch.Tensor
    upper: torch.Tensor
    mutable: torch.Tensor
    numeric: torch.Tensor
    integer: torch.Tensor
    log1p: torch.Tensor
    lo: torch.Tensor
    span: torch.Tensor
    raw_lower: torch.Tensor
    raw_upper: torch.Tensor
    blocks: tuple[tuple[int, int], ...]


class FeatureSpace:
    """Encoder/decoder between raw records and model inputs; knows the valid region.

    Args:
        schema: the raw feature schema.

    Learned attributes (after :meth:`fit`):
        columns_: model-space column names, length ``D``.
        blocks_: for each feature, ``(feature, start, stop)`` column slice in model space.
        lo_, span_: per numeric feature, the (transformed) minimum and range used for scaling.
        categories_: per categorical feature, the categories (``<other>`` excluded).

    Example:
        >>> space = FeatureSpace(schema).fit(train_df)
        >>> x = space.encode(test_df)           # float32 (N, D) in [0, 1]
        >>> raw = space.decode(x)               # DataFrame with the schema's columns
    """

    def __init__(self, schema: FeatureSchema) -> None:
        if not isinstance(schema, FeatureSchema):
            raise SchemaError(f"FeatureSpace needs a FeatureSchema, got {type(schema).__name__}")
        self.schema = schema
        self._views: dict[str, TorchView] = {}

    # ------------------------------------------------------------------ fitting
    def fit(self, raw: pd.DataFrame) -> FeatureSpace:
        """Learn scalings and categories from the training table ``raw`` (N rows)."""
        self._check_columns(raw)
        if len(raw) == 0:
            raise DataError("cannot fit a FeatureSpace on an empty table")
        self.lo_: dict[str, float] = {}
        self.span_: dict[str, float] = {}
        self.categories_: dict[str, tuple[str, ...]] = {}
        for f in self.schema:
            if f.kind is FeatureKind.CATEGORICAL:
                seen = pd.unique(raw[f.name].astype(str))
                if f.categories is not None:
                    cats = tuple(f.categories)
                else:
                    cats = tuple(sorted(str(c) for c in seen))
                self.categories_[f.name] = cats
                continue
            values = self._numeric(raw, f)
            t = _forward(values, f.transform)
            lo = _forward(np.array([f.lower]), f.transform)[0] if f.lower is not None else None
            hi = _forward(np.array([f.upper]), f.transform)[0] if f.upper is not None else None
            lo = float(np.nanmin(t)) if lo is None else float(lo)
            hi = float(np.nanmax(t)) if hi is None else float(hi)
            if not math.isfinite(lo) or not math.isfinite(hi):
                raise DataError(f"column {f.name!r}: no finite values to fit a scaling")
            self.lo_[f.name] = lo
            self.span_[f.name] = hi - lo if hi > lo else 1.0
        self._build_layout()
        return self

    def _build_layout(self) -> None:
        columns: list[str] = []
        blocks: list[tuple[Feature, int, int]] = []
        for f in self.schema:
            start = len(columns)
            if f.kind is FeatureKind.CATEGORICAL:
                columns.extend(f"{f.name}={c}" for c in (*self.categories_[f.name], OTHER))
            else:
                columns.append(f.name)
            blocks.append((f, start, len(columns)))
        self.columns_ = columns
        self.blocks_ = blocks
        self._views = {}

    @property
    def n_features_out(self) -> int:
        """``D``, the number of model-space columns."""
        self._check_fitted()
        return len(self.columns_)

    @property
    def mutable_mask(self) -> np.ndarray:
        """Boolean ``(D,)``: True where the attacker may change the column."""
        self._check_fitted()
        mask = np.zeros(len(self.columns_), dtype=bool)
        for f, a, b in self.blocks_:
            mask[a:b] = f.mutable
        return mask

    # ------------------------------------------------------------------ encode / decode
    def encode(self, raw: pd.DataFrame) -> np.ndarray:
        """Raw table (N rows, the schema's columns) -> float32 ``(N, D)`` in ``[0, 1]``.

        Values outside the fitted range are clipped to it; unseen categories go to ``<other>``.
        """
        self._check_fitted()
        self._check_columns(raw)
        n = len(raw)
        out = np.zeros((n, len(self.columns_)), dtype=np.float32)
        for f, a, _ in self.blocks_:
            if f.kind is FeatureKind.CATEGORICAL:
                cats = self.categories_[f.name]
                codes = pd.Categorical(raw[f.name].astype(str), categories=list(cats)).codes
                codes = np.where(codes < 0, len(cats), codes)
                out[np.arange(n), a + codes] = 1.0
            else:
                values = self._numeric(raw, f)
                if f.lower is not None:
                    values = np.maximum(values, f.lower)
                if f.upper is not None:
                    values = np.minimum(values, f.upper)
                scaled = (_forward(values, f.transform) - self.lo_[f.name]) / self.span_[f.name]
                out[:, a] = np.clip(scaled, 0.0, 1.0)
        return out

    def decode(self, x: np.ndarray | torch.Tensor) -> pd.DataFrame:
        """Model inputs ``(N, D)`` -> raw records with the schema's columns and dtypes.

        Integers are rounded, binary flags thresholded at 0.5, categoricals taken as the argmax of
        their one-hot block (``<other>`` when that slot wins), and values clipped to the bounds.
        """
        self._check_fitted()
        arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
        if arr.ndim != 2 or arr.shape[1] != len(self.columns_):
            raise DataError(
                f"decode expects an array of shape (N, {len(self.columns_)}), got {arr.shape}"
            )
        arr = arr.astype(np.float64)
        data: dict[str, Any] = {}
        for f, a, b in self.blocks_:
            if f.kind is FeatureKind.CATEGORICAL:
                labels = np.array([*self.categories_[f.name], OTHER], dtype=object)
                data[f.name] = pd.array(labels[np.argmax(arr[:, a:b], axis=1)], dtype="string")
                continue
            t = np.clip(arr[:, a], 0.0, 1.0) * self.span_[f.name] + self.lo_[f.name]
            values = _inverse(t, f.transform)
            if f.lower is not None:
                values = np.maximum(values, f.lower)
            if f.upper is not None:
                values = np.minimum(values, f.upper)
            if f.kind is FeatureKind.BINARY:
                data[f.name] = (arr[:, a] >= 0.5).astype(np.int64)
            elif f.kind is FeatureKind.INTEGER:
                data[f.name] = np.rint(values).astype(np.int64)
            else:
                data[f.name] = values
        return pd.DataFrame(data)

    # ------------------------------------------------------------------ valid region (torch)
    def torch_view(self, device: torch.device | str = "cpu") -> TorchView:
        """The per-column tensors on ``device`` (cached per device)."""
        self._check_fitted()
        key = str(torch.device(device))
        if key in self._views:
            return self._views[key]
        d = len(self.columns_)
        mutable = torch.zeros(d, dtype=torch.bool)
        numeric = torch.zeros(d, dtype=torch.bool)
        integer = torch.zeros(d, dtype=torch.bool)
        log1p = torch.zeros(d, dtype=torch.bool)
        lo = torch.zeros(d, dtype=torch.float64)
        span = torch.ones(d, dtype=torch.float64)
        raw_lower = torch.full((d,), -math.inf, dtype=torch.float64)
        raw_upper = torch.full((d,), math.inf, dtype=torch.float64)
        cat_blocks: list[tuple[int, int]] = []
        for f, a, b in self.blocks_:
            mutable[a:b] = f.mutable
            if f.kind is FeatureKind.CATEGORICAL:
                cat_blocks.append((a, b))
                continue
            numeric[a] = True
            integer[a] = f.kind in (FeatureKind.INTEGER, FeatureKind.BINARY)
            log1p[a] = f.transform == "log1p"
            lo[a] = self.lo_[f.name]
            span[a] = self.span_[f.name]
            if f.lower is not None:
                raw_lower[a] = f.lower
            if f.upper is not None:
                raw_upper[a] = f.upper
        dev = torch.device(device)
        view = TorchView(
            lower=torch.zeros(d, dtype=torch.float32, device=dev),
            upper=torch.ones(d, dtype=torch.float32, device=dev),
            mutable=mutable.to(dev),
            numeric=numeric.to(dev),
            integer=integer.to(dev),
            log1p=log1p.to(dev),
            lo=lo.to(dev),
            span=span.to(dev),
            raw_lower=raw_lower.to(dev),
            raw_upper=raw_upper.to(dev),
            blocks=tuple(cat_blocks),
        )
        self._views[key] = view
        return view

    def project(self, x: torch.Tensor, x_orig: torch.Tensor) -> torch.Tensor:
        """Put ``x`` ``(N, D)`` back into the valid region, relaxed (cheap; used every step).

        Immutable columns (and immutable one-hot blocks) are restored from ``x_orig``; every column
        is clipped to its bounds. Mutable one-hot blocks stay relaxed until :meth:`repair`.
        """
        v = self.torch_view(x.device)
        x = torch.where(v.mutable, x, x_orig)
        return torch.clamp(x, v.lower, v.upper)

    def repair(self, x: torch.Tensor, x_orig: torch.Tensor) -> torch.Tensor:
        """Make ``x`` ``(N, D)`` encode a valid raw record (used once, after an attack).

        Applies :meth:`project`, rounds integer and binary features in raw units, sets every
        mutable one-hot block to the one-hot of its argmax, and leaves untouched columns
        bit-identical to ``x_orig``.
        """
        v = self.torch_view(x.device)
        x = self.project(x, x_orig)
        if bool(v.integer.any()):
            t = x.to(torch.float64) * v.span + v.lo
            raw = torch.where(v.log1p, torch.expm1(t), t)
            raw = torch.clamp(torch.round(raw), v.raw_lower, v.raw_upper)
            t2 = torch.where(v.log1p, torch.log1p(torch.clamp(raw, min=0.0)), raw)
            rounded = torch.clamp((t2 - v.lo) / v.span, 0.0, 1.0).to(x.dtype)
            x = torch.where(v.integer, rounded, x)
        for a, b in v.blocks:
            block = x[:, a:b]
            onehot = torch.nn.functional.one_hot(block.argmax(dim=1), b - a).to(x.dtype)
            x = torch.cat([x[:, :a], onehot, x[:, b:]], dim=1)
        return torch.where(x == x_orig, x_orig, x)

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dictionary with the schema and every learned parameter."""
        self._check_fitted()
        return {
            "schema": self.schema.to_dict(),
            "lo": self.lo_,
            "span": self.span_,
            "categories": {k: list(v) for k, v in self.categories_.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureSpace:
        """Inverse of :meth:`to_dict`."""
        space = cls(FeatureSchema.from_dict(data["schema"]))
        space.lo_ = {k: float(v) for k, v in data["lo"].items()}
        space.span_ = {k: float(v) for k, v in data["span"].items()}
        space.categories_ = {k: tuple(v) for k, v in data["categories"].items()}
        space._build_layout()
        return space

    # ------------------------------------------------------------------ helpers
    def _check_fitted(self) -> None:
        if not hasattr(self, "columns_"):
            raise RuntimeError("this FeatureSpace is not fitted yet: call fit(train) first")

    def _check_columns(self, raw: pd.DataFrame) -> None:
        if not isinstance(raw, pd.DataFrame):
            raise DataError(f"expected a pandas DataFrame of raw records, got {type(raw).__name__}")
        missing = [n for n in self.schema.names if n not in raw.columns]
        if missing:
            raise DataError(f"table is missing feature column(s) {missing}")

    @staticmethod
    def _numeric(raw: pd.DataFrame, f: Feature) -> np.ndarray:
        col = raw[f.name]
        values = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        bad = np.isnan(values)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"column {f.name!r}, row {row}: expected a number, got {col.iloc[row]!r}"
            )
        return values

    def __repr__(self) -> str:
        fitted = f", D={len(self.columns_)}" if hasattr(self, "columns_") else ", unfitted"
        return f"FeatureSpace({len(self.schema)} features{fitted})"


def _forward(values: np.ndarray, transform: str) -> np.ndarray:
    return np.log1p(values) if transform == "log1p" else values


def _inverse(values: np.ndarray, transform: str) -> np.ndarray:
    return np.expm1(values) if transform == "log1p" else values
