"""The one iterative gradient-attack loop that every gradient attack configures.

An attack is a configuration of :class:`GradientAttack`: an objective (loss) to maximise, a step
rule (sign, L2-normalised, momentum), a projection (the eps-ball, then the valid region of a
:class:`~advsec.features.FeatureSpace` or the plain ``[0, 1]`` box) and options (random start,
restarts, early stop, best-point tracking). Everything inside the loop stays in torch on the
model's device.

Several epsilons are answered at once: the batch is stacked once per epsilon with a per-row
epsilon, so a whole sweep costs one loop (and FGSM without random start costs one gradient).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from advsec.attacks.losses import Objective, get_objective

__all__ = ["AttackResult", "GradientAttack", "as_module", "eval_mode"]

log = logging.getLogger(__name__)

Eps = float | Sequence[float]


def as_module(model: Any) -> nn.Module:
    """The logits network of ``model``: an ``nn.Module`` or anything with ``as_module()``."""
    if isinstance(model, nn.Module):
        return model
    if hasattr(model, "as_module"):
        return model.as_module()
    raise TypeError(
        f"expected a torch.nn.Module returning logits or an advsec Detector, got "
        f"{type(model).__name__}"
    )


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """Put ``module`` in eval mode for the block and restore its previous mode after."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)


@dataclass
class AttackResult:
    """What one attack call produced.

    Attributes:
        eps: the epsilons, in call order.
        x_adv: one ``(N, D)`` tensor per epsilon (on the input's device).
        attacked: ``(N,)`` bool, rows the attack was allowed to change (all rows, or only the
            malicious ones in evasion mode).
        seconds: wall time of the whole call.
        gradients: number of input-gradient evaluations (summed over epsilons).
    """

    eps: list[float]
    x_adv: list[torch.Tensor]
    attacked: torch.Tensor
    seconds: float
    gradients: int = 0
    info: dict[str, Any] = field(default_factory=dict)


class GradientAttack:
    """Iterative first-order attack; subclasses only set defaults.

    Args:
        eps: perturbation budget in model-input units (a fraction of each feature's range when
            inputs come from a FeatureSpace); a float or a list (one result per value).
        norm: ``"linf"`` or ``"l2"``.
        steps: number of gradient steps.
        step_size: absolute step size; if ``None``, ``rel_step_size * eps``.
        rel_step_size: step size as a fraction of eps (used when ``step_size`` is None).
        random_start: start from a uniform random point in the eps-ball.
        restarts: number of random restarts; a row keeps the first restart that fools the model.
        loss: ``"ce"`` (cross-entropy on logits), ``"margin"`` (logit margin, works for binary
            detectors) or a callable ``fn(logits, labels, targeted) -> (N,)`` to maximise.
        targeted: if True, move towards ``target`` labels instead of away from ``y``.
        decay: momentum decay factor (MI-FGSM); ``None`` disables momentum.
        early_stop: freeze a row as soon as it is adversarial (the loop ends when all are).
        keep_best: return, per row, the iterate with the highest objective (successful iterates
            preferred) rather than the last one.
        feature_space: a fitted FeatureSpace: only mutable columns move, bounds hold at every
            step and the result is repaired into a valid record at the end.
        bounds: the box for inputs without a FeatureSpace, ``(low, high)``, or ``None`` for no
            clipping (only for models on unbounded inputs, e.g. standardised features).
        evasion: attack only rows whose label is not ``benign_class``, aiming at ``benign_class``.
        benign_class: class index of "benign" for evasion mode.
        batch_size: rows per chunk (before stacking the epsilons).
        seed: seed for random starts.

    Call: ``attack(model, x, y, *, eps=None, target=None) -> x_adv`` with ``model`` an
    ``nn.Module`` returning logits ``(N, C)`` or an advsec ``Detector``, ``x`` ``(N, D)`` float32
    and ``y`` ``(N,)`` int64 class indices. Returns one ``(N, D)`` tensor, or a list of them when
    ``eps`` is a list. :meth:`run` returns an :class:`AttackResult` with timing details.
    """

    name = "gradient"

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
        feature_space: Any = None,
        bounds: tuple[float, float] | None = (0.0, 1.0),
        evasion: bool = False,
        benign_class: int = 0,
        batch_size: int = 4096,
        seed: int = 0,
    ) -> None:
        if norm not in ("linf", "l2"):
            raise ValueError(f"norm must be 'linf' or 'l2', got {norm!r}")
        if steps < 1 or restarts < 1 or batch_size < 1:
            raise ValueError("steps, restarts and batch_size must be >= 1")
        self.eps = eps
        self.norm = norm
        self.steps = int(steps)
        self.step_size = step_size
        self.rel_step_size = rel_step_size
        self.random_start = random_start
        self.restarts = int(restarts)
        self.loss = loss
        self.objective: Objective = get_objective(loss)
        self.targeted = targeted
        self.decay = decay
        self.early_stop = early_stop
        self.keep_best = keep_best
        self.feature_space = feature_space
        self.bounds = bounds
        self.evasion = evasion
        self.benign_class = benign_class
        self.batch_size = batch_size
        self.seed = seed

    # ------------------------------------------------------------------ public API
    def __call__(
        self,
        model: Any,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        eps: Eps | None = None,
        target: torch.Tensor | int | None = None,
    ) -> torch.Tensor | list[torch.Tensor]:
        eps_value = self.eps if eps is None else eps
        result = self.run(model, x, y, eps=eps_value, target=target)
        return result.x_adv if _is_list(eps_value) else result.x_adv[0]

    def run(
        self,
        model: Any,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        eps: Eps | None = None,
        target: torch.Tensor | int | None = None,
    ) -> AttackResult:
        """Run the attack for every epsilon; see the class docstring for shapes."""
        t0 = time.perf_counter()
        module = as_module(model)
        eps_list = [float(e) for e in (self.eps if eps is None else eps)] if _is_list(
            self.eps if eps is None else eps) else [float(self.eps if eps is None else eps)]
        if any(e < 0 or not math.isfinite(e) for e in eps_list):
            raise ValueError(f"eps must be finite and >= 0, got {eps_list}")
        x, y = self._check_inputs(module, x, y)
        targeted, tgt, attacked = self._targets(x, y, target)
        self._warn_budget(eps_list)
        outs = [x.clone() for _ in eps_list]
        n_grad = 0
        idx_all = torch.nonzero(attacked).flatten()
        with eval_mode(module):
            for start in range(0, len(idx_all), self.batch_size):
                idx = idx_all[start : start + self.batch_size]
                advs, grads = self._attack_chunk(module, x[idx], y[idx], tgt[idx], targeted,
                                                 eps_list)
                n_grad += grads
                for out, adv in zip(outs, advs, strict=True):
                    out[idx] = adv
        return AttackResult(eps_list, outs, attacked, time.perf_counter() - t0, n_grad)

    # ------------------------------------------------------------------ the loop
    def _attack_chunk(
        self,
        module: nn.Module,
        x0: torch.Tensor,
        y: torch.Tensor,
        tgt: torch.Tensor,
        targeted: bool,
        eps_list: list[float],
    ) -> tuple[list[torch.Tensor], int]:
        b, k = len(x0), len(eps_list)
        dev, dtype = x0.device, x0.dtype
        eps_t = torch.tensor(eps_list, device=dev, dtype=dtype).repeat_interleave(b)[:, None]
        alpha_t = (
            torch.full_like(eps_t, float(self.step_size))
            if self.step_size is not None
            else eps_t * self.rel_step_size
        )
        x0s = x0.repeat(k, 1)
        labels = (tgt if targeted else y).repeat(k)
        y_rep, tgt_rep = y.repeat(k), tgt.repeat(k)
        mask = self._grad_mask(dev, dtype)
        gen = torch.Generator(device=dev).manual_seed(self.seed) if self.random_start else None
        best_x = x0s.clone()
        found = torch.zeros(len(x0s), dtype=torch.bool, device=dev)
        n_grad = 0
        for restart in range(self.restarts):
            todo = ~found
            if not bool(todo.any()):
                break
            x, grads, succ = self._loop(module, x0s, labels, y_rep, tgt_rep, targeted, eps_t,
                                        alpha_t, mask, gen, b, k)
            n_grad += grads
            if restart == 0:
                best_x = x
            else:
                take = todo & succ
                best_x = torch.where(take[:, None], x, best_x)
            found |= succ
            if not self.random_start:
                break
        if self.feature_space is not None:
            best_x = self.feature_space.repair(best_x, x0s)
        return list(best_x.split(b)), n_grad

    def _loop(
        self,
        module: nn.Module,
        x0: torch.Tensor,
        labels: torch.Tensor,
        y: torch.Tensor,
        tgt: torch.Tensor,
        targeted: bool,
        eps: torch.Tensor,
        alpha: torch.Tensor,
        mask: torch.Tensor | None,
        gen: torch.Generator | None,
        b: int,
        k: int,
    ) -> tuple[torch.Tensor, int, torch.Tensor]:
        """One run from one start; returns ``(x_adv, gradient evaluations, success mask)``."""
        track = self.keep_best or self.early_stop or self.restarts > 1
        x = self._project(x0 + self._random_delta(x0, eps, mask, gen), x0, eps) if (
            gen is not None) else x0
        momentum = torch.zeros_like(x0) if self.decay is not None else None
        active = torch.ones(len(x0), dtype=torch.bool, device=x0.device)
        best_x, best_obj = x, torch.full((len(x0),), -math.inf, device=x0.device)
        best_succ = torch.zeros(len(x0), dtype=torch.bool, device=x0.device)
        n_grad = 0
        for it in range(self.steps):
            if it == 0 and gen is None and k > 1:
                # without a random start every epsilon copy starts at x0: one gradient serves all
                grad, logits = self._gradient(module, x[:b], labels[:b], targeted)
                grad, logits = grad.repeat(k, 1), logits.repeat(k, 1)
            else:
                grad, logits = self._gradient(module, x, labels, targeted)
            n_grad += 1
            if track:
                best_x, best_obj, best_succ = self._update_best(
                    x, logits, labels, y, tgt, targeted, best_x, best_obj, best_succ)
                if self.early_stop:
                    active = ~best_succ
                    if not bool(active.any()):
                        break
            if mask is not None:
                grad = grad * mask
            x_new = self._project(x + alpha * self._direction(grad, momentum), x0, eps)
            x = torch.where(active[:, None], x_new, x) if self.early_stop else x_new
        if track:
            with torch.no_grad():
                logits = module(x)
            best_x, best_obj, best_succ = self._update_best(
                x, logits, labels, y, tgt, targeted, best_x, best_obj, best_succ)
            return (best_x if self.keep_best or self.early_stop else x), n_grad, best_succ
        return x, n_grad, torch.zeros(len(x0), dtype=torch.bool, device=x0.device)

    def _gradient(
        self, module: nn.Module, x: torch.Tensor, labels: torch.Tensor, targeted: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.detach().requires_grad_(True)
        logits = module(x)
        obj = self.objective(logits, labels, targeted)
        (grad,) = torch.autograd.grad(obj.sum(), x)
        return grad, logits.detach()

    def _direction(self, grad: torch.Tensor, momentum: torch.Tensor | None) -> torch.Tensor:
        if momentum is not None:
            scale = grad.abs().mean(dim=1, keepdim=True).clamp_min(1e-12)
            momentum.mul_(self.decay).add_(grad / scale)
            grad = momentum
        if self.norm == "linf":
            return grad.sign()
        norm = grad.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return grad / norm

    def _project(self, x: torch.Tensor, x0: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        if self.norm == "linf":
            x = torch.clamp(x, x0 - eps, x0 + eps)
        else:
            delta = x - x0
            norm = delta.norm(dim=1, keepdim=True).clamp_min(1e-12)
            x = x0 + delta * torch.clamp(eps / norm, max=1.0)
        if self.feature_space is not None:
            return self.feature_space.project(x, x0)
        if self.bounds is not None:
            return torch.clamp(x, self.bounds[0], self.bounds[1])
        return x

    def _random_delta(
        self,
        x0: torch.Tensor,
        eps: torch.Tensor,
        mask: torch.Tensor | None,
        gen: torch.Generator | None,
    ) -> torch.Tensor:
        if self.norm == "linf":
            u = torch.rand(x0.shape, generator=gen, device=x0.device, dtype=x0.dtype)
            delta = (2 * u - 1) * eps
        else:
            g = torch.randn(x0.shape, generator=gen, device=x0.device, dtype=x0.dtype)
            if mask is not None:
                g = g * mask
            g = g / g.norm(dim=1, keepdim=True).clamp_min(1e-12)
            r = torch.rand((len(x0), 1), generator=gen, device=x0.device, dtype=x0.dtype)
            delta = g * eps * r ** (1.0 / x0.shape[1])
        return delta if mask is None else delta * mask

    def _update_best(
        self,
        x: torch.Tensor,
        logits: torch.Tensor,
        labels: torch.Tensor,
        y: torch.Tensor,
        tgt: torch.Tensor,
        targeted: bool,
        best_x: torch.Tensor,
        best_obj: torch.Tensor,
        best_succ: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            obj = self.objective(logits, labels, targeted)
            pred = logits.argmax(dim=1)
            succ = pred == tgt if targeted else pred != y
            # a successful iterate beats any unsuccessful one; otherwise the higher objective wins
            better = (succ & ~best_succ) | ((succ == best_succ) & (obj > best_obj))
            better &= ~best_succ if self.early_stop else torch.ones_like(better)
            best_x = torch.where(better[:, None], x, best_x)
            best_obj = torch.where(better, obj, best_obj)
            return best_x, best_obj, best_succ | succ

    # ------------------------------------------------------------------ checks
    def _grad_mask(self, device: torch.device, dtype: torch.dtype) -> torch.Tensor | None:
        if self.feature_space is None:
            return None
        return self.feature_space.torch_view(device).mutable.to(dtype)

    def _check_inputs(
        self, module: nn.Module, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(x, torch.Tensor) or x.ndim != 2:
            raise ValueError(f"x must be a (N, D) torch tensor, got {getattr(x, 'shape', x)}")
        try:
            dev = next(module.parameters()).device
        except StopIteration:
            dev = x.device
        x = x.detach().to(dev, torch.float32)
        y = torch.as_tensor(y, device=dev).long()
        if y.shape != (len(x),):
            raise ValueError(f"y must have shape ({len(x)},), got {tuple(y.shape)}")
        return x, y

    def _targets(
        self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | int | None
    ) -> tuple[bool, torch.Tensor, torch.Tensor]:
        n = len(x)
        if self.evasion:
            attacked = y != self.benign_class
            return True, torch.full((n,), self.benign_class, device=x.device), attacked
        attacked = torch.ones(n, dtype=torch.bool, device=x.device)
        if target is None:
            if self.targeted:
                raise ValueError("a targeted attack needs target labels (or use evasion=True)")
            return False, y, attacked
        tgt = (torch.full((n,), int(target), device=x.device) if isinstance(target, int)
               else torch.as_tensor(target, device=x.device).long())
        if tgt.shape != (n,):
            raise ValueError(f"target must have shape ({n},), got {tuple(tgt.shape)}")
        return True, tgt, attacked

    def _warn_budget(self, eps_list: list[float]) -> None:
        if self.step_size is None:
            reach = self.rel_step_size * self.steps
            if reach < 1.0 - 1e-9 and not self.random_start:
                log.warning("%s: rel_step_size * steps = %.3g < 1: the attack cannot reach eps",
                            self.name, reach)
            return
        short = [e for e in eps_list if self.step_size * self.steps < e - 1e-12]
        if short:
            log.warning("%s: step_size * steps = %.4g < eps for eps in %s: the attack cannot "
                        "reach its budget", self.name, self.step_size * self.steps, short)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(eps={self.eps}, norm={self.norm!r}, steps={self.steps}, "
                f"loss={self.loss!r})")


def _is_list(eps: Any) -> bool:
    return isinstance(eps, (list, tuple)) or (isinstance(eps, torch.Tensor) and eps.ndim == 1)
