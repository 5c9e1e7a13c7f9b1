"""Finding data files and reading them fast and strictly (pyarrow), with one-line errors.

Files are looked up, in order, in ``root`` (and ``root/<dataset>``) when a root is given, else in
``$ADVSEC_DATA`` (and ``$ADVSEC_DATA/<dataset>``) and in the fetch cache
(:func:`default_cache_dir`). Each name is tried plain and with ``.gz``; gzip is recognised by its
magic bytes, not only by the suffix.

:func:`read_csv` wraps pyarrow's multithreaded CSV reader. Every malformed input becomes a
:class:`~advsec.errors.DataError` naming the file and, where there is one, the row (1-based data
row, header and empty lines excluded), the line or the column: a path that is missing or a
folder, an unreadable file, an empty or header-only file, binary data (NUL bytes, a Parquet file
under a CSV name), UTF-16 or other non-UTF-8 text, truncated or corrupt gzip data, a wrong
delimiter, a row with the wrong number of fields, text in a numeric column, a missing column.
Values quoted in messages are cut to :data:`SHOWN_CHARS` characters. The slow row-locating scan
runs only after the fast reader has failed.

Large fields are read correctly up to a documented limit: one line (record) may hold up to
:data:`MAX_LINE_BYTES` (64 MiB), in one field or spread over many; pyarrow's block size grows to
the longest line when a record does not fit the default 4 MiB block. A longer line is a
:class:`DataError` naming the file and the line.

Parse cache (opt-in): when ``$ADVSEC_PARSE_CACHE`` names a folder (``1`` means
``<default cache dir>/parsed``), each parsed table is also saved there as an lz4-compressed Arrow
(Feather v2) file, keyed by the source's absolute path, size and modification time and by the
read options; the next read of an unchanged file maps that file instead of parsing the CSV
again. Nothing is cached by default.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.feather as feather

from advsec.datasets._csv_errors import locate_row, parse_error
from advsec.datasets._text import (
    MAX_LINE_BYTES,
    READ_ERRORS,
    SHOWN_CHARS,
    check_file,
    first_line,
    is_gzip,
    longest_line,
    open_text,
    read_error,
    split_fields,
)
from advsec.errors import ConfigError, DataError

__all__ = [
    "CACHE_ENV",
    "DATA_ENV",
    "MAX_LINE_BYTES",
    "SHOWN_CHARS",
    "CsvTable",
    "csv_layout",
    "default_cache_dir",
    "exact_integers",
    "find_file",
    "input_stream",
    "is_gzip",
    "open_text",
    "read_csv",
    "search_dirs",
]

log = logging.getLogger(__name__)

DATA_ENV = "ADVSEC_DATA"
CACHE_ENV = "ADVSEC_PARSE_CACHE"
_BLOCK = 1 << 22


def default_cache_dir() -> Path:
    """Where ``advsec data fetch`` stores files: ``$ADVSEC_DATA``, else
    ``$XDG_CACHE_HOME/advsec/datasets``, else ``~/.cache/advsec/datasets``."""
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "advsec" / "datasets"


def search_dirs(dataset: str, root: str | Path | None) -> list[Path]:
    """The folders searched for ``dataset``'s files, in order (see the module docstring)."""
    if root is not None:
        base = Path(root).expanduser()
        if base.is_file():
            base = base.parent
        return [base, base / dataset]
    dirs: list[Path] = []
    env = os.environ.get(DATA_ENV)
    if env:
        dirs += [Path(env).expanduser(), Path(env).expanduser() / dataset]
    cache = default_cache_dir() / dataset
    if cache not in dirs:
        dirs.append(cache)
    return dirs


def find_file(
    dataset: str, names: Sequence[str], *, root: str | Path | None, hint: str = ""
) -> Path:
    """The first existing file among ``names`` (each plain or ``.gz``) in :func:`search_dirs`.

    Raises :class:`DataError` naming the file expected, the folders searched and ``hint`` (where
    to get it) when none exists.
    """
    dirs = search_dirs(dataset, root)
    for d in dirs:
        for name in names:
            for candidate in (d / name, d / f"{name}.gz"):
                if candidate.is_file():
                    return candidate
    where = ", ".join(str(d) for d in dirs)
    if root is None and not os.environ.get(DATA_ENV):
        where += f" (pass --root PATH or set ${DATA_ENV})"
    tail = f"; {hint}" if hint else ""
    raise DataError(f"{dataset}: file {names[0]!r} (plain or .gz) not found in {where}{tail}")


def input_stream(path: Path) -> pa.NativeFile:
    """``path`` as a pyarrow input stream, decompressed when it is gzip (by magic bytes)."""
    return pa.input_stream(str(path), compression="gzip" if is_gzip(path) else None)


@dataclass
class CsvTable:
    """A parsed CSV file.

    Attributes:
        table: the pyarrow table, one column per field, named by ``columns``.
        path: the file read.
        columns: column names (from the header, stripped and made unique, or as given).
        duplicates: ``{renamed: original}`` for header names that appeared more than once
            (the second ``"Fwd Header Length"`` becomes ``"Fwd Header Length.1"``).
        header: True if the file's first line was a header.
        unnamed: 0-based positions of the header's empty cells (named ``column_<position>``).
    """

    table: pa.Table
    path: Path
    columns: list[str]
    duplicates: dict[str, str] = field(default_factory=dict)
    header: bool = True
    unnamed: list[int] = field(default_factory=list)


def _header_names(raw: list[str]) -> tuple[list[str], dict[str, str]]:
    names: list[str] = []
    duplicates: dict[str, str] = {}
    seen: dict[str, int] = {}
    for i, name in enumerate(raw):
        base = name.strip() or f"column_{i}"
        if base in seen:
            seen[base] += 1
            unique = f"{base}.{seen[base]}"
            while unique in seen:
                seen[base] += 1
                unique = f"{base}.{seen[base]}"
            duplicates[unique] = base
            seen[unique] = 0
            names.append(unique)
        else:
            seen[base] = 0
            names.append(base)
    return names, duplicates


def _delimiter_hint(line: str, delimiter: str) -> str:
    for other, label in ((";", "';'"), ("\t", "tab"), ("|", "'|'")):
        if other != delimiter and other in line:
            return f" (the file looks {label}-separated; expected {delimiter!r})"
    return ""


@dataclass(frozen=True)
class CsvLayout:
    """What :func:`csv_layout` learns from a CSV file's first line before any parse.

    Attributes:
        path: the file.
        columns: column names (the header's, stripped and made unique, or the given names).
        duplicates: ``{renamed: original}`` for repeated header names.
        skip: lines before the first record (the header and blank lines before it; 0 without
            a header).
        expect: the description of the expected content used in error messages.
        unnamed: 0-based positions of the header's empty cells (named ``column_<position>``).
    """

    path: Path
    columns: list[str]
    duplicates: dict[str, str]
    skip: int
    expect: str
    unnamed: list[int] = field(default_factory=list)


def csv_layout(
    path: str | Path,
    *,
    header: bool,
    names: Sequence[str] | None = None,
    required: Sequence[str] = (),
    delimiter: str = ",",
    what: str = "",
) -> CsvLayout:
    """The checks :func:`read_csv` makes before parsing (the file exists and is text, the header
    or the first record has the expected fields) and the column names; the arguments are
    :func:`read_csv`'s. Shared with the chunked reader (:mod:`advsec.datasets.stream`)."""
    path = Path(path)
    if not isinstance(delimiter, str) or len(delimiter) != 1 or delimiter in '"\r\n':
        raise ConfigError(f"delimiter: expected one character (not a quote or a line end), "
                          f"got {delimiter!r}")
    expect = what or (f"{len(names)} {delimiter!r}-separated fields" if names else "CSV rows")
    check_file(path, expect)
    first = first_line(path, expect=expect, strict=header)
    if first is None:
        raise DataError(f"{path}: file is empty; expected {expect}")
    line_no, text = first
    raw_fields = split_fields(text, delimiter, path=path, line_no=line_no)
    duplicates: dict[str, str] = {}
    if header:
        columns, duplicates = _header_names(raw_fields)
        if len(columns) == 1 and (required or names):
            raise DataError(
                f"{path}, header: found 1 column{_delimiter_hint(text, delimiter)}; "
                f"expected {expect}"
            )
        missing = [c for c in required if c not in columns]
        if missing:
            found = ", ".join(c if len(c) <= SHOWN_CHARS else f"{c[:SHOWN_CHARS]}..."
                              for c in columns[:8]) + (", ..." if len(columns) > 8 else "")
            raise DataError(
                f"{path}: no column {missing[0]!r} in the header (found {len(columns)} columns: "
                f"{found})"
            )
    else:
        if names is None:
            raise ValueError("read_csv: a headerless file needs names")
        columns = list(names)
        if len(raw_fields) != len(columns):
            raise DataError(
                f"{path}, row 1: expected {len(columns)} fields, got {len(raw_fields)}"
                f"{_delimiter_hint(text, delimiter)}"
            )
    unnamed = [i for i, name in enumerate(raw_fields) if header and not name.strip()]
    return CsvLayout(path=path, columns=columns, duplicates=duplicates,
                     skip=line_no if header else 0, expect=expect, unnamed=unnamed)


def read_csv(
    path: str | Path,
    *,
    header: bool,
    names: Sequence[str] | None = None,
    types: Mapping[str, pa.DataType] | None = None,
    required: Sequence[str] = (),
    delimiter: str = ",",
    quoted: bool = True,
    what: str = "",
    utf8: bool = False,
    exact_ints: bool = False,
) -> CsvTable:
    """Read a CSV file (plain or gzip) with pyarrow, strictly.

    Args:
        path: the file.
        header: whether the first line is a header. A UTF-8 BOM, CRLF line ends and stray spaces
            around header names are handled; duplicate names get ``.1``, ``.2`` suffixes.
        names: column names for a headerless file (the field count must match).
        types: pyarrow types for some columns (others are inferred).
        required: columns a header must contain.
        delimiter: the field separator.
        quoted: whether fields may be quoted with ``"``; False parses a little faster.
        what: a short description of the expected content for error messages
            (e.g. ``"42 comma-separated KDD'99 fields"``).
        utf8: every column read as text must be valid UTF-8 (a one-line error naming the row
            and column otherwise); by default such a column comes back as binary, for loaders
            that decode it themselves (CICIDS2017's cp1252 labels).
        exact_ints: a column of whole numbers beyond the int64 range (up to 2**64 - 1), which
            pyarrow reads as float64, rounding them (values near 2**64 collapse onto a few
            floats), is read again as text and comes back as exact ``uint64``
            (:func:`exact_integers`).

    Returns:
        A :class:`CsvTable`.
    """
    layout = csv_layout(path, header=header, names=names, required=required,
                        delimiter=delimiter, what=what)
    path, columns, duplicates, expect = layout.path, layout.columns, layout.duplicates, \
        layout.expect
    col_types = {k: v for k, v in (types or {}).items() if k in columns}
    skip = layout.skip
    key = (f"{columns}|{sorted((k, str(v)) for k, v in col_types.items())}|{header}|"
           f"{delimiter}|{quoted}|{skip}")
    cached = _cache_load(path, key)
    if cached is not None:
        table = cached
    else:
        table = _read_body(path, columns, col_types, skip=skip, delimiter=delimiter,
                           quoted=quoted, expect=expect)
        if table.num_rows == 0:
            raise DataError(f"{path}: no data rows (header only); expected {expect}")
        _cache_store(path, key, table)
    if utf8:
        _check_text(table, path, skip=skip, delimiter=delimiter, quoted=quoted)
    if exact_ints:
        table = exact_integers(table, path, skip=skip, delimiter=delimiter, quoted=quoted,
                               typed=col_types)
    return CsvTable(table=table, path=path, columns=columns, duplicates=duplicates, header=header,
                    unnamed=layout.unnamed)


_INT_TEXT = r"^\s*\+?[0-9]+\s*$"


def exact_integers(
    table: pa.Table, path: Path, *, skip: int, delimiter: str, quoted: bool,
    typed: Mapping[str, pa.DataType] = MappingProxyType({}),
) -> pa.Table:
    """``table`` (parsed from the CSV file ``path``, ``skip`` lines before the first record)
    with each float64 column that holds a whole number beyond 2**53 and whose text is whole
    numbers only, all within ``uint64``, read again as text and cast to exact ``uint64``.
    pyarrow reads integers beyond the int64 range as float64, rounding them; a column given a
    type in ``typed`` is left as it is. Only such a column is read again (the slow path)."""
    import pyarrow.compute as pc

    suspects = [
        spec.name for spec in table.schema
        if spec.name not in typed and pa.types.is_float64(spec.type)
        and _has_big_whole(table.column(spec.name))]
    if not suspects:
        return table
    text = _read_body(path, table.column_names, {c: pa.string() for c in suspects}, skip=skip,
                      delimiter=delimiter, quoted=quoted, expect="CSV rows", include=suspects)
    for name in suspects:
        col = text.column(name)
        if not pc.all(pc.match_substring_regex(col, _INT_TEXT)).as_py():
            continue  # decimals or exponents: a float column
        try:
            ints = pc.cast(pc.utf8_ltrim(pc.utf8_trim_whitespace(col), characters="+"),
                           pa.uint64())
        except pa.ArrowInvalid:
            continue  # beyond uint64 too: a float is all there is
        table = table.set_column(table.column_names.index(name), name, ints)
    return table


def _has_big_whole(col: pa.ChunkedArray) -> bool:
    """Whether the float column ``col`` holds a whole number beyond 2**53 in magnitude."""
    values = col.to_numpy()
    big = np.abs(values) > 2.0**53
    return bool(np.any(big & (np.floor(values) == values)))


def _check_text(table: pa.Table, path: Path, *, skip: int, delimiter: str,
                quoted: bool) -> None:
    """A one-line error naming the row and column when pyarrow inferred a column as binary:
    its text is not valid UTF-8 (a file saved as Latin-1 or cp1252, or corrupt bytes)."""
    for col in table.schema:
        if pa.types.is_binary(col.type) or pa.types.is_large_binary(col.type):
            row = locate_row(path, skip, delimiter, quoted, None)
            at = f", row {row}" if row else ""
            raise DataError(f"{path}{at}, column {col.name!r}: text is not valid UTF-8; save "
                            "the file as UTF-8")


def _read_body(
    path: Path, columns: list[str], col_types: Mapping[str, pa.DataType], *, skip: int,
    delimiter: str, quoted: bool, expect: str, include: Sequence[str] = (),
) -> pa.Table:
    """pyarrow's parse of the records after the first ``skip`` lines (only the columns
    ``include``, where given); the block size grows to the longest line (up to
    :data:`MAX_LINE_BYTES`) when a record does not fit one block."""
    parse_options = pacsv.ParseOptions(delimiter=delimiter, quote_char='"' if quoted else False)
    convert_options = pacsv.ConvertOptions(column_types=col_types, strings_can_be_null=False,
                                           include_columns=list(include))
    block = _BLOCK
    while True:
        read_options = pacsv.ReadOptions(column_names=columns, skip_rows=skip, block_size=block)
        try:
            with input_stream(path) as stream:
                return pacsv.read_csv(stream, read_options=read_options,
                                      parse_options=parse_options,
                                      convert_options=convert_options)
        except pa.ArrowInvalid as exc:
            if block == _BLOCK and ("straddl" in str(exc) or "block size" in str(exc)):
                line, longest = longest_line(path)
                if longest > MAX_LINE_BYTES:
                    raise DataError(f"{path}, line {line}: {longest:,} bytes, longer than the "
                                    f"limit of {MAX_LINE_BYTES >> 20} MiB per line; expected "
                                    f"{expect}") from None
                block = max(_BLOCK, 2 * longest + 1)
                continue
            raise parse_error(exc, path, columns, skip=skip, delimiter=delimiter,
                           quoted=quoted) from None
        except READ_ERRORS as exc:
            raise read_error(path, exc) from None
        except pa.ArrowException as exc:
            first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            raise DataError(f"{path}: cannot parse as CSV: {first}") from None


def parse_cache_dir() -> Path | None:
    """The parse-cache folder from ``$ADVSEC_PARSE_CACHE``, or None when caching is off."""
    value = os.environ.get(CACHE_ENV, "").strip()
    if not value or value == "0":
        return None
    return default_cache_dir() / "parsed" if value == "1" else Path(value).expanduser()


def _cache_file(path: Path, key: str) -> Path | None:
    folder = parse_cache_dir()
    if folder is None:
        return None
    stat = path.stat()
    ident = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{key}|v1"
    digest = hashlib.sha256(ident.encode()).hexdigest()[:20]
    return folder / f"{path.name}.{digest}.arrow"


def _cache_load(path: Path, key: str) -> pa.Table | None:
    target = _cache_file(path, key)
    if target is None or not target.is_file():
        return None
    try:
        table = feather.read_table(str(target), memory_map=True)
    except (OSError, pa.ArrowInvalid) as exc:
        log.warning("ignoring unreadable parse cache %s (%s)", target, exc)
        return None
    log.info("%s: read from the parse cache %s", path, target)
    return table


def _cache_store(path: Path, key: str, table: pa.Table) -> None:
    target = _cache_file(path, key)
    if target is None:
        return
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(f".tmp{os.getpid()}")
        feather.write_feather(table, str(tmp), compression="lz4")
        tmp.replace(target)
    except OSError as exc:
        log.warning("cannot write the parse cache %s (%s)", target, exc)
