"""A fast attack on large tree ensembles: greedy search over split thresholds, valid-record aware.

In the spirit of LT-Attack (Zhang, Zhang, Hsieh, "An Efficient Adversarial Attack for Tree
Ensembles", NeurIPS 2020, https://arxiv.org/abs/2010.11598): a tree ensemble only asks on
which side of each split threshold a value lies, so the only moves that matter are to the
nearest *admissible* value of another interval between thresholds
(:class:`~advsec.attacks.tree_cells.EnsembleCells`: bounds, whole-number and decimal grids,
value sets, directions and immutable columns are built in). Per record and eps, the moves are
every column's intervals whose nearest admissible value lies within eps of the clean record
(and, for ``eps >= 1``, switching a mutable one-hot block to another category).

The search, for all records of a chunk at once (one batched prediction per step):

1. from the clean record, apply the single move that lowers the margin
   ``score[y] - max_{j != y} score[j]`` the most (forests: the mean class distribution;
   boosting: raw scores, so nothing saturates; targeted: ``max_{j != t} score[j] -
   score[t]``), as long as it lowers it; a move whose record fails
   :func:`~advsec.attacks.validity.valid_records` (a relation) is banned until the next move;
2. when no move lowers the margin, restart ``restarts`` times from a random valid start
   (each column with moves takes a random one with probability ``p_start``);
3. a record stops at its first success, checked with the model's own ``predict_proba``.

Every returned record is a valid record within eps of the clean one (or the clean record);
a record reported as success really changes the model's decision. No gradient and no MILP:
the cost is ``iterations * (restarts + 1)`` batched predictions of a few hundred candidate
records per record at most.

Shapes: ``N`` records, ``D`` model columns, ``M`` moves of a chunk.

Example:
    >>> from advsec.attacks.tree_searcher import tree_search
    >>> res = tree_search(forest, x, y, eps=0.05, space=space, restarts=5)
    >>> res.success.mean(), res.x_adv
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from advsec.attacks.tree_cells import EnsembleCells
from advsec.features.constraints import VIOLATION_EPS
from advsec.features.schema import FeatureKind
from advsec.models.trees_boosters import as_tree_ensemble

if TYPE_CHECKING:
    from advsec.features.space import FeatureSpace
    from advsec.models.trees import TreeEnsemble

__all__ = ["SearchResult", "TreeSearcher", "ensemble_scores", "tree_search"]

_TIE = 1e-12


@dataclass
class SearchResult:
    """``x_adv`` ``(N, D)`` float32 valid records within eps (the clean record where the search
    found nothing better), ``success`` ``(N,)`` bool (the model's decision changed, to
    ``target`` when given), ``margin`` ``(N,)`` the final margin (negative: success),
    ``steps`` the batched predictions made."""

    x_adv: np.ndarray
    success: np.ndarray
    margin: np.ndarray
    steps: int


def ensemble_scores(ens: TreeEnsemble, x: np.ndarray) -> np.ndarray:
    """``(N, C)`` scores whose argmax is the ensemble's decision at ``x`` ``(N, D)``: the mean
    class distribution of a forest, the raw scores of boosting (``[0, raw]`` for two
    classes)."""
    if ens.aggregate == "mean":
        return ens.predict_proba(x)
    raw = ens.raw_scores(x)
    return np.concatenate([np.zeros_like(raw), raw], axis=1) if raw.shape[1] == 1 else raw


def _margin(s: np.ndarray, y: np.ndarray, target: np.ndarray | None) -> np.ndarray:
    """``(N,)`` margins of the scores ``s`` ``(N, C)``: negative once the goal is reached
    (ties counted as argmax counts them, the lower class winning)."""
    rows = np.arange(len(s))
    cls = np.arange(s.shape[1])[None, :]
    goal = y if target is None else target
    own = s[rows, goal]
    other = np.where(cls == goal[:, None], -np.inf, s)
    best = other.max(axis=1)
    # argmax picks the lowest index among ties: a tie goes to the class with the lower index
    tie_to_other = other.argmax(axis=1) < goal
    m = own - best if target is None else best - own
    if target is None:
        return np.where((m == 0) & tie_to_other, -_TIE, m)
    return np.where((m == 0) & ~tie_to_other, -_TIE, m)


class TreeSearcher:
    """The greedy threshold search of one ensemble over one region (module docstring).

    Args:
        model: a TreeEnsemble, BoostedTrees or fitted scikit-learn forest / histogram boosting
            model (decisions are checked with its own ``predict_proba``).
        space: the fitted FeatureSpace of the valid region (``None``: the box ``bounds``).
        bounds: the box without a space.
    """

    def __init__(self, model: Any, space: FeatureSpace | None, *,
                 bounds: tuple[float, float] | None = (0.0, 1.0)) -> None:
        self.model = model
        self.ens = as_tree_ensemble(model)
        self.space = space
        self.cells = EnsembleCells(self.ens, space, bounds=bounds)
        self.block_cols = {j for a, b in self.cells.blocks for j in range(a, b)}
        self.relations = bool(space is not None and space.relations_)

    # ------------------------------------------------------------------ moves
    def moves(self, x0: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
        """``(columns (M, W), values (M, W))``: the moves of the record ``x0`` ``(D,)`` within
        ``eps`` (``W`` = 1, or the widest mutable one-hot block when ``eps >= 1``; narrower
        moves repeat their first assignment)."""
        cols: list[list[int]] = []
        vals: list[list[float]] = []
        for col in self.cells.columns:
            if col in self.block_cols:
                continue
            rc = self.cells.record_cells(x0, col)
            ok = rc.feasible & (rc.dist <= eps)
            ok[rc.k0] = False
            for k in np.flatnonzero(ok):
                cols.append([col])
                vals.append([float(rc.value[k])])
        if eps >= 1.0:
            for a, b in self.cells.blocks:
                for j in range(a, b):
                    if x0[j] != 1.0:
                        cols.append(list(range(a, b)))
                        vals.append([1.0 if i == j else 0.0 for i in range(a, b)])
        width = max((len(c) for c in cols), default=1)
        c_arr = np.array([c + [c[0]] * (width - len(c)) for c in cols], dtype=np.int64
                         ).reshape(-1, width)
        v_arr = np.array([v + [v[0]] * (width - len(v)) for v in vals], dtype=np.float64
                         ).reshape(-1, width)
        return c_arr, v_arr

    # ------------------------------------------------------------------ checks
    def valid(self, x: np.ndarray, x0: np.ndarray) -> np.ndarray:
        """``(N,)`` bool: rows of ``x`` are valid records derived from ``x0`` (both ``(N, D)``);
        all True without a FeatureSpace (the moves keep the box)."""
        if self.space is None or not len(x):
            return np.ones(len(x), dtype=bool)
        from advsec.attacks.validity import valid_records

        return valid_records(self.space, x.astype(np.float32), x0.astype(np.float32))

    def relations_ok(self, x: np.ndarray, x0: np.ndarray) -> np.ndarray:
        """``(N,)`` bool, the quick check of a move inside the search: rows of ``x`` ``(N, D)``
        break no relation that their clean record ``x0`` ``(N, D)`` keeps (raw values of the
        moved model inputs, rounded as :meth:`FeatureSpace.decode` rounds them; the moves hold
        bounds, grids, directions and immutables by construction). What the search returns
        is checked with :meth:`valid` in full."""
        if self.space is None or not self.relations or not len(x):
            return np.ones(len(x), dtype=bool)
        raw = self.space.to_raw(torch.as_tensor(x, dtype=torch.float64), rounded=True)
        raw0 = self.space.to_raw(torch.as_tensor(x0, dtype=torch.float64), rounded=True)
        ok = torch.ones(len(x), dtype=torch.bool)
        for rel in self.space.relations_:
            ok &= (rel.violation(raw) <= VIOLATION_EPS) | (rel.violation(raw0) > VIOLATION_EPS)
        return ok.numpy()

    def decided(self, x: np.ndarray, y: np.ndarray, target: np.ndarray | None) -> np.ndarray:
        """``(N,)`` bool: the model's own decision at ``x`` reaches the goal."""
        pred = np.asarray(self.model.predict_proba(x.astype(np.float32))).argmax(axis=1)
        return pred != y if target is None else pred == target

    # ------------------------------------------------------------------ the search
    def run(self, x: np.ndarray, y: np.ndarray, eps: float, *, target: np.ndarray | None = None,
            restarts: int = 5, iterations: int = 50, p_start: float = 0.3,
            rng: np.random.Generator | None = None, chunk: int = 64) -> SearchResult:
        """Search every record of ``x`` ``(N, D)`` with class ``y`` ``(N,)`` at ``eps`` (module
        docstring), ``chunk`` records at once."""
        rng = np.random.default_rng(0) if rng is None else rng
        x = np.asarray(x, dtype=np.float32).astype(np.float64)
        y = np.asarray(y, dtype=np.int64)
        out = x.copy()
        margin = np.zeros(len(x))
        steps = 0
        for s in range(0, len(x), chunk):
            sl = slice(s, s + chunk)
            tg = None if target is None else np.asarray(target, dtype=np.int64)[sl]
            out[sl], margin[sl], k = self._chunk(x[sl], y[sl], tg, eps, restarts, iterations,
                                                 p_start, rng)
            steps += k
        if len(x):  # the full check of every returned record; an invalid one falls back
            out = np.where(self.valid(out, x)[:, None], out, x)
        success = self.decided(out, y, target) if len(x) else np.zeros(0, dtype=bool)
        return SearchResult(out.astype(np.float32), success, margin, steps)

    def _chunk(self, x0: np.ndarray, y: np.ndarray, tg: np.ndarray | None, eps: float,
               restarts: int, iterations: int, p_start: float, rng: np.random.Generator
               ) -> tuple[np.ndarray, np.ndarray, int]:
        n = len(x0)
        per = [self.moves(x0[i], eps) for i in range(n)]
        counts = np.array([len(c) for c, _ in per], dtype=np.int64)
        width = max((c.shape[1] for c, _ in per), default=1)
        pad = [(np.pad(c, ((0, 0), (0, width - c.shape[1])), mode="edge") if len(c) else
                np.zeros((0, width), dtype=np.int64),
                np.pad(v, ((0, 0), (0, width - v.shape[1])), mode="edge") if len(v) else
                np.zeros((0, width))) for c, v in per]
        mcol = np.concatenate([c for c, _ in pad]) if n else np.zeros((0, width), np.int64)
        mval = np.concatenate([v for _, v in pad]) if n else np.zeros((0, width))
        mrec = np.repeat(np.arange(n), counts)
        cur = x0.copy()
        cur_m = _margin(ensemble_scores(self.ens, cur), y, tg)
        best, best_m = cur.copy(), cur_m.copy()
        banned = np.zeros(len(mrec), dtype=bool)
        starts = np.full(n, restarts, dtype=np.int64)
        steps_left = np.full(n, iterations, dtype=np.int64)
        done = (cur_m < 0) | (counts == 0)
        steps = 0
        while not done.all():
            use = ~done[mrec] & ~banned
            idx = np.flatnonzero(use)
            cand = cur[mrec[idx]]
            rows = np.arange(len(idx))[:, None]
            cand[rows, mcol[idx]] = mval[idx]
            changed = (cand != cur[mrec[idx]]).any(axis=1)
            idx, cand = idx[changed], cand[changed]
            m = _margin(ensemble_scores(self.ens, cand), y[mrec[idx]],
                        None if tg is None else tg[mrec[idx]]) if len(idx) else np.zeros(0)
            steps += 1
            m = m + rng.random(len(m)) * _TIE * 1e-3  # random order among equal moves
            pick = np.full(n, -1, dtype=np.int64)
            pick_m = np.full(n, np.inf)
            order = np.lexsort((m, mrec[idx]))
            first = np.unique(mrec[idx][order], return_index=True)
            pick[first[0]] = order[first[1]]
            pick_m[first[0]] = m[order[first[1]]]
            better = ~done & (pick >= 0) & (pick_m < cur_m - _TIE)
            moving = np.flatnonzero(better)
            if len(moving) and self.relations:
                ok = self.relations_ok(cand[pick[moving]], x0[moving])
                banned[idx[pick[moving[~ok]]]] = True
                moving = moving[ok]
            for r in moving:
                cur[r] = cand[pick[r]]
                cur_m[r] = pick_m[r]
                banned[mrec == r] = False
            steps_left[moving] -= 1
            improved = cur_m < best_m
            best[improved], best_m[improved] = cur[improved], cur_m[improved]
            done |= best_m < 0
            stuck = ~done & ~better & ~(better & ~np.isin(np.arange(n), moving))
            stuck |= ~done & (steps_left <= 0)
            stuck &= ~np.isin(np.arange(n), moving) | (steps_left <= 0)
            if stuck.any():
                over = stuck & (starts <= 0)
                done |= over
                again = np.flatnonzero(stuck & ~over)
                if len(again):
                    starts[again] -= 1
                    steps_left[again] = iterations
                    cur[again] = self._starts(x0[again], again, mrec, mcol, mval, p_start, rng)
                    cur_m[again] = _margin(ensemble_scores(self.ens, cur[again]), y[again],
                                           None if tg is None else tg[again])
                    banned[np.isin(mrec, again)] = False
                    steps += 1
                    improved = cur_m < best_m
                    best[improved], best_m[improved] = cur[improved], cur_m[improved]
                    done |= best_m < 0
        return best, best_m, steps

    def _starts(self, x0: np.ndarray, recs: np.ndarray, mrec: np.ndarray, mcol: np.ndarray,
                mval: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
        """Random valid starts ``(R, D)`` for the records ``recs`` (clean records ``x0``
        ``(R, D)``): per column with moves, a random one with probability ``p``."""
        out = x0.copy()
        where = {int(r): i for i, r in enumerate(recs)}
        sel = np.flatnonzero(np.isin(mrec, recs))
        u = rng.random(len(sel))
        order = sel[np.argsort(u)]
        taken: set[tuple[int, int]] = set()
        for j in order:
            key = (int(mrec[j]), int(mcol[j, 0]))
            if key in taken:
                continue
            taken.add(key)
            if rng.random() < p:
                out[where[key[0]], mcol[j]] = mval[j]
        ok = self.relations_ok(out, x0)
        out[~ok] = x0[~ok]
        return out


def tree_search(model: Any, x: Any, y: Any, *, eps: float, space: FeatureSpace | None = None,
                target: Any = None, restarts: int = 5, iterations: int = 50,
                p_start: float = 0.3, seed: int = 0,
                bounds: tuple[float, float] | None = (0.0, 1.0)) -> SearchResult:
    """The greedy threshold search (module docstring) on ``x`` ``(N, D)`` with class indices
    ``y`` ``(N,)`` at ``eps`` (model-input units), seeded by ``seed``."""
    searcher = TreeSearcher(model, space, bounds=bounds)
    return searcher.run(np.asarray(x), np.asarray(y), float(eps),
                        target=None if target is None else np.asarray(target),
                        restarts=restarts, iterations=iterations, p_start=p_start,
                        rng=np.random.default_rng(seed))


def is_one_hot_kind(kind: FeatureKind) -> bool:
    """Whether features of ``kind`` are one-hot blocks in model space."""
    return kind is FeatureKind.CATEGORICAL
