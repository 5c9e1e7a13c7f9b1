"""The compiled repair of a :class:`~advsec.features.space.FeatureSpace`.

- :mod:`~advsec.features.repair.plan`: :class:`RepairPlan`, the fast path of
  ``FeatureSpace.repair`` (and of guarded repairs), compiled once per (space, device);
- :mod:`~advsec.features.repair.guard`: :class:`RepairGuard`, the budget-free hooks through
  which a caller refuses moves away from the original (an attack's eps-ball is one:
  :class:`advsec.attacks.ball.Ball`);
- :mod:`~advsec.features.repair.reference`: :func:`repair_reference`, the per-relation
  reference the plan equals bit for bit;
- building blocks: :mod:`~advsec.features.repair.layout` (the working layout),
  :mod:`~advsec.features.repair.convert` (raw-unit conversions),
  :mod:`~advsec.features.repair.onehot`, :mod:`~advsec.features.repair.groups` (batched
  relations), :mod:`~advsec.features.repair.schedule` (stages and the plan's proofs),
  :mod:`~advsec.features.repair.proposals` (the moves a guard may refuse) and
  :mod:`~advsec.features.repair.ops` (:func:`select`).
"""

from __future__ import annotations

from advsec.features.repair.guard import ChangedPart, GateClosing, RepairGuard
from advsec.features.repair.ops import select
from advsec.features.repair.plan import RepairPlan
from advsec.features.repair.reference import repair_reference
from advsec.features.repair.schedule import reads_writes, schedule

__all__ = [
    "ChangedPart",
    "GateClosing",
    "RepairGuard",
    "RepairPlan",
    "reads_writes",
    "repair_reference",
    "schedule",
    "select",
]
