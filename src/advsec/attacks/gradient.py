"""The one iterative first-order loop: FGSM, BIM, MIM, PGD and APGD are configurations of it.

Random start, objective (on logits), input gradient, step rule
(:mod:`advsec.attacks.steps`), projection (:class:`~advsec.attacks.projection.Projector`: the
eps-ball, then the valid region of a :class:`~advsec.features.FeatureSpace` or the plain box),
optional early stop and best-point tracking, random restarts, and the final repair. Everything
inside the loop stays in torch on the model's device.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from advsec.attacks.base import Attack, Eps, Forward
from advsec.attacks.batch import AttackBatch
from advsec.attacks.losses import Objective, get_objective
from advsec.attacks.projection import Projector
from advsec.attacks.steps import FixedStep, StepRule
from advsec.attacks.targets import whole

if TYPE_CHECKING:
    from advsec.features.space import FeatureSpace

__all__ = ["GradientAttack"]

log = logging.getLogger(__name__)


class GradientAttack(Attack, register=False):
    """Iterative first-order attack; FGSM, BIM, MIM, PGD and APGD are configurations of it.

    Args:
        eps: budget (float or list; see :class:`Attack`).
        norm: ``"linf"`` (sign steps) or ``"l2"`` (normalised-gradient steps).
        steps: number of gradient steps.
        step_size: absolute step size; if ``None``, ``rel_step_size * eps``.
        rel_step_size: step size as a fraction of eps (used when ``step_size`` is None).
        random_start: start from a uniform random point of the eps-ball (of mutable columns).
        restarts: random restarts (needs ``random_start``); each row keeps the first restart
            whose repaired result fools the model, else the one with the highest objective.
            Later restarts only run on rows not fooled yet.
        loss: ``"ce"`` (cross-entropy on logits), ``"margin"`` (logit margin, works for binary
            detectors), ``"dlr"`` (3+ classes) or a callable ``fn(logits, labels, targeted) ->
            (N,)`` to maximise.
        decay: momentum decay factor (MI-FGSM); ``None`` disables momentum.
        early_stop: freeze a row at the first iterate that is adversarial (the loop ends when all
            rows are); costs one device sync per step.
        keep_best: return, per row, the iterate with the highest objective (successful iterates
            preferred) rather than the last one; costs one extra forward pass.
        skip_stationary: a row whose iterate did not move in the last step reuses its last
            gradient instead of a new forward+backward pass (the same gradient, up to the float
            summation order of the model's batched matmuls, for a deterministic model in eval
            mode). Pays when most rows stop moving, e.g. sign steps of size eps that pin rows to
            a corner of the ball; costs a comparison and two copies per step. Applies when
            neither ``early_stop``, ``keep_best`` nor the step rule needs per-row objectives.
        targeted, feature_space, bounds, evasion, benign_class, batch_size, seed: see
            :class:`Attack`.

    Call: ``attack(model, x, y, *, eps=None, target=None) -> x_adv`` with ``model`` an
    ``nn.Module`` returning logits ``(N, C)`` or an advsec ``Detector``, ``x`` ``(N, D)`` and
    ``y`` ``(N,)`` class indices. Returns one ``(N, D)`` tensor, or a list of them when ``eps`` is
    a list. :meth:`run` returns an :class:`AttackResult` (timings, predictions, validity).
    Gradients are taken with respect to the input only; the model's parameters are untouched.

    Example:
        >>> attack = GradientAttack(eps=[0.05, 0.1], steps=20, random_start=True, loss="margin",
        ...                         feature_space=space, evasion=True)
        >>> result = attack.run(detector, x, y)
        >>> result.table()[["eps", "attack_success_rate", "valid_share"]]
    """

    name = "gradient"
    family = "gradient"
    budget: ClassVar[str | None] = "steps"

    def __init__(
        self,
        *,
        eps: Eps = 0.1,
        norm: str = "linf",
        steps: int = 10,
        step_size: float | None = None,
        rel_step_size: float = 0.25,
        random_start: bool = False,
        restarts: int = 1,
        loss: str | Objective = "ce",
        targeted: bool = False,
        decay: float | None = None,
        early_stop: bool = False,
        keep_best: bool = False,
        skip_stationary: bool = False,
        feature_space: FeatureSpace | None = None,
        bounds: tuple[float, float] | None = (0.0, 1.0),
        evasion: bool = False,
        benign_class: int | str | None = None,
        batch_size: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(eps=eps, norm=norm, targeted=targeted, feature_space=feature_space,
                         bounds=bounds, evasion=evasion, benign_class=benign_class,
                         batch_size=batch_size, seed=seed)
        steps, restarts = whole(steps, "steps"), whole(restarts, "restarts")
        if steps < 1 or restarts < 1:
            raise ValueError("steps and restarts must be >= 1")
        if (step_size is not None and step_size < 0) or rel_step_size < 0:
            raise ValueError("step sizes must be >= 0")
        self.steps = int(steps)
        self.step_size = step_size
        self.rel_step_size = rel_step_size
        self.random_start = random_start
        self.restarts = int(restarts)
        self.loss = loss
        self.objective: Objective = get_objective(loss)
        self.decay = decay
        self.early_stop = early_stop
        self.keep_best = keep_best
        self.skip_stationary = skip_stationary

    # ------------------------------------------------------------------ hooks for subclasses
    def step_rule(self) -> StepRule:
        """A fresh step rule for one run of the loop: the extension point of iterative gradient
        attacks (override it to return your own :class:`~advsec.attacks.steps.StepRule`)."""
        return FixedStep(self.decay)

    def _reach_within_ball(self) -> bool:
        """True when every iterate provably stays in the L-inf ball (one step of size <= eps)."""
        return (self.norm == "linf" and self.steps == 1 and not self.random_start
                and self.step_size is None and self.rel_step_size <= 1.0
                and type(self).step_rule is GradientAttack.step_rule)

    # ------------------------------------------------------------------ one chunk
    def perturb(self, batch: AttackBatch) -> torch.Tensor:
        """The iterative loop on ``batch`` (random starts, restarts); returns the iterate per
        row, repaired when restarts were judged on their repaired result."""
        b, k = batch.rows, batch.copies
        x0s, eps_t = batch.x0, batch.eps
        dtype = x0s.dtype
        alpha_t: torch.Tensor | float
        if self.step_size is not None:
            alpha_t = self._scalar(self.step_size, 1.0, dtype)
        elif k == 1:  # one eps: one step size, rounded as the per-row tensor would be
            alpha_t = self._scalar(batch.eps_values[0], self.rel_step_size, dtype)
        else:
            alpha_t = eps_t if self.rel_step_size == 1.0 else eps_t * self.rel_step_size
        project = batch.projector(ball=not self._reach_within_ball())
        mask = None if batch.mutable is None else batch.mutable.to(dtype)
        restarts = self.restarts if self.random_start else 1
        best_x: torch.Tensor | None = None
        best_obj = best_succ = None
        for restart in range(restarts):
            rows = None
            if restart > 0:
                assert best_succ is not None
                rows = torch.nonzero(~best_succ).flatten()
                if len(rows) == 0:
                    break
            start = x0s
            if self.random_start:
                delta, unit = self._random_delta(b, x0s.shape[1], x0s.device, dtype, mask,
                                                 batch.generator)
                delta = delta if k == 1 else delta.repeat(k, 1)
                start = project(torch.addcmul(x0s, delta, eps_t * unit))
            sub = batch if rows is None else batch.subset(rows)
            x = self._loop(sub, start if rows is None else start[rows],
                           alpha_t if isinstance(alpha_t, float) or rows is None
                           else alpha_t[rows], mask,
                           project if rows is None else project.subset(rows),
                           b if (k > 1 and not self.random_start) else None)
            if restarts == 1:
                return x
            # judge each restart on its repaired result, keep the better per row
            x = sub.repair(x)
            logits = sub.scores(x)
            obj = self.objective(logits, sub.labels, batch.targeted)
            succ = sub.succeeded(logits)
            if best_x is None:
                best_x, best_obj, best_succ = x, obj, succ
                continue
            assert best_obj is not None and best_succ is not None and rows is not None
            better = succ | (obj > best_obj[rows])
            best_x[rows] = torch.where(better[:, None], x, best_x[rows])
            best_obj[rows] = torch.where(better, obj, best_obj[rows])
            best_succ[rows] = succ
        assert best_x is not None
        return best_x

    def _scalar(self, value: float, factor: float, dtype: torch.dtype) -> float:
        """``value * factor`` rounded exactly as ``tensor(value, dtype) * factor`` (cached)."""
        cache = self.__dict__.setdefault("_scalars", {})
        key = (value, factor, dtype)
        if key not in cache:
            t = torch.tensor(value, dtype=dtype)
            cache[key] = float(t * factor if factor != 1.0 else t)
        return cache[key]

    # ------------------------------------------------------------------ the loop
    def _loop(
        self,
        batch: AttackBatch,
        x: torch.Tensor,
        alpha: torch.Tensor | float,
        mask: torch.Tensor | None,
        project: Projector,
        share_first: int | None,
    ) -> torch.Tensor:
        """One run from the start ``x`` on ``batch``; returns the final (or best) iterate,
        unrepaired.

        ``share_first``: when every epsilon copy starts at ``x0`` (no random start), the first
        gradient is computed once on the first ``share_first`` rows and shared by all copies.
        """
        module, labels, targeted = batch.model, batch.labels, batch.targeted
        counts = batch.counts
        rule = self.step_rule()
        rule.start(self, batch.x0, batch.eps, alpha, project)
        use_mask = mask is not None and rule.needs_mask
        track = self.keep_best
        stop = self.early_stop
        per_row = track or stop or rule.needs_objective
        # nothing else keeps iterates: after a first step into a fresh tensor, step in place
        in_place = getattr(rule, "may_own_x", False) and not (track or stop)
        best_x = best_obj = best_succ = None
        done: torch.Tensor | None = None
        reuse = self.skip_stationary and not per_row
        seen: list[tuple[torch.Tensor, torch.Tensor]] = []  # newest first
        for it in range(self.steps):
            if seen:
                grad, obj = self._moved_gradient(module, x, seen, labels, targeted, counts)
            elif it == 0 and share_first is not None:
                k = len(x) // share_first
                grad, logits, obj = self._gradient(module, x[:share_first],
                                                   labels[:share_first], targeted, per_row)
                grad, logits = grad.repeat(k, 1), logits.repeat(k, 1)
                obj = obj.repeat(k) if per_row else obj
                counts["gradients"] += 1
            else:
                grad, logits, obj = self._gradient(module, x, labels, targeted, per_row)
                counts["gradients"] += 1
            if track or stop:
                succ = batch.succeeded(logits)
                if track:
                    best_x, best_obj, best_succ = _update_best(x, obj, succ, best_x, best_obj,
                                                               best_succ)
                if stop:
                    done = succ if done is None else done | succ
                    if bool(done.all()):
                        break
            if use_mask:
                assert mask is not None
                grad = grad.mul_(mask)
            if reuse:  # the rule may overwrite grad, and x when it steps in place
                seen = [(x.clone() if rule.owns_x else x, grad.clone()), *seen][:_SEEN]
            x_new = rule.step(it, x, grad, obj)
            x = torch.where(done[:, None], x, x_new) if done is not None else x_new
            rule.owns_x = in_place
        if track:
            logits = batch.scores(x)
            obj = self.objective(logits, labels, targeted)
            succ = batch.succeeded(logits)
            best_x, best_obj, best_succ = _update_best(x, obj, succ, best_x, best_obj, best_succ)
            assert best_x is not None
            return best_x
        return x

    def _moved_gradient(
        self, module: Forward, x: torch.Tensor, seen: list[tuple[torch.Tensor, torch.Tensor]],
        labels: torch.Tensor, targeted: bool, counts: dict[str, int],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The gradient at ``x`` ``(M, D)`` (``skip_stationary``): for a row equal to its
        iterate of one of the last steps (``seen``: ``(iterate, gradient)`` pairs, newest
        first), that step's gradient; a forward+backward pass for the other rows only."""
        grad = seen[0][1].clone()
        todo = (x != seen[0][0]).any(dim=1)
        for past_x, past_grad in seen[1:]:
            same = todo & ~(x != past_x).any(dim=1)
            grad[same] = past_grad[same]
            todo &= ~same
        rows = torch.nonzero(todo).flatten()
        obj = torch.zeros((), dtype=x.dtype, device=x.device)
        if len(rows) == len(x):
            counts["gradients"] += 1
            grad, _, obj = self._gradient(module, x, labels, targeted, False)
        elif len(rows):
            counts["gradients"] += 1
            part, _, obj = self._gradient(module, x[rows], labels[rows], targeted, False)
            grad[rows] = part
        counts["skipped_rows"] = counts.get("skipped_rows", 0) + len(x) - len(rows)
        return grad, obj

    def _gradient(
        self, module: Forward, x: torch.Tensor, labels: torch.Tensor, targeted: bool,
        per_row: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(input gradient of the summed objective, logits, objective)`` at ``x``.

        The objective is ``(N,)`` per row, or (``per_row=False``) only its sum, which for the
        cross-entropy is one fused reduction, as a bare attack loop would compute it.
        """
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            logits = module(xg)
            if per_row:
                obj = self.objective(logits, labels, targeted)
                total = obj.sum()
            elif self.loss == "ce":
                obj = total = F.cross_entropy(logits, labels, reduction="sum")
                if targeted:
                    obj = total = -total
            else:
                obj = total = self.objective(logits, labels, targeted).sum()
            (grad,) = torch.autograd.grad(total, xg)
        return grad, logits.detach(), obj.detach()

    def _random_delta(
        self,
        b: int,
        d: int,
        dev: torch.device,
        dtype: torch.dtype,
        mask: torch.Tensor | None,
        gen: torch.Generator,
    ) -> tuple[torch.Tensor, float]:
        """A uniform random point of the unit ball, as ``(delta (b, D), unit)``: the point is
        ``delta * unit``.

        L-inf on the CPU draws 16-bit uniforms (``delta`` integer-valued in ``[-2^15, 2^15)``,
        ``unit = 2^-15``) from a NumPy PCG64 stream seeded from ``gen``: three times cheaper than
        ``torch.rand`` and fine-grained enough for a random start. Immutable columns are left to
        the projection (L-inf) or zeroed (L2, so the radius is spent on mutable columns only).
        """
        if self.norm == "linf":
            if dev.type == "cpu":
                seed = int(torch.randint(0, 2**62, (1,), generator=gen))
                words = np.random.PCG64(seed).random_raw(-(-b * d // 4))
                bits = torch.from_numpy(words.view(np.int16)[: b * d].reshape(b, d))
                return bits.to(dtype), 2.0**-15
            u = torch.rand((b, d), generator=gen, device=dev, dtype=dtype)
            return u.mul_(2).sub_(1), 1.0
        g = torch.randn((b, d), generator=gen, device=dev, dtype=dtype)
        if mask is not None:
            g = g.mul_(mask)
        g = g / torch.linalg.vector_norm(g, dim=1, keepdim=True).clamp_min_(1e-12)
        dims = int(mask.sum()) if mask is not None else d
        r = torch.rand((b, 1), generator=gen, device=dev, dtype=dtype)
        return g.mul_(r.pow_(1.0 / max(dims, 1))), 1.0

    # ------------------------------------------------------------------ checks
    def warn_budget(self, eps: list[float]) -> None:
        if self.step_size is None:
            reach = self.rel_step_size * self.steps
            if reach < 1.0 - 1e-9:
                log.warning("%s: step_size * steps = %.3g * eps < eps: the attack cannot reach "
                            "its budget", self.name, reach)
            return
        short = [e for e in eps if self.step_size * self.steps < e - 1e-12]
        if short:
            log.warning("%s: step_size * steps = %.4g < eps for eps in %s: the attack cannot "
                        "reach its budget", self.name, self.step_size * self.steps, short)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(eps={self.eps}, norm={self.norm!r}, steps={self.steps}, "
                f"loss={self.loss!r})")


# ---------------------------------------------------------------------------------- helpers
#: ``skip_stationary`` remembers this many past iterates per row: a row that stopped moving
#: (period 1) or flips between two points (period 2, common for sign steps of size eps) reuses
#: the gradient it had there
_SEEN = 2


def _identity(t: torch.Tensor) -> torch.Tensor:
    return t


class _Index:
    """``t -> t[rows]``."""

    def __init__(self, rows: torch.Tensor) -> None:
        self.rows = rows

    def __call__(self, t: torch.Tensor) -> torch.Tensor:
        return t[self.rows]


def _update_best(
    x: torch.Tensor,
    obj: torch.Tensor,
    succ: torch.Tensor,
    best_x: torch.Tensor | None,
    best_obj: torch.Tensor | None,
    best_succ: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A successful iterate beats any unsuccessful one; otherwise the higher objective wins."""
    if best_x is None or best_obj is None or best_succ is None:
        return x, obj, succ
    better = (succ & ~best_succ) | ((succ == best_succ) & (obj > best_obj))
    return (torch.where(better[:, None], x, best_x), torch.where(better, obj, best_obj),
            best_succ | succ)
