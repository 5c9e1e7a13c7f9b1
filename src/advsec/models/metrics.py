"""Detection metrics for benign-vs-malicious detectors, binary or multi-class.

"Positive" means malicious: for a multi-class detector any non-benign class counts as a detection,
so detection rate and false-positive rate mean the same thing for every label scheme.
"""

from __future__ import annotations

import math

import numpy as np
from sklearn.metrics import roc_auc_score

__all__ = ["confusion", "detection_metrics"]


def detection_metrics(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    *,
    proba: np.ndarray | None = None,
    benign_class: int = 0,
) -> dict[str, float]:
    """Metrics of predictions ``y_pred`` ``(N,)`` against ``y_true`` ``(N,)`` (class indices).

    Args:
        proba: class probabilities ``(N, C)``; enables ROC AUC (malicious score = 1 - p(benign)).
        benign_class: index of the benign class.

    Returns:
        ``accuracy`` (exact class), ``precision``, ``detection_rate`` (recall of malicious),
        ``f1``, ``fpr`` (benign flagged malicious) and ``roc_auc`` (NaN when undefined).
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true {y_true.shape} and y_pred {y_pred.shape} differ in shape")
    mal_true, mal_pred = y_true != benign_class, y_pred != benign_class
    tp = float(np.sum(mal_true & mal_pred))
    fp = float(np.sum(~mal_true & mal_pred))
    fn = float(np.sum(mal_true & ~mal_pred))
    tn = float(np.sum(~mal_true & ~mal_pred))
    precision = tp / (tp + fp) if tp + fp else math.nan
    recall = tp / (tp + fn) if tp + fn else math.nan
    f1 = (2 * precision * recall / (precision + recall)
          if precision + recall and not math.isnan(precision + recall) else math.nan)
    auc = math.nan
    if proba is not None and 0 < mal_true.sum() < len(y_true):
        auc = float(roc_auc_score(mal_true, 1.0 - np.asarray(proba)[:, benign_class]))
    return {
        "accuracy": float(np.mean(y_true == y_pred)) if len(y_true) else math.nan,
        "precision": precision,
        "detection_rate": recall,
        "f1": f1,
        "fpr": fp / (fp + tn) if fp + tn else math.nan,
        "roc_auc": auc,
    }


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Confusion matrix ``(C, C)``: rows are true classes, columns predicted classes."""
    m = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(m, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return m
