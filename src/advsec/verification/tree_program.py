"""The exact minimal-L-inf evasion of a tree ensemble as a mixed-integer program on HiGHS.

Kantchelian, Tygar, Joseph, "Evasion and Hardening of Tree Ensemble Classifiers", ICML 2016,
over advsec's valid region (:mod:`advsec.attacks.tree_cells`,
:mod:`advsec.verification.tree_relations`). Variables, per record and target class ``c``:

- ``p[f, j]`` binary: the predicate ``x[f] <= t[j]``; ``p[f, j] <= p[f, j+1]``; the interval
  ``k`` of column ``f`` is selected by ``p[f, k] - p[f, k-1]`` (``p[f, -1] = 0``,
  ``p[f, K] = 1``), forced to 0 for intervals without an admissible value (bounds, grids, value
  sets, directions) and fixed for immutable columns;
- ``l`` in ``[0, 1]`` per leaf: per tree ``sum l = 1``; per inner node with predicate ``p``,
  ``sum(l below its left child) <= p``, ``sum(l below its right child) <= 1 - p`` (with binary
  predicates this makes ``l`` the indicator of the reached leaf);
- ``t >= 0`` the L-inf distance, minimised: crossing threshold ``j`` upwards costs at least the
  distance to the nearest admissible value above it (``t >= R[j] (1 - p[j])``), downwards
  likewise (exact for the selected interval, since those distances are monotone);
- mutable one-hot blocks: exactly one column is 1; ``zero_if_zero`` rows on the zero cells;
  linear relations on raw-value variables ``u`` (whole numbers on a grid) tied to the selected
  interval, with ``t >= |x(u) - x0|``;
- the decision: ``score[c] - score[y] >= delta`` over the leaves (forests: the summed class
  distributions; boosting: the raw margin, ``base_score`` included).

Shapes: ``D`` model columns, ``P`` predicates, ``L`` leaves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from advsec.attacks.tree_cells import EnsembleCells, RecordColumn
from advsec.features.constraints import VIOLATION_EPS
from advsec.verification.tree_relations import RelationPlan

__all__ = ["Solution", "TreeProgram", "require_highs"]

_INF = np.inf


_BANNER_DONE: list[bool] = []


def require_highs() -> Any:
    """The ``highspy`` module; a one-line ConfigError naming the extra when missing.

    HiGHS prints a banner on standard output when the first solver of a process is made;
    that first one is made here with the output file descriptor pointed at ``/dev/null``,
    so a program whose standard output is data (JSON) stays clean."""
    try:
        import highspy
    except ImportError:
        from advsec.errors import ConfigError

        raise ConfigError("the exact tree verifier needs HiGHS: pip install 'advsec[verify]' "
                          "(highspy is not installed)") from None
    if not _BANNER_DONE:
        import os
        import sys

        sys.stdout.flush()
        saved = os.dup(1)
        try:
            with open(os.devnull, "w") as null:
                os.dup2(null.fileno(), 1)
                highspy.Highs()
        finally:
            os.dup2(saved, 1)
            os.close(saved)
        _BANNER_DONE.append(True)
    return highspy


@dataclass(frozen=True)
class Solution:
    """One solve: ``status`` (``"optimal"``, ``"infeasible"``, ``"limit"``), ``bound`` (a
    proven lower bound of the minimal distance; inf when infeasible), ``x`` ``(D,)`` the
    record of the best solution found (None without one), ``distance`` its L-inf distance."""

    status: str
    bound: float
    x: np.ndarray | None
    distance: float


class _Rows:
    """Sparse rows ``low <= a x <= high`` collected as COO triplets."""

    def __init__(self) -> None:
        self.r: list[np.ndarray] = []
        self.c: list[np.ndarray] = []
        self.v: list[np.ndarray] = []
        self.low: list[float] = []
        self.high: list[float] = []

    def add(self, cols: Any, vals: Any, low: float, high: float) -> None:
        cols = np.asarray(cols, dtype=np.int64)
        self.r.append(np.full(len(cols), len(self.low), dtype=np.int64))
        self.c.append(cols)
        self.v.append(np.asarray(vals, dtype=np.float64))
        self.low.append(low)
        self.high.append(high)

    def extend(self, other: _Rows) -> None:
        base = len(self.low)
        self.r.extend(r + base for r in other.r)
        self.c.extend(other.c)
        self.v.extend(other.v)
        self.low.extend(other.low)
        self.high.extend(other.high)


class TreeProgram:
    """The program of one ensemble over one region; :meth:`solve` per record and target.

    Args:
        cells: the ensemble's split structure; plan: the relations it models.
        threads: HiGHS threads (1: deterministic).
    """

    def __init__(self, cells: EnsembleCells, plan: RelationPlan, *, threads: int = 1) -> None:
        self.cells, self.plan, self.threads = cells, plan, int(threads)
        self.hs = require_highs()
        p, n_l = cells.n_predicates, cells.n_leaves
        self.n_p, self.n_l = p, n_l
        self.t = p + n_l
        self.u = {col: self.t + 1 + i for i, col in enumerate(plan.raw_columns)}
        self.n_cols = self.t + 1 + len(self.u)
        rows = _Rows()
        for leaves in cells.tree_leaves:
            rows.add(p + leaves, np.ones(len(leaves)), 1.0, 1.0)
        for pred, lft, rgt in cells.nodes:
            rows.add(np.append(p + lft, pred), np.append(np.ones(len(lft)), -1.0), -_INF, 0.0)
            rows.add(np.append(p + rgt, pred), np.ones(len(rgt) + 1), -_INF, 1.0)
        for c in cells.columns.values():
            for j in range(len(c.thresholds) - 1):
                rows.add([c.offset + j, c.offset + j + 1], [1.0, -1.0], -_INF, 0.0)
        for a, b in cells.blocks:
            preds = [cells.columns[j].offset + int(np.searchsorted(cells.columns[j].thresholds,
                                                                   0.0)) for j in range(a, b)]
            rows.add(preds, np.ones(len(preds)), b - a - 1.0, b - a - 1.0)
        self.static = rows

    # ------------------------------------------------------------------ one record
    def solve(self, x0: np.ndarray, y: int, c: int, *, delta: float, time_limit: float,
              skip: frozenset[str] = frozenset(), strict: float = 0.0,
              max_eps: float | None = None) -> Solution:
        """The minimal distance at which ``x0`` ``(D,)`` gets ``score[c] >= score[y] +
        delta``; ``skip``: relations not enforced (the clean record breaks them);
        ``strict``: tighten the relation rows by this much (raw units); ``max_eps``: only
        look up to this distance (every crossing farther away is fixed, so the program is
        much smaller; infeasible then means "none within ``max_eps``", ``bound = max_eps``)."""
        cells = self.cells
        cap = _INF if max_eps is None else float(max_eps)
        lower = np.zeros(self.n_cols)
        upper = np.ones(self.n_cols)
        upper[self.t] = cap
        rows = _Rows()
        rows.extend(self.static)
        recs: dict[int, RecordColumn] = {}
        for col, cc in cells.columns.items():
            rc = recs[col] = cells.record_cells(x0, col)
            self._column(rows, lower, upper, cc.offset, rc, cap)
        self._relations(rows, lower, upper, x0, recs, skip, strict)
        self._margin(rows, y, c, delta)
        return self._run(rows, lower, upper, x0, recs, time_limit, cap)

    def _column(self, rows: _Rows, lower: np.ndarray, upper: np.ndarray, off: int,
                rc: RecordColumn, cap: float) -> None:
        k = len(rc.dist) - 1
        k0, feas, dist = rc.k0, rc.feasible, rc.dist
        idx = off + np.arange(k)
        right = np.minimum.accumulate(dist[::-1])[::-1][1:]  # (K,): min over k > j
        left = np.minimum.accumulate(dist)[:-1]  # (K,): min over k <= j
        for j in range(k):
            if j >= k0:
                if not right[j] <= cap:
                    lower[idx[j]] = 1.0
                elif right[j] > 0:
                    rows.add([self.t, idx[j]], [1.0, right[j]], right[j], _INF)
            else:
                if not left[j] <= cap:
                    upper[idx[j]] = 0.0
                elif left[j] > 0:
                    rows.add([self.t, idx[j]], [1.0, -left[j]], 0.0, _INF)
        for i in np.flatnonzero(~feas):
            if i == 0:
                upper[idx[0]] = 0.0
            elif i == k:
                lower[idx[k - 1]] = 1.0
            else:
                rows.add([idx[i], idx[i - 1]], [1.0, -1.0], -_INF, 0.0)

    def _cell(self, col: int, k: int) -> tuple[list[int], list[float], float]:
        """The selector of interval ``k`` of ``col``: ``(predicates, coefficients, constant)``
        with ``s = sum coef * p + constant``."""
        c = self.cells.columns[col]
        n = len(c.thresholds)
        preds: list[int] = []
        coef: list[float] = []
        const = 0.0
        if k < n:
            preds.append(c.offset + k)
            coef.append(1.0)
        else:
            const += 1.0
        if k > 0:
            preds.append(c.offset + k - 1)
            coef.append(-1.0)
        return preds, coef, const

    def _zero_cell(self, col: int, x0: np.ndarray, zeros: dict[int, float]
                   ) -> tuple[list[int], list[float], float]:
        if col not in zeros:
            return [], [], 0.0
        c = self.cells.columns[col]
        k = int(np.searchsorted(c.thresholds, zeros[col], side="left"))
        if not self.cells.mutable[col]:
            return [], [], float(x0[col] == zeros[col])
        return self._cell(col, k)

    def _relations(self, rows: _Rows, lower: np.ndarray, upper: np.ndarray, x0: np.ndarray,
                   recs: dict[int, RecordColumn], skip: frozenset[str], strict: float) -> None:
        zeros = self.cells.zero_values()
        for name, when, zeroed in self.plan.zero:
            if name in skip:
                continue
            wp, wc, wk = self._zero_cell(when, x0, zeros)
            for g in zeroed:
                gp, gc, gk = self._zero_cell(g, x0, zeros)  # s_when - s_g <= 0
                cols, vals = [*wp, *gp], [*wc, *(-v for v in gc)]
                if cols:
                    rows.add(cols, vals, -_INF, gk - wk)
                elif wk - gk > 0:
                    rows.add([self.t], [0.0], 1.0, 1.0)  # infeasible: the clean record breaks it
        if not self.plan.linear:
            return
        for col, var in self.u.items():
            self._raw_variable(rows, lower, upper, x0, col, var, recs.get(col))
        for lin in self.plan.linear:
            if lin.name in skip:
                continue
            cols, vals, const = [], [], 0.0
            for col, a in zip(lin.columns, lin.coef, strict=True):
                scale, shift = self._raw_map(col)
                cols.append(self.u[col])
                vals.append(a * scale)
                const += a * shift
            slack = VIOLATION_EPS - strict
            rows.add(cols, vals, lin.low - const - slack, lin.high - const + slack)

    def _raw_map(self, col: int) -> tuple[float, float]:
        """``raw = scale * u + shift`` for the raw variable ``u`` of ``col``."""
        dom = self.cells.domains[col]
        if dom.kind == "grid":
            return dom.step, 0.0
        assert self.cells.space is not None
        f = next(f for f, a, _ in self.cells.space.blocks_ if a == col)
        return self.cells.space.span_[f.name], self.cells.space.lo_[f.name]

    def _u_of(self, col: int, v: np.ndarray) -> np.ndarray:
        dom = self.cells.domains[col]
        if dom.kind == "grid":
            return dom.grid_index(v)
        return np.asarray(v, dtype=np.float64)

    def _raw_variable(self, rows: _Rows, lower: np.ndarray, upper: np.ndarray, x0: np.ndarray,
                      col: int, var: int, rc: RecordColumn | None) -> None:
        u0 = float(self._u_of(col, np.array([x0[col]]))[0])
        if rc is None or not self.cells.mutable[col]:
            lower[var] = upper[var] = u0
            return
        c = self.cells.columns[col]
        lo = np.where(rc.feasible, self._u_of(col, np.nan_to_num(c.low, nan=x0[col])), u0)
        hi = np.where(rc.feasible, self._u_of(col, np.nan_to_num(c.high, nan=x0[col])), u0)
        k0 = rc.k0
        lo[k0] = u0 if self.cells.increase[col] else min(lo[k0], u0)
        hi[k0] = u0 if self.cells.decrease[col] else max(hi[k0], u0)
        lower[var], upper[var] = float(lo.min()), float(hi.max())
        n = len(c.thresholds)
        preds = c.offset + np.arange(n)
        # u >= sum_k lo[k] s_k = lo[K] + sum_j (lo[j] - lo[j+1]) p_j ; likewise <= for hi
        rows.add(np.append(preds, var), np.append(-(lo[:-1] - lo[1:]), 1.0), lo[-1], _INF)
        rows.add(np.append(preds, var), np.append(-(hi[:-1] - hi[1:]), 1.0), -_INF, hi[-1])
        scale, shift = self._raw_map(col)
        dom = self.cells.domains[col]
        sp, off = (dom.span, dom.lo) if dom.kind == "grid" else (1.0, 0.0)
        # x(u) = (scale u + shift - off) / sp for a grid; u itself otherwise
        a, b = (scale / sp, (shift - off) / sp) if dom.kind == "grid" else (1.0, 0.0)
        rows.add([self.t, var], [1.0, -a], b - x0[col], _INF)
        rows.add([self.t, var], [1.0, a], x0[col] - b, _INF)

    def _margin(self, rows: _Rows, y: int, c: int, delta: float) -> None:
        cells, ens = self.cells, self.cells.ensemble
        val = cells.leaf_value
        if ens.aggregate == "mean":
            w = val[:, c] - val[:, y]
            rhs = delta
        elif ens.n_outputs == 1:  # binary boosting: score[1] = raw, score[0] = 0
            sign = 1.0 if c == 1 else -1.0
            w = sign * val[:, 0]
            rhs = delta - sign * float(ens.base_score[0])
        else:
            out = cells.leaf_output
            w = np.where(out == c, val[:, 0], 0.0) - np.where(out == y, val[:, 0], 0.0)
            rhs = delta - float(ens.base_score[c] - ens.base_score[y])
        keep = np.flatnonzero(w)
        rows.add(self.n_p + keep, w[keep], rhs, _INF)

    # ------------------------------------------------------------------ HiGHS
    def _run(self, rows: _Rows, lower: np.ndarray, upper: np.ndarray, x0: np.ndarray,
             recs: dict[int, RecordColumn], time_limit: float, cap: float) -> Solution:
        hs = self.hs
        from scipy.sparse import csr_matrix

        r, c, v = (np.concatenate(a) for a in (rows.r, rows.c, rows.v))
        mat = csr_matrix((v, (r, c)), shape=(len(rows.low), self.n_cols))
        mat.sum_duplicates()
        lp = hs.HighsLp()
        lp.num_col_, lp.num_row_ = self.n_cols, mat.shape[0]
        cost = np.zeros(self.n_cols)
        cost[self.t] = 1.0
        lp.col_cost_, lp.col_lower_, lp.col_upper_ = cost, lower, upper
        lp.row_lower_ = np.asarray(rows.low, dtype=np.float64)
        lp.row_upper_ = np.asarray(rows.high, dtype=np.float64)
        lp.a_matrix_.format_ = hs.MatrixFormat.kRowwise
        lp.a_matrix_.start_, lp.a_matrix_.index_ = mat.indptr, mat.indices
        lp.a_matrix_.value_ = mat.data
        integ = [hs.HighsVarType.kContinuous] * self.n_cols
        for i in range(self.n_p):
            integ[i] = hs.HighsVarType.kInteger
        for col, var in self.u.items():
            if self.cells.domains[col].kind == "grid":
                integ[var] = hs.HighsVarType.kInteger
        lp.integrality_ = integ
        h = hs.Highs()
        for key, value in (("output_flag", False), ("threads", self.threads),
                           ("time_limit", max(float(time_limit), 1e-3)), ("mip_rel_gap", 0.0),
                           ("mip_abs_gap", 1e-10), ("random_seed", 0),
                           ("mip_feasibility_tolerance", 1e-9),
                           ("primal_feasibility_tolerance", 1e-9)):
            h.setOptionValue(key, value)
        h.passModel(lp)
        h.run()
        status = h.getModelStatus()
        ms = hs.HighsModelStatus
        # the objective is bounded below by 0, so "unbounded or infeasible" is infeasible
        if status in (ms.kInfeasible, ms.kUnboundedOrInfeasible):
            return Solution("infeasible", cap, None, _INF)
        info = h.getInfo()
        has = info.primal_solution_status == 2  # kSolutionStatusFeasible
        x = self._record(np.asarray(h.getSolution().col_value), x0, recs) if has else None
        dist = float(np.abs(x - x0).max()) if x is not None and len(x) else _INF
        if status == ms.kOptimal:
            bound = max(float(info.mip_dual_bound), 0.0)
            return Solution("optimal", min(bound, dist), x, dist)
        limits = (ms.kTimeLimit, ms.kIterationLimit, ms.kSolutionLimit, ms.kInterrupt)
        trusted = status in limits and np.isfinite(info.mip_dual_bound)
        bound = min(float(info.mip_dual_bound), dist) if trusted else 0.0
        return Solution("limit", max(bound, 0.0), x, dist)

    def _record(self, sol: np.ndarray, x0: np.ndarray, recs: dict[int, RecordColumn]
                ) -> np.ndarray:
        """The record ``(D,)`` of a solution: per column the admissible value of its selected
        interval nearest the record (the raw variable's value for relation columns)."""
        x = x0.copy()
        for col, rc in recs.items():
            c = self.cells.columns[col]
            p = sol[c.offset:c.offset + len(c.thresholds)] > 0.5
            k = int(np.argmax(p)) if p.any() else len(c.thresholds)
            if col in self.u and self.cells.mutable[col]:
                x[col] = self._value_of_u(col, sol[self.u[col]], c, k, rc, x0)
            else:
                x[col] = rc.value[k]
        return x

    def _value_of_u(self, col: int, u: float, c: Any, k: int, rc: RecordColumn,
                    x0: np.ndarray) -> float:
        dom = self.cells.domains[col]
        scale, _ = self._raw_map(col)
        if dom.kind == "grid":
            v = float(dom.encode(np.array([np.round(u) * scale]))[0])
        else:
            v = float(np.float32(u))
        if k == rc.k0 and abs(v - x0[col]) < 1e-9:
            return float(x0[col])
        lo = x0[col] if k == rc.k0 and np.isnan(c.low[k]) else c.low[k]
        hi = x0[col] if k == rc.k0 and np.isnan(c.high[k]) else c.high[k]
        return float(np.clip(v, min(lo, x0[col]) if k == rc.k0 else lo,
                             max(hi, x0[col]) if k == rc.k0 else hi))
