"""Where ``Detector.fit`` takes its mini-batches from: tensors in memory, or rows of a ``.npy``
file read by window (a :class:`numpy.memmap` from ``np.load(path, mmap_mode="r")``).

Both give the same batches for the same permutations: batch ``b`` of an epoch holds the
training rows ``train_index[order[b * B : (b + 1) * B]]``. In memory they are gathered from the
training rows moved to the device once. From a file, :data:`STREAM_BATCHES` batches at a time:
their row numbers are sorted, gathered from one short-lived window of the file
(:meth:`advsec.rowstore.RowFile.take`), put back in batch order and moved to the device, so a
training pass holds ``STREAM_BATCHES * B`` rows (plus the row-number tensors, 8 bytes per row)
instead of the matrix. The validation rows are scored in chunks of :data:`STREAM_ROWS`.

Shapes: ``x`` ``(N, D)`` float32, ``y`` ``(N,)`` int64 class indices; batches ``(B, D)``, ``(B,)``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import numpy as np
import torch
from torch import nn

from advsec.errors import DataError
from advsec.rowstore import RowFile

__all__ = ["STREAM_BATCHES", "STREAM_ROWS", "Batches", "FileBatches", "MemoryBatches"]

#: mini-batches read from a file at once (one sorted gather)
STREAM_BATCHES = 64
#: rows per chunk when scoring validation rows from a file
STREAM_ROWS = 65536


class Batches(Protocol):
    """Training and validation rows of one ``fit`` call."""

    n_train: int
    n_val: int

    def batches(self, order: torch.Tensor, batch_size: int
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...

    def validation(self, module: nn.Module) -> tuple[torch.Tensor, torch.Tensor]: ...


class MemoryBatches:
    """Batches from tensors in memory (the training and validation rows on the device).

    Args:
        x: ``(N, D)`` float32 tensor; y: ``(N,)`` int64 class indices.
        train, val: row numbers of the training and validation rows.
        device: where the batches go.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, train: torch.Tensor, val: torch.Tensor,
                 device: torch.device) -> None:
        self.x_tr, self.y_tr = x[train].to(device), y[train].to(device)
        self.x_val, self.y_val = x[val].to(device), y[val].to(device)
        self.n_train, self.n_val = len(train), len(val)
        self.device = device

    def batches(self, order: torch.Tensor, batch_size: int
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``(xb, yb)`` for the training rows in ``order`` (positions in the training rows)."""
        order = order.to(self.device)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            yield self.x_tr[idx], self.y_tr[idx]

    def validation(self, module: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits, y)`` of the validation rows (no gradient)."""
        with torch.no_grad():
            return module(self.x_val), self.y_val


class FileBatches:
    """Batches read by window from the ``.npy`` file behind a memmap.

    Args:
        x: a file-backed memmap ``(N, D)`` (float32, or converted chunk by chunk).
        y: ``(N,)`` int64 class indices, in memory.
        train, val: row numbers of the training and validation rows.
        device: where the batches go.
    """

    def __init__(self, x: np.memmap, y: torch.Tensor, train: torch.Tensor, val: torch.Tensor,
                 device: torch.device) -> None:
        self.rows = RowFile(x)
        self.train, self.val = train.numpy(), val.numpy()
        self.y_tr, self.y_val = y[train], y[val].to(device)
        self.n_train, self.n_val = len(train), len(val)
        self.device = device

    def _take(self, index: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(self.rows.take(index)).to(torch.float32)
        if not bool(torch.isfinite(x).all()):
            raise DataError(f"{self.rows.path}: X contains NaN or infinite values")
        return x.to(self.device)

    def batches(self, order: torch.Tensor, batch_size: int
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``(xb, yb)`` for the training rows in ``order``, read :data:`STREAM_BATCHES` batches
        at a time."""
        step = batch_size * STREAM_BATCHES
        for chunk in range(0, len(order), step):
            pos = order[chunk : chunk + step]
            xs = self._take(self.train[pos.numpy()])
            ys = self.y_tr[pos].to(self.device)
            for start in range(0, len(pos), batch_size):
                yield xs[start : start + batch_size], ys[start : start + batch_size]

    def validation(self, module: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits, y)`` of the validation rows, scored :data:`STREAM_ROWS` at a time."""
        parts = []
        with torch.no_grad():
            for start in range(0, self.n_val, STREAM_ROWS):
                parts.append(module(self._take(self.val[start : start + STREAM_ROWS])))
        if not parts:
            return torch.zeros((0, 0), device=self.device), self.y_val
        return torch.cat(parts), self.y_val
