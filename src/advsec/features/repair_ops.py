"""Building blocks of :class:`~advsec.features.repair_plan.RepairPlan`: raw-unit conversions of
the numeric columns in the plan's working layout ``(K, N)``, bitwise blends and the argmax of
mutable one-hot blocks."""

from __future__ import annotations

import itertools

import numpy as np
import torch

__all__ = ["BALL_TOL", "select"]

#: slack of the eps-ball checks, in model units (float32 round-off of the repaired values)
BALL_TOL = 1e-6
_F64 = torch.float64
_LOG, _INT, _ROUND = 1, 2, 4  # column flags


# ---------------------------------------------------------------------------- conversions
class _Conv:
    """Raw-unit conversions of some working rows (a sorted subsequence, ``n`` of them).

    Runs of log1p-scaled, integer and rounded rows are contiguous in the working order, so
    each step is an in-place op per run; parameters are ``(n, 1)`` float64 columns.
    """

    def __init__(self, rows: list[int], flags: np.ndarray, params: dict[str, np.ndarray],
                 dev: torch.device) -> None:
        self.n = len(rows)
        self.rows = _long(rows, dev)
        self.contiguous = bool(rows) and rows == list(range(rows[0], rows[0] + len(rows)))
        self.start = rows[0] if rows else 0
        f = flags[rows]

        def col(name: str) -> torch.Tensor:
            return torch.tensor(params[name][rows], dtype=_F64, device=dev)[:, None]

        self.span, self.lo, self.scale = col("span"), col("lo"), col("scale")
        self.low, self.high = col("low"), col("high")
        self.zero_lo = bool((params["lo"][rows] == 0).all())
        self.unit_span = bool((params["span"][rows] == 1).all())
        self.any_low = bool(np.isfinite(params["low"][rows]).any())
        self.any_high = bool(np.isfinite(params["high"][rows]).any())
        self.log_runs = _runs(f & _LOG > 0)
        self.int_runs = _runs(f & _INT > 0)
        self.round_runs = [(a, b, self.scale[a:b]) for a, b in _runs(f & _ROUND > 0)]
        # for the grid: its own float32 arithmetic (shared by the fast and the reference path)
        f32 = torch.float32
        self.g_span, self.g_lo = self.span.to(f32), self.lo.to(f32)
        self.g_low, self.g_high = self.low.to(f32), self.high.to(f32)
        self.g_inv_span = (1.0 / self.span).to(f32)
        self.g_runs = [(a, b, s.to(f32), (1.0 / s).to(f32)) for a, b, s in self.round_runs]
        lows, highs, sc = params["low"][rows], params["high"][rows], params["scale"][rows]
        with np.errstate(invalid="ignore"):
            on_grid = [np.isinf(v) or float(v * k).is_integer() for v, k in
                       zip(np.concatenate([lows, highs]), np.concatenate([sc, sc]), strict=True)]
        self.bounds_on_grid = all(on_grid)

    def select(self, xk: torch.Tensor) -> torch.Tensor:
        """These rows of working values ``xk`` ``(K, N)``: a view when contiguous."""
        if self.contiguous:
            return xk[self.start: self.start + self.n]
        return xk.index_select(0, self.rows)

    def put_(self, xk: torch.Tensor, values: torch.Tensor) -> None:
        """Write ``values`` ``(n, N)`` into these rows of ``xk`` in place."""
        if self.contiguous:
            xk[self.start: self.start + self.n] = values
        else:
            xk.index_copy_(0, self.rows, values)

    def raw(self, xm: torch.Tensor) -> torch.Tensor:
        """Model values ``(n, N)`` -> float64 raw values, clipped and rounded as ``decode``."""
        out = torch.empty(xm.shape, dtype=_F64, device=xm.device)
        self.raw_into(xm, out)
        return out

    def raw_into(self, xm: torch.Tensor, out: torch.Tensor) -> None:
        """:meth:`raw` written into ``out`` ``(n, N)``, float64."""
        out.copy_(xm)
        out.clamp_(0.0, 1.0)
        if not self.unit_span:  # x * 1 == x
            out.mul_(self.span)
        out.add_(self.lo)
        for a, b in self.log_runs:
            out[a:b].expm1_()
        self.quantize_(out)

    def clip_(self, raw: torch.Tensor) -> None:
        """Clip raw values ``(n, N)`` to their bounds, in place."""
        if self.any_low:
            torch.maximum(raw, self.low, out=raw)
        if self.any_high:
            torch.minimum(raw, self.high, out=raw)

    def quantize_(self, raw: torch.Tensor) -> torch.Tensor:
        """Clip raw values ``(n, N)`` to their bounds and round them as ``decode`` does
        (integers half up, continuous values to their decimals), in place."""
        self.clip_(raw)
        for a, b in self.int_runs:
            raw[a:b].add_(0.5).floor_()
        for a, b, s in self.round_runs:
            raw[a:b].mul_(s).round_().div_(s)
        return raw

    def model_(self, raw: torch.Tensor) -> torch.Tensor:
        """float64 raw values ``(n, N)`` -> model values in [0, 1], in place (returns it)."""
        for a, b in self.log_runs:
            raw[a:b].clamp_(min=0.0).log1p_()
        if not self.zero_lo:  # x - 0 == x and x / 1 == x, bit for bit
            raw.sub_(self.lo)
        if not self.unit_span:
            raw.div_(self.span)
        return raw.clamp_(0.0, 1.0)

    def grid_to_model_(self, g: torch.Tensor) -> torch.Tensor:
        """Grid values ``(n, N)`` (raw units times ``scale``, float32, within the raw bounds
        when those lie on the grid) -> float32 model values, in place. The grid's own
        arithmetic (reciprocals, float32), not bit-equal to :meth:`model_`."""
        for a, b, _, inv in self.g_runs:  # integers have a step of 1
            g[a:b].mul_(inv)
        if not self.bounds_on_grid:
            self.grid_clip_(g)
        for a, b in self.log_runs:
            g[a:b].clamp_(min=0.0).log1p_()
        if not self.zero_lo:
            g.sub_(self.g_lo)
        if not self.unit_span:
            g.mul_(self.g_inv_span)
        return g.clamp_(0.0, 1.0)

    def grid_clip_(self, raw: torch.Tensor) -> None:
        """:meth:`clip_` for float32 raw values."""
        if self.any_low:
            torch.maximum(raw, self.g_low, out=raw)
        if self.any_high:
            torch.minimum(raw, self.g_high, out=raw)


_INT_OF = {torch.float32: torch.int32, torch.float64: torch.int64, torch.float16: torch.int16,
           torch.bfloat16: torch.int16}


def select(mask: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``torch.where(mask, a, b)`` for float tensors of one dtype, bit for bit, without
    branches: a bitwise blend of the values' integer views. ``torch.where`` on CPU branches per
    element, which costs several times more when ``mask`` is irregular (as after an attack);
    small or non-CPU tensors use it as is. ``a``, ``b`` and ``mask`` broadcast."""
    it = _INT_OF.get(a.dtype)
    if it is None or b.dtype != a.dtype or not a.is_cpu:
        return torch.where(mask, a, b)
    if not a.shape == b.shape == mask.shape:
        mask, a, b = torch.broadcast_tensors(mask, a, b)
    if a.numel() < 8192:  # too small for branches to matter
        return torch.where(mask, a, b)
    bi = b.contiguous().view(it)
    blend = torch.bitwise_xor(a.contiguous().view(it), bi)
    return blend.bitwise_and_(mask.to(it).neg_()).bitwise_xor_(bi).view(a.dtype)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``(start, stop)`` of each run of True in ``mask``."""
    out: list[tuple[int, int]] = []
    for key, grp in itertools.groupby(enumerate(mask.tolist()), key=lambda t: t[1]):
        items = list(grp)
        if key:
            out.append((items[0][0], items[-1][0] + 1))
    return out


def _long(values: list[int], dev: torch.device) -> torch.Tensor:
    return torch.as_tensor(np.asarray(values, dtype=np.int64), device=dev)


def _f64col(values: list[float], dev: torch.device) -> torch.Tensor:
    return torch.tensor(values, dtype=_F64, device=dev)[:, None]


# ---------------------------------------------------------------------------- one-hot blocks
class _OneHot:
    """Mutable one-hot blocks as one padded ``(B, L)`` layout; ``F`` columns in all."""

    def __init__(self, blocks: list[tuple[int, int]], dev: torch.device) -> None:
        width = max(b - a for a, b in blocks)
        flat: list[int] = []
        pos: list[int] = []
        member = np.zeros((sum(b - a for a, b in blocks), len(blocks)), dtype=np.float32)
        for k, (a, b) in enumerate(blocks):
            for j in range(a, b):
                member[len(flat), k] = 1.0
                pos.append(k * width + (j - a))
                flat.append(j)
        self.n_blocks, self.width = len(blocks), width
        self.flat = _long(flat, dev)  # (F,) model columns, block by block
        self.pos = _long(pos, dev)  # (F,) slots in the flattened (B, L)
        self.block_member = torch.as_tensor(member, device=dev)  # (F, B)
        self.slot = torch.arange(width, device=dev)

    def argmax_onehot(self, vals: torch.Tensor) -> torch.Tensor:
        """``(N, F)`` block values -> ``(N, F)`` bool one-hot of each block's (first) argmax."""
        n = vals.shape[0]
        pad = torch.full((n, self.n_blocks * self.width), -torch.inf, dtype=vals.dtype,
                         device=vals.device)
        pad[:, self.pos] = vals
        arg = pad.view(n, self.n_blocks, self.width).argmax(dim=2)
        hot = self.slot == arg[:, :, None]
        return hot.view(n, -1)[:, self.pos]
