"""Shared CLI helpers: consoles, option parsing."""

from __future__ import annotations

import math
from pathlib import Path

from rich.console import Console

try:  # typer >= 0.26 vendors click as typer._click
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover - older typer depends on click
    from click import exceptions as click_exceptions  # type: ignore[import-not-found, no-redef, unused-ignore]

from advsec.errors import ConfigError

__all__ = ["TABLE_SUFFIXES", "click_exceptions", "console", "err_console", "parse_floats",
           "parse_ints", "rate", "table_file"]

#: file endings read as a user's table (CSV, compressed CSV, Parquet, TSV)
TABLE_SUFFIXES = (".csv", ".gz", ".parquet", ".pq", ".tsv", ".txt")

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def rate(value: float | None) -> str:
    """A rate or accuracy with 3 decimals; "n/a" when undefined (NaN: no record to count it
    on, e.g. the detection rate of a split without malicious records)."""
    return "n/a" if value is None or value != value else f"{value:.3f}"


def print_red_flags(flags: list[tuple[str, str, str]], *, show: int = 10) -> int:
    """Print ``(check, where, detail)`` red flags the same way for every command (at most
    ``show`` of them, then a count); returns how many there are."""
    if not flags:
        return 0
    console.print(f"{len(flags)} red flag(s) (see the report's Red-flag checks):",
                  soft_wrap=True, markup=False, highlight=False)
    for check, where, detail in flags[:show]:
        scope = f" ({where})" if where else ""
        console.print(f"  {check}{scope}: {detail}", soft_wrap=True, markup=False,
                      highlight=False)
    if len(flags) > show:
        console.print(f"  ... and {len(flags) - show} more", markup=False)
    return len(flags)


def cli_delimiter(text: str | None) -> str | None:
    """A --delimiter value as typed in a shell: ``\\t`` (backslash, t) is a tab."""
    return "\t" if text in ("\\t", "tab", "TAB") else text


def parse_floats(text: str, *, option: str) -> list[float]:
    """``"0,0.01, 0.1"`` -> ``[0.0, 0.01, 0.1]``; a one-line ConfigError naming ``option``
    (also for an empty item, ``"0.1,,0.2"``: a typo, not a list of two)."""
    _no_empty_item(text, option=option)
    try:
        values = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ConfigError(
            f"{option}: expected comma-separated numbers like 0,0.05,0.1, got {text!r}"
        ) from None
    if not values or any(not math.isfinite(v) for v in values):
        raise ConfigError(f"{option}: expected comma-separated finite numbers, got {text!r}")
    return values


def _no_empty_item(text: str, *, option: str) -> None:
    parts = [t.strip() for t in text.split(",")]
    if len(parts) > 1 and not all(parts):
        raise ConfigError(f"{option}: empty item in {text!r}; expected comma-separated values "
                          f"like 0,0.05,0.1")


def parse_ints(text: str, *, option: str) -> list[int]:
    """``"64,32"`` -> ``[64, 32]``."""
    _no_empty_item(text, option=option)
    try:
        values = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ConfigError(f"{option}: expected comma-separated integers like 64,32, "
                          f"got {text!r}") from None
    if not values:
        raise ConfigError(f"{option}: expected at least one integer")
    return values


def table_file(name: str) -> Path | None:
    """The path ``name`` names when it is a table file rather than a registered dataset (an
    existing file, or a name ending in one of :data:`TABLE_SUFFIXES`); None for a dataset."""
    from advsec.datasets import registered

    path = Path(name).expanduser()
    if name in registered() or not (path.is_file() or path.suffix.lower() in TABLE_SUFFIXES):
        return None
    return path
