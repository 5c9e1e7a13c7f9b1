"""Derived-value relations for constraint discovery: ``ratio``, ``formula`` (rates) and ``sum``.

A derived relation says that one column, the target ``t``, is computed from others:

- ``ratio``: ``t == scale * n / d`` (mean packet size ``smean == sbytes / spkts``);
- ``formula``: ``t == scale * P / d`` with a count template ``P`` of one or two integer columns
  ``a``, ``b``: ``a - 1``, ``a + b``, ``a + b - 1`` or ``a * (b - 1) / b`` (``rate == (spkts +
  dpkts - 1) / dur``; a load ``8 * sbytes * (spkts - 1) / (spkts * dur)``); continuous targets;
- ``sum``: ``t == a + b`` (``tcprtt == synack + ackdat``), all three of one kind.

Pruning is cheap, in two stages on a seeded sample before any pass over every row: a ratio or
formula is first tried on 64 sample rows where it is not vacuous (target non-zero and not at its
most common value, denominator non-zero): ``t * d / P`` within 10 % of the median of 15 of them
on 80 %; then on the whole sample (4,096 rows), within 10 % on ``min_share - 0.02`` of them.
Sums likewise (``|t - a - b|`` within the three rounding units on 80 % of 256 rows, then on
``min_share - 0.02`` of the sample). Only survivors are evaluated on every row. There the scale is
fitted (the median of ``t * d / P``) and snapped to a nice value (1, 8, 1000, 1e6, 1/8, ...)
unless the fitted one holds on more rows, the tolerance is learned from the residuals
(:func:`~advsec.features.discovery_table.learn_tolerance`: ``tol`` at most the target's rounding
unit, ``rtol`` at most 0.1 for rate-like relations whose inputs are rounded), and the relation
must fail on a copy with the target shuffled (share of binding rows, where the target or the
expression is non-zero, below 0.5) and be tight (``tol`` at most a tenth of the target's median
non-zero value). Per target the best relation is kept (most rows, then the simplest template);
of two orientations of one relation (``rate == n / dur``, ``dur == n / rate``) the one whose
target comes later in the schema.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from advsec.features.constraints import VIOLATION_EPS
from advsec.features.discovery_table import (
    PERMUTED_MAX,
    Finding,
    Table,
    learn_tolerance,
    quote,
)
from advsec.features.schema import FeatureKind

__all__ = ["NICE_SCALES", "derived_findings", "sum_findings"]

_BASE = (1.0, 2.0, 8.0, 10.0, 60.0, 100.0, 1000.0, 1024.0, 3600.0, 8000.0, 1e6, 1048576.0,
         8e6, 1e9)
#: The scales a fitted scale snaps to (and their reciprocals).
NICE_SCALES = tuple(sorted({*_BASE, *(1.0 / v for v in _BASE)}))
_SAMPLE = 64
_MIN_ROWS = 16
_PRUNE_RTOL = 0.1
_PRUNE_SHARE = 0.8
_PRUNE_MARGIN = 0.02  # the sample's share may fall this far below min_share
_TIGHT = 0.1  # a tolerance may be at most this share of the target's median non-zero size
_NUMERIC = (FeatureKind.CONTINUOUS, FeatureKind.INTEGER)
_FORMS = {"a": 0, "a-1": 1, "a+b": 2, "a+b-1": 2, "a*(b-1)/b": 3}  # form -> complexity


@dataclass(frozen=True)
class _Template:
    form: str
    cols: tuple[int, ...]

    def parts(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """``(numerator, extra denominator factor or None)`` on the rows of ``x`` ``(N, K)``."""
        a = x[:, self.cols[0]]
        if self.form == "a":
            return a, None
        if self.form == "a-1":
            return a - 1.0, None
        b = x[:, self.cols[1]]
        if self.form == "a+b":
            return a + b, None
        if self.form == "a+b-1":
            return a + b - 1.0, None
        return a * (b - 1.0), b

    def value(self, x: np.ndarray) -> np.ndarray:
        """``P`` on the rows of ``x`` (``x / 0`` counts as 0)."""
        num, extra = self.parts(x)
        return num if extra is None else _divide(num, extra)

    def expr(self, names: tuple[str, ...], den: str, scale: float) -> str:
        """The formula expression ``scale * P / den``."""
        a = quote(names[self.cols[0]])
        b = quote(names[self.cols[1]]) if len(self.cols) > 1 else ""
        lead = "" if scale == 1.0 else f"{_number(scale)} * "
        d = quote(den)
        if self.form == "a-1":
            return f"{lead}({a} - 1) / {d}"
        if self.form == "a+b":
            return f"{lead}({a} + {b}) / {d}"
        if self.form == "a+b-1":
            return f"{lead}({a} + {b} - 1) / {d}"
        return f"{lead}{a} * ({b} - 1) / ({b} * {d})"


def derived_findings(table: Table, *, min_share: float) -> list[Finding]:
    """The ratio and formula relations of ``table`` holding on at least ``min_share`` of rows:
    the best one per target, and one per set of features."""
    cols = [j for j in range(table.k) if table.informative(j) and table.is_kind(j, *_NUMERIC)]
    counts = [j for j in cols if table.is_kind(j, FeatureKind.INTEGER)]
    temps = [_Template("a", (j,)) for j in cols]
    temps += [_Template("a-1", (j,)) for j in counts]
    for i, a in enumerate(counts):
        for b in counts[i + 1:]:
            temps += [_Template("a+b", (a, b)), _Template("a+b-1", (a, b))]
        temps += [_Template("a*(b-1)/b", (a, b)) for b in counts if b != a]
    xp = table.values[table.pool]
    pm = np.stack([t.value(xp) for t in temps]) if temps else np.zeros((0, len(xp)))
    uses = np.zeros((len(temps), table.k), dtype=bool)
    for i, tp in enumerate(temps):
        uses[i, list(tp.cols)] = True
    is_ratio = np.array([t.form == "a" for t in temps], dtype=bool)
    nz = xp != 0
    # a row where the target has its most common non-zero value (rates at 1.0, a count at 1)
    # supports every template that is 1 there too: sample the other rows
    common = np.array([_common_nonzero(table.col(j)) for j in range(table.k)])
    varied = nz & (xp != common[None, :])
    best: dict[int, Finding] = {}
    for t in cols:
        continuous = table.is_kind(t, FeatureKind.CONTINUOUS)
        for d in cols:
            if d == t:
                continue
            rows = np.flatnonzero(varied[:, t] & nz[:, d])[:_SAMPLE]
            if len(rows) < _MIN_ROWS:
                continue
            sel = np.flatnonzero(~uses[:, t] & ~uses[:, d] & (is_ratio | continuous))
            if not len(sel):
                continue
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                q = (xp[rows, t] * xp[rows, d])[None, :] / pm[np.ix_(sel, rows)]
                c = np.median(q[:, :15], axis=1)
                close = np.abs(q - c[:, None]) <= _PRUNE_RTOL * np.abs(c)[:, None]
            keep = np.isfinite(c) & (c != 0) & (close.mean(axis=1) >= _PRUNE_SHARE)
            if not keep.any():
                continue
            # second stage, the whole sample: the share of rows within 10 % (or rounding)
            expected = _divide(c[keep, None] * pm[sel[keep]], xp[None, :, d])
            slack = _PRUNE_RTOL * np.abs(xp[:, t]) + table.units[t] + 1e-12
            near = (np.abs(xp[None, :, t] - expected) <= slack).mean(axis=1)
            for i in sel[keep][near >= min_share - _PRUNE_MARGIN]:
                found = _verify(table, t, d, temps[i], min_share=min_share)
                if found is not None and (t not in best or _better(found, best[t])):
                    best[t] = found
    by_set: dict[frozenset[str], Finding] = {}
    for found in best.values():
        key = found.features
        if key not in by_set or _preferred(found, by_set[key], table):
            by_set[key] = found
    return sorted(by_set.values(), key=lambda f: table.index[str(f.config["target"])])


def _verify(table: Table, t: int, d: int, temp: _Template, *,
            min_share: float) -> Finding | None:
    if temp.form != "a" and any("`" in table.names[c] for c in (d, *temp.cols)):
        return None  # a name with a backtick cannot be quoted in an expression
    x = table.values
    target, den = x[:, t], x[:, d]
    num, extra = temp.parts(x)
    full_den = den if extra is None else extra * den
    live = (target != 0) & (full_den != 0) & (num != 0)
    if not live.any():
        return None
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        fitted = float(np.median(target[live] * full_den[live] / num[live]))
    if not np.isfinite(fitted) or fitted == 0:
        return None
    scales = [float(f"{fitted:.6g}")]
    nice = min(NICE_SCALES, key=lambda v: abs(np.log(abs(fitted) / v)))
    if abs(abs(fitted) / nice - 1) <= 0.05:
        scales.insert(0, float(np.copysign(nice, fitted)))
    unit = float(table.units[t])
    relative = temp.form != "a" or not (table.is_kind(d, FeatureKind.INTEGER) and table.is_kind(
        temp.cols[0], FeatureKind.INTEGER))
    nonzero = np.abs(target[target != 0])
    typical = float(np.median(nonzero)) if len(nonzero) else 0.0
    chosen: tuple[float, float, float, np.ndarray, np.ndarray] | None = None
    for scale in scales:
        expected = _divide(scale * num, full_den)
        residual = np.abs(target - expected)
        tol, rtol, holds = learn_tolerance(residual, target, limit=unit, unit=unit,
                                           relative=relative)
        if chosen is None or holds.mean() > chosen[3].mean():
            chosen = (scale, tol, rtol, holds, expected)
    assert chosen is not None
    scale, tol, rtol, holds, expected = chosen
    share = float(holds.mean())
    if share < min_share or tol > _TIGHT * typical:
        return None  # too rare, or too loose for the target's size (a count within 1 of 1)
    shuffled = target[table.perm]
    binding = (shuffled != 0) | (expected != 0)
    kept = np.abs(shuffled - expected) <= tol + rtol * np.abs(shuffled) + VIOLATION_EPS
    permuted = float(kept[binding].mean()) if binding.any() else 1.0
    if permuted >= PERMUTED_MAX:
        return None
    names = table.names
    slack = _slack(tol, rtol)
    if temp.form == "a":
        n = names[temp.cols[0]]
        lead = "" if scale == 1.0 else f"{_number(scale)} * "
        text = f"{names[t]} == {lead}{n} / {names[d]}"
        config = {"type": "ratio", "target": names[t], "numerator": n, "denominator": names[d],
                  "scale": scale, "tol": tol, "rtol": rtol,
                  "description": f"{names[t]} is {lead}{n} / {names[d]} (0 when {names[d]} is 0)"}
        name = f"ratio_{names[t]}"
    else:
        expr = temp.expr(names, names[d], scale)
        text = f"{names[t]} == {expr}"
        config = {"type": "formula", "target": names[t], "expr": expr, "tol": tol, "rtol": rtol,
                  "description": f"{names[t]} is {expr} (x / 0 counts as 0)"}
        name = f"formula_{names[t]}"
    feats = frozenset({names[t], names[d], *(names[c] for c in temp.cols)})
    rank = _FORMS[temp.form] + rtol
    return Finding(config=config, share=share, rank=rank, text=text, slack=slack, name=name,
                   features=feats)


def _common_nonzero(col: np.ndarray) -> float:
    values, counts = np.unique(col[col != 0], return_counts=True)
    return float(values[np.argmax(counts)]) if len(values) else 0.0


def _better(a: Finding, b: Finding) -> bool:
    return (a.share, -a.rank) > (b.share, -b.rank)


def _preferred(a: Finding, b: Finding, table: Table) -> bool:
    """Of two orientations of one relation (``rate == n / dur``, ``dur == n / rate``), the one
    whose target comes later in the schema, unless the other holds on 1 % more rows: derived
    columns follow their inputs in flow-feature schemas."""
    if abs(a.share - b.share) >= 0.01:
        return a.share > b.share
    return table.index[str(a.config["target"])] > table.index[str(b.config["target"])]


def sum_findings(table: Table, *, min_share: float) -> list[Finding]:
    """The ``t == a + b`` relations of ``table`` holding on at least ``min_share`` of rows (all
    three columns of one kind, continuous or integer)."""
    xp = table.values[table.pool]
    out: list[Finding] = []
    for kind in _NUMERIC:
        cols = [j for j in range(table.k) if table.informative(j) and table.kinds[j] is kind]
        if len(cols) < 3:
            continue
        sub = xp[:, cols]
        units = table.units[cols]
        for ti, t in enumerate(cols):
            # stage 1: rows where the target is neither 0 nor its most common value (shares
            # at 1.0 = 1.0 + 0 would support every pair)
            common = _common_nonzero(table.col(t))
            rows = np.flatnonzero((sub[:, ti] != 0) & (sub[:, ti] != common))[: 4 * _SAMPLE]
            if len(rows) < _MIN_ROWS:
                continue
            part = sub[rows]
            limit = units[ti] + units[:, None] + units[None, :] + 1e-9
            close = np.abs(part[:, ti, None, None] - (part[:, :, None] + part[:, None, :]))
            frac = (close <= limit).mean(axis=0)
            frac[ti, :] = 0
            frac[:, ti] = 0
            for ai, bi in zip(*np.nonzero(np.triu(frac >= _PRUNE_SHARE, k=1)), strict=True):
                a, b = cols[int(ai)], cols[int(bi)]
                near = np.abs(sub[:, ti] - sub[:, ai] - sub[:, bi]) <= limit[ai, bi]
                if near.mean() < min_share - _PRUNE_MARGIN:
                    continue  # stage 2: the whole sample
                found = _verify_sum(table, t, a, b, min_share=min_share)
                if found is not None:
                    out.append(found)
    return out


def _verify_sum(table: Table, t: int, a: int, b: int, *, min_share: float) -> Finding | None:
    target, xa, xb = table.col(t), table.col(a), table.col(b)
    n = table.n
    for one, other in ((xa, xb), (xb, xa)):
        if np.count_nonzero(one) < 0.01 * n or np.count_nonzero(target != other) < 0.01 * n:
            return None  # t == a + 0 (or t == b) on almost every row: nothing learned
    total = xa + xb
    limit = float(table.units[t] + table.units[a] + table.units[b])
    positive = [float(u) for u in table.units[[t, a, b]] if u > 0]
    tol, _, holds = learn_tolerance(np.abs(total - target), target, limit=limit,
                                    unit=min(positive, default=0.0), relative=False)
    share = float(holds.mean())
    if share < min_share:
        return None
    shuffled = target[table.perm]
    binding = (shuffled != 0) | (total != 0)
    permuted = float((np.abs(total - shuffled) <= tol + VIOLATION_EPS)[binding].mean()) if (
        binding.any()) else 1.0
    if permuted >= PERMUTED_MAX:
        return None
    names = table.names
    text = f"{names[t]} == {names[a]} + {names[b]}"
    config = {"type": "sum", "features": [names[a], names[b]], "target": names[t], "op": "==",
              "tol": tol, "rtol": 0.0, "description": f"{names[t]} is {names[a]} + {names[b]}"}
    return Finding(config=config, share=share, rank=permuted, text=text, slack=_slack(tol, 0.0),
                   name=f"sum_{names[t]}", features=frozenset({names[t], names[a], names[b]}))


def _divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    nonzero = den != 0
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return np.where(nonzero, num / np.where(nonzero, den, 1.0), 0.0)


def _number(value: float) -> str:
    """``value`` as written in an expression: exact (the shortest repr that reads back)."""
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else repr(value)


def _slack(tol: float, rtol: float) -> str:
    if rtol > 0:
        return f"within {tol:g} + {rtol:g} x |target|"
    return f"within {tol:g}" if tol > 0 else "exactly"
