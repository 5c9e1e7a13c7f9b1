"""Attacks by name, for configs and the CLI."""

from __future__ import annotations

from typing import Any

from advsec.attacks.apgd import APGD, APGDMargin
from advsec.attacks.base import Attack
from advsec.attacks.bim import BIM
from advsec.attacks.fgsm import FGSM
from advsec.attacks.mim import MIM
from advsec.attacks.pgd import PGD
from advsec.attacks.square import Square

__all__ = ["ATTACKS", "ITERATIVE", "make_attack"]

ATTACKS: dict[str, type[Attack]] = {
    "fgsm": FGSM,
    "bim": BIM,
    "mim": MIM,
    "pgd": PGD,
    "apgd": APGD,
    "apgd-margin": APGDMargin,
    "square": Square,
}

#: attacks that take ``steps`` (Square takes ``queries`` instead; FGSM is one step)
ITERATIVE = ("bim", "mim", "pgd", "apgd", "apgd-margin")


def make_attack(name: str, **options: Any) -> Attack:
    """Build the attack registered as ``name`` (case-insensitive, ``_`` or ``-``) with ``options``.

    Example:
        >>> make_attack("pgd", eps=[0.05, 0.1], steps=20, evasion=True)
    """
    key = name.lower().replace("_", "-")
    if key not in ATTACKS:
        raise ValueError(f"unknown attack {name!r}; known: {', '.join(sorted(ATTACKS))}")
    return ATTACKS[key](**options)
