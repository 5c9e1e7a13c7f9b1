"""worst_case, transfer_table and adaptive_evaluation find the benign class as the attacks and
evaluate_attack do: a detector whose benign class is not index 0 gets the same detection rate
and false-positive rate from all of them."""

from __future__ import annotations

import numpy as np
import torch

from advsec.attacks import make_attack
from advsec.datasets import load
from advsec.evaluation import evaluate_attack, worst_case
from advsec.evaluation.worst_case import adaptive_evaluation, transfer_table
from advsec.features import FeatureSpace
from advsec.models import Detector


def test_benign_class_not_first_is_found_like_the_attacks_find_it() -> None:
    torch.manual_seed(0)
    ds = load("synthetic", rows=900, seed=0)
    space = FeatureSpace(ds.schema).fit(ds.train)

    def rename(a: np.ndarray) -> np.ndarray:
        return np.where(np.asarray(a) == "benign", "normal", "attack")

    det = Detector(hidden=(16,), epochs=3, seed=0).fit(space.encode(ds.train),
                                                       rename(ds.labels("train")))
    assert list(det.classes_) == ["attack", "normal"]  # benign is index 1
    x = torch.as_tensor(space.encode(ds.test))
    y = det.encode_labels(rename(ds.labels("test")))
    atk = make_attack("fgsm", feature_space=space)
    ref = evaluate_attack(det, atk, x, y, eps=[0.0, 0.1], space=space).table
    # independently: detection rate = malicious (class 0) records predicted malicious
    pred = det.predict_proba(x.numpy()).argmax(1)
    y_np = y.numpy()
    assert np.isclose(ref.loc[0, "detection_rate"], (pred[y_np == 0] == 0).mean())
    assert np.isclose(ref.loc[0, "fpr"], (pred[y_np == 1] == 0).mean())
    wc = worst_case(det, [atk], x, y, eps=[0.0, 0.1]).table
    for e in (0.0, 0.1):
        want = ref[ref["eps"] == e].iloc[0]
        for row in wc[wc["eps"] == e].itertuples():
            assert np.isclose(row.detection_rate, want["detection_rate"])
            assert np.isclose(row.fpr, want["fpr"])
    tr = transfer_table(det, {0.0: x}, y, name="clean", x=x)
    assert np.isclose(tr.loc[0, "detection_rate"], ref.loc[0, "detection_rate"])
    table, _ = adaptive_evaluation(det, [atk], x, y, eps=[0.0])
    assert np.allclose(table["detection_rate"], ref.loc[0, "detection_rate"])
    # an explicit index still wins
    flipped = worst_case(det, [atk], x, y, eps=[0.0], benign_class=0).table
    assert np.isclose(flipped.loc[0, "detection_rate"], (pred[y_np == 1] == 1).mean())


def test_raw_labels_of_a_detector_and_a_wrong_length() -> None:
    import pytest

    ds = load("synthetic", rows=600, seed=1)
    space = FeatureSpace(ds.schema).fit(ds.train)
    det = Detector(hidden=(8,), epochs=2, seed=0).fit(space.encode(ds.train), ds.labels("train"))
    x = torch.as_tensor(space.encode(ds.test))
    raw = np.asarray(ds.labels("test"))  # text labels, as the table holds them
    idx = det.encode_labels(raw)
    atk = make_attack("fgsm", feature_space=space)
    by_raw = evaluate_attack(det, atk, x, raw, eps=[0.0, 0.1], space=space).table
    by_idx = evaluate_attack(det, atk, x, idx, eps=[0.0, 0.1], space=space).table
    assert np.allclose(by_raw["accuracy"], by_idx["accuracy"])
    wc_raw = worst_case(det, [atk], x, raw, eps=[0.1]).table
    wc_idx = worst_case(det, [atk], x, idx, eps=[0.1]).table
    assert np.allclose(wc_raw["accuracy"], wc_idx["accuracy"])
    with pytest.raises(ValueError, match=r"y must have shape \(\d+,\), one label per row"):
        worst_case(det, [atk], x, idx[:-1], eps=[0.1])
