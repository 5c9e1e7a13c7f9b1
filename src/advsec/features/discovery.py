"""Constraint discovery: the relations and value sets a training table obeys.

:func:`discover` searches a raw training table (the numeric features of a
:class:`~advsec.features.schema.FeatureSchema`: continuous, integer and binary) for

- ``ratio`` relations, ``target == scale * numerator / denominator`` (mean packet size
  ``smean == sbytes / spkts``), and rate-like ``formula`` relations, ``target == scale * P / d``
  with a count template ``P`` (``rate == (spkts + dpkts - 1) / dur``, a load
  ``8 * sbytes * (spkts - 1) / (spkts * dur)``): :mod:`~advsec.features.discovery_derived`;
- ``sum`` relations ``target == a + b`` (``tcprtt == synack + ackdat``), and ``a + b <= 1`` for
  share columns (``serror_rate + rerror_rate <= 1``);
- ``zero_if_zero`` groups and ``order`` relations (``dloss <= dpkts``):
  :mod:`~advsec.features.discovery_order`;
- value sets: integer features with at most ``max_values`` distinct values that leave most of
  their range empty (TTLs, TCP window sizes): :func:`value_sets`.

Every relation carries a tolerance learned from the data's rounding (an integer target from a
ratio needs 0.5 or 1; a sum of six-decimal durations up to ``1.5e-6``; rate-like relations a
relative ``rtol`` of at most 0.1, and for a near-holding one the knee that its consistent rows
need), must not hold by accident (each column it reads takes its most common value on fewer
than 99 % of rows, and it breaks on a copy with one column shuffled: see the helper modules)
and gets a unique ``name`` (``ratio_smean``, ``zero_if_zero_dpkts``, ...), a one-sentence
``description`` and ``holds_on``, the share of rows it holds on, rounded down to 4 decimals (as
:meth:`Relation.violation <advsec.features.constraints.Relation.violation>` counts it, within
``VIOLATION_EPS``; a relation reported to hold on every row is confirmed by that code itself).
Relations holding on every row go to :attr:`Discovered.relations` (ready for
``FeatureSchema(relations=...)``: a FeatureSpace fitted on the same table accepts every row);
those holding on at least ``min_share`` of rows to :attr:`Discovered.candidates`, for a person
to judge. Deterministic (seeded samples and shuffles); an 82,000-row table with 40 numeric
columns takes about 1-2 s on 2 cores, KDD'99's 494,021 rows about 5 s.

Example:
    >>> found = discover(train_df, schema)
    >>> schema = dataclasses.replace(schema, relations=(*schema.relations, *found.relations))
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from advsec.errors import ConfigError, DataError
from advsec.features.constraints import VIOLATION_EPS, parse_relation
from advsec.features.discovery_derived import derived_findings, sum_findings
from advsec.features.discovery_order import order_findings, share_sum_findings, zero_findings
from advsec.features.discovery_table import Finding, Table, build_table, floor_share
from advsec.features.schema import FeatureKind, FeatureSchema

__all__ = ["Discovered", "discover", "value_sets"]

_TYPE_ORDER = {"ratio": 0, "formula": 1, "sum": 2, "zero_if_zero": 3, "order": 4}


@dataclass(frozen=True)
class Discovered:
    """What :func:`discover` found.

    Attributes:
        relations: relation tables that hold on every row given (``holds_on == 1.0``), ready
            for ``FeatureSchema(relations=...)``.
        candidates: near-holding relation tables (``min_share <= holds_on < 1``), same form;
            not enforced.
        value_sets: integer feature name -> its sorted allowed values.
        notes: one human-readable line per finding.
    """

    relations: list[dict[str, Any]]
    candidates: list[dict[str, Any]]
    value_sets: dict[str, list[float]]
    notes: list[str]


def discover(df: pd.DataFrame, schema: FeatureSchema, *, min_share: float = 0.99,
             max_values: int = 32) -> Discovered:
    """The relations and value sets that the raw table ``df`` (N rows, the schema's columns)
    obeys (see the module docstring).

    Args:
        df: the training table; only the numeric features of ``schema`` are read.
        schema: the feature schema (its own relations are not used).
        min_share: the least share of rows, in (0, 1], a candidate relation must hold on.
        max_values: the most distinct values a value set may have.

    Raises:
        ConfigError: for a ``min_share`` outside (0, 1] or a ``max_values`` below 2.
        DataError: for a missing column or a missing or non-finite numeric value.
    """
    if isinstance(min_share, bool) or not isinstance(min_share, (int, float)) or not (
            0.0 < min_share <= 1.0):
        raise ConfigError(f"discover: min_share must be a share in (0, 1], got {min_share!r}")
    if isinstance(max_values, bool) or not isinstance(max_values, int) or max_values < 2:
        raise ConfigError(f"discover: max_values must be an integer >= 2, got {max_values!r}")
    if not isinstance(df, pd.DataFrame):
        raise DataError(f"discover: expected a pandas DataFrame, got {type(df).__name__}")
    missing = [f.name for f in schema if f.is_numeric and f.name not in df.columns]
    if missing:
        raise DataError(f"discover: table is missing feature column(s) {missing}")
    table = build_table(df, schema)
    if table.n == 0 or table.k == 0:
        return Discovered([], [], {}, ["no rows or no numeric features: nothing to discover"])
    sums = sum_findings(table, min_share=min_share)
    findings = [*derived_findings(table, min_share=min_share), *sums,
                *share_sum_findings(table, min_share=min_share),
                *zero_findings(table, min_share=min_share),
                *order_findings(table, min_share=min_share, sums=sums)]
    relations, candidates, notes = _classify(table, findings, min_share=min_share)
    sets = value_sets(table, max_values=max_values)
    for name, values in sets.items():
        shown = ", ".join(f"{v:g}" for v in values)
        notes.append(f"{name} takes {len(values)} values: {{{shown}}}")
    return Discovered(relations=relations, candidates=candidates, value_sets=sets, notes=notes)


def value_sets(table: Table, *, max_values: int) -> dict[str, list[float]]:
    """Integer feature name -> sorted values, for the integer columns of ``table`` with 2 to
    ``max_values`` distinct values that fill fewer than half the integers of their range, and
    of the range up to their median value (a heavy-tailed count, ``0..12`` and then a few large
    values, is not a value set; TTLs ``{0, 29, ..., 255}`` are)."""
    out: dict[str, list[float]] = {}
    for j, name in enumerate(table.names):
        if table.kinds[j] is not FeatureKind.INTEGER:
            continue
        uniq = pd.unique(table.col(j))
        if not 2 <= len(uniq) <= max_values:
            continue
        values = np.sort(uniq.astype(np.float64))
        low = values[: (len(values) + 1) // 2]  # up to the median value
        if len(values) < (values[-1] - values[0] + 1) / 2 and len(low) < (
                low[-1] - low[0] + 1) / 2:
            out[name] = [float(v) for v in values]
    return out


def _classify(table: Table, findings: list[Finding], *,
              min_share: float) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str]]:
    """Split the findings into relations (every row, confirmed by the relation code itself) and
    candidates (at least ``min_share`` of rows, as the searches counted them), named uniquely,
    with their notes."""
    relations: list[dict[str, Any]] = []
    candidates: list[dict[str, Any]] = []
    notes: list[str] = []
    names: set[str] = set()
    ordered = sorted(findings, key=lambda f: (f.share < 1.0, _TYPE_ORDER[str(f.config["type"])],
                                              min(table.index[n] for n in f.features), f.rank))
    for found in ordered:  # relations first: they get the plain names
        name = found.name if found.name not in names else f"{found.name}_near"
        base = name
        k = 2
        while name in names:
            name, k = f"{base}_{k}", k + 1
        config = {"type": found.config["type"], "name": name,
                  **{key: v for key, v in found.config.items() if key != "type"}}
        count = round(found.share * table.n)
        if count == table.n:  # every row: confirm with the relation code that enforces it
            count = _holding_rows(table, config)
        share = 1.0 if count == table.n else floor_share(count / table.n)
        if share < min_share:
            continue
        names.add(name)
        config["holds_on"] = share
        (relations if count == table.n else candidates).append(config)
        broken = "" if count == table.n else f" ({table.n - count:,} rows break it)"
        notes.append(f"{found.text} {found.slack} on {_percent(count, table.n)} of rows"
                     f"{broken}{'' if count == table.n else ' [candidate]'}")
    return relations, candidates, notes


def _holding_rows(table: Table, config: dict[str, Any]) -> int:
    """The rows of ``table`` on which the relation ``config`` holds, as
    :meth:`~advsec.features.constraints.Relation.violation` (the check of ``FeatureSpace``)
    counts them; it reads a copy of the relation's own columns only."""
    rel = parse_relation(config)
    cols = [table.index[f] for f in rel.features]
    raw = torch.from_numpy(np.ascontiguousarray(table.values[:, cols]))
    rel.bind({f: i for i, f in enumerate(rel.features)})
    return int((rel.violation(raw) <= VIOLATION_EPS).sum())


def _percent(count: int, n: int) -> str:
    value = math.floor(count / n * 10_000) / 100 if count < n else 100.0
    return f"{value:.2f} %"
