"""The one-line errors of the CSV readers: where pyarrow's parse error is (row, column,
value), found by a slow scan of the file only once parsing failed; the first null of a
table."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from advsec.datasets._text import raw_lines, shown, split_fields
from advsec.errors import DataError

__all__ = ["first_null", "locate_row", "parse_error"]


_FIELDS = re.compile(r"Expected (\d+) columns, got (\d+)")
_CONVERT = re.compile(r"In CSV column #(\d+): CSV conversion error to (\w+): invalid value '(.*)'")
_UTF8 = re.compile(r"In CSV column #(\d+): .*invalid UTF8")
_KIND = {"int64": "an integer", "int32": "an integer", "double": "a number", "float": "a number",
         "bool": "true/false"}


def parse_error(
    exc: pa.ArrowInvalid, path: Path, columns: list[str], *, skip: int, delimiter: str,
    quoted: bool,
) -> DataError:
    """The one-line :class:`DataError` for pyarrow's parse error ``exc`` on ``path`` (the row,
    located by a slow scan, the column and the value where pyarrow names them)."""
    msg = str(exc)
    m = _FIELDS.search(msg)
    if m:
        want, got = int(m.group(1)), int(m.group(2))
        row = locate_row(path, skip, delimiter, quoted, lambda fields: len(fields) != want)
        at = f", row {row}" if row else ""
        return DataError(f"{path}{at}: expected {want} fields, got {got}")
    m = _CONVERT.search(msg)
    if m:
        i, kind, value = int(m.group(1)), m.group(2), m.group(3)
        name = columns[i] if i < len(columns) else f"#{i}"
        row = locate_row(path, skip, delimiter, quoted,
                      lambda fields: len(fields) > i and fields[i] == value)
        at = f", row {row}" if row else ""
        return DataError(
            f"{path}{at}, column {name!r}: expected {_KIND.get(kind, kind)}, got {shown(value)}"
        )
    m = _UTF8.search(msg)
    if m:
        i = int(m.group(1))
        name = columns[i] if i < len(columns) else f"#{i}"
        row = locate_row(path, skip, delimiter, quoted, None)
        at = f", row {row}" if row else ""
        return DataError(f"{path}{at}, column {name!r}: text is not valid UTF-8; save the file "
                         f"as UTF-8")
    first = msg.splitlines()[0][:200] if msg else type(exc).__name__
    return DataError(f"{path}: cannot parse as CSV: {first}")


def locate_row(
    path: Path, skip: int, delimiter: str, quoted: bool,
    bad: Callable[[list[str]], bool] | None,
) -> int | None:
    """1-based data row of the first record after ``skip`` lines for which ``bad(fields)``
    holds, or (``bad=None``) whose bytes are not valid UTF-8 (slow path). Empty lines are not
    rows, as for pyarrow."""
    row = 0
    for number, raw in enumerate(raw_lines(path), start=1):
        if number <= skip or not raw:
            continue
        row += 1
        if bad is None:
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                return row
            continue
        line = raw.decode("utf-8", errors="replace")
        if quoted:
            fields = split_fields(line, delimiter, path=path, line_no=number)
        else:
            fields = line.split(delimiter)
        if bad(fields):
            return row
    return None


def first_null(table: pa.Table, columns: Sequence[str]) -> tuple[str, int] | None:
    """``(column, 1-based row)`` of the first null among ``columns`` of ``table``, or None."""
    for name in columns:
        col = table.column(name)
        if col.null_count:
            mask = col.is_null().to_numpy(zero_copy_only=False)
            return name, int(np.flatnonzero(mask)[0]) + 1
    return None
