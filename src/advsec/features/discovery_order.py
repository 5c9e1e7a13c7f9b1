"""Inequality-type relations for constraint discovery: ``zero_if_zero``, ``order`` and share sums.

- ``zero_if_zero``: when ``A`` is 0, every feature of a group is 0 (no destination bytes, mean
  size, load or TTL without destination packets). One relation per gate ``A``, grouping every
  ``B`` that is zero whenever ``A`` is; ``B`` must be non-zero on at least 1 % of the rows where
  ``A`` is not (else it is zero almost everywhere anyway); gates with the same zero rows
  (``dpkts`` and ``dbytes``) give one relation, gated by the first in schema order; a ``B``
  implied through another gate of the group (``rate == 0 => dpkts == 0 => dbytes == 0``) is
  left to that gate's relation. With the gate shuffled, the group must break on at least 20
  rows and 10 times as many as on the data: the share test of the other relations (below 0.5
  of the binding rows) would reject every group of rare counters (no root shell without a
  login), which the 1 % rule already judges. A near-holding group must pass that share test as
  well, and may break on at most 10 % of its gated rows.
- ``order``: ``A <= B`` for two features of one kind (integers with integers, continuous with
  continuous, flags with flags). Informative only: ``A < B`` on at least 5 % of rows, not implied
  by the ranges (``max A > min B``), broken on at least 5 % of the rows where ``A`` and a
  shuffled ``B`` are both non-zero (a plain order of two non-negative columns holds on half the
  rows of independent data, so the order test is weaker than the 50 % of the other relations),
  not implied by a sum relation (``a <= a + b``) or by two other orders; at most 3 per feature,
  most informative first; orders sharing a middle feature become chains (``min <= mean <= max``).
- share sums: ``A + B <= 1`` for two share columns (continuous, observed within [0, 1]), e.g. the
  SYN- and REJ-error shares of one window; not implied by the ranges, and broken on at least
  half of the rows where ``A`` and a shuffled ``B`` are both non-zero; near-holding ones only
  while each feature has fewer than 3 share sums.

A near-holding order or share sum must also break on the shuffled copy at least 10 times as
often as on the data (all rows). Pairs are pruned on a seeded sample of 2,048 rows before any
full-table pass.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from advsec.features.constraints import VIOLATION_EPS
from advsec.features.discovery_table import PERMUTED_MAX, Finding, Table, learn_tolerance
from advsec.features.schema import FeatureKind

__all__ = ["ORDER_PERMUTED_MAX", "order_findings", "share_sum_findings", "zero_findings"]

#: An order must break on at least 5 % of the non-zero rows of a shuffled copy.
ORDER_PERMUTED_MAX = 0.95
_MIN_ROWS = 20
_SAMPLE = 2048
_PER_FEATURE = 3
_MIN_STRICT = 0.05
_MIN_NONZERO = 0.01
_LIFT = 10.0  # a shuffled copy must break a near-holding relation 10 x as often
_EARLY_MARGIN = 0.15  # the sample's permuted share may exceed the limit by this much
_EARLY_ROWS = 200  # ... when it has this many rows (4 standard errors)
_NEAR_GATED = 0.1  # a candidate group may break on at most 10 % of its gated rows


def zero_findings(table: Table, *, min_share: float) -> list[Finding]:
    """The ``zero_if_zero`` relations of ``table``: one per gate, holding on every row, and one
    candidate per gate for the features that are zero with it on at least ``min_share`` of
    rows (and on 90 % of the rows where the gate is 0). A feature implied through another
    gate of the group (``rate == 0 => dpkts == 0 => dbytes == 0``) is left out."""
    cols = [j for j in range(table.k) if table.informative(j)]
    if len(cols) < 2:
        return []
    x = table.values[:, cols]
    nz = x != 0
    # count over the distinct zero patterns (a few thousand at most), weighted by their rows
    patterns, weight = np.unique(np.packbits(nz, axis=1), axis=0, return_counts=True)
    unique_nz = np.unpackbits(patterns, axis=1, count=len(cols)).astype(np.float64)
    weighted = unique_nz * weight[:, None].astype(np.float64)
    viol = (1.0 - unique_nz).T @ weighted  # [a, b]: rows where a == 0 and b != 0
    both = unique_nz.T @ weighted  # [a, b]: rows where both are non-zero
    count = nz.sum(axis=0).astype(np.float64)
    n = table.n
    gates = [ai for ai in range(len(cols)) if n - count[ai] >= _MIN_ROWS and not any(
        viol[ai, bi] == 0 and viol[bi, ai] == 0 and n - count[bi] >= _MIN_ROWS
        for bi in range(ai))]  # an earlier gate with the same zero rows speaks for both
    groups: dict[int, list[int]] = {}
    out: list[Finding] = []
    for ai in sorted(gates, key=lambda g: (count[g], g)):  # most zeros first: implied groups
        gated = n - count[ai]
        useful = [bi for bi in range(len(cols)) if bi != ai
                  and both[ai, bi] >= _MIN_NONZERO * count[ai]]
        exact = [bi for bi in useful if viol[ai, bi] == 0]
        implied = {bi for ci in exact for bi in groups.get(ci, ())}
        exact = [bi for bi in exact if bi not in implied]
        found = _zero_group(table, nz, cols, ai, exact, min_share=min_share)
        if found is not None:
            groups[ai] = exact
            out.append(found)
        near = sorted((bi for bi in useful if 0 < viol[ai, bi] <= min(
            (1.0 - min_share) * n, _NEAR_GATED * gated) and bi not in implied),
            key=lambda bi: (viol[ai, bi], bi))
        group: list[int] = []
        broken = np.zeros(n, dtype=bool)  # gated rows where a feature of the group is not 0
        budget = min((1.0 - min_share) * n, _NEAR_GATED * gated)
        for bi in near:  # the near group: add while the whole still holds on min_share
            trial = broken | (~nz[:, ai] & nz[:, bi])
            if np.count_nonzero(trial) <= budget:
                group, broken = [*group, bi], trial
        found = _zero_group(table, nz, cols, ai, sorted(group), min_share=min_share)
        if found is not None:
            out.append(found)
    return sorted(out, key=lambda f: table.index[str(f.config["when"])])


def _zero_group(table: Table, nz: np.ndarray, cols: list[int], ai: int, group: list[int], *,
                min_share: float) -> Finding | None:
    if not group:
        return None
    gated = ~nz[:, ai]
    any_nonzero = np.asarray(nz[:, group].any(axis=1), dtype=bool)
    share = 1.0 - float((gated & any_nonzero).mean())
    if share < min_share:
        return None
    shuffled = gated[table.perm]
    permuted = 1.0 - float(any_nonzero[shuffled].mean()) if shuffled.any() else 1.0
    by_chance = int(np.count_nonzero(shuffled & any_nonzero))
    if by_chance < max(_MIN_ROWS, _LIFT * np.count_nonzero(gated & any_nonzero)):
        return None  # a shuffled gate does not break it clearly more often than the data
    if share < 1.0 and permuted >= PERMUTED_MAX:
        return None  # near-holding, and mostly zero anyway
    names = table.names
    when = names[cols[ai]]
    zeroed = [names[cols[bi]] for bi in group]
    text = f"{when} == 0 => {', '.join(zeroed)} == 0"
    config = {"type": "zero_if_zero", "when": when, "features": zeroed, "tol": 0.0,
              "description": f"when {when} is 0, {', '.join(zeroed)} are 0"}
    return Finding(config=config, share=share, rank=permuted, text=text, slack="exactly",
                   name=f"zero_if_zero_{when}", features=frozenset({when, *zeroed}))


def order_findings(table: Table, *, min_share: float, sums: list[Finding]) -> list[Finding]:
    """The informative ``order`` relations of ``table`` holding on at least ``min_share`` of
    rows, pruned (see the module docstring); ``sums``: the sum relations found, whose implied
    orders are left out."""
    xp = table.values[table.pool[:_SAMPLE]]
    allowed = int((1.0 - min_share) * len(xp) * 3) + 2
    pairs: list[tuple[float, bool, int, int, float, float]] = []
    for kind in (FeatureKind.INTEGER, FeatureKind.CONTINUOUS, FeatureKind.BINARY):
        cols = [j for j in range(table.k) if table.informative(j) and table.kinds[j] is kind]
        if len(cols) < 2:
            continue
        sub = xp[:, cols]
        slack = np.maximum(table.units[cols][:, None], table.units[cols][None, :]) + 1e-12
        over = (sub[:, :, None] - sub[:, None, :] > slack[None]).sum(axis=0)
        np.fill_diagonal(over, allowed + 1)
        for ai, bi in zip(*np.nonzero(over <= allowed), strict=True):
            checked = _check_order(table, cols[int(ai)], cols[int(bi)], min_share=min_share)
            if checked is not None:
                pairs.append(checked)
    implied = _implied_by_sums(table, sums)
    holding = {(a, b) for _, full, a, b, _, _ in pairs if full}
    kept: list[tuple[float, bool, int, int, float, float]] = []
    uses: dict[int, int] = defaultdict(int)
    for item in sorted(pairs, key=lambda p: (not p[1], p[0], p[2], p[3])):
        _, _, a, b, _, _ = item
        if (a, b) in implied or any((a, m) in holding and (m, b) in holding
                                    for m in range(table.k)):
            continue
        if uses[a] >= _PER_FEATURE or uses[b] >= _PER_FEATURE:
            continue
        uses[a] += 1
        uses[b] += 1
        kept.append(item)
    return _chains(table, kept)


def _check_order(table: Table, a: int, b: int, *,
                 min_share: float) -> tuple[float, bool, int, int, float, float] | None:
    """``(rank, holds everywhere, a, b, tol, share)`` of ``a <= b``, or None if it is not an
    informative order."""
    xa, xb = table.col(a), table.col(b)
    diff = xa - xb
    limit = 0.0 if table.kinds[a] is not FeatureKind.CONTINUOUS else float(
        max(table.units[a], table.units[b]))
    tol, _, holds = learn_tolerance(np.maximum(diff, 0.0), xa, limit=limit,
                                    unit=float(max(table.units[a], table.units[b])),
                                    relative=False)
    share = float(holds.mean())
    if share < min_share:
        return None
    if float(np.mean(diff < -tol)) < _MIN_STRICT or xa.max() <= xb.min() + tol:
        return None  # A < B too rarely, or A <= B by the ranges alone
    shuffled = xb[table.perm]
    rows = (xa != 0) & (shuffled != 0)
    if np.count_nonzero(rows) < _MIN_ROWS:
        return None
    chance = xa <= shuffled + tol + VIOLATION_EPS
    permuted = float(chance[rows].mean())
    if permuted >= ORDER_PERMUTED_MAX or (1.0 - float(chance.mean())) < _LIFT * (1.0 - share):
        return None  # not broken by chance much more often than in the data
    return permuted, bool(holds.all()), a, b, tol, share


def _implied_by_sums(table: Table, sums: list[Finding]) -> set[tuple[int, int]]:
    out: set[tuple[int, int]] = set()
    for found in sums:
        target = found.config.get("target")
        if found.share < 1.0 or not isinstance(target, str):
            continue
        t = table.index[target]
        addends = [table.index[str(f)] for f in found.config["features"]]
        if all(table.col(j).min() >= 0 for j in addends):
            out.update((j, t) for j in addends)
    return out


def _chains(table: Table,
            kept: list[tuple[float, bool, int, int, float, float]]) -> list[Finding]:
    full = [p for p in kept if p[1]]
    succ: dict[int, list[tuple[float, bool, int, int, float, float]]] = defaultdict(list)
    pred: dict[int, int] = defaultdict(int)
    for p in full:
        succ[p[2]].append(p)
        pred[p[3]] += 1

    def interior(node: int) -> bool:
        return pred[node] == 1 and len(succ[node]) == 1

    out: list[Finding] = []
    used: set[tuple[int, int]] = set()
    for p in full:
        if interior(p[2]) or (p[2], p[3]) in used:
            continue
        chain = [p]
        while interior(chain[-1][3]) and (chain[-1][3], succ[chain[-1][3]][0][3]) not in used:
            chain.append(succ[chain[-1][3]][0])
            if len(chain) > table.k:
                break
        used.update((q[2], q[3]) for q in chain)
        out.append(_order_finding(table, chain))
    for p in full:  # cycles of interior nodes (a <= b <= a) are left as pairs
        if (p[2], p[3]) not in used:
            out.append(_order_finding(table, [p]))
    out.extend(_order_finding(table, [p]) for p in kept if not p[1])
    return out


def _order_finding(table: Table,
                   chain: list[tuple[float, bool, int, int, float, float]]) -> Finding:
    names = table.names
    feats = [names[chain[0][2]], *(names[p[3]] for p in chain)]
    tol = max(p[4] for p in chain)
    share = min(p[5] for p in chain)
    text = " <= ".join(feats)
    config = {"type": "order", "features": feats, "tol": tol,
              "description": f"{text} on every record" if share >= 1.0 else f"{text}"}
    return Finding(config=config, share=share, rank=max(p[0] for p in chain), text=text,
                   slack=f"within {tol:g}" if tol > 0 else "exactly",
                   name="order_" + "_".join(feats), features=frozenset(feats))


def share_sum_findings(table: Table, *, min_share: float) -> list[Finding]:
    """The ``a + b <= 1`` relations of the share columns of ``table`` (continuous, observed in
    [0, 1]) holding on at least ``min_share`` of rows and informative (module docstring)."""
    cols = [j for j in range(table.k) if table.informative(j)
            and table.kinds[j] is FeatureKind.CONTINUOUS and table.col(j).min() >= 0
            and table.col(j).max() <= 1]
    if len(cols) < 2:
        return []
    xp = table.values[table.pool[:_SAMPLE]][:, cols]
    allowed = int((1.0 - min_share) * len(xp) * 3) + 2
    units = table.units[cols]
    over = (xp[:, :, None] + xp[:, None, :] - 1.0 > units[:, None] + units[None, :] + 1e-12)
    counts = over.sum(axis=0)
    moved = np.roll(xp, 1, axis=0)  # the sample's rows in a random order: b from another row
    out: list[Finding] = []
    names = table.names
    for ai, bi in zip(*np.nonzero(np.triu(counts <= allowed, k=1)), strict=True):
        a, b = cols[int(ai)], cols[int(bi)]
        xa, xb = table.col(a), table.col(b)
        if xa.max() + xb.max() <= 1.0:
            continue  # the ranges imply it
        both = (xp[:, ai] != 0) & (moved[:, bi] != 0)
        if both.sum() >= _EARLY_ROWS and float((xp[both, ai] + moved[both, bi] - 1.0 <= (
                units[ai] + units[bi])).mean()) >= PERMUTED_MAX + _EARLY_MARGIN:
            continue  # holds on a shuffled sample as well: cheap early rejection
        excess = xa + xb - 1.0
        limit = float(table.units[a] + table.units[b])
        tol, _, holds = learn_tolerance(np.maximum(excess, 0.0), xa, limit=limit,
                                        unit=float(max(table.units[a], table.units[b])),
                                        relative=False)
        share = float(holds.mean())
        if share < min_share:
            continue
        shuffled = xb[table.perm]
        rows = (xa != 0) & (shuffled != 0)
        if np.count_nonzero(rows) < _MIN_ROWS:
            continue
        chance = xa + shuffled - 1.0 <= tol + VIOLATION_EPS
        permuted = float(chance[rows].mean())
        if permuted >= PERMUTED_MAX or (1.0 - float(chance.mean())) < _LIFT * (1.0 - share):
            continue
        text = f"{names[a]} + {names[b]} <= 1"
        config = {"type": "sum", "features": [names[a], names[b]], "target": 1.0, "op": "<=",
                  "tol": tol, "rtol": 0.0,
                  "description": f"the shares {names[a]} and {names[b]} add up to at most 1"}
        out.append(Finding(config=config, share=share, rank=permuted, text=text,
                           slack=f"within {tol:g}" if tol > 0 else "exactly",
                           name=f"share_sum_{names[a]}_{names[b]}",
                           features=frozenset({names[a], names[b]})))
    kept: list[Finding] = []
    uses: dict[str, int] = defaultdict(int)
    for found in sorted(out, key=lambda f: (f.share < 1.0, f.rank, f.name)):
        if found.share < 1.0 and any(uses[f] >= _PER_FEATURE for f in found.features):
            continue  # at most 3 per feature, relations holding everywhere first
        for f in found.features:
            uses[f] += 1
        kept.append(found)
    return kept
