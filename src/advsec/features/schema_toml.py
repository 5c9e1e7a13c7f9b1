"""Write a :class:`~advsec.features.schema.FeatureSchema` as a complete, commented TOML schema file.

:func:`schema_to_toml` is the inverse of reading the file with
``FeatureSchema.from_file(path, replaces=True)``: features (in order, every field) and relations
come back equal. TOML is written by hand (the standard library only reads it): strings are basic
strings with quotes, backslashes and control characters escaped (other characters, non-ASCII
ones included, are written as they are: the file is UTF-8); floats are written with ``repr``
(the shortest text that reads back as the same float); Python integers as integers, and so are
the whole-number bounds and values of integer and binary features. Comments (the header, the
per-feature notes) have their control characters escaped so that they stay on one line.
"""

from __future__ import annotations

import math
import re
import textwrap
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from advsec.features.schema import Feature, FeatureKind, FeatureSchema

__all__ = ["schema_to_toml", "toml_key", "toml_string", "toml_value"]

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f",
            "\r": "\\r"}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_NO_NOTES: Mapping[str, str] = MappingProxyType({})
#: floats that are whole and smaller than this are written as integers where integers are meant
_EXACT_INT = 2**53
_WIDTH = 100

_GUIDE = """\
How to use this file: pass it as the schema file (`--schema FILE`, or schema_file in an
experiment's [data] table) of the same table; replace = true says that the [[features]] list is
the complete schema, in model-input order (it replaces the inferred one).

Each [[features]] table:
  kind       continuous, integer, binary or categorical;
  lower, upper  physical bounds in raw units; a value outside them is an error when loading
             (or set on_bound_violation = "clip");
  mutable    false: an attacker cannot change the feature (the protocol, the service, ...);
  direction  the attacker's action model for a mutable numeric feature: "any" (move either way);
             set "increase" for packets, bytes or time an attacker can only add to a flow
             (never remove), "decrease" for what can only shrink;
  values     the only values a numeric feature takes (TTLs, window sizes, flags): a list of
             numbers, or "observed" for the training split's values; leave it out for any value
             within the bounds;
  transform  "log1p" compresses a heavy tail before scaling.
[[relations]] tables are relations between features that every real record satisfies (holds_on,
where given: the share of rows that constraint discovery found it to hold on); they are enforced
on adversarial examples. Commented-out # [[relations]] blocks are candidates that hold on most
rows only: uncomment one to enforce it."""


def toml_string(text: str) -> str:
    """``text`` as a TOML basic string (``"..."``), escaped so that it reads back equal."""
    out = []
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ch < " " or ch == "\x7f":
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def toml_key(key: str) -> str:
    """``key`` bare when it may be (letters, digits, ``_``, ``-``), else quoted."""
    return key if _BARE_KEY.fullmatch(key) else toml_string(key)


def toml_value(value: Any, *, whole: bool = False) -> str:
    """A TOML value: string, boolean, integer, float (``repr``; ``inf``/``nan`` spelled as TOML
    does), list (an inline array) or mapping (an inline table). ``whole``: write whole floats
    below 2**53 as integers (the bounds and values of integer features)."""
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        if whole and value.is_integer() and abs(value) < _EXACT_INT:
            return str(int(value))
        return repr(value)
    if isinstance(value, Mapping):
        items = [f"{toml_key(str(k))} = {toml_value(v, whole=whole)}"
                 for k, v in value.items() if v is not None]
        return "{ " + ", ".join(items) + " }" if items else "{}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v, whole=whole) for v in value) + "]"
    if hasattr(value, "item"):  # a NumPy scalar
        return toml_value(value.item(), whole=whole)
    raise TypeError(f"cannot write {type(value).__name__} {value!r} as TOML")


def _comment(text: str) -> str:
    """``text`` made safe for a one-line comment (control characters escaped)."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _comments(lines: Sequence[str], *, width: int = _WIDTH) -> list[str]:
    """Comment lines, wrapped at ``width`` characters (continuations indented under a
    ``- `` bullet or the line's own indentation)."""
    out = []
    for line in lines:
        for part in str(line).split("\n"):
            part = _comment(part)
            indent = " " * (len(part) - len(part.lstrip(" ")))
            if part.lstrip(" ").startswith("- "):
                indent += "  "
            wrapped = textwrap.wrap(part, width=width - 2, subsequent_indent=indent,
                                    break_long_words=False, break_on_hyphens=False,
                                    drop_whitespace=True) or [""]
            out += [f"# {w}".rstrip() for w in wrapped]
    return out


def _feature_lines(f: Feature) -> list[str]:
    whole = f.kind in (FeatureKind.INTEGER, FeatureKind.BINARY)
    lines = [f"name = {toml_string(f.name)}", f"kind = {toml_value(f.kind.value)}"]
    if f.lower is not None:
        lines.append(f"lower = {toml_value(f.lower, whole=whole)}")
    if f.upper is not None:
        lines.append(f"upper = {toml_value(f.upper, whole=whole)}")
    lines.append(f"mutable = {toml_value(f.mutable)}")
    if f.is_numeric:
        lines.append(f"direction = {toml_value(f.direction)}")
    if f.transform != "none":
        lines.append(f"transform = {toml_value(f.transform)}")
    if f.values is not None:
        values: Any = f.values if isinstance(f.values, str) else list(f.values)
        lines.append(f"values = {toml_value(values, whole=True)}")
    if f.categories is not None:
        lines.append(f"categories = {toml_value(list(f.categories))}")
    if f.on_bound_violation != "error":
        lines.append(f"on_bound_violation = {toml_value(f.on_bound_violation)}")
    if f.description:
        lines.append(f"description = {toml_value(f.description)}")
    return lines


def _table_lines(table: Mapping[str, Any]) -> list[str]:
    return [f"{toml_key(str(k))} = {toml_value(v)}" for k, v in table.items() if v is not None]


def schema_to_toml(
    schema: FeatureSchema,
    *,
    header: Sequence[str] = (),
    feature_notes: Mapping[str, str] = _NO_NOTES,
    candidates: Sequence[Mapping[str, Any]] = (),
) -> str:
    """A complete, commented TOML schema file for ``schema``.

    Args:
        header: comment lines at the top (what file, how many rows, notes on the columns left
            out and why).
        feature_notes: a comment per feature name (observed range, distinct values), written on
            its ``[[features]]`` line.
        candidates: relation tables that hold on most rows only (with their ``holds_on``),
            written as commented-out ``# [[relations]]`` blocks.

    Returns:
        The file's text (ends with a newline); ``FeatureSchema.from_file(path, replaces=True)``
        reads it back equal to ``schema``.
    """
    lines = _comments(header)
    if lines:
        lines.append("#")
    lines += _comments(_GUIDE.splitlines())
    lines += ["", "replace = true", f"label = {toml_string(schema.label)}",
              f"benign_label = {toml_string(schema.benign_label)}"]
    for f in schema.features:
        note = feature_notes.get(f.name)
        lines += ["", "[[features]]" + (f"  # {_comment(note)}" if note else "")]
        lines += _feature_lines(f)
    if schema.relations:
        lines += ["", f"# {len(schema.relations)} relation(s), enforced"]
    for rel in schema.relations:
        lines += ["", "[[relations]]", *_table_lines(rel)]
    if candidates:
        lines += ["", f"# {len(candidates)} candidate relation(s), not enforced: each holds on "
                  "a share (holds_on) of the rows below 1; uncomment a block to enforce it"]
    for cand in candidates:
        share = cand.get("holds_on")
        what = (f"holds on {share:.2%} of the rows" if isinstance(share, (int, float))
                and not isinstance(share, bool) else "a candidate")
        lines += ["", f"# candidate: {what}", "# [[relations]]",
                  *[f"# {line}" for line in _table_lines(cand)]]
    return "\n".join(lines) + "\n"
