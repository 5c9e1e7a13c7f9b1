"""Row windows of ``.npy`` files too large for memory: create, write, read and gather rows.

A NumPy memory map counts every page it has touched in the process's resident set size (RSS)
for as long as it stays mapped, so one pass over a 2 GB memmap leaves a 2 GB RSS. These helpers
map only the rows one call needs and unmap them before returning: the data goes through the
page cache, and the process holds at most one window (``rows x D`` values, or for a gather of
scattered rows :data:`TAKE_GROUP` of them) at a time.

Files are plain ``.npy`` (:func:`numpy.lib.format.open_memmap` writes the header), so
``np.load(path, mmap_mode="r")`` opens them as usual; the helpers also take such a memmap and
use only its file name, offset, dtype and shape.

Shapes: a file holds an array of shape ``(N, ...)``; a window is rows ``[start, stop)``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, TypeGuard

import numpy as np

__all__ = ["TAKE_GROUP", "RowFile", "create_rows", "is_memmap"]

#: rows gathered per mapped window by :meth:`RowFile.take`. Each page fault on a file mapping
#: also maps the neighbouring cached pages (the kernel's fault-around, 64 KiB by default), so a
#: window holding ``g`` scattered rows adds up to ``g * 64 KiB`` to the RSS until it is
#: unmapped: 256 rows, at most 16 MiB.
TAKE_GROUP = 256


def is_memmap(x: Any) -> TypeGuard[np.memmap]:
    """True for a :class:`numpy.memmap` of a whole file (``np.load(..., mmap_mode=...)``); a
    view of one (a slice) is an ordinary array to these helpers."""
    return (isinstance(x, np.memmap) and getattr(x, "filename", None) is not None
            and not isinstance(x.base, np.memmap))


class RowFile:
    """Rows of a ``.npy`` file (or of the file behind a memmap), read and written by window.

    Args:
        source: the ``.npy`` path, or a file-backed :class:`numpy.memmap` of the whole file
            (as ``np.load(path, mmap_mode="r")`` returns; a slice of one is refused).

    Attributes:
        path, shape, dtype: the file and the array it holds, ``(N, ...)``.
        offset: bytes before the first row (the ``.npy`` header).
    """

    def __init__(self, source: str | Path | np.memmap) -> None:
        if isinstance(source, np.memmap):
            if not is_memmap(source):
                raise TypeError("RowFile needs the memmap of a whole file, not a view of one")
            path: str | Path = str(source.filename)
        else:
            path = source
        self.path = Path(path)
        whole = np.load(self.path, mmap_mode="r")
        if not whole.flags.c_contiguous:
            raise ValueError(f"{self.path}: rows must be stored in C order")
        self.shape: tuple[int, ...] = tuple(whole.shape)
        self.dtype: np.dtype[Any] = whole.dtype
        self.offset: int = int(whole.offset)
        del whole
        self._row = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize

    def __len__(self) -> int:
        return self.shape[0]

    def _map(self, start: int, stop: int, mode: Literal["r", "r+"] = "r") -> np.memmap:
        return np.memmap(self.path, dtype=self.dtype, mode=mode,
                         offset=self.offset + start * self._row,
                         shape=(stop - start, *self.shape[1:]))

    def read(self, start: int, stop: int) -> np.ndarray:
        """A copy of rows ``[start, stop)``, shape ``(stop - start, ...)``."""
        start, stop = max(0, start), min(stop, len(self))
        if stop <= start:
            return np.zeros((0, *self.shape[1:]), dtype=self.dtype)
        window = self._map(start, stop)
        out = np.array(window)
        del window
        return out

    def write(self, start: int, rows: np.ndarray) -> None:
        """Write ``rows`` ``(k, ...)`` at rows ``[start, start + k)`` (flushed to the file)."""
        rows = np.asarray(rows, dtype=self.dtype)
        if rows.shape[1:] != self.shape[1:] or start < 0 or start + len(rows) > len(self):
            raise ValueError(f"{self.path}: cannot write {rows.shape} at row {start} of "
                             f"{self.shape}")
        if not len(rows):
            return
        window = self._map(start, start + len(rows), mode="r+")
        window[:] = rows
        window.flush()
        del window

    def take(self, index: np.ndarray) -> np.ndarray:
        """Rows ``index`` ``(k,)`` (any order, repeats allowed) in that order, ``(k, ...)``:
        sorted, read :data:`TAKE_GROUP` at a time from a window spanning them (unmapped
        after), put back in order."""
        index = np.asarray(index, dtype=np.int64)
        out = np.empty((len(index), *self.shape[1:]), dtype=self.dtype)
        if not len(index):
            return out
        order = np.argsort(index, kind="stable")
        ranked = index[order]
        if ranked[0] < 0 or ranked[-1] >= len(self):
            raise IndexError(f"{self.path}: row index out of range [0, {len(self)})")
        for g in range(0, len(ranked), TAKE_GROUP):
            part = ranked[g : g + TAKE_GROUP]
            lo, hi = int(part[0]), int(part[-1]) + 1
            window = self._map(lo, hi)
            out[order[g : g + TAKE_GROUP]] = window[part - lo]
            del window
        return out

    def windows(self, rows: int) -> Iterator[tuple[int, np.ndarray]]:
        """``(start, copy of rows [start, start + rows))`` over the whole file, in order."""
        for start in range(0, len(self), rows):
            yield start, self.read(start, start + rows)


def create_rows(path: str | Path, shape: tuple[int, ...], dtype: Any) -> RowFile:
    """A new ``.npy`` file of ``shape`` and ``dtype`` (zeros, sparse on disk where the file
    system allows), written by :func:`numpy.lib.format.open_memmap`; returns its
    :class:`RowFile`."""
    mm = np.lib.format.open_memmap(Path(path), mode="w+", dtype=np.dtype(dtype), shape=shape)
    mm.flush()
    del mm
    return RowFile(path)
