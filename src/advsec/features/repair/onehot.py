"""The mutable one-hot blocks of the compiled repair as one padded layout."""

from __future__ import annotations

import numpy as np
import torch

from advsec.features.repair.ops import long_tensor

__all__ = ["OneHotBlocks"]


class OneHotBlocks:
    """Mutable one-hot blocks ``(start, stop)`` as one padded ``(B, L)`` layout; ``F`` model
    columns in all (``flat``, block by block)."""

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
        self.flat = long_tensor(flat, dev)  # (F,) model columns, block by block
        self.pos = long_tensor(pos, dev)  # (F,) slots in the flattened (B, L)
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

    def take(self, x: torch.Tensor) -> torch.Tensor:
        """The block columns of ``x`` ``(N, D)``, transposed: ``(F, N)``."""
        return x[:, self.flat].T
