"""The exact verifier of tree ensembles: :class:`TreeMILP` (registered as ``"tree-milp"``).

Per record, the minimal L-inf distance (model-input units: a fraction of each feature's range)
at which a *valid* record gets another class (:mod:`advsec.verification.tree_program`, a MILP
on HiGHS, one per other class), in two stages:

1. the sound stage: the decision counts as changed when ``score[c] >= score[y]`` (a tie
   counts), the relations with ``VIOLATION_EPS`` of slack. Its proven lower bound is ``bound``
   (``L``); a solve that reaches ``time_limit`` still leaves HiGHS's dual bound, a weaker but
   proven ``L``;
2. the attack: the stage-1 record, checked with the model's own ``predict_proba`` (the
   decision really changes, float32 casting and ties included) and, with a FeatureSpace, by
   :func:`~advsec.attacks.validity.valid_records`; if it fails, the program is solved again with
   a strict margin (``delta`` 1e-9 for forests, 1e-6 for boosting, times 10 up to three times)
   and tightened relations. Its distance is ``min_eps`` (``U``, inf when none was found).

At each eps a record is **verified** when ``L > eps + BALL_TOL`` (the attacks accept records
up to :data:`~advsec.attacks.ball.BALL_TOL` outside their ball), **broken** when
``U <= eps + BALL_TOL`` and otherwise *unknown* (a time limit, or a tie the strict stage could
not settle): a timed-out record is neither verified nor broken unless its bounds say so. A
misclassified record is broken at every eps (``U = L = 0``).

By default a call looks only up to its largest eps (``minimal=False``): every crossing farther
away is fixed, which makes the programs far smaller; ``status`` ``"robust"`` then means "no
valid change within ``max_eps`` flips it" and ``bound`` is ``max_eps``. ``minimal=True`` (or
:meth:`TreeMILP.minimal` without ``max_eps``) finds the global minimum.

Relations the program does not model are listed in ``info["ignored_relations"]`` (see
:mod:`advsec.verification.tree_relations`): "verified" stays sound, ``U`` is still a checked
valid record.

Shapes: ``x`` ``(N, D)``, ``y`` ``(N,)``, ``E`` epsilons.

Example:
    >>> from advsec.verification import make_verifier
    >>> res = make_verifier("tree-milp", feature_space=space, time_limit=5)(
    ...     forest, x, y, eps=[0.02, 0.05])
    >>> res.certified_accuracy, res.robust_accuracy_bounds, res.min_eps
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from advsec.attacks.ball import BALL_TOL
from advsec.attacks.targets import Eps, check_inputs, eps_values
from advsec.attacks.tree_cells import EnsembleCells
from advsec.errors import ConfigError, DataError
from advsec.models.trees_boosters import as_tree_ensemble
from advsec.verification.base import Verifier
from advsec.verification.result import VerifyResult
from advsec.verification.tree_program import Solution, TreeProgram
from advsec.verification.tree_relations import plan_relations

if TYPE_CHECKING:
    from advsec.features.space import FeatureSpace
    from advsec.models.trees import TreeEnsemble

__all__ = ["STATUSES", "MinimalResult", "TreeMILP", "TreeVerifyResult", "tree_program"]

log = logging.getLogger(__name__)

#: the per-record outcomes of :meth:`TreeMILP.minimal`
STATUSES = ("exact", "robust", "gap", "unknown", "misclassified")


@dataclass
class MinimalResult:
    """Per record (``N``): ``min_eps`` (``U``, float64, inf: no flip found), ``bound`` (``L``,
    a proven lower bound), ``x_adv`` ``(N, D)`` float64 (the record itself where none),
    ``status`` (one of :data:`STATUSES`), ``seconds`` and ``max_eps`` (the cap searched up
    to, ``None``: none)."""

    min_eps: np.ndarray
    bound: np.ndarray
    x_adv: np.ndarray
    status: list[str]
    seconds: np.ndarray
    max_eps: float | None = None

    def verified(self, eps: float) -> np.ndarray:
        """``(N,)`` bool: no valid record within ``eps`` changes the decision (``L > eps +
        BALL_TOL``)."""
        return np.asarray(self.bound > eps + BALL_TOL)

    def broken(self, eps: float) -> np.ndarray:
        """``(N,)`` bool: a checked valid record within ``eps`` changes the decision."""
        return np.asarray(self.min_eps <= eps + BALL_TOL)


@dataclass
class TreeVerifyResult(VerifyResult):
    """A :class:`VerifyResult` with the exact program's per-record answers.

    Attributes (beyond the base class; ``margin`` ``(E, N)`` is ``bound - eps - BALL_TOL``,
    positive exactly where verified):
        broken: ``(E, N)`` bool, a checked valid adversarial record within eps exists.
        min_eps: ``(N,)`` float64, ``U``: the distance of the adversarial record (inf: none
            found; 0: misclassified).
        bound: ``(N,)`` float64, ``L``: a proven lower bound of the minimal distance.
        x_adv: ``(N, D)`` float32, the adversarial record (the clean record where none).
        status: per record, one of :data:`STATUSES`.
    """

    broken: torch.Tensor = field(default_factory=lambda: torch.zeros((0, 0), dtype=torch.bool))
    min_eps: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.float64))
    bound: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.float64))
    x_adv: torch.Tensor = field(default_factory=lambda: torch.zeros(0))
    status: list[str] = field(default_factory=list)

    @property
    def robust_accuracy_bounds(self) -> list[tuple[float, float]]:
        """Per eps, ``(lower, upper)`` bounds of the robust accuracy: the share verified and
        the share not broken (equal when no record is unknown)."""
        n = max(self.records, 1)
        return [(float(v.sum()) / n, 1.0 - float(b.sum()) / n)
                for v, b in zip(self.verified, self.broken, strict=True)]

    @property
    def unknown(self) -> list[int]:
        """Per eps, the records neither verified nor broken."""
        return [int((~v & ~b).sum()) for v, b in zip(self.verified, self.broken, strict=True)]


def tree_program(model: Any, space: FeatureSpace | None, *, threads: int = 1,
                 bounds: tuple[float, float] | None = (0.0, 1.0)) -> TreeProgram:
    """The :class:`TreeProgram` of ``model`` (a TreeEnsemble, BoostedTrees or fitted
    scikit-learn forest / histogram boosting model) over the region of ``space`` (``None``:
    the box ``bounds``, which must then be finite)."""
    ens = as_tree_ensemble(model)
    cells = EnsembleCells(ens, space, bounds=bounds)
    return TreeProgram(cells, plan_relations(space, cells), threads=threads)


class TreeMILP(Verifier):
    r"""Exact robustness of tree ensembles on the valid region, by mixed-integer programming.

    Paper: Kantchelian, Tygar, Joseph, "Evasion and Hardening of Tree Ensemble Classifiers",
    ICML 2016. https://arxiv.org/abs/1509.07892

    Norm: L-inf. Models: :class:`~advsec.models.trees.TreeEnsemble` (random forest, extra
    trees, histogram gradient boosting; two or more classes),
    :class:`~advsec.models.boosters.BoostedTrees` (XGBoost, LightGBM; through
    :mod:`advsec.models.trees_boosters`) or a fitted scikit-learn forest / histogram boosting
    classifier. Region: bounds, whole-number and decimal grids, value sets, immutable columns,
    directions, one-hot blocks (exactly one category), ``zero_if_zero``, linear ``sum`` /
    ``order`` relations (:mod:`advsec.verification.tree_relations`); the module docstring says
    what "verified" and "broken" mean.

    Arguments:
        eps: default budget(s); feature_space: the fitted FeatureSpace (``None``: the box
            ``bounds``, every column mutable and continuous).
        time_limit: seconds per record (all its classes and stages); a record that reaches it
            keeps the bounds found so far (status ``"unknown"``).
        threads: HiGHS threads per solve (1: deterministic).
        check: re-check the adversarial record with the model's ``predict_proba`` (and the
            validity checker) before accepting it (default True).
        minimal: find each record's global minimal distance instead of looking only up to the
            call's largest eps (slower; the default answers the eps asked).

    Shapes: ``x`` ``(N, D)`` in ``[0, 1]``, ``y`` ``(N,)`` class indices (or raw labels of a
    model with ``classes_``) -> ``verified``, ``broken`` ``(E, N)``.

    Example:
        >>> res = TreeMILP(feature_space=space, time_limit=5)(forest, x, y, eps=[0.02, 0.05])
        >>> res.certified_accuracy, res.unknown, res.min_eps
    """

    name = "tree-milp"

    def __init__(self, *, time_limit: float = 10.0, threads: int = 1, check: bool = True,
                 minimal: bool = False, **options: Any) -> None:
        super().__init__(**options)
        if not time_limit > 0:
            raise ConfigError(f"{self.name}: time_limit must be > 0 seconds, got {time_limit}")
        if threads < 1:
            raise ConfigError(f"{self.name}: threads must be >= 1, got {threads}")
        self.time_limit = float(time_limit)
        self.threads = int(threads)
        self.check = bool(check)
        self.find_minimal = bool(minimal)
        self._programs: dict[int, tuple[Any, TreeProgram]] = {}

    def program(self, model: Any) -> TreeProgram:
        """The (cached) program of ``model`` over this verifier's region."""
        key = id(model)
        hit = self._programs.get(key)
        if hit is None or hit[0] is not model:
            hit = (model, tree_program(model, self.feature_space, threads=self.threads,
                                       bounds=self.bounds))
            self._programs = {key: hit}
        return hit[1]

    def unsupported(self, model: Any) -> str | None:
        """Why ``model`` is not a tree ensemble this verifier reads (one line), or None."""
        try:
            as_tree_ensemble(model)
        except (DataError, TypeError, ValueError, AttributeError) as exc:
            return f"{exc}; {self.name} verifies tree ensembles"
        return None

    def settings(self) -> dict[str, Any]:
        """The verifier's options as plain values (for ``VerifyResult.info``)."""
        return {"time_limit": self.time_limit, "threads": self.threads, "check": self.check,
                "minimal": self.find_minimal, "feature_space": self.feature_space is not None}

    def __call__(self, model: Any, x: Any, y: Any, *,
                 eps: Eps | Sequence[float] | None = None) -> TreeVerifyResult:
        """Which records of ``x`` ``(N, D)`` keep class ``y`` at every eps (a float or a list;
        default the constructor's): a :class:`TreeVerifyResult`."""
        eps_list = eps_values(self.eps if eps is None else eps)
        cap = None if self.find_minimal else max(eps_list) + 2 * BALL_TOL
        t0 = time.perf_counter()
        res = self.minimal(model, x, y, max_eps=cap)
        secs = time.perf_counter() - t0
        bound = torch.as_tensor(res.bound, dtype=torch.float64)
        verified = torch.stack([torch.as_tensor(res.verified(e)) for e in eps_list])
        broken = torch.stack([torch.as_tensor(res.broken(e)) for e in eps_list])
        margin = torch.stack([bound - e - BALL_TOL for e in eps_list])
        xt = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
        yt = check_inputs(model, xt, y, torch.device("cpu"), torch.float32)[1]
        for e, v, b in zip(eps_list, verified, broken, strict=True):
            log.info("%s eps=%g: %d of %d records verified, %d broken, %d unknown", self.name,
                     e, int(v.sum()), len(bound), int(b.sum()), int((~v & ~b).sum()))
        prog = self.program(model)
        return TreeVerifyResult(
            verifier=self.name, eps=eps_list, verified=verified, margin=margin, y=yt.cpu(),
            boxes=[len(bound)] * len(eps_list), seconds=[secs] * len(eps_list),
            info={**self.settings(), "max_eps": cap,
                  "ignored_relations": list(prog.plan.ignored),
                  "statuses": {s: res.status.count(s) for s in STATUSES},
                  "seconds_per_record": res.seconds.tolist()},
            broken=broken, min_eps=torch.as_tensor(res.min_eps), bound=bound,
            x_adv=torch.as_tensor(res.x_adv, dtype=torch.float32), status=res.status)

    # ------------------------------------------------------------------ per record
    def minimal(self, model: Any, x: Any, y: Any, *, max_eps: float | None = None,
                target: Any = None) -> MinimalResult:
        """Per record of ``x`` ``(N, D)`` with class ``y`` ``(N,)``: the bounds ``L <= U`` of
        the minimal adversarial distance and the record at ``U`` (module docstring), looking
        only up to ``max_eps`` when given; ``target`` ``(N,)`` class indices: only a change
        to that class counts (``None``: any other class)."""
        xt = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
        xt, yt = check_inputs(model, xt, y, torch.device("cpu"), torch.float32)
        prog = self.program(model)
        ens = prog.cells.ensemble
        xs = xt.numpy().astype(np.float64)
        ys = yt.numpy().astype(np.int64)
        n, d = xs.shape
        if d != ens.n_features_in_:
            raise ConfigError(f"{self.name}: x has {d} columns, the ensemble "
                              f"{ens.n_features_in_} inputs")
        if n and (ys.min() < 0 or ys.max() >= len(ens.classes_)):
            raise ConfigError(f"{self.name}: y must hold class indices in "
                              f"[0, {len(ens.classes_)})")
        tg = None if target is None else np.asarray(target, dtype=np.int64).reshape(-1)
        if tg is not None and tg.shape != (n,):
            raise ConfigError(f"{self.name}: target must have shape ({n},), got {tg.shape}")
        pred = self._predict(model, ens, xs)
        broken = self._broken(xs)
        out = MinimalResult(np.full(n, np.inf), np.zeros(n), xs.copy(), [""] * n, np.zeros(n),
                            max_eps)
        for i in range(n):
            t0 = time.perf_counter()
            if pred[i] != ys[i]:
                out.min_eps[i], out.status[i] = 0.0, "misclassified"
            else:
                classes = ([int(tg[i])] if tg is not None else
                           [c for c in range(len(ens.classes_)) if c != ys[i]])
                self._record(model, prog, xs[i], int(ys[i]), classes, broken[i], max_eps,
                             out, i)
            out.seconds[i] = time.perf_counter() - t0
        return out

    def _record(self, model: Any, prog: TreeProgram, x0: np.ndarray, y: int,
                classes: list[int], skip: frozenset[str], cap: float | None,
                out: MinimalResult, i: int) -> None:
        deadline = time.perf_counter() + self.time_limit
        strict0 = 1e-9 if prog.cells.ensemble.aggregate == "mean" else 1e-6
        best_eps, best_x, bound, unknown = np.inf, x0, np.inf, False
        for c in classes:
            if c == y:
                continue
            sol = prog.solve(x0, y, c, delta=0.0, time_limit=deadline - time.perf_counter(),
                             skip=skip, max_eps=cap)
            unknown |= sol.status == "limit"
            bound = min(bound, sol.bound)
            cand = self._accept(model, prog, x0, y, c, sol, skip, deadline, strict0, cap)
            if cand is not None and cand.x is not None and cand.distance < best_eps:
                best_eps, best_x = cand.distance, cand.x
        bound = min(bound, best_eps)
        out.min_eps[i], out.x_adv[i], out.bound[i] = best_eps, best_x, bound
        out.status[i] = ("unknown" if unknown and best_eps > bound else
                         "robust" if not np.isfinite(best_eps) else
                         "exact" if best_eps <= bound + 1e-9 else "gap")

    def _accept(self, model: Any, prog: TreeProgram, x0: np.ndarray, y: int, c: int,
                sol: Solution, skip: frozenset[str], deadline: float, delta: float,
                cap: float | None) -> Solution | None:
        """The stage-1 solution if its record flips and is valid, else a stricter solve's."""
        for attempt in range(4):
            if sol.x is not None and self._flips(model, x0, sol.x, y):
                return sol
            left = deadline - time.perf_counter()
            if attempt == 3 or left <= 0 or sol.status == "infeasible":
                return None
            sol = prog.solve(x0, y, c, delta=delta * 10.0**attempt, time_limit=left, skip=skip,
                             strict=1e-7 * 10.0**attempt, max_eps=cap)
        return None

    def _flips(self, model: Any, x0: np.ndarray, x: np.ndarray, y: int) -> bool:
        if not self.check:
            return True
        xa = x.astype(np.float32)[None, :]
        if int(np.argmax(np.asarray(model.predict_proba(xa))[0])) == y:
            return False
        if self.feature_space is None:
            return True
        from advsec.attacks.validity import valid_records

        return bool(valid_records(self.feature_space, xa, x0.astype(np.float32)[None, :])[0])

    def _predict(self, model: Any, ens: TreeEnsemble, xs: np.ndarray) -> np.ndarray:
        proba = model.predict_proba(xs.astype(np.float32)) if hasattr(
            model, "predict_proba") else ens.predict_proba(xs)
        return np.asarray(proba).argmax(axis=1)

    def _broken(self, xs: np.ndarray) -> list[frozenset[str]]:
        """Per record, the relations its clean record breaks (not enforced on it)."""
        if self.feature_space is None or not self.feature_space.relations_ or not len(xs):
            return [frozenset()] * len(xs)
        space = self.feature_space
        checks = space.validate(space.decode(xs.astype(np.float32)))
        names = [str(c).partition(":")[2] for c in checks.columns]
        mat = checks.to_numpy(dtype=bool)
        return [frozenset(names[j] for j in np.flatnonzero(row)
                          if str(checks.columns[j]).startswith("relation:")) for row in mat]

    def __repr__(self) -> str:
        return f"TreeMILP(eps={self.eps}, time_limit={self.time_limit})"
