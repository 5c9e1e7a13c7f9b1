"""Small tensor helpers of the compiled repair: column flags, index/parameter tensors and
:func:`select`, a branch-free ``torch.where``."""

from __future__ import annotations

import itertools

import numpy as np
import torch

__all__ = ["F64", "INT", "LOG", "ROUND", "f64_column", "long_tensor", "runs", "select"]

F64 = torch.float64
#: column flags of the working layout: log1p-scaled, integer, rounded to fixed decimals
LOG, INT, ROUND = 1, 2, 4

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


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``(start, stop)`` of each run of True in the ``(n,)`` bool ``mask``."""
    out: list[tuple[int, int]] = []
    for key, grp in itertools.groupby(enumerate(mask.tolist()), key=lambda t: t[1]):
        items = list(grp)
        if key:
            out.append((items[0][0], items[-1][0] + 1))
    return out


def long_tensor(values: list[int], dev: torch.device) -> torch.Tensor:
    """``(n,)`` int64 index tensor on ``dev``."""
    return torch.as_tensor(np.asarray(values, dtype=np.int64), device=dev)


def f64_column(values: list[float], dev: torch.device) -> torch.Tensor:
    """``(n, 1)`` float64 parameter column on ``dev``."""
    return torch.tensor(values, dtype=F64, device=dev)[:, None]
