"""Parquet tables as the loaders read them: a one-line error when the file is not one, lacks a
column or has no rows; byte columns as UTF-8 text. :func:`nested_columns` names the columns whose
values are not scalars (lists, structs, maps, unions), which no feature can hold."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa

from advsec.errors import DataError

__all__ = ["nested_columns", "read_parquet"]


def read_parquet(path: str | Path, *, required: Sequence[str] = ()) -> pa.Table:
    """Read a Parquet file; a one-line :class:`DataError` when it is not one or lacks a column."""
    import pyarrow.parquet as pq

    path = Path(path)
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{path}: not a readable Parquet file ({first})") from None
    missing = [c for c in required if c not in table.column_names]
    if missing:
        raise DataError(f"{path}: no column {missing[0]!r} (found {table.num_columns} columns)")
    if table.num_rows == 0:
        raise DataError(f"{path}: no data rows")
    return _binary_as_text(table, path)


def nested_columns(table: pa.Table) -> dict[str, str]:
    """``{column: kind}`` of the columns of ``table`` whose values are not scalars: ``"list"``
    (list, large list, fixed-size list, list view), ``"struct"``, ``"map"``, ``"union"`` (also
    as the values of a dictionary or the storage of an extension type)."""
    out: dict[str, str] = {}
    for spec in table.schema:
        kind = _nested_kind(spec.type)
        if kind is not None:
            out[spec.name] = kind
    return out


def _nested_kind(dtype: pa.DataType) -> str | None:
    if isinstance(dtype, pa.ExtensionType):
        dtype = dtype.storage_type
    if pa.types.is_dictionary(dtype):
        dtype = dtype.value_type
    if pa.types.is_struct(dtype):
        return "struct"
    if pa.types.is_map(dtype):
        return "map"
    if pa.types.is_union(dtype):
        return "union"
    return "list" if pa.types.is_nested(dtype) else None


def _binary_as_text(table: pa.Table, path: Path) -> pa.Table:
    """``table`` with its binary columns as UTF-8 text; a one-line error naming the column and
    the row of the first value that is not valid UTF-8 (raw bytes are not a feature)."""
    for i, spec in enumerate(table.schema):
        if not (pa.types.is_binary(spec.type) or pa.types.is_large_binary(spec.type)):
            continue
        col = table.column(i)
        try:
            text = col.cast(pa.large_string() if pa.types.is_large_binary(spec.type)
                            else pa.string())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            row = next((r for r, v in enumerate(col.to_pylist(), start=1)
                        if v is not None and not _is_utf8(v)), None)
            at = f", row {row}" if row else ""
            raise DataError(f"{path}{at}, column {spec.name!r}: binary data, not UTF-8 text; "
                            "store it as text or leave it out of the file") from None
        table = table.set_column(i, spec.name, text)
    return table


def _is_utf8(value: bytes) -> bool:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
