"""Certified training (CROWN-IBP): the robust loss bounds the loss of every point of the
region, gradients reach the weights, and the trained detector certifies more records than
the same network trained clean, none of them broken by PGD."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from advsec.attacks import PGD
from advsec.defenses import METHODS, crown_ibp_loss, crown_ibp_training, defend
from advsec.errors import ConfigError
from advsec.models import Detector
from advsec.verification import CROWN, relu_network

pytestmark = pytest.mark.usefixtures("one_thread")


def _net(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 12), nn.ReLU(), nn.Linear(12, 8), nn.ReLU(),
                         nn.Linear(8, 3)).double()


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0])
def test_robust_loss_bounds_the_loss_of_sampled_points(beta):
    module = _net(1)
    g = torch.Generator().manual_seed(2)
    x = torch.rand((40, 5), generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (40,), generator=g)
    lo, hi = x - 0.05, x + 0.05
    net = relu_network(module, dtype=torch.float64, detach=False)
    for i in range(len(x)):  # per record: the bound is >= the CE of 2,000 points of its box
        bound = crown_ibp_loss(net, lo[i : i + 1], hi[i : i + 1], y[i : i + 1], beta=beta)
        pts = lo[i] + (hi[i] - lo[i]) * torch.rand((2000, 5), generator=g, dtype=torch.float64)
        with torch.no_grad():
            ce = F.cross_entropy(module(pts), y[i].repeat(2000), reduction="none")
        assert float(bound.detach()) >= float(ce.max()) - 1e-9
    loss = crown_ibp_loss(net, lo, hi, y, beta=beta)
    loss.backward()
    grads = [p.grad for p in module.parameters()]
    assert all(gr is not None and bool(gr.abs().sum() > 0) for gr in grads)


def test_certified_training_certifies_more_and_stays_sound(small_synthetic_detector):
    ds, space, _ = small_synthetic_detector
    xtr = torch.as_tensor(space.encode(ds.train))
    ytr = ds.labels("train")
    test = ds.test.iloc[:300]
    x = torch.as_tensor(space.encode(test))
    options = {"hidden": (16,), "epochs": 12, "batch_size": 64, "lr": 3e-3, "seed": 0,
               "device": "cpu"}
    clean = Detector(**options).fit(xtr, ytr)
    y = clean.encode_labels(test[ds.label].astype(str).to_numpy())
    untrained = Detector(**options)
    res = crown_ibp_training(untrained, xtr, ytr, eps=0.1, feature_space=space, warmup=1,
                             eval_data=(x, test[ds.label].astype(str).to_numpy()))
    cert = res.detector
    assert not hasattr(untrained, "module_")  # the input is left unchanged
    assert [h["eps"] for h in cert.history_] == sorted(h["eps"] for h in cert.history_)
    assert cert.history_[0]["eps"] == 0.0 and cert.history_[-1]["eps"] == pytest.approx(0.1)
    assert res.clean["accuracy"] > 0.7
    eps = [0.05, 0.1]
    verifier = CROWN(feature_space=space)
    before = verifier(clean, x, y, eps=eps).certified_accuracy
    after_res = verifier(cert, x, y, eps=eps)
    after = after_res.certified_accuracy
    assert after[1] > before[1] + 0.1, (before, after)
    advs = PGD(feature_space=space, steps=30, restarts=2, seed=0)(cert, x, y, eps=eps)
    for e, adv in enumerate(advs):
        robust = cert.logits(adv).argmax(1) == y
        assert not bool((after_res.verified[e] & ~robust).any())


def test_registered_and_checked(small_synthetic_detector):
    ds, space, det = small_synthetic_detector
    assert "crown_ibp" in METHODS
    x = torch.as_tensor(space.encode(ds.train.iloc[:64]))
    y = ds.labels("train")[:64]
    res = defend(det, method="certified", x=x, y=y, eps=0.05, epochs=2, feature_space=space)
    assert res.name == "crown_ibp" and len(res.detector.history_) == len(det.history_) + 2
    one = crown_ibp_training(det, x, y, epochs=1, eps=0.05)  # no warm-up with one epoch
    assert one.detector.history_[-1]["eps"] == pytest.approx(0.05)
    with pytest.raises(ConfigError, match="warmup"):
        crown_ibp_training(det, x, y, epochs=2, warmup=2)
    with pytest.raises(ConfigError, match="ReLU"):
        crown_ibp_training(Detector(activation="tanh", epochs=2), x, y)
    with pytest.raises(ConfigError, match="eps"):
        crown_ibp_training(det, x, y, eps=0.0)
