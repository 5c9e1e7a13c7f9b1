"""The ``combos/`` folders of an ``advsec run`` directory, read back (report, export).

Each finished combination has a folder ``combos/<key>/`` holding ``clean.csv``, ``sweep.csv``,
``worst.csv``, ``per_class.csv``, ``features.csv``, ``checks.csv`` (model red-flag checks),
``verify.csv`` (verified against attacked accuracy; absent in runs before ``[[verifiers]]``),
``confusion.json``, ``adversarial.safetensors``, ``meta.json`` and a ``DONE`` marker (written
by :mod:`advsec.experiments.artifacts`). Folders without ``DONE``, and hidden staging folders,
are not finished and are skipped.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["TABLES", "combo_dir", "concat_frames", "finished_combos", "gather", "read_combo"]

#: The CSV tables of one combination (``<name>.csv``).
TABLES = ("clean", "sweep", "worst", "per_class", "features", "checks", "verify")


def combo_dir(run_dir: Path, key: str) -> Path:
    """The folder of combination ``key`` in run (or staging) directory ``run_dir``."""
    return run_dir / "combos" / key


def finished_combos(run_dir: Path) -> list[Path]:
    """The folders of the finished combinations of ``run_dir``, sorted by key."""
    return sorted(p for p in (run_dir / "combos").glob("*")
                  if not p.name.startswith(".") and (p / "DONE").exists())


def read_combo(folder: Path, table: str) -> pd.DataFrame:
    """One table of one finished combination (empty DataFrame if it has none)."""
    path = folder / f"{table}.csv"
    if not path.exists() or path.stat().st_size <= 1:
        return pd.DataFrame()
    try:
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()


def gather(run_dir: Path) -> dict[str, Any]:
    """All finished combinations' tables concatenated (one entry per name in :data:`TABLES`),
    plus ``confusion`` (the confusion-matrix records) and ``meta`` (each ``meta.json``)."""
    folders = finished_combos(run_dir)
    out: dict[str, Any] = {t: concat_frames([read_combo(f, t) for f in folders]) for t in TABLES}
    out["confusion"] = [c for f in folders for c in json.loads((f / "confusion.json").read_text())]
    out["meta"] = [json.loads((f / "meta.json").read_text()) for f in folders]
    return out


def concat_frames(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """The non-empty ``frames`` concatenated with a fresh index (empty DataFrame if none)."""
    kept = [f for f in frames if not f.empty]
    return pd.concat(kept, ignore_index=True) if kept else pd.DataFrame()
