"""KDD'99-format files (KDD Cup 1999, NSL-KDD) chunk by chunk, for files larger than memory.

:class:`KddChunks` reads one file with :func:`~advsec.datasets.stream.stream_csv` and yields,
per record batch, the rows ``load_kdd99`` / ``load_nsl_kdd`` put in their training table: the
41 features, ``label`` (the scheme's label) and ``attack`` (and ``extra`` columns such as
NSL-KDD's ``difficulty``), read, cleaned, labelled and checked by the same functions
(:func:`~advsec.datasets._kdd.kdd_frame`, :func:`~advsec.datasets._kdd.kdd_labels`,
:func:`~advsec.datasets._checks.check_values`, :func:`~advsec.datasets._common.coerce_dtypes`), so
every error names the file and the row of the whole file. The chunks concatenated equal the
training table of the in-memory loader on the same file (with ``test="corrected"`` or a given
test file, which does not split). Iterating again reads the file again.

Example:
    >>> chunks = KddChunks("kddcup.data.gz", scheme="binary")
    >>> store = build_store(chunks)        # advsec.datasets.encoded
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import pandas as pd
import pyarrow as pa

from advsec.datasets._checks import ROW, check_values, tag_source
from advsec.datasets._common import LABEL, builtin_schema, check_scheme, coerce_dtypes
from advsec.datasets._kdd import (
    ATTACK,
    KDD_FEATURES,
    KDD_SCHEMES,
    kdd_frame,
    kdd_labels,
    kdd_types,
    kdd_what,
)
from advsec.datasets.stream import BLOCK_BYTES, stream_csv

__all__ = ["KddChunks"]


class KddChunks:
    """One headerless KDD-format file as a re-iterable sequence of labelled chunks.

    Args:
        path: the file (plain or gzip).
        scheme: ``"binary"``, ``"category"`` or ``"attack"`` (as for ``kdd99``).
        extra: columns after the label (``("difficulty",)`` for NSL-KDD).
        category_map, unknown_attacks: as for ``kdd99`` (``unknown_attacks="drop"`` drops rows
            chunk by chunk, with a note per chunk that had some).
        schema_file: a file changing the built-in schema (``schemas/kdd.toml``).
        dataset: the name used in notes and messages.
        block_bytes: text per chunk, in bytes (4 MiB: about 26,000 rows).

    Attributes:
        schema: the feature schema (label column ``label``).
        fixed_classes: the classes every chunk shares (benign first); :meth:`classes` adds the
            labels seen.
        notes: what the last complete iteration dropped or clipped.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        scheme: str = "binary",
        extra: tuple[str, ...] = (),
        category_map: Mapping[str, str] | None = None,
        unknown_attacks: str = "drop",
        schema_file: str | Path | None = None,
        dataset: str = "kdd99",
        block_bytes: int = BLOCK_BYTES,
    ) -> None:
        self.dataset = dataset
        self.scheme = check_scheme(dataset, scheme, KDD_SCHEMES)
        self.extra = tuple(extra)
        self.category_map = dict(category_map or {})
        self.unknown_attacks = unknown_attacks
        names = (*KDD_FEATURES, ATTACK, *self.extra)
        self.stream = stream_csv(path, header=False, names=names, types=kdd_types(names),
                                 quoted=False, what=kdd_what(self.extra),
                                 block_bytes=block_bytes)
        self.path = self.stream.path
        empty = pd.DataFrame({ATTACK: pd.array([], dtype="string")})
        _, _, fixed = kdd_labels(empty, empty.copy(), dataset=dataset, scheme=scheme,
                                 category_map=self.category_map,
                                 unknown_attacks=unknown_attacks, notes=[])
        self.fixed_classes = list(fixed)
        self.schema = builtin_schema("kdd", benign_label=fixed[0], schema_file=schema_file,
                                     columns=[*names, LABEL])
        self.notes: list[str] = []

    @property
    def label(self) -> str:
        """The label column."""
        return self.schema.label

    def classes(self, seen: set[str]) -> list[str]:
        """The class labels for the labels ``seen`` in a pass: :attr:`fixed_classes`, then the
        others sorted (the in-memory loader's order)."""
        return [*self.fixed_classes, *sorted(set(seen) - set(self.fixed_classes))]

    def identity(self) -> str:
        """What the chunks depend on (file identity and options), for cache keys."""
        stat = self.path.stat()
        return (f"kdd|{self.path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{self.scheme}|"
                f"{self.extra}|{sorted(self.category_map.items())}|{self.unknown_attacks}|"
                f"{self.schema.to_dict()}|{self.stream.block_bytes}")

    def __iter__(self) -> Iterator[pd.DataFrame]:
        """The chunks: DataFrames with the features, ``label``, ``attack`` and ``extra``
        columns, index from 0 in each chunk."""
        notes: list[str] = []
        offset = 0
        keep = [*self.schema.names, LABEL,
                *[c for c in (ATTACK, *self.extra) if c not in self.schema.names]]
        for batch in self.stream:
            df = kdd_frame(pa.Table.from_batches([batch]), self.path, extra=self.extra,
                           offset=offset)
            df = tag_source(df, self.path)
            df[ROW] += offset
            offset += batch.num_rows
            df, _, _ = kdd_labels(df, df.iloc[:0], dataset=self.dataset, scheme=self.scheme,
                                  category_map=self.category_map,
                                  unknown_attacks=self.unknown_attacks, notes=notes)
            if not len(df):
                continue
            df = check_values(df, self.schema, fallback=f"{self.dataset} train split",
                              notes=notes)
            df = coerce_dtypes(df[keep].reset_index(drop=True), self.schema)
            df[LABEL] = df[LABEL].astype("string")
            yield df
        self.notes = notes

    def __repr__(self) -> str:
        return f"KddChunks({str(self.path)!r}, scheme={self.scheme!r})"
