"""The one object an attack works on: :class:`AttackBatch`.

The frame (:class:`~advsec.attacks.base.Attack`) checks the inputs, chooses the rows to attack
and their targets, splits them into chunks and, for each chunk, builds an :class:`AttackBatch`
and calls the attack's single extension method::

    def perturb(self, batch: AttackBatch) -> torch.Tensor: ...

The batch holds the chunk stacked once per epsilon (one call answers a whole eps list), the
labels to aim at, the box, the mutable columns, the model and the random stream, and offers
the operations every attack needs: scores, input gradients, success, the projection onto the
eps-ball and the valid region, and the final repair into valid records.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import torch

from advsec.attacks.projection import Projector
from advsec.attacks.repair import repair_in_ball
from advsec.attacks.success import succeeded
from advsec.features.threat import admissible, restrict, snap_values

if TYPE_CHECKING:
    from advsec.attacks.losses import Objective
    from advsec.features.space import FeatureSpace

__all__ = ["AttackBatch", "Forward"]

#: a model as attacks see it: ``(M, D)`` inputs -> ``(M, C)`` scores (logits for white-box
#: attacks)
Forward = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class AttackBatch:
    """One chunk of rows to attack, stacked once per epsilon.

    ``M = copies * rows``: copy ``i`` (rows ``i*rows`` to ``(i+1)*rows``) of every per-row
    tensor belongs to ``eps_values[i]``.

    Attributes:
        x0: ``(M, D)`` clean inputs (do not modify: with one epsilon it is the caller's data).
        eps: ``(M, 1)`` the budget of each row (model-input units).
        eps_values: the epsilons, one per copy.
        rows: ``b``, rows per copy.
        y: ``(M,)`` true class indices.
        target: ``(M,)`` class indices aimed at (the benign class in evasion mode; ``y`` when
            untargeted).
        targeted: whether the attack aims at ``target`` (evasion is targeted).
        norm: ``"linf"`` or ``"l2"``.
        lower, upper: the box: ``(D,)`` tensors (FeatureSpace bounds), floats, or ``None``.
        mutable: ``(D,)`` bool, columns the attacker may change (``None``: all).
        space: the FeatureSpace of the valid region, or ``None`` (plain box).
        model: the attacked model as a :data:`Forward`.
        rng: makes (once) and returns the call's random stream: use :attr:`generator`.
        counts: counters reported in the result: ``gradients`` (batched forward+backward
            passes), ``queries`` (batched forward passes) and any an attack adds.
    """

    x0: torch.Tensor
    eps: torch.Tensor
    eps_values: list[float]
    rows: int
    y: torch.Tensor
    target: torch.Tensor
    targeted: bool
    norm: str
    lower: Any
    upper: Any
    mutable: torch.Tensor | None
    space: FeatureSpace | None
    model: Forward
    rng: Callable[[], torch.Generator]
    counts: dict[str, int] = field(default_factory=lambda: {"gradients": 0, "queries": 0})
    _repaired: list[torch.Tensor] = field(default_factory=list, repr=False)

    # ------------------------------------------------------------------ shape
    @property
    def copies(self) -> int:
        """Number of epsilons (copies of the chunk)."""
        return len(self.eps_values)

    @property
    def generator(self) -> torch.Generator:
        """The call's random stream (seeded by the attack's ``seed``; shared by its chunks,
        made on first use)."""
        return self.rng()

    @property
    def labels(self) -> torch.Tensor:
        """``(M,)`` the labels an objective is computed on: ``target`` if targeted, else ``y``."""
        return self.target if self.targeted else self.y

    def split(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``(M, D)`` -> one ``(rows, D)`` tensor per epsilon."""
        return list(x.split(self.rows)) if self.copies > 1 else [x]

    def subset(self, rows: torch.Tensor) -> AttackBatch:
        """The batch restricted to the stacked rows ``rows`` (``copies`` becomes meaningless:
        use it for per-row work such as restarts on the rows not broken yet)."""
        return replace(self, x0=self.x0[rows], eps=self.eps[rows], y=self.y[rows],
                       target=self.target[rows], rows=len(rows), _repaired=self._repaired)

    # ------------------------------------------------------------------ model
    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """``(M, C)`` model outputs at ``x`` without gradient (counted as a query)."""
        self.counts["queries"] += 1
        with torch.no_grad():
            return self.model(x)

    def gradient(self, x: torch.Tensor, objective: Objective) -> tuple[
            torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(input gradient (M, D), logits (M, C), objective (M,))`` of the summed
        ``objective(logits, labels, targeted)`` at ``x`` (counted as a gradient)."""
        self.counts["gradients"] += 1
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            logits = self.model(xg)
            obj = objective(logits, self.labels, self.targeted)
            (grad,) = torch.autograd.grad(obj.sum(), xg)
        return grad, logits.detach(), obj.detach()

    def succeeded(self, scores: torch.Tensor) -> torch.Tensor:
        """``(M,)`` bool: rows whose scores ``(M, C)`` reach the goal
        (:func:`advsec.attacks.success.succeeded`)."""
        pred = scores.argmax(dim=1)
        return succeeded(pred, self.y, target=self.target if self.targeted else None)

    # ------------------------------------------------------------------ region
    def projector(self, *, ball: bool = True) -> Projector:
        """The projection onto the eps-ball around ``x0`` intersected with the valid region
        (box, bounds, immutable columns; ``ball=False`` when every iterate provably stays in
        the ball)."""
        return Projector(self.x0, self.eps, norm=self.norm, lower=self.lower, upper=self.upper,
                         mutable=self.mutable, space=self.space, ball=ball)

    def repair(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``(M, D)`` as valid records inside the eps-ball (``x`` itself without a space).

        With a FeatureSpace: the attacker's directions clamp ``x``, value-set columns go to
        their nearest allowed value inside the ball (:mod:`advsec.features.threat`), the
        space's repair runs kept in the ball, and a row that still breaks a direction or a
        value set (a relation's repair moved it) is the original record. The frame repairs
        what ``perturb`` returns unless it is a tensor this method returned (possibly updated
        in place)."""
        if self.space is None:
            out = x
        else:
            tv = self.space.threat_view(x.device)
            if tv.active:
                x = restrict(tv, x, self.x0)
                x = snap_values(tv, x, self.x0, self.x0 - self.eps, self.x0 + self.eps)
            out = repair_in_ball(self.space, x, self.x0, self.eps, norm=self.norm)
            if tv.active:
                keep = admissible(tv, out, self.x0)
                if out.device.type != "cpu" or not bool(keep.all()):  # a sync is free on CPU
                    out = torch.where(keep[:, None], out, self.x0)
        self._repaired.append(out)
        return out

    def is_repaired(self, x: torch.Tensor) -> bool:
        """Whether ``x`` is a tensor returned by :meth:`repair`."""
        return any(x is r for r in self._repaired)
