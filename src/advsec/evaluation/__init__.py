"""Evaluation: detection metrics, epsilon sweeps and result tables."""

from __future__ import annotations

from advsec.evaluation.metrics import attack_success_rate, confusion, detection_metrics
from advsec.evaluation.sweep import SWEEP_COLUMNS, Sweep, evaluate_attack, valid_share

__all__ = [
    "SWEEP_COLUMNS",
    "Sweep",
    "attack_success_rate",
    "confusion",
    "detection_metrics",
    "evaluate_attack",
    "valid_share",
]
