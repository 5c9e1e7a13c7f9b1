"""Square (score-based), transfer to non-differentiable detectors, and label-flip poisoning."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier

from advsec.attacks import FGSM, PGD, Square, flip_labels, poisoning_study, transfer_attack
from advsec.datasets import load
from advsec.features.space import FeatureSpace
from advsec.models import Detector


@pytest.fixture(scope="module")
def flows():
    ds = load("synthetic", rows=1500, seed=7)
    space = FeatureSpace(ds.schema).fit(ds.train)
    x_tr, x_te = space.encode(ds.train), space.encode(ds.test)
    y_tr, y_te = ds.labels("train"), ds.labels("test")
    det = Detector(hidden=(32, 16), epochs=20, batch_size=64, lr=3e-3, seed=0,
                   device="cpu").fit(x_tr, y_tr)
    return space, det, x_tr, y_tr, x_te[:240], y_te[:240]


# ------------------------------------------------------------------------------ Square
def test_square_fools_the_detector_within_the_ball(flows):
    _, det, *_, x_te, y_te = flows
    x = torch.as_tensor(x_te)
    y = det.encode_labels(y_te)
    res = Square(eps=[0.05, 0.2], queries=300).run(det, x, y)
    assert res.gradients == 0 and res.queries >= 2
    for e, adv in zip([0.05, 0.2], res.x_adv, strict=True):
        assert (adv - x).abs().max() <= e + 1e-6
        assert adv.min() >= 0 and adv.max() <= 1
    assert res.success_rate[1] > 0.3
    assert res.success_rate[1] >= res.success_rate[0]


def test_square_is_deterministic_per_seed(flows):
    _, det, *_, x_te, y_te = flows
    x, y = torch.as_tensor(x_te[:60]), det.encode_labels(y_te[:60])
    a = Square(eps=0.1, queries=100, seed=1)(det, x, y)
    b = Square(eps=0.1, queries=100, seed=1)(det, x, y)
    c = Square(eps=0.1, queries=100, seed=2)(det, x, y)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_square_respects_the_feature_space(flows):
    space, det, *_, x_te, y_te = flows
    x, y = torch.as_tensor(x_te), det.encode_labels(y_te)
    res = Square(eps=0.2, queries=200, feature_space=space, evasion=True).run(det, x, y)
    adv = res.x_adv[0]
    fixed = torch.as_tensor(~space.mutable_mask)
    assert torch.equal(adv[:, fixed], x[:, fixed])
    assert (adv - x).abs().max() <= 0.2 + 1e-6
    assert res.valid_share == [1.0]
    benign = y == res.benign_class
    assert torch.equal(adv[benign], x[benign])


def test_square_queries_a_scikit_learn_model_through_predict_proba(flows):
    _, _, x_tr, y_tr, x_te, y_te = flows
    forest = RandomForestClassifier(n_estimators=30, random_state=0).fit(x_tr, y_tr)
    y = torch.as_tensor(np.searchsorted(forest.classes_, y_te))
    x = torch.as_tensor(x_te)
    res = Square(eps=0.2, queries=150).run(forest, x, y)
    adv_pred = forest.predict(res.x_adv[0].numpy())
    assert np.mean(adv_pred == y_te) < np.mean(forest.predict(x_te) == y_te)
    assert (res.x_adv[0] - x).abs().max() <= 0.2 + 1e-6


def test_square_works_with_a_scoring_callable(flows):
    _, det, *_, x_te, y_te = flows
    module = det.as_module()

    def scores(x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(module(x), dim=1)  # probabilities only

    x, y = torch.as_tensor(x_te[:80]), det.encode_labels(y_te[:80])
    adv = Square(eps=0.2, queries=150)(scores, x, y)
    with torch.no_grad():
        before = (module(x).argmax(1) == y).float().mean()
        assert (module(adv).argmax(1) == y).float().mean() < before


# ------------------------------------------------------------------------------ transfer
def test_transfer_to_forest_and_boosting(flows):
    space, det, x_tr, y_tr, x_te, y_te = flows
    targets = {
        "forest": RandomForestClassifier(n_estimators=30, random_state=0).fit(x_tr, y_tr),
        "hgb": HistGradientBoostingClassifier(max_iter=40, random_state=0).fit(x_tr, y_tr),
    }
    res = transfer_attack(det, targets, x_te, y_te, attack="pgd", eps=[0.0, 0.1, 0.3],
                          attack_options={"feature_space": space})
    table = res.table
    assert list(table.columns[:3]) == ["attack", "target", "eps"]
    assert set(table["target"]) == {"forest", "hgb"} and len(table) == 6
    for _, rows in table.groupby("target"):
        rates = rows.sort_values("eps")["transfer_success_rate"].to_numpy()
        assert rates[0] == 0.0  # eps 0 changes nothing
        assert rates[-1] > 0.0
        assert 0.0 <= rates.max() <= 1.0
    assert (table["valid_share"] == 1.0).all()
    assert set(res.x_adv) == {0.0, 0.1, 0.3}
    # success on the surrogate beats transfer to other model families at the same eps
    big = table[table["eps"] == 0.3]
    assert (big["surrogate_success_rate"] >= big["transfer_success_rate"] - 0.2).all()


def test_transfer_evasion_counts_detected_malicious_rows(flows):
    _, det, x_tr, y_tr, x_te, y_te = flows
    forest = RandomForestClassifier(n_estimators=20, random_state=0).fit(x_tr, y_tr)
    res = transfer_attack(det, forest, x_te, y_te, attack=FGSM(eps=0.3, evasion=True))
    row = res.table.iloc[0]
    detected = (np.asarray(y_te) == "malicious") & (forest.predict(x_te) == "malicious")
    assert row["target"] == "RandomForestClassifier"
    assert row["n_eligible"] == detected.sum()
    adv_pred = forest.predict(res.x_adv[0.3])
    assert row["transfer_success_rate"] == pytest.approx(np.mean(adv_pred[detected] == "benign"))
    benign = np.asarray(y_te) == "benign"
    assert np.array_equal(res.x_adv[0.3][benign], x_te[benign])


def test_transfer_rejects_non_evasion_attack_for_evasion(flows):
    _, det, *_, x_te, y_te = flows
    with pytest.raises(ValueError, match="evasion"):
        transfer_attack(det, det, x_te, y_te, attack=PGD(eps=0.1), evasion=True)


# ------------------------------------------------------------------------------ poisoning
def test_random_flips_hit_the_rate_and_change_every_chosen_label():
    y = np.array(["benign"] * 70 + ["malicious"] * 30)
    y_bad, flipped = flip_labels(y, rate=0.2, mode="random", seed=0)
    assert flipped.sum() == 20
    assert np.all(y_bad[flipped] != y[flipped])
    assert np.array_equal(y_bad[~flipped], y[~flipped])
    assert np.array_equal(flip_labels(y, rate=0.2, seed=0)[0], y_bad)
    y3 = np.array([0, 1, 2] * 10)
    y3_bad, f3 = flip_labels(y3, rate=0.5, seed=1)
    assert f3.sum() == 15 and np.all(y3_bad[f3] != y3[f3]) and y3_bad.dtype == y3.dtype


def test_targeted_flips_relabel_malicious_as_benign(caplog):
    y = np.array(["benign"] * 70 + ["malicious"] * 30)
    y_bad, flipped = flip_labels(y, rate=0.1, mode="targeted", benign_label="benign")
    assert flipped.sum() == 10
    assert np.all(y[flipped] == "malicious") and np.all(y_bad[flipped] == "benign")
    with caplog.at_level(logging.WARNING):
        _, flipped = flip_labels(y, rate=0.5, mode="targeted")
    assert flipped.sum() == 30 and "only 30" in caplog.text
    assert flip_labels(y, rate=0.0)[1].sum() == 0
    with pytest.raises(ValueError):
        flip_labels(y, rate=1.5)
    with pytest.raises(ValueError):
        flip_labels(y, rate=0.1, mode="sneaky")


def test_poisoning_study_reports_clean_metrics_per_rate(flows):
    _, _, x_tr, y_tr, x_te, y_te = flows
    table = poisoning_study(x_tr, y_tr, x_te, y_te, rates=[0.0, 0.25], mode="targeted",
                            detector_params={"hidden": (16,), "epochs": 15, "batch_size": 64,
                                             "lr": 3e-3, "device": "cpu"})
    assert list(table["rate"]) == [0.0, 0.25]
    assert table["n_flipped"].iloc[0] == 0 and table["n_flipped"].iloc[1] > 0
    for col in ("accuracy", "precision", "detection_rate", "f1", "fpr", "seconds"):
        assert col in table.columns
    # relabelling malicious training records as benign costs detections
    assert table["detection_rate"].iloc[1] < table["detection_rate"].iloc[0]
