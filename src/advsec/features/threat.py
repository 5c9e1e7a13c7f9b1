"""The attacker action model of a fitted FeatureSpace, in torch: directions and value sets.

A schema says, per numeric feature, how an attacker may move it (``direction``: ``increase``,
``decrease`` or ``any``) and which values it may take (``values``, e.g. the TTLs a stack sends).
Model inputs are monotone in raw values (min-max scaling after an optional ``log1p``), so a
direction is a per-record bound in model space: an ``increase`` column never goes below the
original's value.

- :func:`restrict`: clamp iterates to the directions (cheap; attacks' projections call it);
- :func:`snap_values`: put value-set columns on their nearest allowed value inside per-entry
  limits (the eps-ball and the directions), the original's value when none fits;
- :func:`admissible`: ``(N,)`` whether repaired inputs keep every direction and value set (the
  final check: rows that do not fall back to the original record).

Shapes: ``N`` records, ``D`` model columns, ``V`` allowed values of one feature.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from advsec.features.codec import decode_numeric, forward
from advsec.features.schema import Feature, FeatureKind

if TYPE_CHECKING:
    from advsec.features.space import FeatureSpace

__all__ = ["ThreatView", "admissible", "build_threat_view", "encode_values", "restrict",
           "snap_values"]


def encode_values(space: FeatureSpace, f: Feature, values: np.ndarray) -> np.ndarray:
    """Raw values ``(V,)`` of numeric feature ``f`` as float32 model inputs, as ``encode``
    computes them."""
    lower = f.lower if f.lower is not None else -np.inf
    upper = f.upper if f.upper is not None else np.inf
    t = forward(np.clip(values, lower, upper), f.transform)
    return np.clip((t - space.lo_[f.name]) / space.span_[f.name], 0.0, 1.0).astype(np.float32)


def _decoder(space: FeatureSpace, f: Feature) -> tuple[float, float, bool, float, float, bool,
                                                       float]:
    places = space.decimals_.get(f.name)
    return (space.lo_[f.name], space.span_[f.name], f.transform == "log1p",
            f.lower if f.lower is not None else -np.inf,
            f.upper if f.upper is not None else np.inf,
            f.kind is not FeatureKind.CONTINUOUS, 10.0**places if places is not None else 0.0)


def _decode(col: torch.Tensor, p: tuple[float, float, bool, float, float, bool, float]
            ) -> torch.Tensor:
    """One model column ``(N,)`` -> raw values (float64), as ``decode`` rounds them."""
    lo, span, log1p, lower, upper, integer, scale = p
    t = torch.clamp(col.to(torch.float64), 0.0, 1.0) * span + lo
    v = torch.clamp(torch.expm1(t) if log1p else t, lower, upper)
    if integer:
        return torch.floor(v + 0.5)
    return torch.round(v * scale) / scale if scale else v


@dataclass(frozen=True)
class ThreatView:
    """The action model of a fitted space on one device.

    Attributes:
        increase, decrease: ``(D,)`` bool, the mutable columns that may only grow (shrink).
        increase_cols, decrease_cols: the same columns as ``(n,)`` int64 indices (the
            functions below work on these few columns only).
        value_cols: model columns of the mutable features with a value set.
        value_model: per such column, its allowed values as float32 model inputs ``(V,)``,
            sorted (exactly what ``encode`` gives for each value).
        value_raw: per such column, the allowed raw values ``(V,)`` (float64), for the check.
        value_decode: per such column, ``(lo, span, log1p, lower, upper, integer, scale)``:
            how ``decode`` turns its model input into a raw value.
        directed: whether any column has a direction; active: whether anything applies.
    """

    increase: torch.Tensor
    decrease: torch.Tensor
    increase_cols: torch.Tensor
    decrease_cols: torch.Tensor
    value_cols: tuple[int, ...]
    value_model: tuple[torch.Tensor, ...]
    value_raw: tuple[torch.Tensor, ...]
    value_decode: tuple[tuple[float, float, bool, float, float, bool, float], ...]
    directed: bool
    active: bool


def build_threat_view(space: FeatureSpace, device: torch.device | str) -> ThreatView:
    """The :class:`ThreatView` of the fitted ``space`` on ``device`` (not cached)."""
    d = len(space.columns_)
    inc = np.zeros(d, dtype=bool)
    dec = np.zeros(d, dtype=bool)
    cols: list[int] = []
    model: list[torch.Tensor] = []
    raw: list[torch.Tensor] = []
    params: list[tuple[float, float, bool, float, float, bool, float]] = []
    dev = torch.device(device)
    for f, a, _ in space.blocks_:
        if not f.is_numeric or not f.mutable:
            continue
        inc[a] = f.direction == "increase"
        dec[a] = f.direction == "decrease"
        allowed = space.values_.get(f.name)
        if allowed is None or f.kind is FeatureKind.BINARY:
            continue
        vals = np.asarray(allowed, dtype=np.float64)
        enc = encode_values(space, f, vals)
        # keep only values that survive the round trip (a value outside the fitted range
        # cannot be encoded, so an attack never produces it)
        keep = decode_numeric(space, enc, f) == vals
        order = np.argsort(enc[keep], kind="stable")
        cols.append(a)
        model.append(torch.as_tensor(enc[keep][order], dtype=torch.float32, device=dev))
        raw.append(torch.as_tensor(vals[keep][order], dtype=torch.float64, device=dev))
        params.append(_decoder(space, f))
    return ThreatView(
        increase=torch.as_tensor(inc, device=dev), decrease=torch.as_tensor(dec, device=dev),
        increase_cols=torch.as_tensor(np.flatnonzero(inc), dtype=torch.int64, device=dev),
        decrease_cols=torch.as_tensor(np.flatnonzero(dec), dtype=torch.int64, device=dev),
        value_cols=tuple(cols), value_model=tuple(model), value_raw=tuple(raw),
        value_decode=tuple(params), directed=bool(inc.any() or dec.any()),
        active=bool(inc.any() or dec.any() or cols))


def restrict(view: ThreatView, x: torch.Tensor, x0: torch.Tensor, *,
             inplace: bool = False) -> torch.Tensor:
    """``x`` ``(N, D)`` clamped to the directions around ``x0``: an ``increase`` entry below
    the original's (a ``decrease`` entry above it) gets the original's value, bit for bit. A
    new tensor when the space has a direction (``inplace``: ``x`` itself, updated); ``x``
    itself when it has none. Works on the directed columns only (a gather and a scatter of a
    few columns)."""
    if not view.directed:
        return x
    out = x if inplace else x.clone()
    for cols, sub, sub0, wrong in _wrong_way(view, x, x0):
        out.index_copy_(1, cols, torch.where(wrong, sub0, sub))
    return out


def _wrong_way(view: ThreatView, x: torch.Tensor, x0: torch.Tensor
               ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Per direction that has columns: ``(cols, x[:, cols], x0[:, cols], wrong)``, ``wrong``
    ``(N, n)`` True where the entry moved against the direction."""
    for cols, up in ((view.increase_cols, True), (view.decrease_cols, False)):
        if len(cols):
            sub, sub0 = x.index_select(1, cols), x0.index_select(1, cols)
            yield cols, sub, sub0, (sub < sub0 if up else sub > sub0)


def snap_values(view: ThreatView, x: torch.Tensor, x0: torch.Tensor, lo: torch.Tensor | None,
                hi: torch.Tensor | None) -> torch.Tensor:
    """``x`` ``(N, D)`` with every value-set column on an allowed value.

    Each entry goes to the allowed value nearest to it among those within ``[lo, hi]``
    (``(N, D)`` per-entry limits, e.g. the eps-ball; ``None``: no limit) and on the allowed
    side of the original for directed columns; to the original's value when none is, or when
    the entry is the original's. Returns a new tensor (``x`` when there are no value sets).
    """
    if not view.value_cols:
        return x
    out = x.clone()
    for c, allowed in zip(view.value_cols, view.value_model, strict=True):
        cur, orig = x[:, c], x0[:, c]
        ok = torch.ones((len(x), len(allowed)), dtype=torch.bool, device=x.device)
        if lo is not None:
            ok &= allowed[None, :] >= lo[:, c, None]
        if hi is not None:
            ok &= allowed[None, :] <= hi[:, c, None]
        if bool(view.increase[c]):
            ok &= allowed[None, :] >= orig[:, None]
        if bool(view.decrease[c]):
            ok &= allowed[None, :] <= orig[:, None]
        dist = (allowed[None, :] - cur[:, None]).abs()
        dist = torch.where(ok, dist, torch.full_like(dist, float("inf")))
        best = dist.argmin(dim=1)
        value = torch.where(ok.any(dim=1), allowed[best], orig)
        out[:, c] = torch.where(cur == orig, orig, value)
    return out


def admissible(view: ThreatView, x: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    """``(N,)`` bool: rows of ``x`` ``(N, D)`` that keep every direction around ``x0`` and whose
    value-set columns decode to an allowed value (or are the original's, bit for bit)."""
    ok = torch.ones(len(x), dtype=torch.bool, device=x.device)
    for _, _, _, wrong in _wrong_way(view, x, x0):
        ok &= ~wrong.any(dim=1)
    for c, allowed, p in zip(view.value_cols, view.value_raw, view.value_decode, strict=True):
        ok &= (x[:, c] == x0[:, c]) | torch.isin(_decode(x[:, c], p), allowed)
    return ok
