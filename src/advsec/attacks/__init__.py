"""Attacks: one iterative engine (``gradient.GradientAttack``) and thin configurations of it, plus
score-based (Square), transfer and poisoning attacks."""

from __future__ import annotations

from advsec.attacks.apgd import APGD, APGDMargin, APGDStep
from advsec.attacks.base import Attack, as_module, eval_mode
from advsec.attacks.batch import AttackBatch
from advsec.attacks.bim import BIM
from advsec.attacks.fgsm import FGSM
from advsec.attacks.gradient import GradientAttack
from advsec.attacks.hopskipjump import HopSkipJump, label_only
from advsec.attacks.losses import ce_objective, dlr_objective, margin_objective
from advsec.attacks.mim import MIM
from advsec.attacks.pgd import PGD
from advsec.attacks.poisoning import flip_labels, poisoning_study
from advsec.attacks.projection import Projector
from advsec.attacks.protocol import Crafter, FixedInputs, LogitsModel
from advsec.attacks.registry import ATTACKS, make_attack
from advsec.attacks.result import AttackResult
from advsec.attacks.scoring import TABLE_COLUMNS, result_table, score_result
from advsec.attacks.spec import FAMILIES, AttackSpec, attack_spec
from advsec.attacks.square import Square
from advsec.attacks.steps import FixedStep, StepRule
from advsec.attacks.success import eligible, succeeded, success_rate
from advsec.attacks.transfer import TransferResult, transfer_attack
from advsec.attacks.tree_search import TreeSearch
from advsec.attacks.validity import valid_records

__all__ = [
    "APGD",
    "ATTACKS",
    "BIM",
    "FAMILIES",
    "FGSM",
    "MIM",
    "PGD",
    "TABLE_COLUMNS",
    "APGDMargin",
    "APGDStep",
    "Attack",
    "AttackBatch",
    "AttackResult",
    "AttackSpec",
    "Crafter",
    "FixedInputs",
    "FixedStep",
    "GradientAttack",
    "HopSkipJump",
    "LogitsModel",
    "Projector",
    "Square",
    "StepRule",
    "TransferResult",
    "TreeSearch",
    "as_module",
    "attack_spec",
    "ce_objective",
    "dlr_objective",
    "eligible",
    "eval_mode",
    "flip_labels",
    "label_only",
    "make_attack",
    "margin_objective",
    "poisoning_study",
    "result_table",
    "score_result",
    "succeeded",
    "success_rate",
    "transfer_attack",
    "valid_records",
]
