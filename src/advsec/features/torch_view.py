"""Per-column tensors of a fitted :class:`~advsec.features.space.FeatureSpace` on one device,
and the torch conversions between model inputs and raw units that the repair uses.

Shapes: ``D`` model columns, ``K`` numeric features (the columns of ``FeatureSpace.to_raw``),
``N`` records.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from advsec.features.schema import FeatureKind

if TYPE_CHECKING:
    from advsec.features.space import FeatureSpace

__all__ = ["NumericView", "TorchView", "build_torch_view", "model_from_raw", "numeric_view",
           "quantize", "raw_from_model"]


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
        round_scale: ``10**decimals`` for continuous columns rounded on decode, 0 otherwise
            (float64).
        blocks: ``(start, stop)`` of every one-hot block.
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
    round_scale: torch.Tensor
    blocks: tuple[tuple[int, int], ...]


def build_torch_view(space: FeatureSpace, device: torch.device | str) -> TorchView:
    """The :class:`TorchView` of the fitted ``space`` on ``device`` (not cached)."""
    d = len(space.columns_)
    mutable = torch.zeros(d, dtype=torch.bool)
    numeric = torch.zeros(d, dtype=torch.bool)
    integer = torch.zeros(d, dtype=torch.bool)
    log1p = torch.zeros(d, dtype=torch.bool)
    lo = torch.zeros(d, dtype=torch.float64)
    span = torch.ones(d, dtype=torch.float64)
    raw_lower = torch.full((d,), -math.inf, dtype=torch.float64)
    raw_upper = torch.full((d,), math.inf, dtype=torch.float64)
    round_scale = torch.zeros(d, dtype=torch.float64)
    cat_blocks: list[tuple[int, int]] = []
    for f, a, b in space.blocks_:
        mutable[a:b] = f.mutable
        if f.kind is FeatureKind.CATEGORICAL:
            cat_blocks.append((a, b))
            continue
        numeric[a] = True
        integer[a] = f.kind in (FeatureKind.INTEGER, FeatureKind.BINARY)
        log1p[a] = f.transform == "log1p"
        lo[a] = space.lo_[f.name]
        span[a] = space.span_[f.name]
        if f.lower is not None:
            raw_lower[a] = f.lower
        if f.upper is not None:
            raw_upper[a] = f.upper
        if f.name in space.decimals_:
            round_scale[a] = 10.0 ** space.decimals_[f.name]
    dev = torch.device(device)
    return TorchView(
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
        round_scale=round_scale.to(dev),
        blocks=tuple(cat_blocks),
    )


@dataclass(frozen=True)
class NumericView:
    """The numeric columns of a :class:`TorchView`: ``idx`` ``(K,)`` their model columns (also
    as NumPy, ``idx_np``) and ``(K,)`` parameters, in the order of ``FeatureSpace.to_raw``."""

    idx: torch.Tensor
    idx_np: np.ndarray
    lo: torch.Tensor
    span: torch.Tensor
    log1p: torch.Tensor
    integer: torch.Tensor
    raw_lower: torch.Tensor
    raw_upper: torch.Tensor
    round_scale: torch.Tensor
    mutable: torch.Tensor


def numeric_view(v: TorchView) -> NumericView:
    """The :class:`NumericView` of ``v`` (on ``v``'s device)."""
    idx = torch.nonzero(v.numeric.cpu(), as_tuple=False).flatten()
    dev_idx = idx.to(v.numeric.device)
    return NumericView(
        idx=dev_idx, idx_np=idx.numpy(), lo=v.lo[dev_idx], span=v.span[dev_idx],
        log1p=v.log1p[dev_idx], integer=v.integer[dev_idx],
        raw_lower=v.raw_lower[dev_idx], raw_upper=v.raw_upper[dev_idx],
        round_scale=v.round_scale[dev_idx], mutable=v.mutable[dev_idx],
    )


def raw_from_model(xn: torch.Tensor, nv: NumericView) -> torch.Tensor:
    """Numeric model columns ``(N, K)`` -> float64 raw values (clipped to the unit box first)."""
    t = torch.clamp(xn.to(torch.float64), 0.0, 1.0) * nv.span + nv.lo
    # expm1 only where it applies: on a column without log1p, raw values beyond ~709 would
    # overflow it to inf, and the where's backward turns 0 * inf into NaN gradients
    return torch.where(nv.log1p, torch.expm1(torch.where(nv.log1p, t, 0.0)), t)


def model_from_raw(raw: torch.Tensor, nv: NumericView) -> torch.Tensor:
    """float64 raw values ``(N, K)`` -> model values in [0, 1] (float64)."""
    t = torch.where(nv.log1p, torch.log1p(torch.clamp(raw, min=0.0)), raw)
    return torch.clamp((t - nv.lo) / nv.span, 0.0, 1.0)


def quantize(raw: torch.Tensor, nv: NumericView) -> torch.Tensor:
    """Clip raw values ``(N, K)`` to their bounds and round them as ``decode`` does: integers
    half up, continuous values to their learned decimals."""
    out = torch.clamp(raw, nv.raw_lower, nv.raw_upper)
    out = torch.where(nv.integer, torch.floor(out + 0.5), out)
    has = nv.round_scale > 0
    scale = torch.where(has, nv.round_scale, torch.ones_like(nv.round_scale))
    return torch.where(has, torch.round(out * scale) / scale, out)
