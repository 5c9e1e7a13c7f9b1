"""Detection metrics against hand-computed values and scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score

from advsec.evaluation import attack_success_rate, confusion, detection_metrics


def test_binary_metrics_match_hand_counts_and_sklearn():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    p = np.array([0, 0, 0, 1, 1, 1, 1, 1, 0, 0])
    proba = np.linspace(0.9, 0.1, 10)[:, None] * np.array([[1, 0]]) + np.linspace(
        0.1, 0.9, 10)[:, None] * np.array([[0, 1]])
    m = detection_metrics(y, p, proba=proba)
    assert m["accuracy"] == pytest.approx(0.7)
    assert m["precision"] == pytest.approx(4 / 5) == precision_score(y, p)
    assert m["detection_rate"] == pytest.approx(4 / 6) == recall_score(y, p)
    assert m["f1"] == pytest.approx(f1_score(y, p))
    assert m["fpr"] == pytest.approx(1 / 4)
    assert m["roc_auc"] == pytest.approx(roc_auc_score(y, proba[:, 1])) == 1.0


def test_multiclass_detection_counts_any_malicious_class():
    y = np.array([0, 1, 2, 3, 0])
    p = np.array([0, 2, 3, 0, 1])   # 1->2 and 2->3 are still detections; 3->0 is a miss
    m = detection_metrics(y, p, benign_class=0)
    assert m["accuracy"] == pytest.approx(0.2)
    assert m["detection_rate"] == pytest.approx(2 / 3)
    assert m["fpr"] == pytest.approx(1 / 2)
    assert math.isnan(m["roc_auc"])


def test_attack_success_rate_counts_only_correct_or_caught_records():
    y = np.array([1, 1, 1, 0, 0])
    clean = np.array([1, 1, 0, 0, 1])
    adv = np.array([0, 1, 0, 1, 1])
    assert attack_success_rate(y, clean, adv) == pytest.approx(2 / 3)  # records 0, 1, 3
    assert attack_success_rate(y, clean, adv, evasion=True) == pytest.approx(1 / 2)  # 0, 1


def test_confusion_matrix():
    m = confusion(np.array([0, 1, 1, 2]), np.array([0, 1, 2, 2]), 3)
    np.testing.assert_array_equal(m, [[1, 0, 0], [0, 1, 1], [0, 0, 1]])


def test_worst_case_counts_the_clean_record_as_one_more_attack() -> None:
    from advsec.evaluation.evasion import WorstCase

    # records: benign ok, benign false alarm, malicious caught, malicious missed
    y = np.array([0, 0, 1, 1])
    clean = np.array([0, 1, 1, 0])
    # an attack that "fixes" both clean mistakes and breaks nothing else
    fixes = np.array([0, 0, 1, 1])
    worst = WorstCase(y, 0)
    worst.add(0.1, clean, fixes)
    (row,) = worst.rows()
    # robust = right clean and under the attack: records 0 and 2 only
    assert worst.correct(0.1).tolist() == [True, False, True, False]
    assert row["worst_case_accuracy"] == 0.5
    # the missed malicious record is not detected in the worst case (the clean record evades)
    assert row["worst_case_detection_rate"] == 0.5
    assert row["worst_case_evasion_rate"] == 0.0 and row["worst_case_false_alarm_rate"] == 0.0
    # a second attack that makes the caught record evade lowers both
    worst.add(0.1, clean, np.array([0, 1, 0, 0]))
    (row,) = worst.rows()
    assert row["worst_case_accuracy"] == 0.25 and row["worst_case_detection_rate"] == 0.0
    assert row["worst_case_evasion_rate"] == 1.0 and row["worst_case_false_alarm_rate"] == 0.0
    # worst case never above clean accuracy, whatever the attacks predict
    rng = np.random.default_rng(0)
    for _ in range(20):
        yy = rng.integers(0, 3, 50)
        pc = rng.integers(0, 3, 50)
        w = WorstCase(yy, 0)
        for _ in range(3):
            w.add(0.05, pc, rng.integers(0, 3, 50))
        (r,) = w.rows()
        assert r["worst_case_accuracy"] <= float((pc == yy).mean())
        assert r["worst_case_detection_rate"] <= float((pc[yy != 0] != 0).mean())
