"""Attacks by name, for configs and the CLI."""

from __future__ import annotations

from typing import Any

from advsec.attacks.base import GradientAttack
from advsec.attacks.bim import BIM
from advsec.attacks.fgsm import FGSM
from advsec.attacks.mim import MIM
from advsec.attacks.pgd import PGD

__all__ = ["ATTACKS", "make_attack"]

ATTACKS: dict[str, type[GradientAttack]] = {"fgsm": FGSM, "bim": BIM, "pgd": PGD, "mim": MIM}


def make_attack(name: str, **options: Any) -> GradientAttack:
    """Build the attack registered as ``name`` (case-insensitive) with ``options``."""
    key = name.lower()
    if key not in ATTACKS:
        raise ValueError(f"unknown attack {name!r}; known: {', '.join(sorted(ATTACKS))}")
    return ATTACKS[key](**options)
