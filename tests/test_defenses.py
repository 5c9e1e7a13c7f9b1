"""Defences on a small detector and synthetic flows: robustness gained, clean accuracy kept.

Floors: on these data the undefended detector has clean accuracy ~0.94 and accuracy ~0.54 under
PGD at eps 0.1; every hardened one must keep clean accuracy >= 0.85 and a false-positive rate
<= 0.10 (a detector that flags everything would have a perfect detection rate and be useless),
and gain at least 5 points of accuracy under attack.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from advsec.attacks import FGSM, PGD, valid_records
from advsec.datasets import load
from advsec.defenses import (
    DefenseResult,
    adversarial_batch_transform,
    data_enhancement_training,
    defend,
    enhance_training_set,
    fast_adversarial_training,
    harden,
    pgd_adversarial_training,
    trades_training,
)
from advsec.errors import ConfigError
from advsec.features.space import FeatureSpace
from advsec.models import Detector

CLEAN_FLOOR = 0.85
FPR_CEILING = 0.10
EPS = 0.1


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def flows():
    ds = load("synthetic", rows=2000, seed=0)
    space = FeatureSpace(ds.schema).fit(ds.train)
    x_tr, x_te = space.encode(ds.train), space.encode(ds.test)
    det = Detector(hidden=(32, 16), epochs=30, seed=0, device="cpu", validation_split=0.0)
    det.fit(x_tr, ds.labels("train"))
    return {"space": space, "x_tr": x_tr, "y_tr": ds.labels("train"), "x_te": x_te,
            "y_te": ds.labels("test"), "det": det}


def pgd_accuracy(det: Detector, x: np.ndarray, y: np.ndarray, *, eps: float = EPS,
                 space=None) -> float:
    attack = PGD(eps=eps, steps=10, seed=1, feature_space=space)
    x_adv = attack(det, torch.as_tensor(x), det.encode_labels(y))
    return det.score(x_adv, y)


@pytest.fixture(scope="module")
def base_robust(flows) -> float:
    return pgd_accuracy(flows["det"], flows["x_te"], flows["y_te"])


def _weights(det: Detector) -> list[torch.Tensor]:
    return [p.detach().clone() for p in det.module_.parameters()]


def _check_clean(res: DefenseResult) -> None:
    assert res.clean["accuracy"] >= CLEAN_FLOOR, res.clean
    assert res.clean["fpr"] <= FPR_CEILING, res.clean
    assert 0.0 < res.clean["detection_rate"] <= 1.0
    assert set(res.clean) >= {"accuracy", "detection_rate", "fpr", "precision", "f1"}


def test_pgd_at_improves_pgd_robustness_and_keeps_clean_accuracy(flows, base_robust):
    before = _weights(flows["det"])
    res = pgd_adversarial_training(flows["det"], flows["x_tr"], flows["y_tr"], eps=EPS,
                                   steps=5, epochs=6, eval_data=(flows["x_te"], flows["y_te"]))
    after = pgd_accuracy(res.detector, flows["x_te"], flows["y_te"])
    assert after >= base_robust + 0.05, (base_robust, after)
    _check_clean(res)
    assert res.name == "pgd-at" and res.info["epochs"] == 6 and res.seconds > 0
    # the input detector is untouched
    assert all(torch.equal(a, b) for a, b in zip(before, _weights(flows["det"]), strict=True))


def test_trades_improves_pgd_robustness_and_keeps_clean_accuracy(flows, base_robust):
    res = trades_training(flows["det"], flows["x_tr"], flows["y_tr"], eps=EPS, beta=1.0,
                          steps=5, epochs=6, eval_data=(flows["x_te"], flows["y_te"]))
    after = pgd_accuracy(res.detector, flows["x_te"], flows["y_te"])
    assert after >= base_robust + 0.05, (base_robust, after)
    _check_clean(res)
    hist = res.detector.history_[-6:]
    assert all({"natural_loss", "robust_loss"} <= set(h) for h in hist)


def test_trades_beta_trades_clean_accuracy_for_robustness(flows):
    ev = (flows["x_te"], flows["y_te"])
    low, high = (trades_training(flows["det"], flows["x_tr"], flows["y_tr"], eps=EPS, beta=b,
                                 steps=5, epochs=6, eval_data=ev) for b in (0.5, 2.0))
    assert low.clean["accuracy"] >= high.clean["accuracy"]
    assert (pgd_accuracy(high.detector, *ev) >= pgd_accuracy(low.detector, *ev))


def test_fast_at_improves_fgsm_robustness(flows):
    det, x_te, y_te = flows["det"], flows["x_te"], flows["y_te"]
    fgsm = FGSM(eps=EPS)
    base = det.score(fgsm(det, torch.as_tensor(x_te), det.encode_labels(y_te)), y_te)
    res = fast_adversarial_training(det, flows["x_tr"], flows["y_tr"], eps=EPS, epochs=6,
                                    eval_data=(x_te, y_te))
    hard = res.detector
    after = hard.score(fgsm(hard, torch.as_tensor(x_te), hard.encode_labels(y_te)), y_te)
    assert after >= base + 0.05, (base, after)
    _check_clean(res)
    assert res.info["alpha"] == pytest.approx(1.25 * EPS)


def test_data_enhancement_adds_one_adversarial_row_per_row_with_true_labels(flows):
    det, x_tr, y_tr = flows["det"], flows["x_tr"], flows["y_tr"]
    y_idx = det.encode_labels(y_tr)
    x_aug, y_aug, x_adv = enhance_training_set(det, x_tr, y_idx, attack=FGSM(eps=EPS))
    n = len(x_tr)
    assert x_aug.shape == (2 * n, x_tr.shape[1]) and x_adv.shape == x_tr.shape
    assert torch.equal(y_aug[:n], y_idx) and torch.equal(y_aug[n:], y_idx)
    assert torch.equal(x_aug[:n], torch.as_tensor(x_tr))
    assert float((x_adv - torch.as_tensor(x_tr)).abs().max()) <= EPS + 1e-6
    half = enhance_training_set(det, x_tr, y_idx, attack=FGSM(eps=EPS), ratio=0.5)
    assert len(half[2]) == round(0.5 * n)
    res = data_enhancement_training(det, x_tr, y_tr, attack=FGSM(eps=EPS), epochs=4,
                                    eval_data=(flows["x_te"], flows["y_te"]))
    assert res.info["adversarial_rows"] == n
    _check_clean(res)
    x_te, y_te = flows["x_te"], flows["y_te"]
    fgsm = FGSM(eps=EPS)
    before = det.score(fgsm(det, torch.as_tensor(x_te), det.encode_labels(y_te)), y_te)
    hard = res.detector
    after = hard.score(fgsm(hard, torch.as_tensor(x_te), hard.encode_labels(y_te)), y_te)
    assert after >= before + 0.05, (before, after)


def test_own_prediction_target_needs_a_targeted_attack(flows):
    det = flows["det"]
    with pytest.raises(ConfigError):
        enhance_training_set(det, flows["x_tr"][:10], det.encode_labels(flows["y_tr"][:10]),
                             attack=FGSM(eps=EPS), target="predicted")


def test_constraint_aware_training_examples_are_valid_records(flows):
    det, space = flows["det"], flows["space"]
    x = torch.as_tensor(flows["x_tr"][:200])
    y = det.encode_labels(flows["y_tr"][:200])
    transform = adversarial_batch_transform(PGD(eps=0.2, steps=5, feature_space=space))
    x_adv = transform(det.as_module(), x, y)
    assert x_adv.shape == x.shape and not torch.equal(x_adv, x)
    assert valid_records(space, x_adv, x).all()
    fixed = ~torch.as_tensor(space.mutable_mask)
    assert torch.equal(x_adv[:, fixed], x[:, fixed])
    # unconstrained examples are not all valid: the constraint is what makes them so
    free = adversarial_batch_transform(PGD(eps=0.2, steps=5))(det.as_module(), x, y)
    assert not valid_records(space, free, x).all()


def test_defend_dispatch_and_determinism(flows):
    det, x_tr, y_tr = flows["det"], flows["x_tr"][:400], flows["y_tr"][:400]
    a = harden(det, method="pgd_at", x=x_tr, y=y_tr, eps=EPS, steps=2, epochs=1, seed=3)
    b = harden(det, method="pgd-at", x=x_tr, y=y_tr, eps=EPS, steps=2, epochs=1, seed=3)
    assert isinstance(a, Detector)
    assert all(torch.equal(p, q) for p, q in zip(_weights(a), _weights(b), strict=True))
    res = defend(det, method="data_augmentation", x=x_tr, y=y_tr, attack="pgd", steps=2,
                 epochs=1)
    assert res.info["attack"] == "pgd" and res.info["adversarial_rows"] == len(x_tr)
    with pytest.raises(ConfigError):
        defend(det, method="dropout", x=x_tr, y=y_tr)
    with pytest.raises(ConfigError):
        defend(det, method="data_augmentation", x=x_tr, y=y_tr, attack="nope")


def test_unfitted_detector_trains_from_scratch(flows):
    fresh = Detector(hidden=(16,), epochs=2, seed=0, device="cpu")
    res = trades_training(fresh, flows["x_tr"][:300], flows["y_tr"][:300], eps=EPS, steps=2)
    assert res.info["from_scratch"] and hasattr(res.detector, "module_")
    assert not hasattr(fresh, "module_")
    with pytest.raises(ConfigError):
        data_enhancement_training(fresh, flows["x_tr"][:10], flows["y_tr"][:10],
                                  attack=FGSM(eps=EPS))
