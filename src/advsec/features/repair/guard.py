"""Hooks through which a caller limits how far a guarded repair moves records from x0.

The compiled repair knows how to make records valid; it does not know why a caller may refuse
a change (an attacker's budget, a cost model...). A *guard* decides. At each point where the
repair would move entries away from the original ``x0``, the plan proposes the move and asks
the guard which parts to refuse; refused parts keep (or get back) the original's values:

1. quantised numeric columns go onto their grid: the nearest grid value, or, where the guard
   refuses it, the next grid value on the original's side (:meth:`RepairGuard.accepts_nearest`);
2. a mutable one-hot block whose argmax moves an entry that :meth:`RepairGuard.too_far` flags
   keeps the original's category;
3. a closed ``zero_if_zero`` gate whose zeroing the guard refuses (:meth:`RepairGuard.
   refuses_closing`, given a :class:`GateClosing`) gets the original's value back;
4. a broken relation whose new target value (``sum`` with a target column, ``ratio``) is
   :meth:`RepairGuard.too_far` from the original's keeps its original mutable columns;
5. after the repair, the guard gets the changed parts (:class:`ChangedPart`) and flags the rows
   it does not accept (:meth:`RepairGuard.refuses`); the plan's caller settles those.

Layout: ``(C, N)``, columns first, for ``C`` model columns of ``N`` records (the plan's working
layout); ``(N, D)`` for whole model inputs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple, Protocol

import torch

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = ["ChangedPart", "GateClosing", "RepairGuard"]


class ChangedPart(NamedTuple):
    """Columns a repair may have moved: ``new`` and ``orig`` values ``(C, N)``; ``take`` maps
    an ``(N, D)`` tensor to the same columns, ``(C, N)`` (e.g. the caller's iterate)."""

    new: torch.Tensor
    orig: torch.Tensor
    take: Callable[[torch.Tensor], torch.Tensor]


class GateClosing(NamedTuple):
    """A proposal to zero the features of the ``zero_if_zero`` gates the input closed.

    ``G`` gates, ``Z`` mutable zeroed feature rows, ``K`` working rows.

    Attributes:
        closed: ``(G, N)`` bool, the gates the input closed.
        member: ``(G, Z)`` float32, 1 where zeroed row ``z`` belongs to gate ``g``.
        dist: ``(Z, N)`` ``|zeroed value - original|``, model units.
        orig: ``(Z, N)`` the zeroed rows' original values.
        xk, x0k: ``(K, N)`` the input's and the original's working rows.
        rows: ``(Z,)`` the zeroed rows' indices in ``xk`` (:meth:`current`).
    """

    closed: torch.Tensor
    member: torch.Tensor
    dist: torch.Tensor
    orig: torch.Tensor
    xk: torch.Tensor
    x0k: torch.Tensor
    rows: torch.Tensor

    def current(self) -> torch.Tensor:
        """``(Z, N)``: the zeroed rows' values in the input (before zeroing)."""
        return self.xk.index_select(0, self.rows)


class RepairGuard(Protocol):
    """What a guarded repair (``RepairPlan.repair_guarded``) may change; see the module doc."""

    def too_far(self, dist: torch.Tensor, *, records_first: bool = False) -> torch.Tensor:
        """Bool, the shape of ``dist``: entries whose distance ``dist`` (``|new - x0|``, model
        units) from the original rules the change out by itself. ``dist`` is ``(C, N)``, or
        ``(N, C)`` with ``records_first``."""
        ...

    def accepts_nearest(self, near: torch.Tensor, cur: torch.Tensor, orig: torch.Tensor,
                        x: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        """Bool, ``(C, N)`` or per record ``(N,)``: where quantised entries ``cur`` ``(C, N)``
        (originals ``orig``) may take their nearest grid values ``near`` ``(C, N)``; ``x``,
        ``x0``: the whole ``(N, D)`` input and original."""
        ...

    def refuses_closing(self, closing: GateClosing) -> torch.Tensor:
        """``(G, N)`` bool: the gates whose zeroing is refused (read where ``closed`` only)."""
        ...

    def refuses(self, parts: Sequence[ChangedPart]) -> torch.Tensor:
        """``(N,)`` bool: records whose repaired values (the changed ``parts``; every other
        column is the original's) are refused."""
        ...
