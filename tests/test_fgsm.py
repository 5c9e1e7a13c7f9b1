"""FGSM on the shared engine: exact step, box, hand-computed reference, eps lists."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from advsec.attacks import FGSM
from advsec.datasets import load
from advsec.evaluation import evaluate_attack
from advsec.features.space import FeatureSpace
from advsec.models import Detector


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))


def test_fgsm_equals_hand_computed_sign_step_bit_for_bit():
    model = tiny_model()
    x = torch.rand(32, 6, generator=torch.Generator().manual_seed(1))
    y = torch.randint(0, 3, (32,), generator=torch.Generator().manual_seed(2))
    eps = 0.07
    xr = x.clone().requires_grad_(True)
    loss = nn.functional.cross_entropy(model(xr), y)
    (g,) = torch.autograd.grad(loss, xr)
    expected = torch.clamp(x + eps * g.sign(), 0.0, 1.0)
    assert torch.equal(FGSM(eps=eps)(model, x, y), expected)


def test_fgsm_moves_every_unclipped_coordinate_by_exactly_eps():
    model = tiny_model()
    x = 0.2 + 0.6 * torch.rand(64, 6, generator=torch.Generator().manual_seed(3))
    y = torch.zeros(64, dtype=torch.long)
    for eps in (0.01, 0.1, 0.19):
        delta = (FGSM(eps=eps)(model, x, y) - x).abs()
        assert torch.allclose(delta, torch.full_like(delta, eps), atol=1e-7)


def test_fgsm_stays_in_box_and_clips():
    model = tiny_model()
    x = torch.rand(64, 6, generator=torch.Generator().manual_seed(4))
    y = torch.ones(64, dtype=torch.long)
    adv = FGSM(eps=0.5)(model, x, y)
    assert adv.min() >= 0 and adv.max() <= 1
    assert (adv - x).abs().max() <= 0.5 + 1e-7


def test_eps_list_equals_separate_calls():
    model = tiny_model()
    x = torch.rand(40, 6, generator=torch.Generator().manual_seed(5))
    y = torch.randint(0, 3, (40,), generator=torch.Generator().manual_seed(6))
    eps = [0.0, 0.03, 0.2]
    together = FGSM(eps=eps)(model, x, y)
    assert isinstance(together, list) and len(together) == 3
    for e, adv in zip(eps, together, strict=True):
        assert torch.equal(adv, FGSM(eps=e)(model, x, y))
    assert torch.equal(together[0], x)


def test_eval_mode_is_restored_and_no_parameter_gradients():
    model = nn.Sequential(nn.Linear(6, 8), nn.Dropout(0.5), nn.Linear(8, 2))
    model.train()
    x, y = torch.rand(8, 6), torch.zeros(8, dtype=torch.long)
    a1, a2 = FGSM(eps=0.1)(model, x, y), FGSM(eps=0.1)(model, x, y)
    assert torch.equal(a1, a2)  # dropout off during the attack
    assert model.training
    assert all(p.grad is None for p in model.parameters())


@pytest.fixture(scope="module")
def default_run():
    ds = load("synthetic")
    space = FeatureSpace(ds.schema).fit(ds.train)
    det = Detector(seed=0).fit(space.encode(ds.train), ds.labels("train"))
    return ds, space, det


def test_accuracy_is_non_increasing_in_eps_on_the_default_run(default_run):
    ds, space, det = default_run
    x, y = space.encode(ds.test), det.encode_labels(ds.labels("test"))
    eps = [0, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3]
    for attack, name in ((FGSM(), "fgsm"), (FGSM(feature_space=space), "fgsm-valid")):
        table = evaluate_attack(det, attack, x, y, eps=eps, name=name, space=space).table
        acc = table["accuracy"].to_numpy()
        assert np.all(np.diff(acc) <= 1e-12), (name, acc)
        assert acc[0] >= 0.95 and acc[-1] < 0.5
        assert table["attack_success_rate"].iloc[0] == 0.0


def test_valid_record_fgsm_keeps_immutable_features_and_valid_records(default_run):
    ds, space, det = default_run
    x, y = space.encode(ds.test), det.encode_labels(ds.labels("test"))
    adv = FGSM(eps=0.2, feature_space=space)(det, torch.from_numpy(x), y)
    raw = space.decode(adv)
    for name in ("protocol", "service"):
        assert (raw[name].astype(str).to_numpy() == ds.test[name].astype(str).to_numpy()).all()
    table = evaluate_attack(det, FGSM(feature_space=space), x, y, eps=[0.2], space=space).table
    assert table["valid_share"].iloc[0] == 1.0
    plain = evaluate_attack(det, FGSM(), x, y, eps=[0.2], space=space).table
    assert plain["valid_share"].iloc[0] < 0.05  # unconstrained FGSM breaks records
