"""The ``combos/`` folders of an ``advsec run`` directory, read back (report, export).

Each finished combination has a folder ``combos/<key>/`` holding ``clean.csv``, ``sweep.csv``,
``worst.csv``, ``per_class.csv``, ``features.csv``, ``checks.csv`` (model red-flag checks),
``verify.csv`` (verified against attacked accuracy; absent in runs before ``[[verifiers]]``),
``confusion.json``, ``adversarial.safetensors``, ``meta.json`` and a ``DONE`` marker (written
by :mod:`advsec.experiments.artifacts`). Folders without ``DONE``, and hidden staging folders,
are not finished and are skipped. :func:`gather` with ``check=True`` (the report) first checks
each folder against its ``meta.json`` (:func:`advsec.reporting.combo_checks.check_combo`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from advsec.reporting.combo_checks import check_combo, read_json

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
    """One table of one finished combination (empty DataFrame if it has none).

    Only an empty field is a missing value (what ``DataFrame.to_csv`` writes for one): a name
    such as ``NA`` or ``None`` (a detector, an attack, a class) stays text."""
    path = folder / f"{table}.csv"
    if not path.exists() or path.stat().st_size <= 1:
        return pd.DataFrame()
    try:
        return pd.read_csv(path, keep_default_na=False, na_values=[""])
    except pd.errors.EmptyDataError:
        return pd.DataFrame()


def gather(run_dir: Path, *, check: bool = False, eps: Sequence[float] = ()) -> dict[str, Any]:
    """All finished combinations' tables concatenated (one entry per name in :data:`TABLES`),
    plus ``confusion`` (the confusion-matrix records) and ``meta`` (each ``meta.json``).

    ``check``: first check every folder (:func:`~advsec.reporting.combo_checks.check_combo`
    with the run's ε grid ``eps``): a one-line DataError naming the damaged file."""
    tables: dict[str, list[pd.DataFrame]] = {t: [] for t in TABLES}
    confusion: list[Any] = []
    metas: list[Any] = []
    for f in finished_combos(run_dir):
        frames = {t: read_combo(f, t) for t in TABLES}
        if check:
            meta, conf = read_json(f / "meta.json"), read_json(f / "confusion.json", list)
            check_combo(f, meta, frames, conf, eps)
        else:
            meta = json.loads((f / "meta.json").read_text())
            conf = json.loads((f / "confusion.json").read_text())
        for t, df in frames.items():
            tables[t].append(df)
        confusion.extend(conf)
        metas.append(meta)
    out: dict[str, Any] = {t: concat_frames(frames) for t, frames in tables.items()}
    out["confusion"], out["meta"] = confusion, metas
    return out


def concat_frames(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """The non-empty ``frames`` concatenated with a fresh index (empty DataFrame if none)."""
    kept = [f for f in frames if not f.empty]
    return pd.concat(kept, ignore_index=True) if kept else pd.DataFrame()
