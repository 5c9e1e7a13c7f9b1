"""Honesty checks: red flags raised before a report claims robustness.

A robustness number means little when the clean problem is broken. These checks look at the
clean detector and at its training data, and return :class:`~advsec.evaluation.checks.Flag` s
(``ok`` False when raised; every raised flag is also logged with ``logging.warning``):

- **perfect clean accuracy** (:func:`check_clean_accuracy`): clean test accuracy >= 0.999 or
  ROC AUC >= 0.9995 is rare on real traffic; more often a feature leaks the label (a second
  label column, an id correlated with the class);
- **one feature separates the classes** (:func:`check_single_feature`): on the raw training
  table, a single feature whose best single threshold (numeric features) or per-value majority
  (features with at most ``max_values`` distinct values) reaches >= 0.99 balanced accuracy on
  held-out rows (2-fold cross-fit, fixed seed). Scores come from :func:`single_feature_scores`,
  a pure, vectorised function (a sort-based threshold search over every numeric column at once);
- **single-class detector** (:func:`check_single_class`): a detector that predicts one class
  for >= 99.5 % of clean test records (or detects no malicious record, or flags every benign
  one) has a "robust accuracy" equal to that class's share: attacks cannot lower it.

The feature check scores benign against malicious (any class that is not the schema's benign
label; the most frequent label when the benign one does not occur), the decision every label
scheme shares.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from advsec.evaluation.checks import Flag
from advsec.features.schema import FeatureSchema
from advsec.models.metrics import detection_metrics

__all__ = [
    "check_clean",
    "check_clean_accuracy",
    "check_single_class",
    "check_single_feature",
    "single_feature_scores",
]

log = logging.getLogger(__name__)

#: clean accuracy / ROC AUC at or above which a label leak is suspected
LEAK_ACCURACY = 0.999
LEAK_AUC = 0.9995
#: held-out balanced accuracy at or above which one feature "alone separates the classes"
SEPARATION = 0.99
#: share of test records predicted as one class at or above which the detector is single-class
SINGLE_CLASS_SHARE = 0.995


def _flag(name: str, ok: bool, detail: str) -> Flag:
    """A Flag, logged as a warning when raised."""
    flag = Flag(name, ok, detail)
    if not ok:
        log.warning("red flag: %s: %s", name, detail)
    return flag


# ---------------------------------------------------------------------------- clean detector
def check_clean_accuracy(
    metrics: Mapping[str, float], *, accuracy: float = LEAK_ACCURACY, auc: float = LEAK_AUC
) -> Flag:
    """Raised when clean test accuracy is ``>= accuracy`` or ROC AUC ``>= auc``.

    Args:
        metrics: clean detection metrics (:func:`advsec.models.metrics.detection_metrics`:
            ``accuracy`` and, optionally, ``roc_auc``; NaN values are skipped).
    """
    name = "clean accuracy not suspiciously perfect"
    acc = float(metrics.get("accuracy", math.nan))
    roc = float(metrics.get("roc_auc", math.nan))
    if math.isnan(acc) and math.isnan(roc):
        return Flag(name, True, "n/a: no clean accuracy")
    if acc >= accuracy or roc >= auc:
        what = (f"clean accuracy {acc:.3f}" if acc >= accuracy else f"clean ROC AUC {roc:.4f}")
        return _flag(name, False, f"{what}: a feature may leak the label (a second label "
                     "column, an id correlated with the class)")
    shown = ", ".join(s for s in (f"accuracy {acc:.3f}" if not math.isnan(acc) else "",
                                  f"ROC AUC {roc:.4f}" if not math.isnan(roc) else "") if s)
    return Flag(name, True, f"clean {shown}")


def check_single_class(
    y_pred: np.ndarray,
    *,
    classes: Sequence[str] | None = None,
    metrics: Mapping[str, float] | None = None,
    max_share: float = SINGLE_CLASS_SHARE,
) -> Flag:
    """Raised when the detector predicts one class for ``>= max_share`` of clean test records,
    or (from ``metrics``) detects no malicious record (detection rate 0) or flags every benign
    one (false-positive rate 1).

    Args:
        y_pred: clean predictions ``(N,)`` (class indices).
        classes: class names by index (for the message; default: the indices).
        metrics: clean detection metrics with ``detection_rate`` and ``fpr`` (optional).
    """
    name = "detector predicts more than one class"
    pred = np.asarray(y_pred).ravel()
    if len(pred) == 0:
        return Flag(name, True, "n/a: no predictions")
    values, counts = np.unique(pred, return_counts=True)
    top = int(np.argmax(counts))
    share = float(counts[top]) / len(pred)
    label = classes[int(values[top])] if classes is not None else str(values[top])
    m = metrics or {}
    dr, fpr = float(m.get("detection_rate", math.nan)), float(m.get("fpr", math.nan))
    if share >= max_share:
        return _flag(name, False, f"the detector predicts {label!r} for {share * 100:.1f} % of "
                     "test records: robust accuracy equals the class share")
    if dr == 0.0 or fpr == 1.0:
        what = "detects no malicious record" if dr == 0.0 else "flags every benign record"
        return _flag(name, False, f"the detector {what} (detection rate {dr:.3f}, FPR "
                     f"{fpr:.3f}): robust accuracy mostly equals the class share")
    return Flag(name, True, f"most frequent prediction {label!r} on {share * 100:.1f} % of records")


def check_clean(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    *,
    proba: np.ndarray | None = None,
    benign_class: int = 0,
    classes: Sequence[str] | None = None,
) -> list[Flag]:
    """:func:`check_clean_accuracy` and :func:`check_single_class` on clean test predictions.

    Args:
        y_true, y_pred: class indices ``(N,)``; proba: class probabilities ``(N, C)`` (for ROC
            AUC); benign_class: index of the benign class; classes: class names by index.
    """
    metrics = detection_metrics(np.asarray(y_true), np.asarray(y_pred), proba=proba,
                                benign_class=benign_class)
    return [check_clean_accuracy(metrics),
            check_single_class(y_pred, classes=classes, metrics=metrics)]


# ---------------------------------------------------------------------------- training data
def single_feature_scores(
    table: pd.DataFrame,
    labels: np.ndarray | pd.Series,
    schema: FeatureSchema,
    *,
    max_values: int = 100,
    seed: int = 0,
    max_rows: int | None = 200_000,
) -> pd.Series:
    """Held-out balanced accuracy of the best one-feature rule, for every schema feature.

    Rows are split into two class-stratified folds (seeded); each fold's rule is fitted on the
    other fold and predicts it, and the balanced accuracy is computed over all out-of-fold
    predictions. The rule of a numeric feature is the better of its best single threshold
    (``x > t`` or ``x <= t``, found by one sort per column) and, when it has at most
    ``max_values`` distinct values, the per-value majority; a categorical feature gets the
    per-value majority when it has at most ``max_values`` distinct values (else it is skipped).
    The per-value majority is class-balanced (a value predicts malicious when its share of the
    malicious rows exceeds its share of the benign rows); an unseen value predicts benign.

    Args:
        table: raw records ``(N, *)`` holding the schema's feature columns (others ignored).
        labels: their labels ``(N,)``; the schema's benign label is benign, every other label
            malicious (the most frequent label is benign when the benign one does not occur).
        schema: the feature schema (which columns, and which are categorical).
        max_values: distinct values up to which the per-value majority is fitted.
        seed: the fold split.
        max_rows: score a seeded sample of this many rows of a larger table (None: all).

    Returns:
        Balanced accuracy in [0, 1] by feature name, highest first; empty when either class
        has fewer than two rows.
    """
    y_all = _malicious(np.asarray(labels).astype(str), str(schema.benign_label))
    if len(y_all) != len(table):
        raise ValueError(f"table has {len(table)} rows but labels has {len(y_all)}")
    rng = np.random.default_rng(seed)
    rows = np.arange(len(table))
    if max_rows is not None and len(rows) > max_rows:
        rows = np.sort(rng.choice(len(rows), max_rows, replace=False))
    y = y_all[rows]
    if min(int(y.sum()), int((~y).sum())) < 2:
        return pd.Series(dtype=np.float64)
    fold = _folds(y, rng)
    names = [f.name for f in schema if f.name in table.columns]
    sub = table.iloc[rows]
    scores: dict[str, float] = {}
    numeric = [n for n in names if schema[n].is_numeric]
    if numeric:
        x = np.column_stack([_as_float(sub[n]) for n in numeric])
        pred = np.zeros(x.shape, dtype=bool)
        for k in (0, 1):
            fit, held = fold != k, fold == k
            t, flip = _best_thresholds(x[fit], y[fit])
            pred[held] = (x[held] > t) ^ flip
        for j, ba in enumerate(_balanced_accuracy(pred, y)):
            scores[numeric[j]] = float(ba)
    for n in names:
        codes, uniques = pd.factorize(sub[n], use_na_sentinel=False)
        if len(uniques) > max_values:
            continue
        pred_v = np.zeros(len(y), dtype=bool)
        for k in (0, 1):
            fit, held = fold != k, fold == k
            pred_v[held] = _value_majority(codes[fit], y[fit], len(uniques))[codes[held]]
        ba = float(_balanced_accuracy(pred_v[:, None], y)[0])
        scores[n] = max(scores.get(n, 0.0), ba)
    return pd.Series(scores, dtype=np.float64).sort_values(ascending=False, kind="stable")


def check_single_feature(
    table: pd.DataFrame,
    labels: np.ndarray | pd.Series,
    schema: FeatureSchema,
    *,
    threshold: float = SEPARATION,
    max_values: int = 100,
    seed: int = 0,
    max_rows: int | None = 200_000,
) -> Flag:
    """Raised when one feature alone separates benign from malicious training records: held-out
    balanced accuracy ``>= threshold`` (:func:`single_feature_scores`; same arguments)."""
    name = "no single feature separates the classes"
    scores = single_feature_scores(table, labels, schema, max_values=max_values, seed=seed,
                                   max_rows=max_rows)
    if scores.empty:
        return Flag(name, True, "n/a: fewer than two training rows of a class")
    bad = scores[scores >= threshold]
    if len(bad):
        items = [f"{n} ({v:.3f})" for n, v in bad.items()]
        return _flag(name, False, "one feature alone reaches held-out balanced accuracy >= "
                     f"{threshold:g}: " + ", ".join(items[:5]) +
                     (f", +{len(items) - 5} more" if len(items) > 5 else "") +
                     "; it may leak the label")
    return Flag(name, True, f"best single feature {scores.index[0]} "
                f"(balanced accuracy {scores.iloc[0]:.3f}) of {len(scores)} scored")


# ---------------------------------------------------------------------------- helpers
def _malicious(labels: np.ndarray, benign: str) -> np.ndarray:
    """Boolean ``(N,)``: True where the label is not the benign one."""
    if len(labels) and not (labels == benign).any():
        values, counts = np.unique(labels, return_counts=True)
        benign = str(values[np.argmax(counts)])
    return np.asarray(labels != benign)


def _folds(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Fold 0/1 of each row ``(N,)``: a seeded permutation, alternating within each class."""
    perm = rng.permutation(len(y))
    ys = y[perm]
    rank = np.where(ys, np.cumsum(ys) - 1, np.cumsum(~ys) - 1)
    fold = np.empty(len(y), dtype=np.int64)
    fold[perm] = rank % 2
    return fold


def _as_float(col: pd.Series) -> np.ndarray:
    """A numeric column as float64 ``(N,)``; missing values become ``-inf`` (lowest)."""
    x = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    return np.where(np.isnan(x), -np.inf, x)


def _best_thresholds(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Best rule ``(x > t) ^ flip`` of every column of ``x`` ``(N, D)`` for labels ``y``
    ``(N,)`` by balanced accuracy: thresholds ``t`` ``(D,)`` and flips ``(D,)``.

    One sort per column; a cut after sorted row ``i`` is kept only where the next value
    differs (ties stay on one side, so their order does not matter); ``t = -inf`` (everything
    malicious) is the fallback.
    """
    xt = np.ascontiguousarray(x.T)  # (D, N): each column sorted in contiguous memory
    d, n = xt.shape
    order = np.argsort(xt, axis=1)
    xs = np.take_along_axis(xt, order, axis=1)
    n_pos, n_neg = max(int(y.sum()), 1), max(int((~y).sum()), 1)
    pos_low = np.cumsum(y[order], axis=1)  # malicious rows at or below the cut
    neg_low = np.arange(1, n + 1)[None, :] - pos_low
    ba = 0.5 * ((n_pos - pos_low) / n_pos + neg_low / n_neg)  # rule: malicious when x > t
    cut = np.zeros((d, n), dtype=bool)
    cut[:, :-1] = xs[:, 1:] > xs[:, :-1]
    score = np.where(cut, np.maximum(ba, 1.0 - ba), -1.0)
    best = np.argmax(score, axis=1)
    rows = np.arange(d)
    found = score[rows, best] > 0.5
    t = np.where(found, xs[rows, best], -np.inf)
    flip = found & (ba[rows, best] < 0.5)
    return t, flip


def _value_majority(codes: np.ndarray, y: np.ndarray, n_values: int) -> np.ndarray:
    """Per value code, whether it predicts malicious ``(n_values,)``: its share of the
    malicious rows exceeds its share of the benign rows."""
    pos = np.bincount(codes[y], minlength=n_values) / max(int(y.sum()), 1)
    neg = np.bincount(codes[~y], minlength=n_values) / max(int((~y).sum()), 1)
    return np.asarray(pos > neg)


def _balanced_accuracy(pred: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Balanced accuracy of every column of predictions ``pred`` ``(N, D)`` -> ``(D,)``."""
    tpr = (pred & y[:, None]).sum(axis=0) / max(int(y.sum()), 1)
    tnr = (~pred & ~y[:, None]).sum(axis=0) / max(int((~y).sum()), 1)
    return np.asarray(0.5 * (tpr + tnr))
