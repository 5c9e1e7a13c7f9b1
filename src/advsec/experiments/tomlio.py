"""Minimal TOML writing for configurations (reading uses the standard ``tomllib``)."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import Any

from advsec.features.schema_toml import toml_value

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["dumps_toml", "loads_toml", "tomllib"]


def _value(v: Any) -> str:
    if v is None:
        raise ValueError("TOML has no null: leave the key out")
    if isinstance(v, (str, bool, int, float, list, tuple, Mapping)):
        return toml_value(v)
    return toml_value(str(v))


def dumps_toml(data: Mapping[str, Any], _prefix: str = "") -> str:
    """Serialise nested mappings of scalars and lists (no arrays of tables) to TOML text."""
    lines: list[str] = []
    tables: list[tuple[str, Mapping[str, Any]]] = []
    for key, value in data.items():
        if value is None:
            continue
        if isinstance(value, Mapping):
            tables.append((key, value))
        else:
            lines.append(f"{_key(key)} = {_value(value)}")
    out = "\n".join(lines)
    for key, table in tables:
        name = f"{_prefix}.{_key(key)}" if _prefix else _key(key)
        out += ("\n\n" if out else "") + f"[{name}]\n" + dumps_toml(table, name)
    return out.rstrip("\n") + "\n" if not _prefix else out


def loads_toml(text: str) -> dict[str, Any]:
    """Parse TOML text."""
    return tomllib.loads(text)


def _key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() else json.dumps(key)
