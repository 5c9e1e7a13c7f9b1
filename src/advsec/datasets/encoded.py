"""Encoded matrices on disk: a dataset larger than memory, encoded chunk by chunk into ``.npy``
files that training and attacks read by window.

:func:`build_store` makes two passes over a chunk source (e.g.
:class:`~advsec.datasets.kdd_stream.KddChunks`): the first fits the FeatureSpace from chunk
statistics (:class:`~advsec.features.streaming.SpaceStats`: the same space as fitting on the whole
table), counts the rows and collects the labels; the second encodes each chunk into
``x.npy`` (float32 ``(N, D)`` in ``[0, 1]``) and its labels into ``y.npy`` (int64 ``(N,)``, indices
into ``classes``), and checks the training records against the schema
(:class:`~advsec.features.streaming.TrainingCheck`, as ``FeatureSpace.fit`` does). ``meta.json``
(the space, the classes, the row count, the source's identity) is written last: a folder without
it is incomplete and is rebuilt.

Where: ``folder`` when given, else a folder named by a digest of the source's identity under
``<parse cache>/encoded`` (``$ADVSEC_PARSE_CACHE``, see :mod:`advsec.datasets._readers`), so a
second build of an unchanged file with the same options opens the finished store at once.

Memory: one chunk (its DataFrame and its encoding) at a time; the files are written through
short-lived windows (:class:`~advsec.rowstore.RowFile`), never mapped whole.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from advsec.datasets._readers import parse_cache_dir
from advsec.errors import ConfigError, DataError
from advsec.features.schema import FeatureSchema
from advsec.features.space import FeatureSpace
from advsec.features.streaming import SpaceStats, TrainingCheck
from advsec.rowstore import RowFile, create_rows

__all__ = ["ChunkSource", "EncodedStore", "Scan", "build_store", "encode_store", "scan",
           "store_folder"]

log = logging.getLogger(__name__)

_VERSION = 1
_META = "meta.json"


class ChunkSource(Protocol):
    """Re-iterable raw chunks (DataFrames with the schema's columns and the label column)."""

    schema: FeatureSchema
    notes: list[str]

    @property
    def label(self) -> str: ...

    def classes(self, seen: set[str]) -> list[str]: ...

    def identity(self) -> str: ...

    def __iter__(self) -> Iterator[pd.DataFrame]: ...


@dataclass
class EncodedStore:
    """An encoded dataset on disk.

    Attributes:
        folder: where the files are.
        x: read-only memmap ``(N, D)`` float32 of the encoded records (pass it to
            ``Detector.fit`` and ``attack_rows``, which read it by window).
        y: read-only memmap ``(N,)`` int64, the index of each record's class in ``classes``.
        classes: class labels, benign first.
        space: the fitted FeatureSpace.
        notes: what loading dropped or clipped.
    """

    folder: Path
    x: np.memmap
    y: np.memmap
    classes: list[str]
    space: FeatureSpace
    notes: list[str] = field(default_factory=list)

    @property
    def x_path(self) -> Path:
        """The ``.npy`` file of :attr:`x`."""
        return self.folder / "x.npy"

    @property
    def y_path(self) -> Path:
        """The ``.npy`` file of :attr:`y`."""
        return self.folder / "y.npy"

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def rows(self) -> RowFile:
        """:attr:`x` as a :class:`RowFile` (windows, gathers)."""
        return RowFile(self.x_path)

    @classmethod
    def open(cls, folder: str | Path) -> EncodedStore:
        """The finished store in ``folder``; :class:`DataError` when it is missing or
        incomplete."""
        folder = Path(folder)
        meta_path = folder / _META
        if not meta_path.is_file():
            raise DataError(f"{folder}: no finished encoded store (no {_META})")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("version") != _VERSION:
            raise DataError(f"{folder}: encoded store version {meta.get('version')}, expected "
                            f"{_VERSION}; build it again")
        x = np.load(folder / "x.npy", mmap_mode="r")
        y = np.load(folder / "y.npy", mmap_mode="r")
        n = int(meta["rows"])
        if x.shape != (n, int(meta["columns"])) or y.shape != (n,):
            raise DataError(f"{folder}: x {x.shape} / y {y.shape} do not match {_META} "
                            f"({n} rows); build it again")
        return cls(folder=folder, x=x, y=y, classes=list(meta["classes"]),
                   space=FeatureSpace.from_dict(meta["space"]), notes=list(meta["notes"]))


@dataclass
class Scan:
    """What the first pass learned: the statistics, the row count and the labels seen."""

    stats: SpaceStats
    rows: int
    labels: set[str]


def scan(source: ChunkSource) -> Scan:
    """The first pass over ``source``: FeatureSpace statistics, rows and labels."""
    stats = SpaceStats(source.schema)
    seen: set[str] = set()
    for chunk in source:
        stats.update(chunk)
        seen.update(str(v) for v in pd.unique(chunk[source.label].dropna()))
    return Scan(stats=stats, rows=stats.rows, labels=seen)


def store_folder(source: ChunkSource, space: FeatureSpace | None = None) -> Path:
    """The default folder of ``source``'s store: ``<parse cache>/encoded/<digest>``."""
    base = parse_cache_dir()
    if base is None:
        raise ConfigError("an encoded store needs a folder: pass folder=PATH or set "
                          "$ADVSEC_PARSE_CACHE (1 = the default cache folder)")
    ident = source.identity() + (json.dumps(space.to_dict(), sort_keys=True) if space else "")
    digest = hashlib.sha256(f"{ident}|v{_VERSION}".encode()).hexdigest()[:20]
    return base / "encoded" / digest


def encode_store(source: ChunkSource, space: FeatureSpace, *, rows: int, classes: list[str],
                 folder: str | Path, check: bool = True,
                 notes: Iterable[str] = ()) -> EncodedStore:
    """The second pass: encode ``source`` (``rows`` records, labels among ``classes``) with
    ``space`` into ``folder``; with ``check``, the records must satisfy the schema
    (``FeatureSpace.check_training``)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / _META).unlink(missing_ok=True)  # incomplete until written again, last
    x_file = create_rows(folder / "x.npy", (rows, space.n_features_out), np.float32)
    y_file = create_rows(folder / "y.npy", (rows,), np.int64)
    checker = TrainingCheck(space) if check else None
    index = pd.Index(classes, dtype=object)
    start = 0
    for chunk in source:
        if start + len(chunk) > rows:
            raise DataError(f"{source}: more than the {rows:,} rows of the first pass (did the "
                            f"file change?)")
        codes = index.get_indexer(chunk[source.label].astype(str).to_numpy(dtype=object))
        if (codes < 0).any():
            bad = chunk[source.label].iloc[int(np.flatnonzero(codes < 0)[0])]
            raise DataError(f"{source}: label {bad!r} was not seen in the first pass")
        x_file.write(start, space.encode(chunk))
        y_file.write(start, codes.astype(np.int64))
        if checker is not None:
            checker.update(chunk)
        start += len(chunk)
    if start != rows:
        raise DataError(f"{source}: {start:,} rows, the first pass read {rows:,} (did the file "
                        f"change?)")
    if checker is not None:
        checker.finish()
    meta = {"version": _VERSION, "rows": rows, "columns": space.n_features_out,
            "classes": list(classes), "space": space.to_dict(), "notes": [*notes, *source.notes],
            "source": source.identity()}
    tmp = folder / f"{_META}.tmp{os.getpid()}"
    tmp.write_text(json.dumps(meta, indent=1), encoding="utf-8")
    tmp.replace(folder / _META)
    return EncodedStore.open(folder)


def build_store(source: ChunkSource, *, folder: str | Path | None = None,
                space: FeatureSpace | None = None, classes: list[str] | None = None,
                check: bool = True, reuse: bool = True) -> EncodedStore:
    """Fit (unless ``space`` is given, e.g. the training split's for a test file), encode and
    store ``source``; an existing finished store in the folder is opened instead when
    ``reuse``.

    Args:
        source: the chunks (iterated twice).
        folder: where to write; default :func:`store_folder` (needs ``$ADVSEC_PARSE_CACHE``).
        space: a fitted space to encode with (no fit; no training check).
        classes: the class labels (e.g. the training store's, for a test file); default
            ``source.classes`` of the labels seen. A label outside them is an error.
        check: check the records against the schema when fitting.
        reuse: open a finished store of the same source and options instead of rebuilding.
    """
    target = Path(folder) if folder is not None else store_folder(source, space)
    if reuse and (target / _META).is_file():
        try:
            store = EncodedStore.open(target)
        except (DataError, ValueError, OSError) as exc:
            log.warning("rebuilding the encoded store %s (%s)", target, exc)
        else:
            meta = json.loads((target / _META).read_text(encoding="utf-8"))
            if meta.get("source") == source.identity() and (
                    space is None or meta.get("space") == space.to_dict()):
                log.info("%s: encoded store %s reused", source, target)
                return store
    first = scan(source)
    if space is None:
        space = first.stats.space()
        if len(first.labels) < 2:
            raise DataError(f"{source}: the training records hold {len(first.labels)} class(es) "
                            f"{sorted(first.labels)}; a detector needs at least two")
    else:
        check = False
    classes = list(classes) if classes is not None else source.classes(first.labels)
    notes = [f"{first.rows:,} rows encoded into {target}"]
    return encode_store(source, space, rows=first.rows, classes=classes, folder=target,
                        check=check, notes=notes)
