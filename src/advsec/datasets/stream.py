"""Reading CSV files larger than memory: record batches from pyarrow's streaming CSV reader.

:func:`stream_csv` makes the checks :func:`~advsec.datasets._readers.read_csv` makes before
parsing (:func:`~advsec.datasets._readers.csv_layout`: the file exists and is text, the header or
the first record has the expected fields) and returns a :class:`CsvStream`: each iteration
re-opens the file (plain or gzip) and yields :class:`pyarrow.RecordBatch` objects of about
``block_bytes`` of text each, in file order. A malformed row is the same one-line
:class:`~advsec.errors.DataError` naming the file and the row that ``read_csv`` raises (the slow
row-locating scan runs only after pyarrow has failed), and so are a truncated gzip stream, a
file with a header only and a line longer than
:data:`~advsec.datasets._readers.MAX_LINE_BYTES`: a record longer than one block makes the reader
start again with a block that holds the longest line, skipping the rows already yielded.

Columns without a type in ``types`` are typed by pyarrow from the first block; a later block that
does not fit that type is an error (``read_csv`` infers from the whole file), so give every
column a type when the file is large. The concatenated batches equal ``read_csv(...).table``.

Memory: one or two blocks of text and their parsed batches (a few times ``block_bytes``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv

from advsec.datasets._csv_errors import parse_error
from advsec.datasets._readers import MAX_LINE_BYTES, csv_layout, input_stream
from advsec.datasets._text import READ_ERRORS, longest_line, read_error
from advsec.errors import DataError

__all__ = ["BLOCK_BYTES", "CsvStream", "read_csv_streamed", "stream_csv"]

#: default text per record batch, in bytes (4 MiB, as read_csv: about 26,000 KDD'99 rows;
#: pyarrow holds several times this while parsing a block)
BLOCK_BYTES = 4 << 20


@dataclass(frozen=True)
class CsvStream:
    """A CSV file read batch by batch; iterate it (more than once if needed) for the batches.

    Attributes:
        path: the file.
        columns: column names (the header's, made unique, or the given ones).
        types: pyarrow types of the typed columns.
        duplicates: ``{renamed: original}`` for repeated header names.
        header: whether the file has a header line.
        skip: lines before the first record.
        delimiter, quoted: the parse options.
        expect: the expected content, for error messages.
        block_bytes: text per batch, in bytes.
    """

    path: Path
    columns: list[str]
    types: dict[str, pa.DataType]
    duplicates: dict[str, str] = field(default_factory=dict)
    header: bool = True
    skip: int = 0
    delimiter: str = ","
    quoted: bool = True
    expect: str = "CSV rows"
    block_bytes: int = BLOCK_BYTES

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        """The record batches, in file order (each with :attr:`columns`)."""
        block, done = self.block_bytes, 0
        while True:
            seen = 0
            try:
                for batch in self._batches(block):
                    if seen + batch.num_rows <= done:  # yielded before a restart
                        seen += batch.num_rows
                        continue
                    if seen < done:
                        batch = batch.slice(done - seen)
                        seen = done
                    seen += batch.num_rows
                    done += batch.num_rows
                    yield batch
            except pa.ArrowInvalid as exc:
                if "straddl" in str(exc) or "block size" in str(exc):
                    line, longest = longest_line(self.path)
                    if longest > MAX_LINE_BYTES:
                        raise DataError(f"{self.path}, line {line}: {longest:,} bytes, longer "
                                        f"than the limit of {MAX_LINE_BYTES >> 20} MiB per "
                                        f"line; expected {self.expect}") from None
                    if 2 * longest + 1 > block:
                        block = 2 * longest + 1
                        continue
                raise parse_error(exc, self.path, self.columns, skip=self.skip,
                                  delimiter=self.delimiter, quoted=self.quoted) from None
            except READ_ERRORS as exc:
                raise read_error(self.path, exc) from None
            except pa.ArrowException as exc:
                first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
                raise DataError(f"{self.path}: cannot parse as CSV: {first}") from None
            if done == 0:
                raise DataError(f"{self.path}: no data rows (header only); expected "
                                f"{self.expect}")
            return

    def _batches(self, block: int) -> Iterator[pa.RecordBatch]:
        read = pacsv.ReadOptions(column_names=self.columns, skip_rows=self.skip,
                                 block_size=block)
        parse = pacsv.ParseOptions(delimiter=self.delimiter,
                                   quote_char='"' if self.quoted else False)
        convert = pacsv.ConvertOptions(column_types=self.types, strings_can_be_null=False)
        with input_stream(self.path) as stream:
            reader = pacsv.open_csv(stream, read_options=read, parse_options=parse,
                                    convert_options=convert)
            while True:
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    return
                if batch.num_rows:
                    yield batch


def stream_csv(
    path: str | Path,
    *,
    header: bool,
    names: Sequence[str] | None = None,
    types: Mapping[str, pa.DataType] | None = None,
    required: Sequence[str] = (),
    delimiter: str = ",",
    quoted: bool = True,
    what: str = "",
    block_bytes: int = BLOCK_BYTES,
) -> CsvStream:
    """A CSV file (plain or gzip) to read batch by batch, strictly.

    The arguments are :func:`~advsec.datasets._readers.read_csv`'s, plus ``block_bytes``: the
    text per batch, in bytes (at least 64 KiB). The file's first line is checked here; the rest
    as the batches are read.
    """
    if block_bytes < 1 << 16:
        raise ValueError(f"block_bytes must be at least 65536, got {block_bytes}")
    layout = csv_layout(path, header=header, names=names, required=required,
                        delimiter=delimiter, what=what)
    col_types = {k: v for k, v in (types or {}).items() if k in layout.columns}
    return CsvStream(path=layout.path, columns=layout.columns, types=col_types,
                     duplicates=layout.duplicates, header=header, skip=layout.skip,
                     delimiter=delimiter, quoted=quoted, expect=layout.expect,
                     block_bytes=int(block_bytes))


def read_csv_streamed(path: str | Path, **options: object) -> pa.Table:
    """All batches of :func:`stream_csv` as one table (for tests and small files)."""
    stream = stream_csv(path, **options)  # type: ignore[arg-type]
    batches = list(stream)
    return pa.Table.from_batches(batches)
