"""HopSkipJump: a decision-based black-box attack that sees only the predicted label.

Also :func:`label_only`, which turns a ``predict``-only model (labels out, no scores) into the
one-hot scores callable every black-box attack takes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from advsec.attacks.base import Attack, Eps
from advsec.attacks.batch import AttackBatch
from advsec.attacks.repair import repair_in_ball
from advsec.attacks.success import succeeded
from advsec.attacks.targets import whole

__all__ = ["MAX_POINTS", "HopSkipJump", "label_only"]

#: most points sent to the model in one call (a larger gradient estimate is split)
MAX_POINTS = 1 << 18
_INF = math.inf


def label_only(predict: Callable[[np.ndarray], Any],
               classes: int | Sequence[Any]) -> Callable[[torch.Tensor], torch.Tensor]:
    """A scores callable for a model that only predicts labels: ``x (N, D) -> one-hot (N, C)``.

    Args:
        predict: ``predict(X)`` on a float32 NumPy array ``(N, D)`` (scikit-learn style,
            e.g. ``forest.predict`` or ``Detector.predict``), returning ``(N,)`` labels.
        classes: the number of classes ``C`` when ``predict`` returns class indices, or the
            labels in class-index order (e.g. ``forest.classes_``) when it returns labels.

    The result carries no score beyond the label, so only decision-based attacks
    (:class:`HopSkipJump`) learn anything from it; the frame scores its result with it too.

    Example:
        >>> model = label_only(forest.predict, forest.classes_)
        >>> res = HopSkipJump(eps=0.1).run(model, x, y)
    """
    if isinstance(classes, (int, np.integer)):
        n, names = int(classes), None
    else:
        names = np.asarray(list(classes))
        n = len(names)
        order = np.argsort(names, kind="stable")
        ordered = names[order]

    def scores(x: torch.Tensor) -> torch.Tensor:
        pred = np.asarray(predict(x.detach().cpu().numpy())).reshape(-1)
        if names is None:
            idx = pred.astype(np.int64)
        else:
            pos = np.searchsorted(ordered, pred).clip(0, n - 1)
            if not np.array_equal(ordered[pos], pred):
                raise ValueError(f"predict returned labels outside classes {names.tolist()}")
            idx = order[pos]
        if len(idx) and (idx.min() < 0 or idx.max() >= n):
            raise ValueError(f"predict returned class indices outside [0, {n})")
        hot = torch.nn.functional.one_hot(torch.as_tensor(idx, dtype=torch.long), n)
        return hot.to(device=x.device, dtype=x.dtype if x.dtype.is_floating_point
                      else torch.float32)

    return scores


class HopSkipJump(Attack):
    r"""HopSkipJumpAttack, L-inf or L2, for models that expose only a label.

    Paper: Chen, Jordan, Wainwright, "HopSkipJumpAttack: A Query-Efficient Decision-Based
    Attack", IEEE S&P 2020. https://arxiv.org/abs/1904.02144

    Norm: L-inf (sign of the estimated gradient, clipping interpolation) or L2 (normalised
    gradient, blending interpolation). The only thing read of the model is its decision,
    ``argmax`` of its scores (:func:`~advsec.attacks.success.succeeded`: untargeted, targeted
    or evasion); one-hot scores (:func:`label_only`) work as well as logits.

    Per record (all records of a chunk at once, in torch):

    1. start: the clean record if it already reaches the goal (then it is returned); else an
       adversarial start: first the ``donors`` nearest records of the same chunk whose clean
       prediction reaches this record's goal, taken on the mutable columns only, then up to
       ``init_tries`` uniform random points of the valid box (mutable columns only). A record
       with no adversarial start is a failure (returned unchanged);
    2. binary search between the clean record and the start to the decision boundary;
    3. iterations ``t = 1, 2, ...``: estimate the boundary's normal at the boundary point by
       Monte-Carlo sampling of the decision ``n_t = min(init_evals * sqrt(t), max_evals)``
       times on a sphere of radius ``delta`` (the paper's estimator with its baseline: the mean
       decision is subtracted), ``delta = 0.1 * box span`` at ``t = 1``, then ``gamma * dist /
       d``; step along it by ``dist / sqrt(t)``, halved up to ``halvings`` times until the
       point is adversarial (geometric step search); binary search back to the boundary. The
       binary searches run to relative precision ``min(theta, 2**-10)``, with the paper's
       ``theta = gamma / d**2`` (L-inf) or ``gamma / d**1.5`` (L2); ``d`` is the number of
       mutable columns.

    Threat model: HopSkipJump minimises the distance to the clean record, so every eps of the
    call shares one search and a record stops once its closest adversarial point lies in the
    smallest positive eps-ball. Every point the model is asked about lies in the valid box
    with immutable columns fixed (``batch.projector(ball=False)``) and, with a FeatureSpace,
    is judged as the valid record the space repairs it into, so the decision searched is that
    of the records an attacker would submit. The closest point judged adversarial (over every
    query) is kept; per eps, it is returned if it lies in the ball, else its projection onto
    the ball; the output is repaired (``batch.repair``) and checked with one more query, and
    a row that is not adversarial then is a failure and returns the clean record.

    Budget: ``queries`` is the number of label queries per record, all of its eps together
    (the final check costs one per eps, so ``queries`` should be at least the number of
    eps); a record stops when its remaining budget cannot
    pay a full iteration (``n_t >= 1`` samples, ``halvings`` steps, one binary search), so
    ``result.info["label_queries_max"] <= queries`` (``label_queries``: their sum over the
    records). ``result.queries`` counts batched model calls; per chunk of ``batch_size`` rows
    it is at most ``2 + donors + init_tries + S + I * (1 + halvings + S)``, with ``S`` the
    binary-search steps (``max(10, ceil(log2(1 / theta)))``: 10 up to 32 mutable columns in
    L-inf, up to 101 in L2, with ``gamma = 1``) and at most
    ``I = queries // (1 + min(halvings, 1 + S))`` iterations, plus one call per further
    :data:`MAX_POINTS` points of a gradient estimate.

    Args:
        eps: budget (float or list).
        queries: label queries per record (default 1000; ``advsec attack --steps``).
        init_evals: gradient-estimate samples at the first iteration (default 20).
        max_evals: most gradient-estimate samples per iteration (default 200).
        gamma: the paper's ``gamma`` setting ``theta`` (binary-search precision and sampling
            radius; default 1.0).
        halvings: most step halvings per iteration (default 10).
        donors: nearest records of the chunk tried as starts (default 3; 0: random only).
        init_tries: random starts tried per record (default 20).
        norm, targeted, feature_space, bounds, evasion, benign_class, batch_size, seed: see
            :class:`~advsec.attacks.base.Attack`. ``bounds=None`` (unbounded inputs) draws
            random starts in the chunk's column range widened by 1.

    Model: an ``nn.Module`` returning logits, an advsec ``Detector``, an object with
    ``predict_proba`` (scikit-learn style), any callable mapping an ``(N, D)`` tensor to scores
    ``(N, C)``, or a ``predict``-only model wrapped by :func:`label_only`.

    Shapes: ``x`` ``(N, D)``, ``y`` ``(N,)`` -> ``(N, D)``; per chunk, a gradient estimate
    holds ``rows * n_t`` points ``(.., D)`` (split into model calls of :data:`MAX_POINTS`).

    Example:
        >>> forest = RandomForestClassifier().fit(x_train, y_train)
        >>> atk = HopSkipJump(eps=[0.05, 0.1], queries=2000, evasion=True)
        >>> res = atk.run(label_only(forest.predict, forest.classes_), x_test, y_test)
        >>> res.success_rate, res.info["label_queries_max"]
    """

    name = "hopskipjump"
    family = "decision"
    budget = "queries"
    norms = ("linf", "l2")
    needs_gradients = False

    def __init__(
        self,
        *,
        eps: Eps = 0.1,
        queries: int = 1000,
        init_evals: int = 20,
        max_evals: int = 200,
        gamma: float = 1.0,
        halvings: int = 10,
        donors: int = 3,
        init_tries: int = 20,
        **options: Any,
    ) -> None:
        super().__init__(eps=eps, **options)
        queries, init_evals = whole(queries, "queries"), whole(init_evals, "init_evals")
        max_evals = whole(max_evals, "max_evals")
        if queries < 1 or init_evals < 1 or max_evals < init_evals:
            raise ValueError("queries and init_evals must be >= 1, max_evals >= init_evals")
        if gamma <= 0 or halvings < 1 or donors < 0 or init_tries < 0:
            raise ValueError("gamma must be > 0, halvings >= 1, donors and init_tries >= 0")
        self.queries = int(queries)
        self.init_evals = int(init_evals)
        self.max_evals = int(max_evals)
        self.gamma = float(gamma)
        self.halvings = int(halvings)
        self.donors = int(donors)
        self.init_tries = int(init_tries)

    def perturb(self, batch: AttackBatch) -> torch.Tensor:
        """The search on the chunk's records (shared by its eps), then one output per eps."""
        positive = [e for e in batch.eps_values if e > 0]
        if not positive or (batch.mutable is not None and not bool(batch.mutable.any())):
            return batch.x0.clone()
        return _Search(self, batch).run(min(positive))

    def __repr__(self) -> str:
        return (f"HopSkipJump(eps={self.eps}, norm={self.norm!r}, queries={self.queries}, "
                f"init_evals={self.init_evals}, max_evals={self.max_evals})")


class _Search:
    """The state of one chunk's search: ``b`` records (the first eps copy of the batch)."""

    def __init__(self, atk: HopSkipJump, batch: AttackBatch) -> None:
        self.atk, self.batch = atk, batch
        b = batch.rows
        self.x0, self.y = batch.x0[:b], batch.y[:b]
        self.tgt = batch.target[:b] if batch.targeted else None
        self.dev, dt = self.x0.device, self.x0.dtype
        self.linf = batch.norm == "linf"
        d_all = self.x0.shape[1]
        self.mut = (torch.ones(d_all, dtype=torch.bool, device=self.dev)
                    if batch.mutable is None else batch.mutable)
        self.d = int(self.mut.sum())
        theta = atk.gamma / (self.d ** 2 if self.linf else self.d ** 1.5)
        self.n_bs = max(10, math.ceil(math.log2(1 / theta)))
        self.proj = batch.subset(torch.arange(b, device=self.dev)).projector(ball=False)
        self.lo, self.hi = self._sampling_box(batch)
        self.span = float((self.hi - self.lo)[self.mut].max().clamp_min(1e-12))
        self.used = torch.zeros(b, dtype=torch.long, device=self.dev)
        self.budget = atk.queries - batch.copies  # the final check costs one per eps
        self.best = self.x0.clone()
        self.best_dist = torch.full((b,), _INF, dtype=dt, device=self.dev)
        self.cur = self.x0.clone()
        self.cur_dist = torch.zeros(b, dtype=dt, device=self.dev)

    # ------------------------------------------------------------------ the decision
    def query(self, x: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(adversarial (n,), predicted class (n,))`` of the candidates ``x`` ``(n, D)`` of the
        records ``idx`` ``(n,)``, judged as the valid records they repair into; every hit is a
        candidate for the closest adversarial point."""
        batch = self.batch
        if batch.space is not None:
            big = torch.full((len(x), 1), _INF, dtype=x.dtype, device=x.device)
            x = repair_in_ball(batch.space, x, self.x0[idx], big, norm=batch.norm)
        pred = torch.cat([batch.scores(c).argmax(1) for c in x.split(MAX_POINTS)])
        hit = succeeded(pred, self.y[idx], target=None if self.tgt is None else self.tgt[idx])
        self.used += torch.bincount(idx, minlength=len(self.used))
        self._record(x, idx, hit)
        return hit, pred

    def _record(self, xr: torch.Tensor, idx: torch.Tensor, hit: torch.Tensor) -> None:
        """Keep, per record, the closest adversarial point seen (first one on ties)."""
        n, b = len(idx), len(self.best_dist)
        d = torch.where(hit, self.dist(xr, self.x0[idx]), _INF)
        low = torch.full_like(self.best_dist, _INF).scatter_reduce_(0, idx, d, "amin")
        pos = torch.where(hit & (d == low[idx]), torch.arange(n, device=self.dev), n)
        first = torch.full((b,), n, dtype=torch.long, device=self.dev).scatter_reduce_(
            0, idx, pos, "amin")
        better = low < self.best_dist
        self.best = torch.where(better[:, None], xr[first.clamp(max=n - 1)], self.best)
        self.best_dist = torch.minimum(low, self.best_dist)

    def dist(self, x: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        delta = x - x0
        return delta.abs().amax(1) if self.linf else torch.linalg.vector_norm(delta, dim=1)

    # ------------------------------------------------------------------ the steps
    def run(self, stop: float) -> torch.Tensor:
        """Search until every record is within ``stop`` or out of budget; the per-eps output."""
        atk, b = self.atk, len(self.x0)
        has = self.start()
        rows = _rows(has & (self.best_dist > stop) & (self.budget - self.used >= self.n_bs))
        if len(rows):
            self.cur[rows], self.cur_dist[rows] = self.binary_search(rows, self.cur[rows])
        reserve = atk.halvings + self.n_bs
        it = 0
        while True:
            it += 1
            rem = self.budget - self.used
            rows = _rows(has & (self.best_dist > stop) & (rem > reserve))
            if not len(rows):
                break
            n_eval = int(min(atk.init_evals * math.sqrt(it), atk.max_evals))
            n_r = (rem[rows] - reserve).clamp(max=n_eval)
            cur, dist = self.cur[rows], self.cur_dist[rows]
            delta = (torch.full_like(dist, 0.1 * self.span) if it == 1
                     else (atk.gamma / self.d * dist).clamp_min(1e-7))
            grad = self.estimate(rows, cur, delta, n_r)
            update = grad.sign() if self.linf else grad / torch.linalg.vector_norm(
                grad, dim=1, keepdim=True).clamp_min(1e-12)
            new, moved = self.step_search(rows, cur, update, dist / math.sqrt(it))
            m = _rows(moved)
            if len(m):
                self.cur[rows[m]], self.cur_dist[rows[m]] = self.binary_search(rows[m], new[m])
        self.batch.counts["hsj_iterations"] = max(self.batch.counts.get("hsj_iterations", 0),
                                                  it - 1)
        return self.finish(b)

    def start(self) -> torch.Tensor:
        """``(b,)`` bool: records with an adversarial start (in ``cur``); the clean record when
        it already reaches the goal."""
        b, every = len(self.x0), torch.arange(len(self.x0), device=self.dev)
        if self.budget < 1:
            return torch.zeros(b, dtype=torch.bool, device=self.dev)
        has, pred = self.query(self.x0.clone(), every)
        donors = min(self.atk.donors, b - 1)
        if donors > 0:
            goal = succeeded(pred[None, :], self.y[:, None],
                             target=None if self.tgt is None else self.tgt[:, None])
            xm = self.x0 * self.mut
            far = torch.cdist(xm, xm, p=_INF if self.linf else 2.0).masked_fill_(~goal, _INF)
            near, who = far.topk(donors, dim=1, largest=False)
            for i in range(donors):
                rows = _rows(~has & torch.isfinite(near[:, i]) & (self.used < self.budget))
                if len(rows):
                    cand = torch.where(self.mut, self.x0[who[rows, i]], self.x0[rows])
                    has = self._take(rows, self.proj.subset(rows)(cand), has)
        for _ in range(self.atk.init_tries):
            rows = _rows(~has & (self.used < self.budget))
            if not len(rows):
                break
            u = torch.rand((len(rows), self.x0.shape[1]), generator=self.batch.generator,
                           device=self.dev, dtype=self.x0.dtype)
            cand = torch.where(self.mut, self.lo + u * (self.hi - self.lo), self.x0[rows])
            has = self._take(rows, self.proj.subset(rows)(cand), has)
        return has

    def _take(self, rows: torch.Tensor, cand: torch.Tensor, has: torch.Tensor) -> torch.Tensor:
        hit, _ = self.query(cand, rows)
        self.cur[rows[hit]] = cand[hit]
        return has.index_fill(0, rows[hit], True)

    def binary_search(self, rows: torch.Tensor, xa: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """The boundary point between the clean records and the adversarial ``xa`` ``(R, D)``
        (the adversarial end of the last interval) and its distance."""
        x0 = self.x0[rows]
        hi = self.dist(xa, x0) if self.linf else torch.ones(len(rows), device=self.dev,
                                                            dtype=xa.dtype)
        lo = torch.zeros_like(hi)
        for _ in range(self.n_bs):
            mid = (lo + hi) / 2
            hit, _ = self.query(self._between(xa, x0, mid), rows)
            hi, lo = torch.where(hit, mid, hi), torch.where(hit, lo, mid)
        out = self._between(xa, x0, hi)
        return out, self.dist(out, x0)

    def _between(self, xa: torch.Tensor, x0: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """L-inf: ``xa`` clipped to the ball of radius ``a`` around ``x0``; L2: the blend
        ``x0 + a (xa - x0)`` (``a`` ``(R,)``)."""
        a = a[:, None]
        if self.linf:
            return torch.minimum(torch.maximum(xa, x0 - a), x0 + a)
        return torch.addcmul(x0, a, xa - x0)

    def estimate(self, rows: torch.Tensor, cur: torch.Tensor, delta: torch.Tensor,
                 n_r: torch.Tensor) -> torch.Tensor:
        """``(R, D)`` the paper's Monte-Carlo estimate of the boundary's normal at ``cur``:
        ``n_r`` unit directions (uniform noise for L-inf, Gaussian for L2, mutable columns
        only) at radius ``delta``, weighted by the centred decision ``2 phi - 1 - mean``."""
        n = int(n_r.max())
        group = max(1, MAX_POINTS // n)
        out = []
        for s in range(0, len(rows), group):
            r, c, dl, k = rows[s:s + group], cur[s:s + group], delta[s:s + group], n_r[s:s + group]
            shape = (len(r), n, c.shape[1])
            g = self.batch.generator
            if self.linf:
                rv = torch.rand(shape, generator=g, device=self.dev, dtype=c.dtype) * 2 - 1
            else:
                rv = torch.randn(shape, generator=g, device=self.dev, dtype=c.dtype)
            rv = rv * self.mut
            rv = rv / torch.linalg.vector_norm(rv, dim=2, keepdim=True).clamp_min(1e-12)
            pts = self.proj.subset(r.repeat_interleave(n))(
                (c[:, None, :] + dl[:, None, None] * rv).reshape(-1, c.shape[1]))
            rv = (pts.view(shape) - c[:, None, :]) / dl[:, None, None]
            use = torch.arange(n, device=self.dev)[None, :] < k[:, None]  # (R, n)
            hit, _ = self.query(pts.view(shape)[use], r[:, None].expand(-1, n)[use])
            f = torch.zeros(use.shape, dtype=c.dtype, device=self.dev)
            f[use] = hit.to(c.dtype) * 2 - 1
            cnt = k.to(c.dtype)[:, None]
            mean = f.sum(1, keepdim=True) / cnt
            centred = torch.where(use, f - mean, 0.0)
            grad = (centred[:, :, None] * rv).sum(1) / cnt
            plain = (rv * use[:, :, None]).sum(1) / cnt  # every decision equal: the baseline
            grad = torch.where(mean == 1, plain, torch.where(mean == -1, -plain, grad))
            out.append(grad)
        return torch.cat(out)

    def step_search(self, rows: torch.Tensor, cur: torch.Tensor, update: torch.Tensor,
                    step: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Geometric step search: ``cur + step * update``, ``step`` halved until adversarial
        (at most ``halvings`` tries); ``(new points (R, D), moved (R,))``."""
        new, ok, step = cur.clone(), torch.zeros(len(rows), dtype=torch.bool,
                                                 device=self.dev), step.clone()
        for _ in range(self.atk.halvings):
            todo = _rows(~ok)
            if not len(todo):
                break
            cand = self.proj.subset(rows[todo])(cur[todo] + step[todo, None] * update[todo])
            hit, _ = self.query(cand, rows[todo])
            new[todo[hit]] = cand[hit]
            ok[todo[hit]] = True
            step[todo[~hit]] /= 2
        return new, ok

    def finish(self, b: int) -> torch.Tensor:
        """Per eps: the closest adversarial point if inside the ball, else its projection onto
        the ball; repaired, checked, and the clean record where it is not adversarial."""
        batch, k = self.batch, self.batch.copies
        best = self.best.repeat(k, 1) if k > 1 else self.best
        inside = (self.best_dist.repeat(k) if k > 1 else self.best_dist) <= batch.eps[:, 0]
        x = torch.where(inside[:, None], best, batch.projector()(best.clone()))
        xr = batch.repair(x)
        ok = batch.succeeded(batch.scores(xr))
        self.used += k
        xr.copy_(torch.where(ok[:, None], xr, batch.x0))
        c = batch.counts
        c["label_queries"] = c.get("label_queries", 0) + int(self.used.sum())
        c["label_queries_max"] = max(c.get("label_queries_max", 0), int(self.used.max()))
        return xr

    @staticmethod
    def _sampling_box(batch: AttackBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """``(D,)`` bounds of the random starts: the valid box, or (``bounds=None``) the
        chunk's column range widened by 1."""
        x0 = batch.x0
        if batch.lower is None:
            return x0.amin(0) - 1, x0.amax(0) + 1
        lo = torch.as_tensor(batch.lower, dtype=x0.dtype, device=x0.device)
        hi = torch.as_tensor(batch.upper, dtype=x0.dtype, device=x0.device)
        return lo.expand(x0.shape[1]), hi.expand(x0.shape[1])


def _rows(mask: torch.Tensor) -> torch.Tensor:
    return torch.nonzero(mask).flatten()
