"""Checks of one finished combination's files before a report is built from them.

A damaged run directory is bad input, never a different report: before anything is written,
each ``combos/<key>/`` must hold its ``meta.json`` (a JSON object: key, classes, benign class,
seconds and the ``adversarial`` list of the attacks it ran), its ``confusion.json`` (a JSON
array) and every table a finished combination writes, with the columns the report reads
(numbers where numbers are expected, a value on every row where one is required) and the rows
its ``meta.json`` lists: one adaptive ``sweep.csv`` row per attack × ε × constraint, one
``worst.csv`` row per constraint × ε, a ``clean.csv`` row, model checks, and per-class,
feature-change and confusion records for every attack at the figure ε. Anything else is a
one-line :class:`~advsec.errors.DataError` naming the file and what was expected.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from advsec.errors import DataError

__all__ = ["SPECS", "TableSpec", "check_columns", "check_combo", "config_eps", "read_json"]


@dataclass(frozen=True)
class TableSpec:
    """What the report needs of one combination table.

    ``needed``: columns that must be there with a value on every row; ``present``: columns that
    must be there (a missing value allowed: a rate may be undefined); ``numeric``: columns that
    must hold numbers wherever they are there.
    """

    needed: tuple[str, ...]
    present: tuple[str, ...] = ()
    numeric: tuple[str, ...] = ()


_IDS = ("seed", "detector", "defense")
_RATES = ("accuracy", "precision", "detection_rate", "f1", "fpr", "roc_auc")

#: The columns each table of :data:`advsec.reporting.combos.TABLES` must have.
SPECS: dict[str, TableSpec] = {
    "clean": TableSpec((*_IDS, "n", "accuracy"), ("detection_rate", "fpr"),
                       ("seed", "n", *_RATES)),
    "sweep": TableSpec((*_IDS, "threat", "attack", "eps", "evaluation", "n", "accuracy"),
                       ("detection_rate", "fpr"),
                       ("seed", "eps", "n", *_RATES, "attack_success_rate", "mean_linf",
                        "max_linf", "mean_l2", "valid_share", "n_attacked", "seconds",
                        "n_detected_clean", "n_evaded", "evasion_rate", "n_benign_passed",
                        "n_false_alarm", "false_alarm_rate")),
    "worst": TableSpec((*_IDS, "threat", "eps"),
                       ("worst_case_accuracy", "worst_case_detection_rate"),
                       ("seed", "eps", "attacks", "worst_case_accuracy",
                        "worst_case_detection_rate", "worst_case_evasion_rate",
                        "worst_case_false_alarm_rate")),
    "per_class": TableSpec((*_IDS, "threat", "attack", "eps", "n"),
                           ("class", "recall_clean", "recall_attacked"),
                           ("seed", "eps", "n", "recall_clean", "recall_attacked")),
    "features": TableSpec((*_IDS, "threat", "attack", "eps"),
                          ("feature", "kind", "mutable", "mean_abs_change", "share_changed"),
                          ("seed", "eps", "mean_abs_change", "share_changed")),
    "checks": TableSpec(("detector", "defense", "check", "ok"), ("detail",), ("seed",)),
    "verify": TableSpec((*_IDS, "threat", "verifier"), ("eps",),  # no ε: a verifier not run
                        ("seed", "eps", "records", "verified", "verified_accuracy",
                         "attacked_accuracy", "gap", "verified_broken", "boxes",
                         "verify_seconds")),
}

#: Tables every finished combination has (``verify.csv`` is empty without ``[[verifiers]]``).
REQUIRED = ("clean", "sweep", "worst", "per_class", "features", "checks")

#: The keys of each confusion record (``confusion.json``).
_CONFUSION_KEYS = ("detector", "defense", "threat", "attack", "classes", "clean", "attacked")

#: How many missing or unexpected rows a message names.
_SHOW = 3


def read_json(path: Path, kind: type = dict) -> Any:
    """The JSON object (``kind=dict``) or array (``kind=list``) of ``path``, or a one-line
    DataError naming the file."""
    if not path.is_file():
        raise DataError(f"{path}: missing; the run directory is incomplete")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, kind):
        want = "object" if kind is dict else "array"
        raise DataError(f"{path}: expected a JSON {want}, got {type(data).__name__}")
    return data


def config_eps(cfg: dict[str, Any], path: Path) -> list[float]:
    """The ε grid of a run's ``config.json`` (``cfg``, read from ``path``; empty when it has
    none), or a one-line DataError when it is not a list of numbers."""
    threat = cfg.get("threat", {})
    if not isinstance(threat, dict):
        raise DataError(f"{path}: 'threat' must be a JSON object, got {type(threat).__name__}")
    eps = threat.get("eps", [])
    if not isinstance(eps, list) or not all(_is_number(e) for e in eps):
        raise DataError(f"{path}: threat.eps must be a list of numbers, got {eps!r}")
    return [float(e) for e in eps]


def check_columns(df: pd.DataFrame, spec: TableSpec, path: Path) -> None:
    """Raise a one-line DataError naming ``path`` when ``df`` (read from it) lacks a column of
    ``spec``, has a missing value in a needed column or text in a numeric one."""
    missing = [c for c in (*spec.needed, *spec.present) if c not in df.columns]
    if missing:
        raise DataError(f"{path}: expected columns {', '.join(missing)} (it has "
                        f"{_listed(map(str, df.columns))})")
    for c in spec.needed:
        if df[c].isna().any():
            row = int(df.index[df[c].isna()][0]) + 2  # the header is line 1
            raise DataError(f"{path}: line {row}: no value in column {c!r} (is the file cut "
                            "short?)")
    for c in spec.numeric:
        if c in df.columns and not pd.api.types.is_numeric_dtype(df[c]):
            bad = pd.to_numeric(df[c], errors="coerce").isna() & df[c].notna()
            row = int(df.index[bad][0]) + 2 if bad.any() else 2
            value = df[c][bad].iloc[0] if bad.any() else ""
            raise DataError(f"{path}: line {row}: column {c!r} must be a number, got "
                            f"{str(value)!r}")


def check_combo(folder: Path, meta: Any, tables: dict[str, pd.DataFrame], confusion: Any,
                eps: Sequence[float] = ()) -> None:
    """Raise a one-line DataError naming the file when combination ``folder`` is damaged.

    Args:
        folder: the combination's folder (``combos/<key>/``).
        meta: its ``meta.json``; confusion: its ``confusion.json``.
        tables: its tables by name (:func:`advsec.reporting.combos.read_combo`; empty when the
            file is missing or has no rows).
        eps: the run's ε grid (``config.json``); ε = 0 and the figure ε are always expected.
            Without it (a run directory without ``config.json``) the grid is every ε of the
            adaptive sweep rows: each attack and constraint must have all of them.
    """
    items = _check_meta(folder / "meta.json", meta)
    for name, spec in SPECS.items():
        path = folder / f"{name}.csv"
        if name in REQUIRED and not path.is_file():
            raise DataError(f"{path}: missing; expected the combination's {name} table "
                            "(the run directory is damaged)")
        df = tables[name]
        if name in REQUIRED and df.empty:
            raise DataError(f"{path}: no rows; expected the combination's {name} table")
        if not df.empty:
            check_columns(df, spec, path)
    if not items:
        return
    ids = {(_int(i["seed"]), str(i["detector"]), str(i["defense"])) for i in items}
    pairs = list(dict.fromkeys((str(i["threat"]), str(i["attack"])) for i in items))
    threats = list(dict.fromkeys(t for t, _ in pairs))
    sweep = tables["sweep"]
    adaptive = sweep[sweep.evaluation.astype(str) == "adaptive"]
    swept = () if eps else (float(e) for e in adaptive.eps)
    grid = sorted({round(e, 9) for e in (0.0, *eps, *swept, *(float(i["eps"]) for i in items))})
    attacks = ", ".join(dict.fromkeys(a for _, a in pairs))
    what = (f"attacks {attacks} × ε {', '.join(f'{e:g}' for e in grid)} × constraints "
            f"{', '.join(threats)}, as meta.json and config.json list them")
    _exact_rows(folder / "sweep.csv", adaptive, ("threat", "attack", "eps"),
                {(*k, t, a, e) for k in ids for t, a in pairs for e in grid},
                f"one adaptive row per {what}")
    worst = tables["worst"]
    _exact_rows(folder / "worst.csv", worst, ("threat", "eps"),
                {(*k, t, e) for k in ids for t in threats for e in grid},
                f"one row per constraint × ε ({', '.join(threats)} × "
                f"{', '.join(f'{e:g}' for e in grid)})")
    if "attacks" in worst.columns:
        per = Counter(t for t, _ in pairs)
        for r in worst.itertuples(index=False):
            if _is_number(r.attacks) and int(r.attacks) != per[str(r.threat)]:
                raise DataError(f"{folder / 'worst.csv'}: threat {r.threat}, ε {r.eps:g}: "
                                f"worst case over {int(r.attacks)} attacks, but meta.json "
                                f"lists {per[str(r.threat)]}")
    _some_rows(folder / "clean.csv", tables["clean"], (), {k for k in ids}, "a clean row")
    _some_rows(folder / "checks.csv", tables["checks"].assign(seed=0), (),
               {(0, d, f) for _, d, f in ids}, "the model checks")
    _check_ok(folder / "checks.csv", tables["checks"])
    at = {(*_key(i, _IDS), str(i["threat"]), str(i["attack"]), round(float(i["eps"]), 9))
          for i in items}
    for name in ("per_class", "features"):
        _some_rows(folder / f"{name}.csv", tables[name], ("threat", "attack", "eps"), at,
                   "rows for every attack at the figure ε listed in meta.json")
    _check_confusion(folder / "confusion.json", confusion, at)


# ---------------------------------------------------------------------- helpers
def _check_meta(path: Path, meta: Any) -> list[dict[str, Any]]:
    """The ``adversarial`` items of ``meta`` (read from ``path``), checked."""
    if not isinstance(meta, dict):
        raise DataError(f"{path}: expected a JSON object, got {type(meta).__name__}")
    classes = meta.get("classes")
    if not isinstance(meta.get("key"), str):
        raise DataError(f"{path}: expected 'key', the combination's name")
    if not isinstance(classes, list) or not classes:
        raise DataError(f"{path}: expected 'classes', a non-empty list of the class names")
    benign = meta.get("benign")
    if not isinstance(benign, int) or isinstance(benign, bool) or not 0 <= benign < len(classes):
        raise DataError(f"{path}: expected 'benign', the index of the benign class in "
                        f"'classes' (0 to {len(classes) - 1}), got {benign!r}")
    if not _is_number(meta.get("seconds")):
        raise DataError(f"{path}: expected 'seconds', a number, got {meta.get('seconds')!r}")
    if meta.get("mode") not in (None, "all", "evasion"):
        raise DataError(f"{path}: 'mode' must be \"all\" or \"evasion\", got {meta['mode']!r}")
    items = meta.get("adversarial")
    if not isinstance(items, list):
        raise DataError(f"{path}: expected 'adversarial', the list of the attacks the "
                        "combination ran")
    for n, item in enumerate(items):
        if not (isinstance(item, dict) and _is_number(item.get("eps"))
                and isinstance(item.get("seed"), int)
                and all(isinstance(item.get(k), str)
                        for k in ("detector", "defense", "threat", "attack", "name"))):
            raise DataError(f"{path}: adversarial[{n}]: expected an object with seed, "
                            "detector, defense, threat, attack, eps and name")
    return items


def _exact_rows(path: Path, df: pd.DataFrame, cols: tuple[str, ...], expected: set[tuple],
                what: str) -> None:
    """Exactly one row of ``df`` per key of ``expected`` (``seed``, ``detector``,
    ``defense``, then ``cols``), no other."""
    have = Counter(_keys(df, (*_IDS, *cols)))
    missing = sorted(expected - set(have), key=str)
    extra = sorted(set(have) - expected, key=str)
    twice = sorted((k for k, n in have.items() if n > 1), key=str)
    if missing:
        raise DataError(f"{path}: {len(missing)} row(s) missing ({_rows(missing, cols)}); "
                        f"expected {what}")
    if extra:
        raise DataError(f"{path}: {len(extra)} unexpected row(s) ({_rows(extra, cols, True)}); "
                        f"expected {what}")
    if twice:
        raise DataError(f"{path}: rows repeated ({_rows(twice, cols)}); expected {what}")


def _some_rows(path: Path, df: pd.DataFrame, cols: tuple[str, ...], expected: set[tuple],
               what: str) -> None:
    """At least one row of ``df`` per key of ``expected``."""
    missing = sorted(expected - set(_keys(df, (*_IDS, *cols))), key=str)
    if missing:
        raise DataError(f"{path}: no row for {_rows(missing, cols, True)}; expected {what}")


def _check_ok(path: Path, checks: pd.DataFrame) -> None:
    """Every ``ok`` of ``checks`` reads as True or False."""
    for n, v in enumerate(checks.ok.tolist()):
        text = v.strip().lower() if isinstance(v, str) else v
        if isinstance(v, float) or text not in (True, False, "true", "false", "1", "0"):
            raise DataError(f"{path}: line {n + 2}: column 'ok' must be True or False, "
                            f"got {str(v)!r}")


def _check_confusion(path: Path, confusion: Any, at: set[tuple]) -> None:
    """A list of confusion records, one for every attack of ``at``."""
    if not isinstance(confusion, list) or not all(
            isinstance(c, dict) and all(k in c for k in _CONFUSION_KEYS) for c in confusion):
        raise DataError(f"{path}: expected a JSON array of objects with "
                        f"{', '.join(_CONFUSION_KEYS)}")
    have = {(str(c["detector"]), str(c["defense"]), str(c["threat"]), str(c["attack"]))
            for c in confusion}
    missing = sorted({k[1:5] for k in at} - have)
    if missing:
        raise DataError(f"{path}: no confusion matrices for "
                        f"{'; '.join(' '.join(k) for k in missing[:_SHOW])}; expected one "
                        "per attack listed in meta.json")


def _keys(df: pd.DataFrame, cols: Iterable[str]) -> list[tuple]:
    """The normalised key of every row of ``df`` (seed an int, ε rounded, names as text)."""
    cols = list(cols)
    if df.empty or any(c not in df.columns for c in cols):
        return []
    return [_key(r, cols) for r in df[cols].to_dict(orient="records")]


def _key(row: dict[str, Any], cols: Iterable[str]) -> tuple:
    """One normalised key (see :func:`_keys`)."""
    out: list[Any] = []
    for c in cols:
        v = row[c]
        out.append(_int(v) if c == "seed" else round(float(v), 9) if c == "eps" else str(v))
    return tuple(out)


def _rows(keys: Sequence[tuple], cols: tuple[str, ...], ids: bool = False) -> str:
    """The first keys, readable: ``threat valid, attack pgd, ε 0.05; ...``."""
    names = (*(_IDS if ids else ()), *cols)
    parts = []
    for k in keys[:_SHOW]:
        vals = k if ids else k[len(_IDS):]
        parts.append(", ".join(f"{'ε' if n == 'eps' else n} {v:g}" if n == "eps" else
                               f"{n} {v}" for n, v in zip(names, vals, strict=True)))
    more = f"; +{len(keys) - _SHOW} more" if len(keys) > _SHOW else ""
    return "; ".join(parts) + more


def _listed(names: Iterable[str]) -> str:
    """At most eight names, comma-separated."""
    names = list(names)
    return ", ".join(names[:8]) + (f", +{len(names) - 8} more" if len(names) > 8 else "")


def _int(v: Any) -> int | str:
    """``v`` as an int when it is a whole number, else as text."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    return int(f) if math.isfinite(f) and f == int(f) else str(v)


def _is_number(v: Any) -> bool:
    """Whether ``v`` is a finite JSON number (not a bool)."""
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
