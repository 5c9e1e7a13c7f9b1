"""Attacks refuse inputs they would silently mis-score: records outside the box they clip
into, labels, targets or a benign class that are no class of the model, fractional labels, a
model with one score column."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from advsec.attacks import make_attack


@pytest.fixture()
def data() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    x = torch.rand(60, 5)
    y = (x[:, 0] > 0.5).long()
    return nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 2)), x, y


def test_inputs_outside_the_box_are_refused_not_clipped(data) -> None:
    net, x, y = data
    z = x.clone()
    z[7, 2] = 3.0  # e.g. a standardised feature
    with pytest.raises(ValueError, match=r"fgsm: x holds values outside bounds=\(0, 1\) "
                                         r"\(from 0.* to 3; first at row 7\)"):
        make_attack("fgsm", eps=0.0)(net, z, y)
    # unbounded inputs: eps 0 leaves them as they are, every step stays in the ball
    assert torch.equal(make_attack("fgsm", eps=0.0, bounds=None)(net, z, y), z)
    out = make_attack("pgd", eps=0.1, bounds=None)(net, z, y)
    assert (out - z).abs().max() <= 0.1 + 1e-6


@pytest.mark.parametrize("bad", [2, -1])
def test_labels_that_are_no_class_are_refused(data, bad: int) -> None:
    net, x, y = data
    yb = y.clone()
    yb[4] = bad
    for name in ("fgsm", "pgd", "square"):
        with pytest.raises(ValueError, match=rf"{name}: label {bad} at row 4 is not a class "
                                             r"index of the model \(0 \.\. 1\)"):
            make_attack(name, eps=0.1)(net, x, yb)


def test_targets_benign_class_and_fractional_labels(data) -> None:
    net, x, y = data
    with pytest.raises(ValueError, match=r"target 7 at row 0 is not a class index"):
        make_attack("pgd", eps=0.1, targeted=True)(net, x, y, target=7)
    with pytest.raises(ValueError, match=r"benign class 5 is not one of the model's 2"):
        make_attack("pgd", eps=0.1, evasion=True, benign_class=5)(net, x, y)
    with pytest.raises(ValueError, match=r"y must hold class indices .* got 0.5 at row 0"):
        make_attack("pgd", eps=0.1)(net, x, y.float() + 0.5)
    # whole floats are class indices
    make_attack("fgsm", eps=0.1)(net, x, y.float())


def test_a_model_with_one_score_column_is_refused(data) -> None:
    net, x, y = data
    one = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 1))
    for name in ("pgd", "hopskipjump"):
        with pytest.raises(ValueError, match=r"the model gives 1 score column"):
            make_attack(name, eps=0.1)(one, x, y)
    # one attack object, remembering each model's width: the second model is checked too
    attack = make_attack("fgsm", eps=0.1)
    attack(net, x, y)
    with pytest.raises(ValueError, match=r"the model gives 1 score column"):
        attack(one, x, y)
    attack(net, x, y)


def test_budgets_and_counts_are_numbers(data) -> None:
    from advsec.evaluation import evaluate_attack

    net, x, y = data
    for bad in ("0.1", True, ["0.1"], [0.1, False]):
        with pytest.raises(ValueError, match=r"eps must be a number"):
            make_attack("pgd", eps=bad)
    for name, opt in (("pgd", "steps"), ("pgd", "restarts"), ("square", "queries"),
                      ("hopskipjump", "queries")):
        with pytest.raises(ValueError, match=rf"{opt} must be a whole number, got 2.5"):
            make_attack(name, **{opt: 2.5})
    assert make_attack("pgd", steps=3.0).steps == 3
    # one float is a grid of one
    table = evaluate_attack(net, make_attack("fgsm"), x, y, eps=0.1).table
    assert list(table["eps"]) == [0.1]


def test_integer_labels_of_a_detector_that_are_not_its_indices_are_encoded() -> None:
    import numpy as np

    from advsec.evaluation import evaluate_attack
    from advsec.models import Detector

    rng = np.random.default_rng(0)
    x = rng.random((200, 5)).astype(np.float32)
    y = np.where(x[:, 0] > 0.5, 2, 1)  # labels 1 and 2: class indices 0 and 1
    det = Detector(hidden=(8,), epochs=3, seed=0).fit(x, y)
    assert list(det.classes_) == [1, 2]
    acc = float((det.predict(x) == y).mean())
    table = evaluate_attack(det, make_attack("fgsm"), x, y, eps=[0.0]).table
    assert np.isclose(table.loc[0, "accuracy"], acc)
    result = make_attack("fgsm", eps=0.0).run(det, torch.as_tensor(x), y)
    assert torch.equal(result.y, torch.as_tensor(det.encode_labels(y)).long())
