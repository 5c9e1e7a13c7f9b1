"""The attack frame shared by every evasion attack, and its one extension point.

:class:`Attack` resolves the model, checks inputs, chooses the rows to attack and their targets
(untargeted, targeted or evasion), splits them into chunks, stacks each chunk once per epsilon
so a whole sweep is one call, puts the model in eval mode (restoring its mode after), times the
call and scores the result (:class:`~advsec.attacks.result.AttackResult`).

A new attack is one class: declare its facts (:mod:`advsec.attacks.spec`) and implement
:meth:`Attack.perturb` on an :class:`~advsec.attacks.batch.AttackBatch`::

    class RandomSign(Attack):
        '''Paper: none (a baseline). Norm: L-inf. Shapes: (N, D) -> (N, D).'''
        name = "random-sign"
        family = "score"
        norms = ("linf",)
        needs_gradients = False

        def perturb(self, batch: AttackBatch) -> torch.Tensor:
            signs = torch.randint(0, 2, batch.x0.shape, generator=batch.generator) * 2 - 1
            return batch.projector()(batch.x0 + batch.eps * signs)

Defining the class registers it: ``make_attack("random-sign")``, ``[[attacks]] attack =
"random-sign"`` in an experiment file and ``advsec attack --attack random-sign`` work at once.
The iterative gradient engine is :class:`~advsec.attacks.gradient.GradientAttack`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, overload

import numpy as np
import torch
from torch import nn

from advsec.attacks.batch import AttackBatch, Forward
from advsec.attacks.chunking import chunk_rows
from advsec.attacks.result import AttackResult
from advsec.attacks.scoring import score_result
from advsec.attacks.spec import MANAGED_OPTIONS, constructor_options
from advsec.attacks.spec import register as register_attack
from advsec.attacks.targets import (
    Eps,
    benign_index,
    check_classes_and_box,
    check_inputs,
    device_dtype,
    eps_values,
    is_eps_list,
    n_scores,
    resolve_targets,
)
from advsec.models.inference import eval_mode
from advsec.models.types import AnyModel

if TYPE_CHECKING:
    from advsec.features.space import FeatureSpace

__all__ = ["Attack", "AttackResult", "Eps", "Forward", "as_module", "eval_mode"]

log = logging.getLogger(__name__)

Target = torch.Tensor | int | str | None


def as_module(model: AnyModel) -> nn.Module:
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
    """What :meth:`Attack._execute` hands back to ``__call__`` and ``craft``."""

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


class _LazyGenerator:
    """The call's random stream, made on first use (attacks that draw nothing pay nothing)."""

    def __init__(self, seed: int, device: torch.device) -> None:
        self.seed, self.device = seed, device
        self.gen: torch.Generator | None = None

    def __call__(self) -> torch.Generator:
        if self.gen is None:
            self.gen = torch.Generator(device=self.device).manual_seed(self.seed)
        return self.gen


# ---------------------------------------------------------------------------------- the frame
class Attack:
    """The frame shared by every evasion attack; a subclass implements :meth:`perturb`.

    Class attributes (the attack's facts, read by the registry, the CLI, experiment files, the
    red-flag checks and the defences; see :mod:`advsec.attacks.spec`): ``name``, ``family``,
    ``budget``, ``norms``, ``needs_gradients``. A subclass that sets ``name`` in its body is
    registered when defined (pass ``register=False`` in the class statement for a base class).

    Args:
        eps: perturbation budget in model-input units (a fraction of each feature's range when
            inputs come from a FeatureSpace); a float or a list (one result per value).
        norm: ``"linf"`` or ``"l2"`` (one of the class's ``norms``).
        targeted: if True, move towards ``target`` labels instead of away from ``y``.
        feature_space: a fitted FeatureSpace: only mutable columns move, bounds hold at every
            step and the result is repaired into a valid record at the end.
        bounds: the box for inputs without a FeatureSpace, ``(low, high)``, or ``None`` for no
            clipping (only for models on unbounded inputs, e.g. standardised features).
        evasion: attack only rows whose label is not the benign class, aiming at benign.
        benign_class: the benign class: an index, a label of the Detector's ``classes_`` or
            ``None`` (the schema's benign label when the model or space knows it, else
            ``"benign"`` if the Detector has that class, else 0).
        batch_size: rows per chunk (before stacking the epsilons); ``None``: chosen for the
            device (4,096 on the CPU, from the free memory on a GPU:
            :func:`advsec.attacks.chunking.chunk_rows`).
        seed: seed for every random draw (random starts, random search).
    """

    #: registry name (a class attribute; an instance may carry its own label for tables)
    name: str = "attack"
    family: ClassVar[str] = "gradient"
    budget: ClassVar[str | None] = None
    norms: ClassVar[tuple[str, ...]] = ("linf", "l2")
    needs_gradients: ClassVar[bool] = True

    def __init_subclass__(cls, *, register: bool = True, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if register and "name" in cls.__dict__:
            register_attack(cls)

    def __init__(
        self,
        *,
        eps: Eps = 0.1,
        norm: str = "linf",
        targeted: bool = False,
        feature_space: FeatureSpace | None = None,
        bounds: tuple[float, float] | None = (0.0, 1.0),
        evasion: bool = False,
        benign_class: int | str | None = None,
        batch_size: int | None = None,
        seed: int = 0,
    ) -> None:
        if norm not in self.norms:
            raise ValueError(f"{self.name}: norm must be one of {', '.join(self.norms)}, "
                             f"got {norm!r}")
        if batch_size is not None and batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        eps_values(eps)
        self.eps = eps
        self.norm = norm
        self.targeted = targeted
        self.feature_space = feature_space
        self.bounds = bounds
        self.evasion = evasion
        self.benign_class = benign_class
        self.batch_size = None if batch_size is None else int(batch_size)
        self.seed = int(seed)

    # ------------------------------------------------------------------ the extension point
    def perturb(self, batch: AttackBatch) -> torch.Tensor:
        """Adversarial inputs ``(M, D)`` for the stacked ``batch`` (every epsilon at once).

        Use the batch's model access (``scores``, ``gradient``, ``succeeded``), its projection
        (``projector()``) and its random stream (``generator``). What is returned is repaired
        into valid records by the frame (``batch.repair``) unless it already is a tensor that
        ``batch.repair`` returned.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement perturb(batch)")

    def warn_budget(self, eps: list[float]) -> None:
        """Optional hook: log a warning when the attack cannot reach its budget ``eps``."""

    def settings(self) -> dict[str, Any]:
        """The attack's settings for ``AttackResult.info``: its constructor options that are
        plain values (the threat model's options aside; callables shown as ``"custom"``)."""
        out: dict[str, Any] = {}
        for key in constructor_options(type(self)):
            if key in MANAGED_OPTIONS or key == "batch_size" or not hasattr(self, key):
                continue
            value = getattr(self, key)
            if value is None or isinstance(value, (bool, int, float, str)):
                out[key] = value
            elif callable(value):
                out[key] = "custom"
        return out

    # ------------------------------------------------------------------ public API
    @overload
    def __call__(self, model: AnyModel, x: torch.Tensor, y: torch.Tensor, *, eps: float,
                 target: Target = None) -> torch.Tensor: ...

    @overload
    def __call__(self, model: AnyModel, x: torch.Tensor, y: torch.Tensor, *,
                 eps: Sequence[float], target: Target = None) -> list[torch.Tensor]: ...

    @overload
    def __call__(self, model: AnyModel, x: torch.Tensor, y: torch.Tensor, *, eps: None = None,
                 target: Target = None) -> torch.Tensor | list[torch.Tensor]: ...

    def __call__(
        self,
        model: AnyModel,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        eps: Eps | None = None,
        target: Target = None,
    ) -> torch.Tensor | list[torch.Tensor]:
        """Adversarial inputs: one ``(N, D)`` tensor, or a list of them when ``eps`` is a list."""
        eps_value = self.eps if eps is None else eps
        forward, module = self.resolve_model(model)
        with eval_mode(module):
            call = self._execute(model, forward, module, x, y, eps_value, target)
        return call.outs if is_eps_list(eps_value) else call.outs[0]

    def craft(
        self,
        model: AnyModel,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        eps: Eps | None = None,
        target: Target = None,
    ) -> AttackResult:
        """The attack for every epsilon as an unscored :class:`AttackResult` (inputs, rows,
        targets, timings and counters; no prediction). This is the method wrappers that fix or
        filter an attack's output implement (see :class:`advsec.attacks.protocol.Crafter`)."""
        forward, module = self.resolve_model(model)
        with eval_mode(module):
            return self._result(model, forward, module, x, y, eps, target)[0]

    def run(
        self,
        model: AnyModel,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        eps: Eps | None = None,
        target: Target = None,
        evaluate: bool = True,
        space: FeatureSpace | None = None,
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
        forward, module = self.resolve_model(model)
        with eval_mode(module):
            result, c = self._result(model, forward, module, x, y, eps, target, moved=False)
            if evaluate:
                score_result(result, module if module is not None else forward,
                             space=space if space is not None else self.feature_space
                             if self.feature_space is not None
                             else getattr(model, "feature_space_", None))
        if c.in_device != c.x.device:
            result.x_adv = [t.to(c.in_device) for t in result.x_adv]
            result.x = None if result.x is None else result.x.to(c.in_device)
        return result

    def resolve_model(self, model: AnyModel) -> tuple[Forward, nn.Module | None]:
        """``(forward, module)``: how the attack calls ``model``, and the network to put in
        eval mode (``None`` for a non-torch model).

        White-box attacks (``needs_gradients``) take an ``nn.Module`` returning logits or an
        advsec Detector. Others also take an object with ``predict_proba`` (scikit-learn
        style, NumPy in and out) or any callable mapping ``(N, D)`` tensors to scores.
        """
        if self.needs_gradients or isinstance(model, nn.Module) or hasattr(model, "as_module"):
            module = as_module(model)
            return module, module
        if hasattr(model, "predict_proba"):

            def scores(x: torch.Tensor) -> torch.Tensor:
                proba = model.predict_proba(x.detach().cpu().numpy())
                return torch.as_tensor(np.asarray(proba), dtype=x.dtype, device=x.device)

            return scores, None
        if callable(model):
            return model, None
        raise TypeError(f"{self.name} needs a module, a Detector, an object with predict_proba "
                        f"or a callable returning scores, got {type(model).__name__}")

    # ------------------------------------------------------------------ the frame's work
    def _result(self, model: AnyModel, forward: Forward, module: nn.Module | None, x: Any, y: Any,
                eps: Eps | None, target: Target, *, moved: bool = True
                ) -> tuple[AttackResult, _Call]:
        c = self._execute(model, forward, module, x, y, self.eps if eps is None else eps,
                          target, moved=moved)
        n = len(c.x)
        result = AttackResult(
            attack=self.name, eps=c.eps, x_adv=c.outs,
            attacked=torch.ones(n, dtype=torch.bool, device=c.x.device)
            if c.attacked is None else c.attacked,
            y=c.y, target=c.tgt if c.targeted and not c.evasion else None,
            evasion=c.evasion, benign_class=c.benign, seconds=c.seconds,
            gradients=c.counts["gradients"], queries=c.counts["queries"],
            x=c.x if not moved or c.in_device == c.x.device else c.x.to(c.in_device),
            info={**self.settings(), **{k: v for k, v in c.counts.items()
                                        if k not in ("gradients", "queries")}},
        )
        return result, c

    def _execute(
        self,
        model: AnyModel,
        forward: Forward,
        module: nn.Module | None,
        x: Any,
        y: Any,
        eps: Eps,
        target: Target,
        *,
        moved: bool = True,
    ) -> _Call:
        """The attack itself (the model already in eval mode): checks, chunks, timing."""
        t0 = time.perf_counter()
        eps_list = eps_values(eps)
        in_device = x.device if isinstance(x, torch.Tensor) else torch.device("cpu")
        dev, dtype = device_dtype(module, x)
        x, y = check_inputs(model, x, y, dev, dtype)
        benign = benign_index(model, self.benign_class, self.feature_space)
        evasion = self.evasion or (isinstance(target, str) and target == "benign")
        targeted, tgt, attacked = resolve_targets(model, x, y, target, evasion=evasion,
                                                  benign=benign, targeted=self.targeted)
        check_classes_and_box(x, y, tgt if targeted else None,
                              n_classes=self._n_scores(forward, model, x), benign=benign,
                              bounds=None if self.feature_space is not None else self.bounds,
                              name=self.name)
        self.warn_budget(eps_list)
        rng = _LazyGenerator(self.seed, dev)
        counts = {"gradients": 0, "queries": 0}
        box = self._box(dev, dtype)
        n, k = len(x), len(eps_list)
        rows = chunk_rows(self.batch_size, device=dev, n_inputs=int(x.shape[1]), module=module,
                          stack=k)

        def chunk(idx: slice | torch.Tensor) -> list[torch.Tensor]:
            return self._chunk(forward, x[idx], y[idx], tgt[idx], targeted, eps_list, rng,
                               counts, box)

        if attacked is None:
            parts = [chunk(slice(s, s + rows)) for s in range(0, n, rows)]
            if n == 0:
                outs = [x.clone() for _ in eps_list]
            elif len(parts) == 1:
                outs = parts[0]
            else:
                outs = [torch.cat([p[i] for p in parts]) for i in range(k)]
        else:
            outs = [x.clone() for _ in eps_list]
            idx_all = torch.nonzero(attacked).flatten()
            for start in range(0, len(idx_all), rows):
                idx = idx_all[start : start + rows]
                for out, adv in zip(outs, chunk(idx), strict=True):
                    out[idx] = adv
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        seconds = time.perf_counter() - t0
        if moved and in_device != dev:
            outs = [t.to(in_device) for t in outs]
        return _Call(outs, eps_list, x, y, tgt, targeted, evasion, attacked, benign, seconds,
                     counts, in_device)

    def _chunk(self, forward: Forward, x0: torch.Tensor, y: torch.Tensor, tgt: torch.Tensor,
               targeted: bool, eps_list: list[float], rng: _LazyGenerator,
               counts: dict[str, int], box: tuple[Any, Any, torch.Tensor | None]
               ) -> list[torch.Tensor]:
        """One chunk ``x0`` ``(b, D)``: stack it per epsilon, :meth:`perturb`, repair."""
        b, k = len(x0), len(eps_list)
        if k == 1:
            x0s = x0
            eps_t = torch.full((b, 1), eps_list[0], device=x0.device, dtype=x0.dtype)
            ys, tgts = y, tgt
        else:
            x0s = x0.repeat(k, 1)
            eps_t = torch.tensor(eps_list, device=x0.device, dtype=x0.dtype).repeat_interleave(
                b)[:, None]
            ys, tgts = y.repeat(k), tgt.repeat(k)
        batch = AttackBatch(x0=x0s, eps=eps_t, eps_values=eps_list, rows=b, y=ys, target=tgts,
                       targeted=targeted, norm=self.norm, lower=box[0], upper=box[1],
                       mutable=box[2], space=self.feature_space, model=forward, counts=counts,
                       rng=rng)
        out = self.perturb(batch)
        if not batch.is_repaired(out):
            out = batch.repair(out)
        if k == 1 and out.data_ptr() == x0.data_ptr():
            out = out.clone()  # never hand back (a view of) the caller's input
        return batch.split(out)

    def _n_scores(self, forward: Forward, model: AnyModel, x: torch.Tensor) -> int:
        """:func:`~advsec.attacks.targets.n_scores`, remembered per model object and
        parameter shapes (a one-row forward per new model, not per call)."""
        params = tuple(tuple(p.shape) for p in model.parameters()) if isinstance(
            model, nn.Module) else ()
        key = (id(model), params)
        last = self.__dict__.get("_scores_of")  # (key, count) of the last model attacked
        if last is None or last[0] != key:
            last = self.__dict__["_scores_of"] = (key, n_scores(forward, model, x))
        return int(last[1])

    def _box(self, device: torch.device, dtype: torch.dtype
             ) -> tuple[Any, Any, torch.Tensor | None]:
        """``(lower, upper, mutable)``: per-column tensors of a FeatureSpace, or the scalar
        ``bounds`` (``None`` for no clipping) and no mask."""
        if self.feature_space is not None:
            v = self.feature_space.torch_view(device)
            return v.lower.to(dtype), v.upper.to(dtype), v.mutable
        if self.bounds is None:
            return None, None, None
        return float(self.bounds[0]), float(self.bounds[1]), None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(eps={self.eps}, norm={self.norm!r})"
