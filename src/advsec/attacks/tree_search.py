"""Tree search: the fast white-box attack on tree ensembles, as a registered attack."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from torch import nn

from advsec.attacks.base import AnyModel, Attack, Eps, Forward
from advsec.attacks.batch import AttackBatch
from advsec.attacks.tree_searcher import TreeSearcher
from advsec.errors import DataError
from advsec.models.trees_boosters import as_tree_ensemble

__all__ = ["TreeForward", "TreeSearch"]

log = logging.getLogger(__name__)


class TreeForward:
    """A tree ensemble as attacks see it: ``(M, D)`` tensors -> ``(M, C)`` class
    probabilities (its own ``predict_proba``), keeping the ensemble for the search."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        proba = self.model.predict_proba(x.detach().cpu().numpy())
        return torch.as_tensor(np.asarray(proba), dtype=x.dtype, device=x.device)


class TreeSearch(Attack):
    r"""Greedy search over the split thresholds of a tree ensemble, valid-record aware.

    Paper: Zhang, Zhang, Hsieh, "An Efficient Adversarial Attack for Tree Ensembles",
    NeurIPS 2020 (LT-Attack). https://arxiv.org/abs/2010.11598

    Norm: L-inf. A tree ensemble only asks on which side of each threshold a value lies, so the
    only moves that matter are to the nearest admissible value of another interval between
    thresholds within eps (bounds, whole-number grids, value sets, directions and immutable
    columns built in; relations checked at every move). From the clean record, the move that
    lowers the margin most is taken until none does, then the search restarts ``restarts``
    times from a random valid start; a record stops at its first success
    (:mod:`advsec.attacks.tree_searcher`). No gradient and no solver; the exact answer is the
    ``tree-milp`` verifier's (:class:`advsec.verification.TreeMILP`).

    Args:
        eps: budget (float or list).
        iterations: moves per start (default 50).
        restarts: random restarts after the greedy descent stalls (default 5).
        p_start: share of columns a random start moves (default 0.3).
        targeted, feature_space, bounds, evasion, benign_class, batch_size, seed: see
            :class:`~advsec.attacks.base.Attack`.

    Model: a :class:`~advsec.models.trees.TreeEnsemble`, an XGBoost / LightGBM
    :class:`~advsec.models.boosters.BoostedTrees` or a fitted scikit-learn random forest,
    extra-trees or histogram gradient-boosting classifier.

    Shapes: ``x`` ``(N, D)``, ``y`` ``(N,)`` -> ``(N, D)``.

    Example:
        >>> forest = RandomForestClassifier(50, max_depth=8).fit(x_train, y_train)
        >>> res = TreeSearch(eps=[0.02, 0.05], feature_space=space).run(forest, x, y)
    """

    name = "tree-search"
    family = "tree"
    budget = "iterations"
    norms = ("linf",)
    needs_gradients = False

    def __init__(self, *, eps: Eps = 0.1, iterations: int = 50, restarts: int = 5,
                 p_start: float = 0.3, **options: Any) -> None:
        super().__init__(eps=eps, **options)
        if iterations < 1 or restarts < 0 or not 0 < p_start <= 1:
            raise ValueError(f"{self.name}: iterations must be >= 1, restarts >= 0 and p_start "
                             f"in (0, 1]")
        self.iterations = int(iterations)
        self.restarts = int(restarts)
        self.p_start = float(p_start)
        self._searcher: tuple[Any, TreeSearcher] | None = None

    def resolve_model(self, model: AnyModel) -> tuple[Forward, nn.Module | None]:
        """``(TreeForward(model), None)``; a one-line TypeError for anything not a tree
        ensemble."""
        try:
            as_tree_ensemble(model)
        except (DataError, TypeError, ValueError, AttributeError) as exc:
            raise TypeError(f"{self.name} attacks tree ensembles only: {exc}") from None
        return TreeForward(model), None

    def searcher(self, model: Any) -> TreeSearcher:
        """The (cached) search of ``model`` over this attack's region."""
        if self._searcher is None or self._searcher[0] is not model:
            self._searcher = (model, TreeSearcher(model, self.feature_space,
                                                  bounds=self.bounds))
        return self._searcher[1]

    def perturb(self, batch: AttackBatch) -> torch.Tensor:
        """The search on every copy of ``batch`` (one per eps), seeded per copy."""
        forward = batch.model
        if not isinstance(forward, TreeForward):
            raise TypeError(f"{self.name}: the batch's model is not a tree ensemble")
        search = self.searcher(forward.model)
        x0 = batch.x0.detach().cpu().numpy()
        y = batch.y.cpu().numpy()
        tgt = batch.target.cpu().numpy() if batch.targeted else None
        out = np.empty_like(x0)
        b = batch.rows
        for i, e in enumerate(batch.eps_values):
            sl = slice(i * b, (i + 1) * b)
            res = search.run(x0[sl], y[sl], float(e), target=None if tgt is None else tgt[sl],
                             restarts=self.restarts, iterations=self.iterations,
                             p_start=self.p_start,
                             rng=np.random.default_rng([self.seed, i, int(batch.x0.shape[0])]))
            out[sl] = res.x_adv
            batch.counts["queries"] += res.steps
            log.debug("%s eps=%g: %d of %d records changed class", self.name, e,
                      int(res.success.sum()), b)
        return torch.as_tensor(out, dtype=batch.x0.dtype, device=batch.x0.device)

    def __repr__(self) -> str:
        return (f"TreeSearch(eps={self.eps}, iterations={self.iterations}, "
                f"restarts={self.restarts})")
