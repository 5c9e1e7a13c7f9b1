"""Scheduling of the compiled repair: which relations commute and run as one stage, and the
proofs that let the plan skip a second round of stages or its violation check.

Relations are given by index into ``rels``; ``mut`` is the ``(K,)`` NumPy bool mask of mutable
numeric features, in feature order (the columns of ``FeatureSpace.to_raw``).
"""

from __future__ import annotations

import itertools

import numpy as np

from advsec.features.constraints import (
    VIOLATION_EPS,
    FormulaRelation,
    RatioRelation,
    Relation,
    SumRelation,
    ZeroIfZeroRelation,
)
from advsec.features.repair.groups import relation_kind
from advsec.features.repair.ops import INT, LOG, ROUND

__all__ = ["reads_writes", "relations_always_hold", "schedule", "second_round_is_noop"]


def reads_writes(rel: Relation, mut: np.ndarray) -> tuple[set[int], set[int]]:
    """Columns the relation's repair reads and may write (mutable ones), as the reference does.

    ``zero_if_zero`` reads only its gate: it writes a constant where the gate is closed."""
    cols = rel.columns()
    if isinstance(rel, ZeroIfZeroRelation):
        return {cols[0]}, {c for c in cols[1:] if mut[c]}
    if isinstance(rel, FormulaRelation):
        return set(cols), ({cols[0]} if mut[cols[0]] else set())
    if isinstance(rel, SumRelation):
        n = len(rel.addends)
        target = cols[n] if isinstance(rel.target, str) else None
        if target is not None and mut[target]:
            return set(cols), {target}
        return set(cols), {c for c in cols[:n] if mut[c]}
    if isinstance(rel, RatioRelation):
        t, num, _ = cols
        return set(cols), ({t} if mut[t] else {num} if mut[num] else set())
    return set(cols), {c for c in cols if mut[c]}


def schedule(rels: list[Relation], mut: np.ndarray) -> list[tuple[str, list[int]]]:
    """Relations (by index) grouped into stages of one type whose members commute.

    The stage order is the schema order up to swaps of commuting relations: a relation goes to
    the first stage of its type after every stage holding a relation it does not commute with.
    Relations that write nothing are left out (their repair is the identity).
    """
    rw = [reads_writes(r, mut) for r in rels]
    kinds = [relation_kind(r) for r in rels]

    def conflict(i: int, j: int) -> bool:
        (ri, wi), (rj, wj) = rw[i], rw[j]
        if wi & rj or wj & ri:
            return True
        return bool(wi & wj) and not (kinds[i] == kinds[j] == "zero_if_zero")

    stages: list[tuple[str, list[int]]] = []
    for i in range(len(rels)):
        if not rw[i][1]:
            continue
        lo = 0
        for s, (_, members) in enumerate(stages):
            if any(conflict(i, j) for j in members):
                lo = s + 1
        for s in range(lo, len(stages)):
            if stages[s][0] == kinds[i]:
                stages[s][1].append(i)
                break
        else:
            stages.append((kinds[i], [i]))
    return stages


def second_round_is_noop(rels: list[Relation], stages: list[tuple[str, list[int]]],
                          mut: np.ndarray, low: np.ndarray) -> bool:
    """True when a second pass over ``stages`` provably changes nothing (bit for bit).

    Every stage must settle its relations and leave them settled under a second application
    (idempotent), and no other stage may touch what a stage reads or writes, except that a
    ``zero_if_zero`` stage and a stage of *zero-preserving* ``<=`` sums may share columns: such
    a sum has a constant target >= 0, only mutable addends with lower bounds >= 0, and a target
    small enough that float round-off cannot leave it violated after scaling; scaling keeps
    zeros zero and zeroing keeps the sum below its target.
    """
    def zero_preserving(rel: Relation) -> bool:
        if not isinstance(rel, SumRelation) or rel.op != "<=" or isinstance(rel.target, str):
            return False
        cols = rel.columns()
        return (float(rel.target) >= 0 and all(mut[c] and low[c] >= 0 for c in cols)
                and (len(cols) + 4) * 2.0**-52 * float(rel.target) <= VIOLATION_EPS)

    def settles(rel: Relation) -> bool:
        cols = rel.columns()
        if isinstance(rel, ZeroIfZeroRelation):
            return True
        if isinstance(rel, SumRelation):
            n = len(rel.addends)
            if isinstance(rel.target, str) and mut[cols[n]]:
                return cols[n] not in cols[:n]
            return zero_preserving(rel)
        if isinstance(rel, RatioRelation):
            t, num, den = cols
            return (t not in (num, den)) if mut[t] else (num not in (t, den))
        return False

    info = []
    for kind, members in stages:
        reads: set[int] = set()
        writes: set[int] = set()
        for i in members:
            r, w = reads_writes(rels[i], mut)
            reads |= r
            writes |= w
        if not all(settles(rels[i]) for i in members):
            return False
        if kind == "zero_if_zero" and reads & writes:  # a gate zeroed by its own stage
            return False
        zp = kind == "sum" and all(zero_preserving(rels[i]) for i in members)
        info.append((kind, reads, writes, zp))
    for (ks, rs, ws, zs), (kt, _rt, wt, zt) in itertools.permutations(info, 2):
        if not wt & (rs | ws):
            continue
        if ks == "zero_if_zero" and zt and not wt & rs:
            continue  # a zero-preserving sum writes zeroed features, never a gate
        if zs and kt == "zero_if_zero":
            continue  # zeroing addends keeps a <= sum settled
        return False
    return True


def relations_always_hold(rels: list[Relation], mut: np.ndarray, flags: np.ndarray,
                           params: dict[str, np.ndarray]) -> bool:
    """True when every relation provably holds on the decoded result of one round of stages
    (given :func:`second_round_is_noop`), so that the violation check never reverts anything.

    Only ``zero_if_zero`` relations whose zeroed features are all mutable and zero-preserving
    ``<=`` sums qualify: their repairs leave values in ``[0, v]``, which must lie in the fitted
    range; a sum's rounding to the grid (half a step per addend) must fit in its slack; and every
    feature they read must survive the float32 model round trip: the float32 rounding of the
    model value moves the raw value by less than a quarter grid step, so decoding gives it back.
    """
    span, lo, low, high, scale = (params[k] for k in ("span", "lo", "low", "high", "scale"))

    def in_range_zero(c: int) -> bool:  # 0 is a raw value of the column, on its grid
        return low[c] <= 0 <= high[c] and lo[c] <= 0 <= lo[c] + span[c]

    def half_step(c: int) -> float:
        return 0.5 / scale[c] if flags[c] & (INT | ROUND) else 0.0

    def round_trip(c: int) -> bool:
        if not flags[c] & (INT | ROUND):
            return False
        slope = span[c] * (1.0 + np.expm1(lo[c] + span[c])) if flags[c] & LOG else span[c]
        err = slope * 2.0**-23 + 1e-12 * (abs(lo[c]) + span[c] + 1.0)
        return bool(np.isfinite(err) and err <= half_step(c) / 4)

    for rel in rels:
        cols = rel.columns()
        if not all(round_trip(c) for c in cols):
            return False
        if isinstance(rel, ZeroIfZeroRelation):
            if not all(mut[c] and in_range_zero(c) for c in cols[1:]):
                return False
        elif isinstance(rel, SumRelation) and rel.op == "<=" and not isinstance(rel.target,
                                                                                    str):
            target = float(rel.target)
            slack = rel.tol + rel.rtol * abs(target)
            if not (target >= 0 and all(mut[c] and low[c] >= 0 and in_range_zero(c)
                                        for c in cols)):
                return False
            if sum(half_step(c) for c in cols) > slack:
                return False
            if (len(cols) + 4) * 2.0**-52 * 2 * (target + slack + 1) > VIOLATION_EPS:
                return False
        else:
            return False
    return True
