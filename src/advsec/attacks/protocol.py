"""The small protocols between attacks and what uses them.

- :class:`LogitsModel`: what a white-box attack differentiates (an ``nn.Module`` returning
  logits, or an advsec Detector through ``as_module()``).
- :class:`Crafter`: anything the evaluation can score, i.e. every :class:`~advsec.attacks.base.
  Attack`, and wrappers that fix or filter an attack's output (:class:`FixedInputs` below, the
  KDD'99 reproduction's own-prediction attack). ``craft`` returns an *unscored*
  :class:`~advsec.attacks.result.AttackResult`; scoring is the evaluation's job, done once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import torch

from advsec.attacks.result import AttackResult
from advsec.models.types import AnyModel, LogitsModel

__all__ = ["Crafter", "FixedInputs", "LogitsModel"]


@runtime_checkable
class Crafter(Protocol):
    """Produces adversarial inputs for a list of budgets, unscored.

    Attributes:
        name: the label of its rows in result tables.
        evasion: whether it attacks malicious rows only, towards benign.
    """

    name: str
    evasion: bool

    def craft(self, model: AnyModel, x: torch.Tensor, y: torch.Tensor, *,
              eps: Sequence[float]) -> AttackResult:
        """Adversarial inputs of ``x`` ``(N, D)`` (true classes ``y`` ``(N,)``), one per eps."""
        ...


class FixedInputs:
    """A :class:`Crafter` that returns adversarial inputs crafted elsewhere (e.g. against
    another model: transfer scoring).

    Args:
        x_adv: ``(N, D)`` the precomputed inputs, returned for every eps.
        name: the table label.
        evasion: whether the inputs came from an evasion attack.
        benign_class: index of the benign class.
    """

    def __init__(self, x_adv: torch.Tensor, *, name: str = "fixed", evasion: bool = False,
                 benign_class: int = 0) -> None:
        self.x_adv, self.name, self.evasion = x_adv, name, evasion
        self.benign_class = benign_class

    def craft(self, model: AnyModel, x: torch.Tensor, y: torch.Tensor, *,
              eps: Sequence[float]) -> AttackResult:
        """``x_adv`` for every eps (rows: all attacked; no time spent)."""
        y = torch.as_tensor(y).long()
        if self.x_adv.shape != x.shape:
            raise ValueError(f"fixed inputs {tuple(self.x_adv.shape)} and x {tuple(x.shape)} "
                             f"differ in shape")
        attacked = ((y != self.benign_class) if self.evasion
                    else torch.ones(len(x), dtype=torch.bool))
        return AttackResult(attack=self.name, eps=[float(e) for e in eps],
                            x_adv=[self.x_adv for _ in eps], attacked=attacked, y=y,
                            target=None, evasion=self.evasion, benign_class=self.benign_class,
                            seconds=0.0, x=x)

