"""Raw-unit conversions of numeric columns in the compiled repair's working layout ``(K, N)``.

``K`` numeric features (working rows, see :class:`~advsec.features.repair.layout.WorkingLayout`)
by ``N`` records. A :class:`Conversions` covers a sorted subsequence of ``n`` working rows;
runs of log1p-scaled, integer and rounded rows are contiguous in the working order, so each step
is one in-place op per run.
"""

from __future__ import annotations

import numpy as np
import torch

from advsec.features.repair.ops import F64, INT, LOG, ROUND, long_tensor, runs

__all__ = ["Conversions"]


class Conversions:
    """Raw-unit conversions of some working rows (a sorted subsequence, ``n`` of them).

    Args:
        rows: the working rows, sorted; flags: ``(K,)`` column flags (``LOG | INT | ROUND``) in
            working order; params: ``(K,)`` float64 arrays ``span``, ``lo``, ``low``, ``high``,
            ``scale`` in working order; dev: the device. Parameters become ``(n, 1)`` float64
            columns.
    """

    def __init__(self, rows: list[int], flags: np.ndarray, params: dict[str, np.ndarray],
                 dev: torch.device) -> None:
        self.n = len(rows)
        self.rows = long_tensor(rows, dev)
        self.contiguous = bool(rows) and rows == list(range(rows[0], rows[0] + len(rows)))
        self.start = rows[0] if rows else 0
        f = flags[rows]

        def col(name: str) -> torch.Tensor:
            return torch.tensor(params[name][rows], dtype=F64, device=dev)[:, None]

        self.span, self.lo, self.scale = col("span"), col("lo"), col("scale")
        self.low, self.high = col("low"), col("high")
        self.zero_lo = bool((params["lo"][rows] == 0).all())
        self.unit_span = bool((params["span"][rows] == 1).all())
        self.any_low = bool(np.isfinite(params["low"][rows]).any())
        self.any_high = bool(np.isfinite(params["high"][rows]).any())
        self.log_runs = runs(f & LOG > 0)
        self.int_runs = runs(f & INT > 0)
        self.round_runs = [(a, b, self.scale[a:b]) for a, b in runs(f & ROUND > 0)]
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
        """These rows of working values ``xk`` ``(K, N)``: ``(n, N)``, a view when contiguous."""
        if self.contiguous:
            return xk[self.start: self.start + self.n]
        return xk.index_select(0, self.rows)

    def put_(self, xk: torch.Tensor, values: torch.Tensor) -> None:
        """Write ``values`` ``(n, N)`` into these rows of ``xk`` ``(K, N)`` in place."""
        if self.contiguous:
            xk[self.start: self.start + self.n] = values
        else:
            xk.index_copy_(0, self.rows, values)

    def raw(self, xm: torch.Tensor) -> torch.Tensor:
        """Model values ``(n, N)`` -> float64 raw values, clipped and rounded as ``decode``."""
        out = torch.empty(xm.shape, dtype=F64, device=xm.device)
        self.raw_into(xm, out)
        return out

    def raw_into(self, xm: torch.Tensor, out: torch.Tensor) -> None:
        """:meth:`raw` of ``xm`` ``(n, N)`` written into ``out`` ``(n, N)``, float64."""
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
        (integers half up, continuous values to their decimals), in place (returns it)."""
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
        """:meth:`clip_` for float32 raw values ``(n, N)``."""
        if self.any_low:
            torch.maximum(raw, self.g_low, out=raw)
        if self.any_high:
            torch.minimum(raw, self.g_high, out=raw)
