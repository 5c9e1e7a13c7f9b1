"""Byte- and line-level reading of text data files: gzip or plain, sniffing for binary data,
the first line, CSV field splitting, one-line read errors and values cut for messages.

Limits: one line may hold up to :data:`MAX_LINE_BYTES` (64 MiB); values quoted in error messages
are cut to :data:`SHOWN_CHARS` characters.
"""

from __future__ import annotations

import csv
import gzip
import io
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, cast

from advsec.errors import DataError

__all__ = [
    "MAX_LINE_BYTES",
    "READ_ERRORS",
    "SHOWN_CHARS",
    "check_file",
    "first_line",
    "is_gzip",
    "longest_line",
    "open_binary",
    "open_text",
    "raw_lines",
    "read_error",
    "shown",
    "split_fields",
]

_GZIP_MAGIC = b"\x1f\x8b"
#: The longest line (one record, all its fields) the CSV reader accepts, in bytes.
MAX_LINE_BYTES = 64 << 20
#: Values quoted in error messages are cut to this many characters.
SHOWN_CHARS = 40
#: What reading a damaged or unreadable file raises (turned into :func:`read_error`).
READ_ERRORS = (OSError, EOFError, zlib.error)
_SNIFF = 1 << 16


def is_gzip(path: Path) -> bool:
    """True if ``path`` starts with the gzip magic bytes."""
    with path.open("rb") as fh:
        return fh.read(2) == _GZIP_MAGIC


def open_binary(path: Path) -> io.BufferedIOBase:
    """``path`` opened for reading bytes, decompressed when it is gzip."""
    return gzip.open(path, "rb") if is_gzip(path) else path.open("rb")


def open_text(path: Path) -> Iterator[str]:
    """Lines of ``path`` (gzip or plain), decoded leniently (latin-1), without line endings."""
    with open_binary(path) as fh:
        for line in io.TextIOWrapper(cast(IO[bytes], fh), encoding="latin-1", newline=""):
            yield line.rstrip("\r\n")


def shown(value: object) -> str:
    """``repr(value)``, cut to :data:`SHOWN_CHARS` characters (with the full length) if longer."""
    text = str(value)
    if len(text) <= SHOWN_CHARS:
        return repr(text)
    return f"{text[:SHOWN_CHARS]!r}... ({len(text):,} characters)"


def read_error(path: Path, exc: BaseException) -> DataError:
    """The one-line :class:`DataError` for an exception raised while reading ``path``."""
    if isinstance(exc, IsADirectoryError):
        return DataError(f"{path}: is a directory, not a file")
    if isinstance(exc, FileNotFoundError):
        return DataError(f"{path}: file not found")
    if isinstance(exc, PermissionError):
        return DataError(f"{path}: cannot read the file (permission denied)")
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, (EOFError, zlib.error, gzip.BadGzipFile)) or "compress" in text.lower():
        return DataError(f"{path}: cannot read the file (truncated or corrupt gzip data: {text})")
    return DataError(f"{path}: cannot read the file ({text})")


def check_file(path: Path, expect: str = "") -> None:
    """A one-line :class:`DataError` if ``path`` does not exist or is a folder."""
    tail = f"; expected {expect}" if expect else ""
    if path.is_dir():
        raise DataError(f"{path}: is a directory, not a file{tail}")
    if not path.is_file():
        raise DataError(f"{path}: file not found{tail}")


def check_text(path: Path, head: bytes, expect: str) -> None:
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DataError(f"{path}: UTF-16 text (byte-order mark), not UTF-8; save it as UTF-8 "
                        f"({expect})")
    if head.startswith(b"PAR1"):
        raise DataError(f"{path}: a Parquet file, not CSV text; name it .parquet ({expect})")
    nul = head.find(b"\x00")
    if nul >= 0:
        raise DataError(f"{path}: binary data (a NUL byte at offset {nul}), not CSV text; "
                        f"expected {expect}")


def first_line(path: Path, *, expect: str, strict: bool) -> tuple[int, str] | None:
    """``(line number, text)`` of the first non-blank line (BOM and line end removed), or None
    for an empty file. Checks that the start of the file is text; ``strict``: the line must be
    valid UTF-8."""
    try:
        with open_binary(path) as fh:
            check_text(path, fh.read(_SNIFF), expect)
        with open_binary(path) as fh:
            number = 0
            while True:
                raw = fh.readline(MAX_LINE_BYTES + 1)
                if not raw:
                    return None
                number += 1
                if len(raw) > MAX_LINE_BYTES:
                    raise DataError(f"{path}, line {number}: longer than the limit of "
                                    f"{MAX_LINE_BYTES >> 20} MiB per line; expected {expect}")
                if raw.strip():
                    break
    except DataError:
        raise
    except READ_ERRORS as exc:
        raise read_error(path, exc) from None
    raw = raw.rstrip(b"\r\n")
    if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        return number, raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        if strict:
            raise DataError(f"{path}, line {number}: the header is not valid UTF-8 (byte "
                            f"0x{raw[exc.start]:02x} at position {exc.start + 1}); save the "
                            f"file as UTF-8") from None
        return number, raw.decode("utf-8", errors="replace")


def split_fields(line: str, delimiter: str, *, path: Path, line_no: int) -> list[str]:
    """The fields of one CSV line (quotes handled); a one-line error if the line is malformed."""
    if csv.field_size_limit() < MAX_LINE_BYTES:
        csv.field_size_limit(MAX_LINE_BYTES)
    try:
        return next(csv.reader([line], delimiter=delimiter))
    except (csv.Error, StopIteration) as exc:
        raise DataError(f"{path}, line {line_no}: not a valid CSV line ({exc})") from None


def raw_lines(path: Path) -> Iterator[bytes]:
    """The raw lines of ``path`` (gzip or plain), line ends removed (slow paths only)."""
    try:
        with open_binary(path) as fh:
            for raw in fh:
                yield raw.rstrip(b"\r\n")
    except READ_ERRORS as exc:
        raise read_error(path, exc) from None


def longest_line(path: Path) -> tuple[int, int]:
    """``(line number, length in bytes)`` of the longest line."""
    best = (0, 0)
    for number, raw in enumerate(raw_lines(path), start=1):
        if len(raw) > best[1]:
            best = (number, len(raw))
    return best
