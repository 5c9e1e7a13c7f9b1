"""Valid adversarial records: attacks with a FeatureSpace on the synthetic flows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from advsec.attacks import ATTACKS, PGD, attack_spec, make_attack, valid_records
from advsec.datasets import load
from advsec.features.schema import FeatureKind
from advsec.features.space import FeatureSpace
from advsec.models import Detector

FAST = {"apgd": {"steps": 20}, "apgd-margin": {"steps": 20}, "square": {"queries": 150},
        "hopskipjump": {"queries": 200}}


@pytest.fixture(scope="module")
def flows():
    ds = load("synthetic", rows=1200, seed=5)
    space = FeatureSpace(ds.schema).fit(ds.train)
    det = Detector(hidden=(32, 16), epochs=20, batch_size=64, lr=3e-3, seed=0,
                   device="cpu").fit(space.encode(ds.train), ds.labels("train"))
    x = torch.as_tensor(space.encode(ds.test))[:200]
    y = det.encode_labels(ds.labels("test"))[:200]
    return space, det, x, y


def _check_records(space: FeatureSpace, x_adv: torch.Tensor, x: torch.Tensor) -> None:
    mutable = torch.as_tensor(space.mutable_mask)
    assert torch.equal(x_adv[:, ~mutable], x[:, ~mutable])
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    for f, a, b in space.blocks_:
        if f.kind is FeatureKind.CATEGORICAL:
            block = x_adv[:, a:b]
            assert torch.all((block == 0) | (block == 1))
            assert torch.all(block.sum(1) == 1)
    raw = space.decode(x_adv)
    again = space.encode(raw)
    assert np.abs(again - x_adv.numpy()).max() <= 1e-4
    for f in space.schema:
        if f.kind is FeatureKind.INTEGER:
            assert (raw[f.name] >= (f.lower if f.lower is not None else -np.inf)).all()


@pytest.mark.parametrize("name", sorted(n for n in ATTACKS if attack_spec(n).family != "tree"))
def test_constrained_attacks_produce_valid_records(flows, name):
    """Every attack of an MLP (the tree attacks' records: tests/test_verification_trees.py)."""
    space, det, x, y = flows
    attack = make_attack(name, eps=[0.05, 0.2], feature_space=space, **FAST.get(name, {}))
    res = attack.run(det, x, y)
    for adv in res.x_adv:
        _check_records(space, adv, x)
        assert (adv - x).abs().max() <= 0.2 + 1e-6
    assert res.valid_share == [1.0, 1.0]
    # success is counted on the repaired records that are returned
    with torch.no_grad():
        pred = det.as_module()(res.x_adv[1]).argmax(1)
    assert torch.equal(pred, res.adv_pred[1])


def test_l2_pgd_keeps_immutable_columns(flows):
    space, det, x, y = flows
    adv = PGD(eps=0.5, norm="l2", feature_space=space)(det, x, y)
    _check_records(space, adv, x)


def test_unconstrained_baseline_overstates_the_attacker(flows):
    space, det, x, y = flows
    free = PGD(eps=0.2).run(det, x, y, space=space)
    valid = PGD(eps=0.2, feature_space=space).run(det, x, y)
    assert free.valid_share[0] is not None and free.valid_share[0] < 0.5
    assert valid.valid_share[0] == 1.0
    assert valid.success_rate[0] <= free.success_rate[0]
    assert free.table()["valid_share"].iloc[0] == pytest.approx(free.valid_share[0])


def test_evasion_with_space_touches_only_malicious_mutable_columns(flows):
    space, det, x, y = flows
    res = PGD(eps=0.3, feature_space=space, evasion=True).run(det, x, y)
    benign = y == res.benign_class
    assert res.benign_class == list(det.classes_).index("benign")
    assert torch.equal(res.x_adv[0][benign], x[benign])
    _check_records(space, res.x_adv[0], x)
    assert 0 < res.success_rate[0] <= 1


def test_valid_records_flags_broken_rows(flows):
    space, _, x, _ = flows
    cols = space.columns_
    broken = x[:4].clone()
    imm = int(np.flatnonzero(~space.mutable_mask)[0])
    broken[0, imm] = 1.0 - broken[0, imm]  # an immutable column changed
    packets = cols.index("packets")
    broken[1, packets] = broken[1, packets] + 1e-3  # a packet count that is not whole
    ok = valid_records(space, broken, x[:4])
    assert list(ok) == [False, False, True, True]
