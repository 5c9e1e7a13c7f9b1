"""The original's FGSM, BIM and MIM crafted together, with one gradient memory for all three.

The study's three attacks (:func:`.kdd99_faithful.faithful_attacks`) attack the same model
(``softmax(model)``) with the same labels (its own predictions; BIM and MIM "targeted" at them)
and the same loss, so the loss's input gradient at a point is one function shared by them. Their
steps are sign steps of size eps, clipped to the eps-ball, so the iterates live on the few
points ``x0 + eps * {-1, 0, 1}^D`` (up to float rounding), and MIM's momentum keeps most rows
cycling through points they have visited already (in 100 steps a row visits about a dozen).

:func:`craft_faithful` therefore computes the gradient once per distinct (row, point):

- one gradient at the clean inputs serves all three attacks: FGSM's step (untargeted) is the sign
  of its negation, bit for bit (the backward pass is linear in its seed, and float rounding is
  symmetric), and BIM's and MIM's first steps are its sign;
- BIM's and MIM's later iterates look their gradient up in a memory of every point the row
  visited (exact float equality, as ``skip_stationary`` compares an iterate with the last two),
  and only new points get a forward+backward pass, batched over the rows of a chunk.

The steps are the library's (:class:`~advsec.attacks.gradient.GradientAttack` with
``FixedStep``), op for op; the memory only replaces recomputations of a gradient at an iterate
seen before, the same equivalence ``skip_stationary`` uses, so the examples equal the library's
(``tests/test_reproduce_kdd99.py`` checks it, and the full study's tables are unchanged) from
about a ninth of the row-gradients the steps use (KDD Cup 99: 1.4 of 12.7 million on the
training set).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from advsec.attacks import BIM, FGSM, MIM
from advsec.attacks.gradient import GradientAttack
from advsec.experiments.reproductions.faithful import OwnPredictionAttack, softmax_model

__all__ = ["CraftResult", "GradientMemory", "craft_faithful", "supports"]

#: per-column odd multipliers of the position hash (fixed: the hash is only a shortcut, every
#: hit is checked for exact equality)
_MULT = torch.randint(1, 2**62, (64,), generator=torch.Generator().manual_seed(12345)) * 2 + 1


@dataclass
class CraftResult:
    """Adversarial inputs per attack key, and what they cost.

    Attributes:
        x_adv: ``(N, D)`` per attack key.
        seconds: wall time per attack key (FGSM: its step; the shared first gradient is
            BIM's, or MIM's without BIM).
        passes: row-gradients computed (forward+backward of one row) in all.
        lookups: row-gradients needed by the steps in all (computed or found in memory).
    """

    x_adv: dict[str, torch.Tensor]
    seconds: dict[str, float] = field(default_factory=dict)
    passes: int = 0
    lookups: int = 0


class GradientMemory:
    """The input gradient of the targeted faithful loss at every point visited, per row.

    For one chunk: ``x0`` ``(b, D)`` clean inputs, ``labels`` ``(b,)`` the model's own
    predictions. :meth:`gradient` returns ``d(-CE(softmax(model(x)), labels).sum()) / dx`` for
    ``x`` ``(b, D)`` (row ``i`` an iterate of row ``i`` of ``x0``), computing it only for rows
    whose point is not in memory (in one batched pass) and remembering those.
    """

    def __init__(self, prob: nn.Module, labels: torch.Tensor, *, dim: int) -> None:
        if dim > len(_MULT):
            raise ValueError(f"GradientMemory supports up to {len(_MULT)} columns, got {dim}")
        self.prob, self.labels = prob, labels
        b = len(labels)
        self.rows_key = torch.arange(b, dtype=torch.int64) * int(_MULT[-1])
        self.mult = _MULT[:dim]
        cap = 4 * b
        self.x = torch.empty((cap, dim), dtype=torch.float32)
        self.g = torch.empty((cap, dim), dtype=torch.float32)
        self.row = torch.empty(cap, dtype=torch.int64)
        self.size = 0
        self.keys = torch.empty(0, dtype=torch.int64)  # sorted
        self.slot = torch.empty(0, dtype=torch.int64)  # entry of each sorted key
        self.passes = self.lookups = 0

    def _hash(self, x: torch.Tensor) -> torch.Tensor:
        """``(b,)`` int64 keys of the rows' exact bits and their row numbers (wrapping)."""
        bits = x.view(torch.int32).to(torch.int64)
        return bits.mul_(self.mult).sum(dim=1).add_(self.rows_key)

    def gradient(self, x: torch.Tensor) -> torch.Tensor:
        """``(b, D)`` the gradient at ``x`` ``(b, D)``, new points computed and remembered."""
        b = len(x)
        self.lookups += b
        key = self._hash(x)
        grad = torch.empty_like(x)
        hit = torch.zeros(b, dtype=torch.bool)
        entry = torch.zeros(b, dtype=torch.int64)
        if self.size:
            pos = torch.searchsorted(self.keys, key).clamp_(max=len(self.keys) - 1)
            cand = self.slot[pos]
            rows = torch.arange(b)
            hit = ((self.keys[pos] == key) & (self.row[cand] == rows)
                   & (self.x[cand] == x).all(dim=1))
            entry = cand
        hits = torch.nonzero(hit).flatten()
        todo = torch.nonzero(~hit).flatten()
        if len(hits):
            grad[hits] = self.g[entry[hits]]
        if len(todo):
            part = x[todo]
            g = _targeted_gradient(self.prob, part, self.labels[todo])
            grad[todo] = g
            self._remember(part, g, todo, key[todo])
        return grad

    def _remember(self, x: torch.Tensor, g: torch.Tensor, rows: torch.Tensor,
                  key: torch.Tensor) -> None:
        n = len(x)
        if self.size + n > len(self.x):
            cap = max(2 * len(self.x), self.size + n)
            for name in ("x", "g", "row"):
                old = getattr(self, name)
                new = torch.empty((cap, *old.shape[1:]), dtype=old.dtype)
                new[: self.size] = old[: self.size]
                setattr(self, name, new)
        s = slice(self.size, self.size + n)
        self.x[s], self.g[s], self.row[s] = x, g, rows
        self.keys, order = torch.sort(torch.cat([self.keys, key]), stable=True)
        self.slot = torch.cat([self.slot, torch.arange(self.size, self.size + n)])[order]
        self.size += n
        self.passes += n


def _targeted_gradient(prob: nn.Module, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``d(-CE(prob(x), labels).sum()) / dx``, computed as ``GradientAttack._gradient`` does
    for a targeted cross-entropy attack (the loss on ``prob``'s outputs), on ``prob``'s device
    (the memory stays on the CPU: the gradient comes back there)."""
    param = next(prob.parameters(), None)
    dev = param.device if param is not None else x.device
    with torch.enable_grad():
        xg = x.detach().to(dev).requires_grad_(True)
        total = -F.cross_entropy(prob(xg), labels.to(dev), reduction="sum")
        (grad,) = torch.autograd.grad(total, xg)
    return grad.to(x.device)


def supports(attacks: Mapping[str, OwnPredictionAttack]) -> bool:
    """Whether :func:`craft_faithful` reproduces ``attacks`` exactly: FGSM (one step, eps),
    BIM and MIM targeted at the prediction, all L-inf, unbounded, without random start,
    FeatureSpace, mask or early stop, at most one of each."""
    kinds = {FGSM: False, BIM: True, MIM: True}
    seen: set[type] = set()
    for atk in attacks.values():
        a = atk.attack
        kind = type(a)
        if kind not in kinds or kind in seen or a.targeted != kinds[kind]:
            return False
        seen.add(kind)
        if (a.norm != "linf" or a.bounds is not None or a.feature_space is not None
                or a.random_start or a.early_stop or a.keep_best or a.evasion):
            return False
        if kind is FGSM and (a.steps != 1 or a.step_size is not None
                             or a.rel_step_size != 1.0):
            return False
        if kind is not FGSM and a.step_size is None:
            return False
        if kind is MIM and a.decay is None:
            return False
    return True


def craft_faithful(
    attacks: Mapping[str, OwnPredictionAttack],
    model: nn.Module,
    x: torch.Tensor,
    labels: torch.Tensor,
    *,
    eps: float,
    chunk: int = 16_384,
) -> CraftResult:
    """The adversarial inputs of every attack of ``attacks`` (see :func:`supports`) on ``x``
    ``(N, D)`` against ``model`` (logits; attacked as ``softmax(model)``, in eval mode) with
    ``labels`` ``(N,)`` (the model's own predictions: the labels of FGSM, the target of BIM and
    MIM), at budget ``eps``. Returns a :class:`CraftResult` keyed as ``attacks``.

    Rows are independent; ``chunk`` rows share one :class:`GradientMemory` (memory use grows
    with it, about 2 KB per row).
    """
    if not supports(attacks):
        raise ValueError("craft_faithful reproduces only the faithful FGSM, BIM and MIM calls")
    by_kind = {type(a.attack): (key, a.attack) for key, a in attacks.items()}
    x = torch.as_tensor(x).float().cpu()
    labels = torch.as_tensor(labels).long().cpu()
    prob = softmax_model(model)
    outs: dict[str, list[torch.Tensor]] = {key: [] for key in attacks}
    seconds = dict.fromkeys(attacks, 0.0)
    passes = lookups = 0
    training = model.training
    model.eval()
    try:
        for start in range(0, len(x), chunk):
            x0 = x[start : start + chunk]
            memory = GradientMemory(prob, labels[start : start + chunk], dim=x.shape[1])
            t0 = time.perf_counter()
            g0 = memory.gradient(x0)
            first = (by_kind.get(BIM) or by_kind.get(MIM) or by_kind[FGSM])[0]
            seconds[first] += time.perf_counter() - t0
            eps_t = torch.full((len(x0), 1), eps, dtype=x0.dtype)
            lo, hi = x0 - eps_t, x0 + eps_t
            for kind, (key, atk) in by_kind.items():
                t0 = time.perf_counter()
                if kind is FGSM:
                    alpha = float(torch.tensor(eps, dtype=x0.dtype))
                    out = torch.add(x0, torch.neg(g0).sign_(), alpha=alpha)
                else:
                    out = _iterate(atk, memory, x0, g0, lo, hi)
                outs[key].append(out)
                seconds[key] += time.perf_counter() - t0
            passes += memory.passes
            lookups += memory.lookups
    finally:
        model.train(training)
    x_adv = {key: torch.cat(parts) if parts else x.clone() for key, parts in outs.items()}
    return CraftResult(x_adv=x_adv, seconds=seconds, passes=passes, lookups=lookups)


def _iterate(atk: GradientAttack, memory: GradientMemory, x0: torch.Tensor,
             g0: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """BIM (``decay`` None) or MIM from ``x0``, the gradient there ``g0``: the library's
    ``FixedStep`` sign steps and momentum, then the clamp onto ``[lo, hi]`` (the ball)."""
    assert atk.step_size is not None
    alpha = float(torch.tensor(atk.step_size, dtype=x0.dtype))
    decay = atk.decay
    if decay is None:
        x = torch.add(x0, torch.sign(g0), alpha=alpha).clamp_(lo, hi)
        for _ in range(1, atk.steps):
            x = x.add_(memory.gradient(x).sign_(), alpha=alpha).clamp_(lo, hi)
        return x
    grad = g0.clone()
    momentum = grad.div_(grad.abs().mean(dim=1, keepdim=True).clamp_min_(1e-12))
    x = torch.add(x0, torch.sign(momentum), alpha=alpha).clamp_(lo, hi)
    for _ in range(1, atk.steps):
        grad = memory.gradient(x)
        scale = grad.abs().mean(dim=1, keepdim=True)
        if decay != 1.0:
            momentum.mul_(decay)
        momentum.addcdiv_(grad, scale.clamp_min_(1e-12))
        x = x.add_(torch.sign(momentum, out=grad), alpha=alpha).clamp_(lo, hi)
    return x
