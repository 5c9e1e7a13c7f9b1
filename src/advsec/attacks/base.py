"""The attack frame shared by every evasion attack.

:class:`Attack` resolves the model (an ``nn.Module`` returning logits, an advsec ``Detector``, or
for score-based attacks any scoring callable), checks inputs, chooses the rows to attack and their
targets (untargeted, targeted or evasion), stacks the batch once per epsilon so a whole sweep is
one call, puts the model in eval mode (restoring its mode after), times the call and scores the
result (:class:`~advsec.attacks.result.AttackResult`).

The one iterative gradient loop is :class:`~advsec.attacks.gradient.GradientAttack`; its step
rules live in :mod:`advsec.attacks.steps`, the projection in :mod:`advsec.attacks.projection`
and the constrained path's final in-ball repair in :mod:`advsec.attacks.repair`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from advsec.attacks.repair import repair_in_ball
from advsec.attacks.result import AttackResult
from advsec.models.inference import eval_mode

__all__ = ["Attack", "AttackResult", "Eps", "Forward", "as_module", "eval_mode"]

log = logging.getLogger(__name__)

Eps = float | Sequence[float]
Forward = Callable[[torch.Tensor], torch.Tensor]


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


class _Call(NamedTuple):
    """What :meth:`Attack._execute` hands back to ``__call__`` and ``run``."""

    outs: list[torch.Tensor]
    eps: list[float]
    x: torch.Tensor
    y: torch.Tensor
    tgt: torch.Tensor
    targeted: bool
    evasion: bool
    attacked: torch.Tensor | None
    benign: int
    seconds: float
    counts: dict[str, int]
    in_device: torch.device


# ---------------------------------------------------------------------------------- the frame
class Attack:
    """The frame shared by every evasion attack; subclasses implement :meth:`_attack_chunk`.

    Args:
        eps: perturbation budget in model-input units (a fraction of each feature's range when
            inputs come from a FeatureSpace); a float or a list (one result per value).
        norm: ``"linf"`` or ``"l2"``.
        targeted: if True, move towards ``target`` labels instead of away from ``y``.
        feature_space: a fitted FeatureSpace: only mutable columns move, bounds hold at every
            step and the result is repaired into a valid record at the end.
        bounds: the box for inputs without a FeatureSpace, ``(low, high)``, or ``None`` for no
            clipping (only for models on unbounded inputs, e.g. standardised features).
        evasion: attack only rows whose label is not the benign class, aiming at benign.
        benign_class: the benign class: an index, a label of the Detector's ``classes_`` or
            ``None`` (the schema's benign label when the model or space knows it, else
            ``"benign"`` if the Detector has that class, else 0).
        batch_size: rows per chunk (before stacking the epsilons).
        seed: seed for every random draw (random starts, Square's proposals).
    """

    name = "attack"

    def __init__(
        self,
        *,
        eps: Eps = 0.1,
        norm: str = "linf",
        targeted: bool = False,
        feature_space: Any = None,
        bounds: tuple[float, float] | None = (0.0, 1.0),
        evasion: bool = False,
        benign_class: int | str | None = None,
        batch_size: int = 4096,
        seed: int = 0,
    ) -> None:
        if norm not in ("linf", "l2"):
            raise ValueError(f"norm must be 'linf' or 'l2', got {norm!r}")
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        _eps_list(eps)
        self.eps = eps
        self.norm = norm
        self.targeted = targeted
        self.feature_space = feature_space
        self.bounds = bounds
        self.evasion = evasion
        self.benign_class = benign_class
        self.batch_size = int(batch_size)
        self.seed = int(seed)

    # ------------------------------------------------------------------ public API
    def __call__(
        self,
        model: Any,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        eps: Eps | None = None,
        target: torch.Tensor | int | str | None = None,
    ) -> torch.Tensor | list[torch.Tensor]:
        """Adversarial inputs: one ``(N, D)`` tensor, or a list of them when ``eps`` is a list."""
        eps_value = self.eps if eps is None else eps
        forward, module = self._resolve(model)
        with eval_mode(module):
            call = self._execute(model, forward, module, x, y, eps_value, target)
        return call.outs if _is_list(eps_value) else call.outs[0]

    def run(
        self,
        model: Any,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        eps: Eps | None = None,
        target: torch.Tensor | int | str | None = None,
        evaluate: bool = True,
        space: Any = None,
    ) -> AttackResult:
        """Run the attack for every epsilon and (with ``evaluate``) score the repaired result.

        Args:
            model: see the class docstring of the attack.
            x: ``(N, D)`` inputs (torch or NumPy).
            y: ``(N,)`` true class indices (or raw labels when ``model`` is a Detector).
            eps: overrides the attack's ``eps`` (a float or a list).
            target: target class indices ``(N,)``, one class index or label for all rows, or
                ``"benign"`` (evasion: only malicious rows are attacked, towards benign).
            evaluate: predict clean and adversarial rows and check validity (not timed).
            space: FeatureSpace used only to check validity (default: the attack's, else the
                Detector's ``feature_space_``); lets an unconstrained attack report how many
                of its records are not real records.
        """
        forward, module = self._resolve(model)
        with eval_mode(module):
            c = self._execute(model, forward, module, x, y, self.eps if eps is None else eps,
                              target, moved=False)
            n = len(c.x)
            result = AttackResult(
                attack=self.name, eps=c.eps, x_adv=c.outs,
                attacked=torch.ones(n, dtype=torch.bool, device=c.x.device)
                if c.attacked is None else c.attacked,
                y=c.y, target=c.tgt if c.targeted and not c.evasion else None,
                evasion=c.evasion, benign_class=c.benign, seconds=c.seconds,
                gradients=c.counts["gradients"], queries=c.counts["queries"],
                info={**self._info(), **{k: v for k, v in c.counts.items()
                                         if k not in ("gradients", "queries")}},
            )
            if evaluate:
                self._score(result, forward, c.x, space if space is not None else
                            self.feature_space if self.feature_space is not None else
                            getattr(model, "feature_space_", None))
        if c.in_device != c.x.device:
            result.x_adv = [t.to(c.in_device) for t in result.x_adv]
            result.x = None if result.x is None else result.x.to(c.in_device)
        return result

    def _execute(
        self,
        model: Any,
        forward: Forward,
        module: nn.Module | None,
        x: Any,
        y: Any,
        eps: Eps,
        target: torch.Tensor | int | str | None,
        *,
        moved: bool = True,
    ) -> _Call:
        """The attack itself (the model already in eval mode): checks, chunks, timing."""
        t0 = time.perf_counter()
        eps_list = _eps_list(eps)
        in_device = x.device if isinstance(x, torch.Tensor) else torch.device("cpu")
        dev, dtype = _device_dtype(module, x)
        x, y = self._check_inputs(model, x, y, dev, dtype)
        benign = self._benign_index(model)
        evasion = self.evasion or (isinstance(target, str) and target == "benign")
        targeted, tgt, attacked = self._targets(model, x, y, target, evasion, benign)
        self._warn_budget(eps_list)
        gen = torch.Generator(device=dev).manual_seed(self.seed) if self._random() else None
        counts = {"gradients": 0, "queries": 0}
        n, k = len(x), len(eps_list)
        if attacked is None:
            parts: list[list[torch.Tensor]] = []
            for start in range(0, n, self.batch_size):
                sl = slice(start, start + self.batch_size)
                parts.append(self._attack_chunk(forward, x[sl], y[sl], tgt[sl], targeted,
                                                eps_list, gen, counts))
            if n == 0:
                outs = [x.clone() for _ in eps_list]
            elif len(parts) == 1:
                outs = parts[0]
            else:
                outs = [torch.cat([p[i] for p in parts]) for i in range(k)]
        else:
            outs = [x.clone() for _ in eps_list]
            idx_all = torch.nonzero(attacked).flatten()
            for start in range(0, len(idx_all), self.batch_size):
                idx = idx_all[start : start + self.batch_size]
                advs = self._attack_chunk(forward, x[idx], y[idx], tgt[idx], targeted,
                                          eps_list, gen, counts)
                for out, adv in zip(outs, advs, strict=True):
                    out[idx] = adv
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        seconds = time.perf_counter() - t0
        if moved and in_device != dev:
            outs = [t.to(in_device) for t in outs]
        return _Call(outs, eps_list, x, y, tgt, targeted, evasion, attacked, benign, seconds,
                     counts, in_device)

    # ------------------------------------------------------------------ hooks
    def _attack_chunk(
        self,
        forward: Forward,
        x0: torch.Tensor,
        y: torch.Tensor,
        tgt: torch.Tensor,
        targeted: bool,
        eps_list: list[float],
        gen: torch.Generator | None,
        counts: dict[str, int],
    ) -> list[torch.Tensor]:
        """Attack one chunk ``x0`` ``(b, D)`` for every epsilon; one ``(b, D)`` per epsilon.
        ``gen``: the call's random stream (``None`` when :meth:`_random` is False)."""
        raise NotImplementedError

    def _random(self) -> bool:
        """Whether the attack draws random numbers (else no generator is made per call)."""
        return True

    def _resolve(self, model: Any) -> tuple[Forward, nn.Module | None]:
        module = as_module(model)
        return module, module

    def _warn_budget(self, eps_list: list[float]) -> None:
        """Subclasses log a warning when the attack cannot reach its budget."""

    def _info(self) -> dict[str, Any]:
        return {"norm": self.norm}

    # ------------------------------------------------------------------ shared helpers
    def _stack(
        self, x0: torch.Tensor, eps_list: list[float]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(k*b, D)`` copies of ``x0`` (no copy when k == 1) and the per-row eps ``(k*b, 1)``."""
        b, k = len(x0), len(eps_list)
        if k == 1:
            return x0, torch.full((b, 1), eps_list[0], device=x0.device, dtype=x0.dtype)
        eps_t = torch.tensor(eps_list, device=x0.device, dtype=x0.dtype)
        return x0.repeat(k, 1), eps_t.repeat_interleave(b)[:, None]

    def _box(self, device: torch.device, dtype: torch.dtype) -> tuple[Any, Any]:
        """Per-column ``(lower, upper)`` tensors (FeatureSpace) or scalars (``bounds``)."""
        if self.feature_space is not None:
            v = self.feature_space.torch_view(device)
            return v.lower.to(dtype), v.upper.to(dtype)
        if self.bounds is None:
            return None, None
        return float(self.bounds[0]), float(self.bounds[1])

    def _mutable(self, device: torch.device) -> torch.Tensor | None:
        if self.feature_space is None:
            return None
        return self.feature_space.torch_view(device).mutable

    def _repair(self, x: torch.Tensor, x0: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """The FeatureSpace's repair of ``x`` ``(M, D)``, kept inside the eps-ball around ``x0``
        (see :func:`advsec.attacks.repair.repair_in_ball`); ``x`` itself without a space."""
        if self.feature_space is None:
            return x
        return repair_in_ball(self.feature_space, x, x0, eps, norm=self.norm)


    def _score(self, result: AttackResult, forward: Forward, x: torch.Tensor, space: Any) -> None:
        from advsec.attacks.validity import valid_records

        result.x = x
        result.clean_pred = self._predict(forward, x)
        result.adv_pred = [self._predict(forward, xa) for xa in result.x_adv]
        if space is None:
            result.valid = [None for _ in result.x_adv]
        else:
            result.valid = [valid_records(space, xa, x) for xa in result.x_adv]

    def _predict(self, forward: Forward, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            preds = [forward(c).argmax(dim=1) for c in x.split(max(self.batch_size, 1))]
        return torch.cat(preds) if preds else torch.zeros(0, dtype=torch.long, device=x.device)

    def _check_inputs(
        self, model: Any, x: Any, y: Any, dev: torch.device, dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(x, torch.Tensor):
            x = torch.as_tensor(np.asarray(x))
        if x.ndim != 2:
            raise ValueError(f"x must be a (N, D) tensor, got shape {tuple(x.shape)}")
        if x.is_inference():
            x = x.clone()
        x = x.detach().to(dev, dtype)
        if not isinstance(y, torch.Tensor):
            arr = np.asarray(y)
            if arr.dtype.kind not in "iu" and hasattr(model, "encode_labels"):
                y = model.encode_labels(arr)
            else:
                y = torch.as_tensor(arr)
        y = y.detach().to(dev).long()
        if y.shape != (len(x),):
            raise ValueError(f"y must have shape ({len(x)},), got {tuple(y.shape)}")
        return x, y

    def _benign_index(self, model: Any) -> int:
        label = self.benign_class
        if isinstance(label, (int, np.integer)):
            return int(label)
        if label is None and self.feature_space is None and isinstance(model, nn.Module):
            return 0  # a bare network knows no class names
        classes = getattr(model, "classes_", None)
        names = None if classes is None else [str(c) for c in classes]
        if label is None:
            candidates = [space.schema.benign_label
                          for space in (self.feature_space, getattr(model, "feature_space_", None))
                          if space is not None and hasattr(space, "schema")]
            for cand in [*candidates, "benign", "normal"]:
                if names is not None and str(cand) in names:
                    return names.index(str(cand))
            return 0
        if names is None:
            raise ValueError(f"benign_class={label!r} is a label but the model has no classes_; "
                             f"pass the class index")
        if str(label) not in names:
            raise ValueError(f"benign class {label!r} is not one of the model's classes {names}")
        return names.index(str(label))

    def _targets(
        self,
        model: Any,
        x: torch.Tensor,
        y: torch.Tensor,
        target: torch.Tensor | int | str | None,
        evasion: bool,
        benign: int,
    ) -> tuple[bool, torch.Tensor, torch.Tensor | None]:
        """``(targeted, labels to aim at (N,), attacked rows (N,) or None for all rows)``."""
        n = len(x)
        if evasion:
            attacked = y != benign
            return True, torch.full((n,), benign, device=x.device, dtype=torch.long), attacked
        if target is None:
            if self.targeted:
                raise ValueError("a targeted attack needs target labels (or use evasion=True)")
            return False, y, None
        if isinstance(target, str):
            classes = getattr(model, "classes_", None)
            names = [str(c) for c in classes] if classes is not None else []
            if target not in names:
                raise ValueError(f"target {target!r} is not one of the model's classes {names}")
            target = names.index(target)
        if isinstance(target, (int, np.integer)):
            tgt = torch.full((n,), int(target), device=x.device, dtype=torch.long)
        else:
            tgt = torch.as_tensor(target, device=x.device).long()
        if tgt.shape != (n,):
            raise ValueError(f"target must have shape ({n},), got {tuple(tgt.shape)}")
        return True, tgt, None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(eps={self.eps}, norm={self.norm!r})"


# ---------------------------------------------------------------------------------- helpers
def _success(
    logits: torch.Tensor, y: torch.Tensor, tgt: torch.Tensor, targeted: bool
) -> torch.Tensor:
    pred = logits.argmax(dim=1)
    return pred == tgt if targeted else pred != y


def _eps_list(eps: Any) -> list[float]:
    values = [float(e) for e in eps] if _is_list(eps) else [float(eps)]
    if not values or any(e < 0 or not math.isfinite(e) for e in values):
        raise ValueError(f"eps must be finite and >= 0 (a float or a non-empty list), got {eps}")
    return values


def _is_list(eps: Any) -> bool:
    return (isinstance(eps, (list, tuple, np.ndarray))
            or (isinstance(eps, torch.Tensor) and eps.ndim == 1))


def _device_dtype(module: nn.Module | None, x: Any) -> tuple[torch.device, torch.dtype]:
    if module is not None:
        for p in module.parameters():
            return p.device, (p.dtype if p.dtype.is_floating_point else torch.float32)
    if isinstance(x, torch.Tensor):
        return x.device, (x.dtype if x.dtype.is_floating_point else torch.float32)
    return torch.device("cpu"), torch.float32
