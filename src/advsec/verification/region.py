"""The valid region of an L-inf attack around each record, as boxes a verifier can bound.

The box is the attack's own: :class:`~advsec.attacks.projection.Projector` folds the eps-ball
(``eps`` a fraction of each feature's range), the FeatureSpace's bounds (``[0, 1]``), its
immutable columns (pinned to the record) and the attacker's directions (an ``increase`` column
never below the record) into one per-entry ``[lo, hi]``, exactly as every L-inf attack step
clamps. It is then widened by :data:`~advsec.attacks.ball.BALL_TOL` where the ball is the
limit, because the attacks' final repair accepts records up to ``eps + BALL_TOL`` away.

What the box relaxes (every relaxation makes it a superset of the valid region, so a record
certified on it is certified on the valid region):

- whole-number grids and value sets: every grid value inside ``[lo, hi]`` is in the box;
- relations between features (sums, ratios, orders, zero-if-zero): ignored;
- mutable one-hot blocks: ``categorical="enumerate"`` makes each reachable category its own
  sub-box (the block set to that one-hot; a record is certified only if all its sub-boxes
  are), ``"relax"`` keeps each column of the block in an interval. Which categories are
  reachable: with ``switch_categories=False`` (advsec's attacks) those whose one-hot lies in
  the ball, i.e. only the record's own category while ``eps < 1``; with ``True`` every
  category of the block (a stronger attacker who may switch a categorical freely; ``"relax"``
  then gives each column ``[0, 1]``). A block with no reachable category (an input that is
  not one-hot) keeps the relaxed interval.

Immutable one-hot blocks are pinned to the record like every immutable column.

Shapes: ``N`` records, ``B`` boxes (``B >= N``), ``D`` model columns, ``K`` categories of a
block.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch

from advsec.attacks.ball import BALL_TOL
from advsec.attacks.projection import Projector
from advsec.errors import ConfigError

if TYPE_CHECKING:
    from advsec.features.space import FeatureSpace

__all__ = ["CATEGORICAL", "Categorical", "Region", "linf_region"]

Categorical = Literal["enumerate", "relax"]
#: how mutable one-hot blocks enter the region
CATEGORICAL: tuple[str, ...] = ("enumerate", "relax")


@dataclass(frozen=True)
class Region:
    """Boxes covering the valid region of ``records`` records.

    Attributes:
        lower, upper: ``(B, D)`` the boxes (model-input units, the records' dtype).
        owner: ``(B,)`` int64, the record each box belongs to; every record owns at least one.
        records: ``N``.
    """

    lower: torch.Tensor
    upper: torch.Tensor
    owner: torch.Tensor
    records: int

    def contains(self, x: torch.Tensor, *, tol: float = 0.0) -> torch.Tensor:
        """``(N,)`` bool: whether row ``i`` of ``x`` ``(N, D)`` lies in one of record ``i``'s
        boxes (within ``tol``)."""
        xs = x[self.owner]
        inside = ((xs >= self.lower - tol) & (xs <= self.upper + tol)).all(1)
        return self._count(inside) > 0

    def all_of(self, ok: torch.Tensor) -> torch.Tensor:
        """``(N,)`` bool: records all of whose boxes have ``ok`` ``(B,)``."""
        return self._count(~ok) == 0

    def _count(self, flags: torch.Tensor) -> torch.Tensor:
        """``(N,)`` int64: per record, how many of its boxes have ``flags`` ``(B,)``."""
        out = torch.zeros(self.records, dtype=torch.long, device=flags.device)
        return out.index_add_(0, self.owner, flags.long())


def _attack_box(x: torch.Tensor, eps: float, space: FeatureSpace | None,
                bounds: tuple[float, float] | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The L-inf attacks' per-entry box ``(N, D)`` around ``x``, widened by ``BALL_TOL``."""
    radius = torch.full((len(x), 1), float(eps), dtype=x.dtype, device=x.device)
    lower: torch.Tensor | None = None
    upper: torch.Tensor | None = None
    if space is not None:
        v = space.torch_view(x.device)
        lower, upper = v.lower.to(x.dtype), v.upper.to(x.dtype)
        proj = Projector(x, radius, norm="linf", lower=lower, upper=upper, mutable=v.mutable,
                         space=space)
    else:
        proj = Projector(x, radius, norm="linf", lower=None if bounds is None else bounds[0],
                         upper=None if bounds is None else bounds[1], mutable=None,
                         space=None)
        if bounds is not None:
            lower = torch.full_like(x[0], float(bounds[0]))
            upper = torch.full_like(x[0], float(bounds[1]))
    assert proj.lo is not None and proj.hi is not None
    lo = torch.where(proj.lo < x, proj.lo - BALL_TOL, proj.lo)
    hi = torch.where(proj.hi > x, proj.hi + BALL_TOL, proj.hi)
    if lower is not None and upper is not None:
        lo, hi = torch.maximum(lo, lower), torch.minimum(hi, upper)
    return lo, hi


def linf_region(x: torch.Tensor, eps: float, *, space: FeatureSpace | None = None,
                bounds: tuple[float, float] | None = (0.0, 1.0),
                categorical: Categorical = "enumerate", switch_categories: bool = False,
                max_boxes: int = 1_000_000) -> Region:
    """The boxes covering every record an L-inf attack with budget ``eps`` can reach from
    ``x`` ``(N, D)`` (module docstring).

    Args:
        x: ``(N, D)`` clean model inputs; eps: the budget (model-input units).
        space: the fitted FeatureSpace of the valid region (``None``: the plain box
            ``bounds``, every column mutable, as an attack without a space).
        bounds: the box without a space (``None``: unbounded); ignored with a space.
        categorical: ``"enumerate"`` or ``"relax"`` (mutable one-hot blocks).
        switch_categories: let mutable categoricals take any category, whatever ``eps``.
        max_boxes: the most sub-boxes enumeration may make (:class:`ConfigError` above it).
    """
    if categorical not in CATEGORICAL:
        raise ConfigError(f"categorical must be one of {', '.join(CATEGORICAL)}, "
                          f"got {categorical!r}")
    lo, hi = _attack_box(x, eps, space, bounds)
    owner = torch.arange(len(x), device=x.device)
    if space is None:
        return Region(lo, hi, owner, len(x))
    v = space.torch_view(x.device)
    mutable = v.mutable.cpu()
    for a, b in v.blocks:
        if not bool(mutable[a]):
            continue
        if categorical == "relax":
            if switch_categories:
                lo[:, a:b], hi[:, a:b] = 0.0, 1.0
            continue
        lo, hi, owner = _enumerate(x, lo, hi, owner, a, b, eps, switch_categories, max_boxes)
    return Region(lo, hi, owner, len(x))


def _enumerate(x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, owner: torch.Tensor,
               a: int, b: int, eps: float, switch: bool, max_boxes: int
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The boxes ``(B, D)`` split per reachable category of the one-hot block ``[a, b)``."""
    k = b - a
    onehot = torch.eye(k, dtype=x.dtype, device=x.device)  # (K, K): category -> block values
    if switch:
        reach = torch.ones((len(lo), k), dtype=torch.bool, device=x.device)
    else:  # the category's one-hot inside the ball around the record (all its columns)
        dist = (onehot[None, :, :] - x[owner, a:b][:, None, :]).abs().amax(2)  # (B, K)
        reach = dist <= eps + BALL_TOL
    keep = ~reach.any(1)  # no category reachable: keep the relaxed box
    box, cat = reach.nonzero(as_tuple=True)
    total = int(keep.sum()) + len(box)
    if total > max_boxes:
        raise ConfigError(f"enumerating the categories of columns {a}-{b - 1} needs {total} "
                          f"boxes, more than max_boxes={max_boxes}; use categorical='relax'")
    new_lo, new_hi = lo[box].clone(), hi[box].clone()
    new_lo[:, a:b] = onehot[cat]
    new_hi[:, a:b] = onehot[cat]
    return (torch.cat([lo[keep], new_lo]), torch.cat([hi[keep], new_hi]),
            torch.cat([owner[keep], owner[box]]))
