"""advsec's attacks against torchattacks and ART on the same model and inputs.

Conventions matched explicitly: torchattacks' ``alpha`` and ART's ``eps_step`` are absolute step
sizes, so advsec gets ``step_size=alpha``; torchattacks' MI-FGSM normalises the gradient over dims
(1, 2, 3), so it sees the tabular batch as ``(N, 1, 1, D)`` through a flattening wrapper; ART gets
``clip_values=(0, 1)`` (advsec's default box) and one batch for all rows.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from torch import nn

from advsec.attacks import APGD, BIM, FGSM, MIM, PGD, APGDMargin

torchattacks = pytest.importorskip("torchattacks")
pytest.importorskip("art")
from art.attacks.evasion import (  # noqa: E402
    BasicIterativeMethod,
    FastGradientMethod,
    MomentumIterativeMethod,
    ProjectedGradientDescent,
)
from art.estimators.classification import PyTorchClassifier  # noqa: E402

pytestmark = pytest.mark.reference

D, C, N = 12, 3, 200


class Image(nn.Module):
    """Feeds ``(N, 1, 1, D)`` inputs to a tabular model (for torchattacks' image conventions)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(D, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(),
                          nn.Linear(16, C)).eval()
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(N, D, generator=gen)
    y = torch.randint(0, C, (N,), generator=gen)
    logging.getLogger("art").setLevel(logging.ERROR)
    clf = PyTorchClassifier(model, loss=nn.CrossEntropyLoss(), input_shape=(D,), nb_classes=C,
                            clip_values=(0.0, 1.0))
    return model, Image(model).eval(), clf, x, y


def _ta(attack, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return attack(x.view(len(x), 1, 1, -1), y).view(len(x), -1)


@pytest.mark.parametrize("eps", [0.01, 0.1, 0.3])
def test_fgsm_bit_identical_to_torchattacks_and_art(setup, eps):
    model, image, clf, x, y = setup
    ours = FGSM(eps=eps)(model, x, y)
    theirs = _ta(torchattacks.FGSM(image, eps=eps), x, y)
    assert torch.equal(ours, theirs)
    art = FastGradientMethod(clf, norm=np.inf, eps=eps, batch_size=N).generate(
        x.numpy(), y=y.numpy())
    assert art.dtype == np.float32
    assert np.array_equal(ours.numpy(), art)


def test_fgsm_eps_list_bit_identical_to_torchattacks(setup):
    model, image, _, x, y = setup
    ours = FGSM(eps=[0.02, 0.2])(model, x, y)
    for e, adv in zip([0.02, 0.2], ours, strict=True):
        assert torch.equal(adv, _ta(torchattacks.FGSM(image, eps=e), x, y))


def test_bim_matches_torchattacks_and_art(setup):
    model, image, clf, x, y = setup
    eps, alpha, steps = 0.1, 0.01, 10
    ours = BIM(eps=eps, step_size=alpha, steps=steps)(model, x, y)
    theirs = _ta(torchattacks.BIM(image, eps=eps, alpha=alpha, steps=steps), x, y)
    assert (ours - theirs).abs().max() <= 1e-6
    art = BasicIterativeMethod(clf, eps=eps, eps_step=alpha, max_iter=steps, batch_size=N,
                               verbose=False).generate(x.numpy(), y=y.numpy())
    assert np.abs(ours.numpy() - art).max() <= 1e-6


def test_pgd_fixed_start_matches_torchattacks_and_art(setup):
    model, image, clf, x, y = setup
    eps, alpha, steps = 0.1, 0.025, 10
    ours = PGD(eps=eps, step_size=alpha, steps=steps, random_start=False)(model, x, y)
    theirs = _ta(torchattacks.PGD(image, eps=eps, alpha=alpha, steps=steps,
                                  random_start=False), x, y)
    assert (ours - theirs).abs().max() <= 1e-6
    art = ProjectedGradientDescent(clf, eps=eps, eps_step=alpha, max_iter=steps,
                                   num_random_init=0, batch_size=N, verbose=False).generate(
        x.numpy(), y=y.numpy())
    assert np.abs(ours.numpy() - art).max() <= 1e-6


def test_mim_matches_torchattacks_and_art(setup):
    model, image, clf, x, y = setup
    eps, alpha, steps, decay = 0.1, 0.02, 10, 1.0
    ours = MIM(eps=eps, step_size=alpha, steps=steps, decay=decay)(model, x, y)
    theirs = _ta(torchattacks.MIFGSM(image, eps=eps, alpha=alpha, steps=steps, decay=decay),
                 x, y)
    assert (ours - theirs).abs().max() <= 1e-6
    # ART normalises by the L1 norm instead of the mean: the same direction, sign for sign
    art = MomentumIterativeMethod(clf, eps=eps, eps_step=alpha, max_iter=steps, decay=decay,
                                  batch_size=N, verbose=False).generate(x.numpy(), y=y.numpy())
    assert np.abs(ours.numpy() - art).max() <= 1e-6


def test_mim_half_decay_matches_torchattacks(setup):
    model, image, _, x, y = setup
    ours = MIM(eps=0.2, step_size=0.03, steps=8, decay=0.5)(model, x, y)
    theirs = _ta(torchattacks.MIFGSM(image, eps=0.2, alpha=0.03, steps=8, decay=0.5), x, y)
    assert (ours - theirs).abs().max() <= 1e-6


@pytest.fixture(scope="module")
def trained():
    """A small binary detector on synthetic flows, trained once for the APGD comparisons."""
    from advsec.datasets import load
    from advsec.features.space import FeatureSpace
    from advsec.models import Detector

    ds = load("synthetic", rows=1000, seed=3)
    space = FeatureSpace(ds.schema).fit(ds.train)
    det = Detector(hidden=(32, 16), epochs=25, batch_size=64, lr=3e-3, seed=0,
                   device="cpu").fit(space.encode(ds.train), ds.labels("train"))
    x = torch.as_tensor(space.encode(ds.test))[:300]
    y = det.encode_labels(ds.labels("test"))[:300]
    return det, x, y


def _robust_accuracy(model, x, y, x_adv) -> float:
    with torch.no_grad():
        return float((model.as_module()(x_adv).argmax(1) == y).float().mean())


@pytest.mark.parametrize("attack_cls", [APGD, APGDMargin])
def test_apgd_robust_accuracy_not_above_pgd(trained, attack_cls):
    det, x, y = trained
    for eps in (0.03, 0.06):
        pgd = PGD(eps=eps, steps=20)(det, x, y)
        apgd = attack_cls(eps=eps, steps=20)(det, x, y)
        assert (apgd - x).abs().max() <= eps + 1e-6
        assert _robust_accuracy(det, x, y, apgd) <= _robust_accuracy(det, x, y, pgd)


def test_apgd_not_weaker_than_torchattacks_apgd(trained):
    det, x, y = trained
    eps = 0.05
    ours = APGD(eps=eps, steps=20)(det, x, y)
    theirs = torchattacks.APGD(Image(det.as_module()).eval(), eps=eps, steps=20, loss="ce",
                               seed=0)(x.view(len(x), 1, 1, -1), y).view(len(x), -1)
    assert _robust_accuracy(det, x, y, ours) <= _robust_accuracy(det, x, y, theirs) + 0.02
