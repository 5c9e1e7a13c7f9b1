"""Attacks: one iterative engine (``base.GradientAttack``) and thin configurations of it."""

from __future__ import annotations

from advsec.attacks.base import AttackResult, GradientAttack, as_module, eval_mode
from advsec.attacks.bim import BIM
from advsec.attacks.fgsm import FGSM
from advsec.attacks.mim import MIM
from advsec.attacks.pgd import PGD
from advsec.attacks.registry import ATTACKS, make_attack

__all__ = [
    "ATTACKS",
    "BIM",
    "FGSM",
    "MIM",
    "PGD",
    "AttackResult",
    "GradientAttack",
    "as_module",
    "eval_mode",
    "make_attack",
]
