"""The attack frame and the one iterative gradient loop that every gradient attack configures.

:class:`Attack` is the common frame of every evasion attack: it resolves the model (an
``nn.Module`` returning logits, an advsec ``Detector``, or for score-based attacks any scoring
callable), checks inputs, chooses the rows to attack and their targets (untargeted, targeted or
evasion), stacks the batch once per epsilon so a whole sweep is one call, puts the model in eval
mode (restoring its mode after), times the call and scores the result.

:class:`GradientAttack` is the one iterative first-order loop: random start, objective (on
logits), input gradient, step rule, projection (eps-ball, then the valid region of a
:class:`~advsec.features.FeatureSpace` or the plain ``[0, 1]`` box), optional early stop and
best-point tracking, random restarts, and the final repair. An attack is a configuration of it;
attacks that need a different update (momentum, APGD's step-size schedule) plug in a
:class:`StepRule`. Everything inside the loop stays in torch on the model's device.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from advsec.attacks.losses import Objective, get_objective

__all__ = [
    "Attack",
    "AttackResult",
    "Eps",
    "FixedStep",
    "GradientAttack",
    "Projector",
    "StepRule",
    "as_module",
    "eval_mode",
]

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


@contextlib.contextmanager
def eval_mode(module: nn.Module | None) -> Iterator[nn.Module | None]:
    """Put ``module`` in eval mode for the block and restore every submodule's mode after."""
    if module is None:
        yield None
        return
    modes = [(m, m.training) for m in module.modules()]
    if not any(training for _, training in modes):  # already in eval mode: nothing to do
        yield module
        return
    module.eval()
    try:
        yield module
    finally:
        for m, training in modes:
            m.training = training


# ---------------------------------------------------------------------------------- results
@dataclass
class AttackResult:
    """What one attack call produced (one entry per epsilon, in call order).

    Attributes:
        attack: the attack's name.
        eps: the epsilons.
        x_adv: one ``(N, D)`` tensor per epsilon, on the input's device. Rows that were not
            attacked (benign rows in evasion mode) are the clean inputs.
        attacked: ``(N,)`` bool, rows the attack was allowed to change.
        y: ``(N,)`` true class indices.
        target: ``(N,)`` target class indices, or ``None`` for an untargeted attack.
        evasion: whether this was an evasion attack (malicious rows -> benign).
        benign_class: index of the benign class (for detection rate and evasion).
        seconds: wall time of the attack itself (excluding the scoring below).
        gradients: input-gradient evaluations (batched forward+backward passes).
        queries: forward-only model evaluations (batched), e.g. best-point checks or Square.
        clean_pred: ``(N,)`` predicted classes on the clean inputs (``None`` if not scored).
        adv_pred: per epsilon, ``(N,)`` predicted classes on the (repaired) adversarial inputs.
        valid: per epsilon, ``(N,)`` bool NumPy array, True where the adversarial row decodes
            to a valid record (``None`` without a FeatureSpace to check against).
        info: attack settings and extra counters.
    """

    attack: str
    eps: list[float]
    x_adv: list[torch.Tensor]
    attacked: torch.Tensor
    y: torch.Tensor
    target: torch.Tensor | None
    evasion: bool
    benign_class: int
    seconds: float
    gradients: int = 0
    queries: int = 0
    clean_pred: torch.Tensor | None = None
    adv_pred: list[torch.Tensor] = field(default_factory=list)
    valid: list[np.ndarray | None] = field(default_factory=list)
    x: torch.Tensor | None = field(default=None, repr=False)
    info: dict[str, Any] = field(default_factory=dict)

    def eligible(self) -> torch.Tensor:
        """``(N,)`` bool: rows the success rate is measured on.

        Untargeted: attacked rows classified correctly before the attack. Targeted: attacked rows
        not already predicted as their target. Evasion: malicious rows the detector caught.
        """
        self._check_scored()
        assert self.clean_pred is not None
        if self.evasion:
            return self.attacked & (self.y != self.benign_class) & (
                self.clean_pred != self.benign_class)
        if self.target is not None:
            return self.attacked & (self.clean_pred != self.target)
        return self.attacked & (self.clean_pred == self.y)

    def success(self, i: int = 0) -> torch.Tensor:
        """``(N,)`` bool: the ``i``-th epsilon's (repaired) adversarial row reached its goal."""
        self._check_scored()
        pred = self.adv_pred[i]
        if self.evasion:
            return self.attacked & (pred == self.benign_class)
        if self.target is not None:
            return self.attacked & (pred == self.target)
        return self.attacked & (pred != self.y)

    @property
    def success_rate(self) -> list[float]:
        """Per epsilon: share of :meth:`eligible` rows where the attack succeeded (NaN if none)."""
        pool = self.eligible()
        n = int(pool.sum())
        return [float((self.success(i) & pool).sum()) / n if n else math.nan
                for i in range(len(self.eps))]

    @property
    def valid_share(self) -> list[float | None]:
        """Per epsilon: share of attacked rows whose record passes validation after decoding."""
        att = self.attacked.cpu().numpy()
        out: list[float | None] = []
        for v in self.valid:
            out.append(None if v is None or not att.any() else float(v[att].mean()))
        return out

    def table(self) -> pd.DataFrame:
        """One row per epsilon: ``attack, eps, accuracy, detection_rate, attack_success_rate,
        mean_linf, max_linf, mean_l2, valid_share, n_attacked, seconds``.

        ``seconds`` is the call's time divided evenly between its epsilons (one call answers
        them all). Perturbation norms are over attacked rows.
        """
        self._check_scored()
        rows = []
        y, att = self.y, self.attacked
        mal = y != self.benign_class
        rates, shares = self.success_rate, self.valid_share
        for i, e in enumerate(self.eps):
            pred = self.adv_pred[i]
            delta = (self.x_adv[i] - self.x.to(self.x_adv[i].device))[att.to(self.x_adv[i].device)]
            has = len(delta) > 0
            rows.append({
                "attack": self.attack,
                "eps": e,
                "accuracy": float((pred == y).float().mean()) if len(y) else math.nan,
                "detection_rate": float((pred[mal] != self.benign_class).float().mean())
                if bool(mal.any()) else math.nan,
                "attack_success_rate": rates[i],
                "mean_linf": float(delta.abs().amax(dim=1).mean()) if has else 0.0,
                "max_linf": float(delta.abs().max()) if has else 0.0,
                "mean_l2": float(delta.norm(dim=1).mean()) if has else 0.0,
                "valid_share": math.nan if shares[i] is None else shares[i],
                "n_attacked": int(att.sum()),
                "seconds": self.seconds / max(len(self.eps), 1),
            })
        return pd.DataFrame(rows)

    def _check_scored(self) -> None:
        if self.clean_pred is None or self.x is None:
            raise RuntimeError("this result was produced with evaluate=False; nothing to score")


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
        result = self.run(model, x, y, eps=eps_value, target=target, evaluate=False)
        return result.x_adv if _is_list(eps_value) else result.x_adv[0]

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
        t0 = time.perf_counter()
        forward, module = self._resolve(model)
        eps_list = _eps_list(self.eps if eps is None else eps)
        in_device = x.device if isinstance(x, torch.Tensor) else torch.device("cpu")
        dev, dtype = _device_dtype(module, x)
        x, y = self._check_inputs(model, x, y, dev, dtype)
        benign = self._benign_index(model)
        evasion = self.evasion or (isinstance(target, str) and target == "benign")
        targeted, tgt, attacked = self._targets(model, x, y, target, evasion, benign)
        self._warn_budget(eps_list)
        gen = torch.Generator(device=dev).manual_seed(self.seed)
        counts = {"gradients": 0, "queries": 0}
        n, k = len(x), len(eps_list)
        with eval_mode(module):
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
            result = AttackResult(
                attack=self.name, eps=eps_list, x_adv=outs,
                attacked=torch.ones(n, dtype=torch.bool, device=dev) if attacked is None
                else attacked,
                y=y, target=tgt if targeted and not evasion else None, evasion=evasion,
                benign_class=benign, seconds=seconds, gradients=counts["gradients"],
                queries=counts["queries"], info=self._info(),
            )
            if evaluate:
                self._score(result, forward, x, space if space is not None else
                            self.feature_space if self.feature_space is not None else
                            getattr(model, "feature_space_", None))
        if in_device != dev:
            result.x_adv = [t.to(in_device) for t in result.x_adv]
            result.x = None if result.x is None else result.x.to(in_device)
        return result

    # ------------------------------------------------------------------ hooks
    def _attack_chunk(
        self,
        forward: Forward,
        x0: torch.Tensor,
        y: torch.Tensor,
        tgt: torch.Tensor,
        targeted: bool,
        eps_list: list[float],
        gen: torch.Generator,
        counts: dict[str, int],
    ) -> list[torch.Tensor]:
        """Attack one chunk ``x0`` ``(b, D)`` for every epsilon; one ``(b, D)`` per epsilon."""
        raise NotImplementedError

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
        """The FeatureSpace's repair, kept inside the eps-ball.

        Quantised numeric columns (integers; continuous values the space rounds to fixed
        decimals) are first put on their grid: the nearest grid value when it stays in the ball,
        else the grid value next to the iterate on the original's side (never further from the
        original than the iterate). The space then repairs one-hot blocks, relations and the
        rest. Columns the repair still pushed out of the ball (a flipped category when
        ``eps < 1``, a relation repair) get their original value back and the space repairs
        once more.
        """
        if self.feature_space is None:
            return x
        space = self.feature_space
        xr = space.repair(self._round_to_grid(x, x0, eps), x0)
        tol = 1e-6
        if self.norm == "linf":
            bad = (xr - x0).abs() > eps + tol
        else:
            over = torch.linalg.vector_norm(xr - x0, dim=1, keepdim=True) > eps * (1 + 1e-5) + tol
            bad = over & ((xr - x0).abs() > (x - x0).abs() + tol)
        rows = torch.nonzero(bad.any(dim=1)).flatten()
        if len(rows) == len(x):
            xr = space.repair(torch.where(bad, x0, xr), x0)
        elif len(rows):
            xr[rows] = space.repair(torch.where(bad[rows], x0[rows], xr[rows]), x0[rows])
        return xr

    def _round_to_grid(self, x: torch.Tensor, x0: torch.Tensor,
                       eps: torch.Tensor) -> torch.Tensor:
        plan = self._grid_plan(x.device)
        if plan is None or len(x) == 0:
            return x
        out = x.clone()
        for cols, log, span, lo, low, high, scale in plan:
            xc, x0c = x[:, cols], x0[:, cols]
            t = xc.to(torch.float64).clamp_(0.0, 1.0).mul_(span).add_(lo)
            raw = (torch.expm1(t) if log else t).clamp_(low, high)
            g = raw.mul_(scale)
            near = torch.floor(g + 0.5)
            xn = _grid_to_model(near, log, span, lo, low, high, scale)
            e = eps.to(torch.float64)
            if self.norm == "linf":
                ok = (xn - x0c).abs_() <= e
            else:
                rest = ((x - x0).to(torch.float64).pow(2).sum(1, keepdim=True)
                        - (xc - x0c).to(torch.float64).pow(2).sum(1, keepdim=True))
                ok = (rest + (xn - x0c).pow(2).sum(1, keepdim=True)) <= e * e
            new = xn.to(x.dtype)
            far = torch.nonzero(~ok)
            if len(far):  # the nearest grid value leaves the ball: the one towards the original
                r, c = far[:, 0], far[:, 1]
                toward = near[r, c] - torch.sign(near[r, c] - g[r, c])
                toward = torch.where(g[r, c] == near[r, c], near[r, c], toward)
                new[r, c] = _grid_to_model(toward, log, span[c], lo[c], low[c], high[c],
                                           scale[c]).to(x.dtype)
            # an unchanged grid value keeps the original bits
            out[:, cols] = torch.where((new - x0c).abs() <= 1e-7, x0c, new)
        return out

    def _grid_plan(self, device: torch.device) -> list[tuple[Any, ...]] | None:
        """Mutable quantised numeric columns of the space, grouped by transform (cached)."""
        cache = self.__dict__.setdefault("_grid_plans", {})
        key = (id(self.feature_space), str(device))
        if key in cache:
            return cache[key]
        v = self.feature_space.torch_view(device)
        scale_all = getattr(v, "round_scale", None)
        quantised = v.integer if scale_all is None else v.integer | (scale_all > 0)
        cols = torch.nonzero(quantised & v.mutable & v.numeric).flatten()
        plan: list[tuple[Any, ...]] | None = []
        for log in (True, False):
            sel = cols[v.log1p[cols] == log]
            if len(sel) == 0:
                continue
            scale = (torch.ones(len(sel), dtype=torch.float64, device=device)
                     if scale_all is None else torch.where(
                         v.integer[sel], torch.ones_like(v.span[sel]), scale_all[sel]))
            plan.append((sel, log, v.span[sel], v.lo[sel], v.raw_lower[sel], v.raw_upper[sel],
                         scale))
        plan = plan or None
        cache[key] = plan
        return plan

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


# ---------------------------------------------------------------------------------- projection
class Projector:
    """Projection onto the eps-ball around ``x0`` intersected with the valid region.

    L-inf: the ball, the box and, with a FeatureSpace, its per-column bounds and immutable
    columns (pinned to ``x0``) fold into one per-element ``[lo, hi]`` computed once, so a step
    costs one in-place clamp; that is exactly the FeatureSpace's relaxed per-step projection
    (bounds and immutables from its ``torch_view``), whose full ``project`` then runs once, at
    the start of its final ``repair``. L2 (and L-inf without the ball): radial shrink onto the
    ball, the box, then the FeatureSpace's ``project`` at every step. Calls may modify their
    argument in place.

    Args:
        x0: ``(M, D)`` centres; eps: ``(M, 1)`` radii; norm: ``"linf"`` or ``"l2"``.
        lower, upper: box bounds (scalars, ``(D,)`` tensors or ``None``).
        mutable: ``(D,)`` bool or ``None``; space: FeatureSpace or ``None``.
        ball: False skips the ball (only when the caller knows every iterate stays inside it).
    """

    def __init__(
        self,
        x0: torch.Tensor,
        eps: torch.Tensor,
        *,
        norm: str,
        lower: Any,
        upper: Any,
        mutable: torch.Tensor | None,
        space: Any,
        ball: bool = True,
    ) -> None:
        self.x0, self.eps, self.norm, self.space = x0, eps, norm, space
        self.lower, self.upper = lower, upper
        self.lo: torch.Tensor | None = None
        self.hi: torch.Tensor | None = None
        if norm == "linf" and ball:
            lo, hi = x0 - eps, x0 + eps
            if lower is not None:
                lo = torch.maximum(lo, lower) if isinstance(lower, torch.Tensor) else lo.clamp_(
                    min=lower)
                hi = torch.minimum(hi, upper) if isinstance(upper, torch.Tensor) else hi.clamp_(
                    max=upper)
            if mutable is not None:
                lo = torch.where(mutable, lo, x0)
                hi = torch.where(mutable, hi, x0)
            self.lo, self.hi = lo, hi
        self.ball = ball

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.lo is not None:
            return x.clamp_(self.lo, self.hi)
        if self.ball and self.norm == "l2":
            delta = x - self.x0
            norm = torch.linalg.vector_norm(delta, dim=1, keepdim=True).clamp_min_(1e-12)
            x = torch.addcmul(self.x0, delta, torch.clamp(self.eps / norm, max=1.0))
        if self.lower is not None:
            x = x.clamp_(self.lower, self.upper)
        if self.space is not None:
            x = self.space.project(x, self.x0)
        return x

    def subset(self, rows: torch.Tensor) -> Projector:
        """The projector for the rows ``rows`` only."""
        p = object.__new__(Projector)
        p.__dict__.update(self.__dict__)
        p.x0, p.eps = self.x0[rows], self.eps[rows]
        if self.lo is not None and self.hi is not None:
            p.lo, p.hi = self.lo[rows], self.hi[rows]
        return p


# ---------------------------------------------------------------------------------- step rules
class StepRule:
    """How :class:`GradientAttack` turns the gradient at the current iterate into the next one.

    The engine calls :meth:`start` once per run (per restart) and :meth:`step` once per
    iteration with the current iterate ``x`` ``(M, D)``, the objective's input gradient there
    (masked to mutable columns when the rule asks for it) and the objective ``(M,)``. ``step``
    returns the next iterate, already projected with ``project``; it may overwrite ``grad``.
    """

    #: whether the gradient must be zeroed on immutable columns before :meth:`step`
    needs_mask = False

    #: whether :meth:`step` uses the objective (else the engine may skip computing it per row)
    needs_objective = False
    #: set by the engine when nothing else holds the iterate: ``step`` may update it in place
    owns_x = False

    def start(
        self,
        attack: GradientAttack,
        x0: torch.Tensor,
        eps: torch.Tensor,
        alpha: torch.Tensor | float,
        project: Projector,
    ) -> None:
        """``alpha``: the step size, ``(M, 1)`` per row or one float for every row."""
        self.attack, self.x0, self.eps, self.alpha, self.project = attack, x0, eps, alpha, project

    def step(self, it: int, x: torch.Tensor, grad: torch.Tensor, obj: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def direction_step(self, x: torch.Tensor, grad: torch.Tensor, size: torch.Tensor | float,
                       *, inplace: bool = True, signed: bool = False) -> torch.Tensor:
        """``x + size * d(grad)``, ``d`` the steepest-ascent direction of the norm.

        L-inf: ``d = sign(grad)``; L2: ``d = grad / ||grad||_2``. ``size``: ``(M, 1)`` or a
        float. ``inplace`` lets the sign overwrite ``grad``; ``signed``: ``grad`` already is a
        sign. The result is a new tensor, or ``x`` updated in place when the rule owns it.
        """
        if self.attack.norm == "linf":
            d = grad if signed else grad.sign_() if inplace else torch.sign(grad)
            if self.owns_x:
                return x.add_(d, alpha=size) if isinstance(size, float) else x.addcmul_(size, d)
            # d is ours to overwrite: the new iterate takes its memory (no allocation)
            if isinstance(size, float):
                return torch.add(x, d, alpha=size, out=d)
            return torch.addcmul(x, size, d, out=d)
        norm = torch.linalg.vector_norm(grad, dim=1, keepdim=True).clamp_min_(1e-12)
        scale = norm.reciprocal_().mul_(size)
        if self.owns_x:
            return x.addcmul_(scale, grad)
        return torch.addcmul(x, scale, grad, out=grad) if inplace else torch.addcmul(x, scale, grad)


class FixedStep(StepRule):
    """Fixed step size ``alpha``: sign steps (L-inf) or normalised-gradient steps (L2), with
    optional MI-FGSM momentum ``g <- decay * g + grad / mean|grad|`` (per row)."""

    #: FixedStep keeps no reference to past iterates: the engine may let it step in place
    may_own_x = True

    def __init__(self, decay: float | None = None) -> None:
        self.decay = decay
        self.needs_mask = decay is not None
        self.momentum: torch.Tensor | None = None

    def start(self, attack: GradientAttack, x0: torch.Tensor, eps: torch.Tensor,
              alpha: torch.Tensor | float, project: Projector) -> None:
        super().start(attack, x0, eps, alpha, project)
        self.needs_mask = self.decay is not None or attack.norm == "l2"
        self.momentum = None

    def step(self, it: int, x: torch.Tensor, grad: torch.Tensor, obj: torch.Tensor) -> torch.Tensor:
        if self.decay is not None:
            if self.momentum is None:
                self.buffer = torch.empty_like(grad)  # reused every step: no allocation
                scale = torch.abs(grad, out=self.buffer).mean(dim=1, keepdim=True)
                self.momentum = grad.div_(scale.clamp_min_(1e-12))
                return self.project(self.direction_step(x, self.momentum, self.alpha,
                                                        inplace=False))
            scale = torch.abs(grad, out=self.buffer).mean(dim=1, keepdim=True)
            if self.decay != 1.0:
                self.momentum.mul_(self.decay)
            self.momentum.addcdiv_(grad, scale.clamp_min_(1e-12))
            if self.attack.norm == "linf":  # sign(momentum) into the spent gradient's memory
                return self.project(self.direction_step(
                    x, torch.sign(self.momentum, out=grad), self.alpha, signed=True))
            return self.project(self.direction_step(x, self.momentum, self.alpha,
                                                    inplace=False))
        return self.project(self.direction_step(x, grad, self.alpha))


# ---------------------------------------------------------------------------------- the engine
class GradientAttack(Attack):
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
        benign_class: int | str | None = None,
        batch_size: int = 4096,
        seed: int = 0,
    ) -> None:
        super().__init__(eps=eps, norm=norm, targeted=targeted, feature_space=feature_space,
                         bounds=bounds, evasion=evasion, benign_class=benign_class,
                         batch_size=batch_size, seed=seed)
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

    # ------------------------------------------------------------------ hooks for subclasses
    def _step_rule(self) -> StepRule:
        """A fresh step rule for one run of the loop."""
        return FixedStep(self.decay)

    def _reach_within_ball(self) -> bool:
        """True when every iterate provably stays in the L-inf ball (one step of size <= eps)."""
        return (self.norm == "linf" and self.steps == 1 and not self.random_start
                and self.step_size is None and self.rel_step_size <= 1.0
                and type(self)._step_rule is GradientAttack._step_rule)

    # ------------------------------------------------------------------ one chunk
    def _attack_chunk(
        self,
        forward: Forward,
        x0: torch.Tensor,
        y: torch.Tensor,
        tgt: torch.Tensor,
        targeted: bool,
        eps_list: list[float],
        gen: torch.Generator,
        counts: dict[str, int],
    ) -> list[torch.Tensor]:
        module = forward
        b = len(x0)
        dev, dtype = x0.device, x0.dtype
        x0s, eps_t = self._stack(x0, eps_list)
        k = len(eps_list)
        alpha_t: torch.Tensor | float
        if self.step_size is not None:
            alpha_t = self._scalar(self.step_size, 1.0, dtype)
        elif k == 1:  # one eps: one step size, rounded as the per-row tensor would be
            alpha_t = self._scalar(eps_list[0], self.rel_step_size, dtype)
        else:
            alpha_t = eps_t if self.rel_step_size == 1.0 else eps_t * self.rel_step_size
        labels = tgt if targeted else y
        rep = (lambda t: t) if k == 1 else (lambda t: t.repeat(k))
        labels_s, y_s, tgt_s = rep(labels), rep(y), rep(tgt)
        lower, upper = self._box(dev, dtype)
        mutable = self._mutable(dev)
        project = Projector(x0s, eps_t, norm=self.norm, lower=lower, upper=upper,
                            mutable=mutable, space=self.feature_space,
                            ball=not self._reach_within_ball())
        mask = None if mutable is None else mutable.to(dtype)
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
                delta, unit = self._random_delta(b, x0.shape[1], dev, dtype, mask, gen)
                delta = delta if k == 1 else delta.repeat(k, 1)
                start = project(torch.addcmul(x0s, delta, eps_t * unit))
            sub = _identity if rows is None else _Index(rows)
            x = self._loop(module, sub(x0s), sub(start), sub(labels_s), sub(y_s), sub(tgt_s),
                           targeted, sub(eps_t),
                           alpha_t if isinstance(alpha_t, float) else sub(alpha_t), mask,
                           project if rows is None else project.subset(rows),
                           b if (k > 1 and not self.random_start) else None, counts)
            if restarts == 1:
                best_x = x
                break
            # judge each restart on its repaired result, keep the better per row
            x = self._repair(x, sub(x0s), sub(eps_t))
            with torch.no_grad():
                logits = module(x)
            counts["queries"] += 1
            obj = self.objective(logits, sub(labels_s), targeted)
            succ = _success(logits, sub(y_s), sub(tgt_s), targeted)
            if best_x is None:
                best_x, best_obj, best_succ = x, obj, succ
                continue
            assert best_obj is not None and best_succ is not None and rows is not None
            better = succ | (obj > best_obj[rows])
            best_x[rows] = torch.where(better[:, None], x, best_x[rows])
            best_obj[rows] = torch.where(better, obj, best_obj[rows])
            best_succ[rows] = succ
        assert best_x is not None
        if restarts == 1:
            best_x = self._repair(best_x, x0s, eps_t)
        if k == 1 and best_x.data_ptr() == x0.data_ptr():
            best_x = best_x.clone()  # never hand back (a view of) the caller's input
        return list(best_x.split(b)) if k > 1 else [best_x]

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
        module: Forward,
        x0: torch.Tensor,
        x: torch.Tensor,
        labels: torch.Tensor,
        y: torch.Tensor,
        tgt: torch.Tensor,
        targeted: bool,
        eps: torch.Tensor,
        alpha: torch.Tensor | float,
        mask: torch.Tensor | None,
        project: Projector,
        share_first: int | None,
        counts: dict[str, int],
    ) -> torch.Tensor:
        """One run from the start ``x``; returns the final (or best) iterate, unrepaired.

        ``share_first``: when every epsilon copy starts at ``x0`` (no random start), the first
        gradient is computed once on the first ``share_first`` rows and shared by all copies.
        """
        rule = self._step_rule()
        rule.start(self, x0, eps, alpha, project)
        use_mask = mask is not None and rule.needs_mask
        track = self.keep_best
        stop = self.early_stop
        per_row = track or stop or rule.needs_objective
        # nothing else keeps iterates: after a first step into a fresh tensor, step in place
        in_place = getattr(rule, "may_own_x", False) and not (track or stop)
        best_x = best_obj = best_succ = None
        done: torch.Tensor | None = None
        for it in range(self.steps):
            if it == 0 and share_first is not None:
                k = len(x) // share_first
                grad, logits, obj = self._gradient(module, x[:share_first],
                                                   labels[:share_first], targeted, per_row)
                grad, logits = grad.repeat(k, 1), logits.repeat(k, 1)
                obj = obj.repeat(k) if per_row else obj
            else:
                grad, logits, obj = self._gradient(module, x, labels, targeted, per_row)
            counts["gradients"] += 1
            if track or stop:
                succ = _success(logits, y, tgt, targeted)
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
            x_new = rule.step(it, x, grad, obj)
            x = torch.where(done[:, None], x, x_new) if done is not None else x_new
            rule.owns_x = in_place
        if track:
            with torch.no_grad():
                logits = module(x)
            counts["queries"] += 1
            obj = self.objective(logits, labels, targeted)
            succ = _success(logits, y, tgt, targeted)
            best_x, best_obj, best_succ = _update_best(x, obj, succ, best_x, best_obj, best_succ)
            assert best_x is not None
            return best_x
        return x

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
    def _warn_budget(self, eps_list: list[float]) -> None:
        if self.step_size is None:
            reach = self.rel_step_size * self.steps
            if reach < 1.0 - 1e-9:
                log.warning("%s: step_size * steps = %.3g * eps < eps: the attack cannot reach "
                            "its budget", self.name, reach)
            return
        short = [e for e in eps_list if self.step_size * self.steps < e - 1e-12]
        if short:
            log.warning("%s: step_size * steps = %.4g < eps for eps in %s: the attack cannot "
                        "reach its budget", self.name, self.step_size * self.steps, short)

    def _info(self) -> dict[str, Any]:
        return {"norm": self.norm, "steps": self.steps, "step_size": self.step_size,
                "rel_step_size": self.rel_step_size, "random_start": self.random_start,
                "restarts": self.restarts,
                "loss": self.loss if isinstance(self.loss, str) else "custom"}

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(eps={self.eps}, norm={self.norm!r}, steps={self.steps}, "
                f"loss={self.loss!r})")


# ---------------------------------------------------------------------------------- helpers
def _grid_to_model(g: torch.Tensor, log: bool, span: torch.Tensor, lo: torch.Tensor,
                   low: torch.Tensor, high: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Grid values (raw units times ``scale``) -> model units (float64)."""
    r = (g / scale).clamp_(low, high)
    t = torch.log1p(r.clamp_(min=0.0)) if log else r
    return t.sub_(lo).div_(span).clamp_(0.0, 1.0)


def _identity(t: torch.Tensor) -> torch.Tensor:
    return t


class _Index:
    """``t -> t[rows]``."""

    def __init__(self, rows: torch.Tensor) -> None:
        self.rows = rows

    def __call__(self, t: torch.Tensor) -> torch.Tensor:
        return t[self.rows]


def _success(
    logits: torch.Tensor, y: torch.Tensor, tgt: torch.Tensor, targeted: bool
) -> torch.Tensor:
    pred = logits.argmax(dim=1)
    return pred == tgt if targeted else pred != y


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
