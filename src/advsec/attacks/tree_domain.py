"""The values a valid record can give each model column, for the exact tree attack.

A tree ensemble only asks, per column, on which side of each split threshold a value lies, so
the valid region of a record is described per column by the intervals between consecutive
thresholds, ``(t[k-1], t[k]]``, and, in each, the lowest and highest *admissible* model value
(:class:`Domain`): a float32 model input that is the encoding of a raw value the FeatureSpace
accepts (:func:`domains`):

- ``"set"``: finitely many values: a value set (``values`` in the schema), a binary feature
  (``encode(0)``, ``encode(1)``), a column of a one-hot block (0 or 1);
- ``"grid"``: whole numbers (integer features) or the learned decimals of a continuous feature,
  inside the raw bounds, encoded (``log1p`` then min-max scaling, float32) as
  ``FeatureSpace.encode`` does; the encoding is monotone, so the lowest admissible value at or
  above ``a`` is the encoding of one of the grid values next to the raw value at ``a``;
- ``"cont"``: any float32 in the column's model bounds (continuous, no learned decimals).

Directions and immutables depend on the record and are applied by the program
(:mod:`advsec.verification.tree_program`); bounds, grids and value sets are here.

Shapes: ``D`` model columns; arrays of thresholds ``(K,)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from advsec.errors import ConfigError
from advsec.features.codec import decode_numeric
from advsec.features.schema import FeatureKind
from advsec.features.threat import encode_values

if TYPE_CHECKING:
    from advsec.features.space import FeatureSpace

__all__ = ["Domain", "domains", "f32_down", "f32_up"]

_F32 = np.float32


def f32_up(a: np.ndarray) -> np.ndarray:
    """The smallest float32 ``>= a`` (as float64), elementwise."""
    v = np.asarray(a, dtype=np.float64).astype(_F32)
    v = np.where(v.astype(np.float64) < a, np.nextafter(v, _F32(np.inf)), v)
    return v.astype(np.float64)


def f32_down(b: np.ndarray) -> np.ndarray:
    """The largest float32 ``<= b`` (as float64), elementwise."""
    v = np.asarray(b, dtype=np.float64).astype(_F32)
    v = np.where(v.astype(np.float64) > b, np.nextafter(v, _F32(-np.inf)), v)
    return v.astype(np.float64)


@dataclass(frozen=True)
class Domain:
    """The admissible model values of one column (module docstring).

    Attributes:
        kind: ``"set"``, ``"grid"`` or ``"cont"``.
        values: ``"set"``: the sorted admissible values (float64 holding float32).
        lower, upper: the model bounds (``"cont"``; also the hull of the others).
        step: ``"grid"``: the grid step in raw units (1, or ``10**-decimals``);
            decimals: its decimals (0 for whole numbers).
        lo, span, log1p, raw_lower, raw_upper: ``"grid"``: the column's scaling
            (``(t(raw) - lo) / span``) and raw bounds (+-inf when unbounded).
    """

    kind: Literal["set", "grid", "cont"]
    values: np.ndarray | None = None
    lower: float = 0.0
    upper: float = 1.0
    step: float = 1.0
    decimals: int = 0
    lo: float = 0.0
    span: float = 1.0
    log1p: bool = False
    raw_lower: float = -np.inf
    raw_upper: float = np.inf

    # ------------------------------------------------------------------ grid helpers
    def encode(self, raw: np.ndarray) -> np.ndarray:
        """Raw values -> float32 model values (float64), as ``FeatureSpace.encode``."""
        r = np.clip(raw, self.raw_lower, self.raw_upper)
        t = np.log1p(r) if self.log1p else r
        return np.clip((t - self.lo) / self.span, 0.0, 1.0).astype(_F32).astype(np.float64)

    def raw(self, v: np.ndarray) -> np.ndarray:
        """Model values -> raw values (unrounded float64; the inverse scaling)."""
        t = np.clip(v, 0.0, 1.0) * self.span + self.lo
        return np.expm1(t) if self.log1p else t

    def _grid(self, n: np.ndarray) -> np.ndarray:
        g = np.round(n * self.step, self.decimals) if self.decimals else n * self.step
        return np.asarray(g, dtype=np.float64)

    def _grid_range(self) -> tuple[float, float]:
        lo = np.ceil(self.raw_lower / self.step - 1e-9) if np.isfinite(self.raw_lower) else -np.inf
        hi = np.floor(self.raw_upper / self.step + 1e-9) if np.isfinite(self.raw_upper) else np.inf
        return float(lo), float(hi)

    def _candidates(self, at: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray]:
        """``(raw grid values (A, 5), their encodings (A, 5))`` next to the raw value at the
        model values ``at`` (``side`` +1: rounding up, -1: down)."""
        r = self.raw(at) / self.step
        base = np.ceil(r - 1e-9) if side > 0 else np.floor(r + 1e-9)
        n = base[:, None] + np.arange(-2, 3)[None, :]
        lo, hi = self._grid_range()
        n = np.clip(n, lo, hi)
        g = self._grid(n)
        return g, self.encode(g)

    # ------------------------------------------------------------------ queries
    def up(self, a: np.ndarray) -> np.ndarray:
        """The smallest admissible value ``>= a`` (elementwise; NaN where none)."""
        a = np.asarray(a, dtype=np.float64)
        if self.kind == "set":
            assert self.values is not None
            i = np.searchsorted(self.values, a, side="left")
            return np.where(i < len(self.values),
                            self.values[np.minimum(i, len(self.values) - 1)], np.nan)
        if self.kind == "cont":
            v = np.maximum(f32_up(a), self.lower)
            return np.where(v <= self.upper, v, np.nan)
        v = f32_up(np.clip(a, 0.0, 1.0))
        mid = (v + f32_down(np.nextafter(v, -np.inf))) / 2
        _, e = self._candidates(mid, +1)
        e = np.where(e >= a[:, None], e, np.inf).min(axis=1)
        return np.where(np.isfinite(e), e, np.nan)

    def down(self, b: np.ndarray) -> np.ndarray:
        """The largest admissible value ``<= b`` (elementwise; NaN where none)."""
        b = np.asarray(b, dtype=np.float64)
        if self.kind == "set":
            assert self.values is not None
            i = np.searchsorted(self.values, b, side="right") - 1
            return np.where(i >= 0, self.values[np.maximum(i, 0)], np.nan)
        if self.kind == "cont":
            v = np.minimum(f32_down(b), self.upper)
            return np.where(v >= self.lower, v, np.nan)
        v = f32_down(np.clip(b, 0.0, 1.0))
        mid = (v + f32_up(np.nextafter(v, np.inf))) / 2
        _, e = self._candidates(mid, -1)
        e = np.where(e <= b[:, None], e, -np.inf).max(axis=1)
        return np.where(np.isfinite(e), e, np.nan)

    def grid_index(self, v: np.ndarray) -> np.ndarray:
        """``"grid"``: the grid index (raw value / step, a whole number) of admissible values."""
        return np.round(np.round(self.raw(v), self.decimals) / self.step)

    def intervals(self, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(low (K+1,), high (K+1,))``: the lowest and highest admissible value of each
        interval ``(t[k-1], t[k]]`` between the sorted ``thresholds`` ``(K,)`` (``t[-1] =
        -inf``, ``t[K] = +inf``); NaN for an interval without one."""
        t = np.asarray(thresholds, dtype=np.float64)
        left = np.concatenate([[-np.inf], np.nextafter(t, np.inf)])
        right = np.concatenate([t, [np.inf]])
        low = self.up(np.maximum(left, self.lower - 1.0))
        high = self.down(np.minimum(right, self.upper + 1.0))
        empty = ~(low <= high)
        return np.where(empty, np.nan, low), np.where(empty, np.nan, high)


def domains(space: FeatureSpace | None, d: int, *,
            bounds: tuple[float, float] | None = (0.0, 1.0)) -> list[Domain]:
    """The :class:`Domain` of every model column of ``space`` (``None``: ``d`` columns of any
    float32 in ``bounds``, which must then be finite: a one-line ConfigError otherwise)."""
    if space is None:
        if bounds is None or not (np.isfinite(bounds[0]) and np.isfinite(bounds[1])
                                  and bounds[0] <= bounds[1]):
            raise ConfigError(f"tree verification without a feature_space needs finite "
                              f"bounds (low, high), got {bounds!r}")
        lo = float(f32_up(np.array([float(bounds[0])]))[0])
        hi = float(f32_down(np.array([float(bounds[1])]))[0])
        return [Domain("cont", lower=lo, upper=hi) for _ in range(d)]
    out: list[Domain] = [Domain("cont")] * len(space.columns_)
    for f, a, b in space.blocks_:
        if f.kind is FeatureKind.CATEGORICAL:
            for j in range(a, b):
                out[j] = Domain("set", values=np.array([0.0, 1.0]))
            continue
        allowed = space.values_.get(f.name)
        if f.kind is FeatureKind.BINARY or allowed is not None:
            vals = np.asarray([0.0, 1.0] if allowed is None or f.kind is FeatureKind.BINARY
                              else allowed, dtype=np.float64)
            enc = encode_values(space, f, vals).astype(np.float64)
            keep = decode_numeric(space, enc.astype(_F32), f) == vals
            out[a] = Domain("set", values=np.unique(enc[keep]))
            continue
        places = space.decimals_.get(f.name)
        lower = float(f.lower) if f.lower is not None else -np.inf
        upper = float(f.upper) if f.upper is not None else np.inf
        if f.kind is FeatureKind.CONTINUOUS and places is None:
            dom = Domain("grid", lo=space.lo_[f.name], span=space.span_[f.name],
                         log1p=f.transform == "log1p", raw_lower=lower, raw_upper=upper)
            lo_m = float(dom.encode(np.array([lower]))[0]) if np.isfinite(lower) else 0.0
            hi_m = float(dom.encode(np.array([upper]))[0]) if np.isfinite(upper) else 1.0
            out[a] = Domain("cont", lower=lo_m, upper=hi_m)
            continue
        dec = 0 if f.kind is not FeatureKind.CONTINUOUS else int(places or 0)
        out[a] = Domain("grid", step=10.0 ** -dec, decimals=dec, lo=space.lo_[f.name],
                        span=space.span_[f.name], log1p=f.transform == "log1p",
                        raw_lower=lower, raw_upper=upper)
    return out
