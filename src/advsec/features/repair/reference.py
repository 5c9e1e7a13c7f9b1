"""The per-relation reference of :meth:`FeatureSpace.repair`: one
:meth:`~advsec.features.constraints.Relation.repair` call per relation (twice, in schema order),
slow and kept as the reference the compiled :class:`~advsec.features.repair.plan.RepairPlan`
is tested against, bit for bit."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from advsec.features.constraints import VIOLATION_EPS
from advsec.features.torch_view import model_from_raw, quantize, raw_from_model

if TYPE_CHECKING:
    from advsec.features.constraints import Relation
    from advsec.features.space import FeatureSpace
    from advsec.features.torch_view import NumericView

__all__ = ["repair_reference"]


def repair_reference(space: FeatureSpace, x: torch.Tensor, x_orig: torch.Tensor,
                     nv: NumericView) -> torch.Tensor:
    """The reference repair of ``x`` ``(N, D)`` around ``x_orig`` ``(N, D)``, step by step.

    Args:
        space: the fitted space; nv: its :class:`~advsec.features.torch_view.NumericView` on
            ``x``'s device.
    """
    v = space.torch_view(x.device)
    rels = space.relations_
    x = space.project(x, x_orig)
    for a, b in v.blocks:
        block = x[:, a:b]
        onehot = torch.nn.functional.one_hot(block.argmax(dim=1), b - a).to(x.dtype)
        x = torch.cat([x[:, :a], onehot, x[:, b:]], dim=1)
    untouched = x == x_orig
    if not len(space.numeric_features_):
        return torch.where(untouched, x_orig, x)
    raw0 = quantize(raw_from_model(x[:, nv.idx], nv), nv)
    raw = raw0
    if rels:
        for _ in range(2):
            for rel in rels:
                raw = rel.repair(raw, nv.mutable)
        raw = quantize(raw, nv)
        untouched[:, nv.idx] &= raw == raw0
    x = x.clone()
    x[:, nv.idx] = model_from_raw(raw, nv).to(x.dtype)
    x = torch.where(untouched, x_orig, x)
    if rels:
        x = _revert_violations(rels, x, x_orig, nv)
    return x


def _revert_violations(rels: list[Relation], x: torch.Tensor, x_orig: torch.Tensor,
                       nv: NumericView) -> torch.Tensor:
    """Give every relation a decoded record of ``x`` ``(N, D)`` breaks its changed columns back
    from ``x_orig``, until none is broken (at most ``len(rels) + 1`` rounds)."""
    masks = []
    for rel in rels:
        mask = torch.zeros(x.shape[1], dtype=torch.bool, device=x.device)
        mask[nv.idx[rel.columns()]] = True
        masks.append(mask)
    for _ in range(len(rels) + 1):
        raw = quantize(raw_from_model(x[:, nv.idx], nv), nv)
        changed = False
        for rel, mask in zip(rels, masks, strict=True):
            bad = rel.violation(raw) > VIOLATION_EPS
            revert = bad[:, None] & mask[None, :] & (x != x_orig)
            if bool(revert.any()):
                x = torch.where(revert, x_orig, x)
                changed = True
        if not changed:
            break
    return x
