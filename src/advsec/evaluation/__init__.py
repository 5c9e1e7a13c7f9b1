"""Evaluation: detection metrics, epsilon sweeps, the worst case over an attack ensemble
(adaptive re-attack and transfer scoring) and red-flag checks."""

from __future__ import annotations

from advsec.evaluation.checks import (
    Flag,
    check_black_box_vs_white_box,
    check_budget,
    check_gradients,
    check_iterative_vs_fgsm,
    check_model,
    check_monotone_eps,
    check_outputs_are_logits,
    check_sweep,
    check_unbounded_success,
    flags_html,
    flags_table,
    red_flags,
)
from advsec.evaluation.metrics import attack_success_rate, confusion, detection_metrics
from advsec.evaluation.sweep import SWEEP_COLUMNS, Sweep, evaluate_attack, valid_share
from advsec.evaluation.worst_case import (
    WORST_CASE_COLUMNS,
    WorstCase,
    adaptive_evaluation,
    transfer_table,
    worst_case,
)

__all__ = [
    "SWEEP_COLUMNS",
    "WORST_CASE_COLUMNS",
    "Flag",
    "Sweep",
    "WorstCase",
    "adaptive_evaluation",
    "attack_success_rate",
    "check_black_box_vs_white_box",
    "check_budget",
    "check_gradients",
    "check_iterative_vs_fgsm",
    "check_model",
    "check_monotone_eps",
    "check_outputs_are_logits",
    "check_sweep",
    "check_unbounded_success",
    "confusion",
    "detection_metrics",
    "evaluate_attack",
    "flags_html",
    "flags_table",
    "red_flags",
    "transfer_table",
    "valid_share",
    "worst_case",
]
