"""Square attack: score-based black-box random search in the L-inf ball."""

from __future__ import annotations

import logging
from typing import Any

import torch

from advsec.attacks.base import Attack, Eps, Forward
from advsec.attacks.batch import AttackBatch
from advsec.attacks.losses import Objective, get_objective
from advsec.attacks.targets import whole

__all__ = ["Square"]

log = logging.getLogger(__name__)


class Square(Attack):
    r"""Square Attack, L-inf, for models that only return scores.

    Paper: Andriushchenko, Croce, Flammarion, Hein, "Square Attack: a query-efficient black-box
    adversarial attack via random search", ECCV 2020. https://arxiv.org/abs/1912.00049

    Norm: L-inf. Random search over the vertices of the eps-ball: start at a random vertex
    (``x + eps * random signs`` on mutable columns), then per query propose moving a random
    subset of mutable columns (the tabular "square": a share ``p`` of them, ``p`` decreasing
    from ``p_init`` on the paper's schedule) to ``x + eps * random signs``, and keep the proposal
    if the objective improves or the model is fooled. Rows stop at their first success. Only
    scores are used, under ``torch.no_grad``; a FeatureSpace keeps immutable columns and bounds
    at every proposal, and the result is repaired (and re-scored by ``run``) at the end.

    Args:
        eps: budget (float or list).
        queries: query budget per row (default 1000).
        p_init: initial share of mutable columns changed per proposal (default 0.8).
        loss: ``"margin"`` (default; works on logits or probabilities) or ``"ce"`` (logits).
        targeted, feature_space, bounds, evasion, benign_class, batch_size, seed: see
            :class:`~advsec.attacks.base.Attack`.

    Model: an ``nn.Module`` returning logits, an advsec ``Detector``, an object with
    ``predict_proba`` (scikit-learn style, NumPy in and out) or any callable mapping an
    ``(N, D)`` tensor to scores ``(N, C)``.

    Shapes: ``x`` ``(N, D)``, ``y`` ``(N,)`` -> ``(N, D)``.

    Example:
        >>> forest = RandomForestClassifier().fit(x_train, y_train)
        >>> x_adv = Square(eps=0.1, queries=500)(forest, torch.as_tensor(x_test), y_test)
    """

    name = "square"
    family = "score"
    budget = "queries"
    norms = ("linf",)
    needs_gradients = False

    def __init__(
        self,
        *,
        eps: Eps = 0.1,
        queries: int = 1000,
        p_init: float = 0.8,
        loss: str | Objective = "margin",
        **options: Any,
    ) -> None:
        super().__init__(eps=eps, **options)
        queries = whole(queries, "queries")
        if queries < 1 or not 0 < p_init <= 1:
            raise ValueError("queries must be >= 1 and p_init in (0, 1]")
        self.queries = int(queries)
        self.p_init = float(p_init)
        self.loss = loss
        self.objective: Objective = get_objective(loss)

    # ------------------------------------------------------------------ the search
    def perturb(self, batch: AttackBatch) -> torch.Tensor:
        """Random search on ``batch``; rows stop at their first success."""
        forward, gen = batch.model, batch.generator
        x0s, eps_t = batch.x0, batch.eps
        dev, dtype = x0s.device, x0s.dtype
        labels, y_s, tgt_s, targeted = batch.labels, batch.y, batch.target, batch.targeted
        counts = batch.counts
        project = batch.projector()
        mutable = batch.mutable
        cols = (torch.arange(x0s.shape[1], device=dev) if mutable is None
                else torch.nonzero(mutable).flatten())
        m = len(cols)
        if m == 0:
            return x0s.clone()
        signs = _random_signs((len(x0s), m), gen, dev, dtype)
        x = x0s.clone()
        x[:, cols] += eps_t * signs
        x = project(x)
        obj, succ = self._evaluate(forward, x, labels, y_s, tgt_s, targeted)
        counts["queries"] += 1
        # the working set: rows still searching (compacted when a quarter of it has succeeded)
        rows = torch.arange(len(x0s), device=dev)
        wx, wx0, weps, wlab, wy, wtgt, wobj, wsucc = (x.clone(), x0s, eps_t, labels, y_s, tgt_s,
                                                       obj, succ)
        wproj = project
        for i in range(self.queries - 1):
            n_active = len(rows) - int(wsucc.sum())
            if n_active == 0:
                break
            if n_active <= 0.75 * len(rows):
                x[rows] = wx
                keep = torch.nonzero(~wsucc).flatten()
                rows = rows[keep]
                wx, wx0, weps, wlab, wy, wtgt, wobj = (
                    t[keep] for t in (wx, wx0, weps, wlab, wy, wtgt, wobj))
                wsucc = torch.zeros(len(rows), dtype=torch.bool, device=dev)
                wproj = project.subset(rows)
            s = max(1, round(self._p(i) * m))
            pick = torch.rand((len(rows), m), generator=gen, device=dev).topk(s, dim=1).indices
            where = cols[pick]
            signs = _random_signs((len(rows), s), gen, dev, dtype)
            cand = wx.clone()
            cand.scatter_(1, where, wx0.gather(1, where) + weps * signs)
            cand = wproj(cand)
            obj_new, succ_new = self._evaluate(forward, cand, wlab, wy, wtgt, targeted)
            counts["queries"] += 1
            keep = ((obj_new > wobj) | succ_new) & ~wsucc
            wx = torch.where(keep[:, None], cand, wx)
            wobj = torch.where(keep, obj_new, wobj)
            wsucc = wsucc | (succ_new & keep)
        x[rows] = wx
        return x

    def _evaluate(
        self,
        forward: Forward,
        x: torch.Tensor,
        labels: torch.Tensor,
        y: torch.Tensor,
        tgt: torch.Tensor,
        targeted: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            scores = forward(x)
            obj = self.objective(scores, labels, targeted)
            pred = scores.argmax(dim=1)
        return obj, (pred == tgt if targeted else pred != y)

    def _p(self, i: int) -> float:
        """The paper's schedule for the share of columns changed, rescaled to the budget."""
        it = int(i / self.queries * 10000)
        for limit, div in ((10, 1), (50, 2), (200, 4), (500, 8), (1000, 16), (2000, 32),
                           (4000, 64), (6000, 128), (8000, 256)):
            if it <= limit:
                return self.p_init / div
        return self.p_init / 512

    def __repr__(self) -> str:
        return f"Square(eps={self.eps}, queries={self.queries}, p_init={self.p_init})"


def _random_signs(
    shape: tuple[int, int], gen: torch.Generator, dev: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    return torch.randint(0, 2, shape, generator=gen, device=dev).to(dtype).mul_(2).sub_(1)
