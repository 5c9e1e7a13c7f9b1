"""Where a key is in an experiment TOML file: its dotted name and its line, for one-line errors."""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["dotted", "line_of"]

_BARE_KEY = re.compile(r"[A-Za-z0-9_\-]+")


def dotted(loc: tuple[Any, ...]) -> str:
    """``("attacks", 1, "steps")`` -> ``attacks[1].steps``; a key that is not a bare TOML key
    is quoted as TOML writes it (``data.options."a\\nb"``), so a message stays one line."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            key = str(part)
            key = key if _BARE_KEY.fullmatch(key) else json.dumps(key)
            out += ("." if out else "") + key
    return out


_HEADER = re.compile(r"^\s*\[(\[)?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-]+|\"[^\"]+\")\s*=")


def line_of(text: str, loc: tuple[Any, ...]) -> int | None:
    """Best-effort line number (1-based) of the key at ``loc`` in TOML ``text``."""
    index: dict[str, int] = {}
    table: tuple[Any, ...] = ()
    positions: dict[tuple[Any, ...], int] = {}
    for n, line in enumerate(text.splitlines(), start=1):
        m = _HEADER.match(line)
        if m:
            name = m.group(2).strip()
            if m.group(1):  # [[array]]
                index[name] = index.get(name, -1) + 1
                table = (*name.split("."), index[name])
            else:
                table = tuple(name.split("."))
            positions.setdefault(table, n)
            continue
        k = _KEY.match(line)
        if k:
            positions.setdefault((*table, k.group(1).strip('"')), n)
    for cut in range(len(loc), 0, -1):
        if loc[:cut] in positions:
            return positions[loc[:cut]]
    return None
