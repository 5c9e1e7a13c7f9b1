"""The working layout of the compiled repair: the numeric columns of a space, transposed to
``(K, N)`` and permuted so that mutable features come first and, inside, log1p-scaled, integer
and rounded columns form contiguous runs (the conversions are then a few in-place ops on row
slices)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from advsec.features.repair.convert import Conversions
from advsec.features.repair.ops import INT, LOG, ROUND, long_tensor
from advsec.features.torch_view import numeric_view

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from advsec.features.constraints import Relation
    from advsec.features.space import FeatureSpace

__all__ = ["WorkingLayout"]

# working order inside the mutable and the immutable features: log&plain, log&round, log&int,
# int, round, plain
_SEGMENT = {LOG: 0, LOG | ROUND: 1, LOG | INT: 2, INT: 3, ROUND: 4, 0: 5}


class WorkingLayout:
    """The numeric features of ``space`` on ``device`` in working order.

    Attributes (feature order: ``k`` indexes ``FeatureSpace.to_raw``'s columns):
        k: ``K``, the number of numeric features; idx: ``(K,)`` their model columns (torch).
        mut: ``(K,)`` NumPy bool, mutable features; flags: ``(K,)`` ``LOG | INT | ROUND``;
        params: ``(K,)`` float64 arrays ``span``, ``lo``, ``low``, ``high`` (raw bounds) and
            ``scale`` (rounding scale, 1 where the column is not rounded).
    Attributes (working order):
        pos: feature -> working row; widx: ``(K,)`` model column of each working row;
        wflags, wparams, wmut: ``flags``, ``params`` and ``mut`` permuted;
        n_mutable: the mutable features are working rows ``[0, n_mutable)``.
    """

    def __init__(self, space: FeatureSpace, device: torch.device | str) -> None:
        dev = self.device = torch.device(device)
        nv = numeric_view(space.torch_view(dev))
        self.idx = nv.idx
        idx_np = np.asarray(nv.idx_np, dtype=np.int64)
        self.k = k = len(idx_np)
        self.mut: np.ndarray = np.asarray(space.mutable_mask, dtype=bool)[idx_np]
        self.flags: np.ndarray = (np.where(nv.log1p.cpu().numpy(), LOG, 0)
                                  | np.where(nv.integer.cpu().numpy(), INT, 0)
                                  | np.where(nv.round_scale.cpu().numpy() > 0, ROUND, 0))
        order = sorted(range(k), key=lambda j: (not self.mut[j], _SEGMENT[int(self.flags[j])],
                                                j))
        self.pos = {j: p for p, j in enumerate(order)}
        self.widx = long_tensor(idx_np[order].tolist(), dev) if k else long_tensor([], dev)
        rs = nv.round_scale.cpu().numpy()
        self.params: dict[str, np.ndarray] = {
            "span": nv.span.cpu().numpy(), "lo": nv.lo.cpu().numpy(),
            "low": nv.raw_lower.cpu().numpy(), "high": nv.raw_upper.cpu().numpy(),
            "scale": np.where(rs > 0, rs, 1.0),
        }
        self.wparams = {n: v[order] for n, v in self.params.items()}
        self.wflags = self.flags[order]
        self.wmut = self.mut[order]
        self.n_mutable = int(self.wmut.sum())

    def conversions(self, rows: list[int]) -> Conversions:
        """The :class:`Conversions` of the sorted working ``rows``."""
        return Conversions(rows, self.wflags, self.wparams, self.device)

    def rows_of(self, pos: Mapping[int, int] | None = None) -> Callable[[Relation], list[int]]:
        """``rel -> [pos[c] for c in rel.columns()]``: a relation's rows in a layout that maps
        feature ``c`` to row ``pos[c]`` (default: the working rows)."""
        m = self.pos if pos is None else pos
        return lambda rel: [m[c] for c in rel.columns()]
