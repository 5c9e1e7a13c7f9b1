"""What bound propagation returns, and the pieces IBP and CROWN share: the margin
specification and the concretisation of a linear function over a box.

Shapes: ``N`` boxes (rows), ``D`` inputs, ``n`` units of a layer, ``C`` logits, ``m`` linear
functions bounded at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["Bounds", "box_lower", "margin_spec", "other_classes"]


@dataclass(frozen=True)
class Bounds:
    """Element-wise bounds ``lower <= f(x) <= upper`` for every ``x`` in the box of its row.

    Attributes:
        lower, upper: ``(N, n)``, in the bounds' dtype, on their device.
    """

    lower: torch.Tensor
    upper: torch.Tensor

    def intersect(self, other: Bounds) -> Bounds:
        """The tighter of two sound bounds, element-wise."""
        return Bounds(torch.maximum(self.lower, other.lower),
                      torch.minimum(self.upper, other.upper))


def other_classes(y: torch.Tensor, n_classes: int) -> torch.Tensor:
    """``(N, C - 1)`` int64: for each row, the classes ``j != y`` in increasing order."""
    j = torch.arange(n_classes - 1, device=y.device)
    return j[None, :] + (j[None, :] >= y[:, None]).long()


def margin_spec(y: torch.Tensor, n_classes: int, *, dtype: torch.dtype) -> torch.Tensor:
    """``(N, C - 1, C)`` the specification of the margins ``logit[y] - logit[j]``, ``j != y``
    (row ``i`` of record ``n``: ``+1`` at ``y_n``, ``-1`` at ``other_classes(y)[n, i]``)."""
    n = len(y)
    spec = torch.zeros((n, n_classes - 1, n_classes), dtype=dtype, device=y.device)
    rec = torch.arange(n, device=y.device)[:, None]
    rows = torch.arange(n_classes - 1, device=y.device)[None, :]
    spec[rec, rows, y[:, None]] = 1.0
    spec[rec, rows, other_classes(y, n_classes)] = -1.0
    return spec


def box_lower(a: torch.Tensor, bias: torch.Tensor, center: torch.Tensor,
              radius: torch.Tensor) -> torch.Tensor:
    """``(N, m)`` the exact minimum of ``a x + bias`` over the box ``|x - center| <= radius``.

    Args:
        a: ``(N, m, D)`` or ``(m, D)`` coefficients; bias: ``(N, m)``; center, radius:
            ``(N, D)``.
    """
    if a.ndim == 2:
        return center @ a.T - radius @ a.abs().T + bias
    return (torch.bmm(a, center[:, :, None]) - torch.bmm(a.abs(), radius[:, :, None]))[..., 0] \
        + bias
