"""Properties of the gradient engine and its configurations (no reference library needed)."""

from __future__ import annotations

import itertools
import logging

import pytest
import torch
from torch import nn

from advsec.attacks import (
    APGD,
    ATTACKS,
    BIM,
    FGSM,
    MIM,
    PGD,
    APGDMargin,
    APGDStep,
    GradientAttack,
    Square,
    make_attack,
)
from advsec.attacks.losses import dlr_objective, margin_objective

GRADIENT_ATTACKS = [FGSM, BIM, MIM, PGD, APGD, APGDMargin]


def fast(cls: type) -> dict[str, int]:
    """Options that keep the slower attacks quick in tests."""
    if cls in (APGD, APGDMargin):
        return {"steps": 20}
    if cls is Square:
        return {"queries": 200}
    return {}


def tiny_model(d: int = 6, c: int = 3, *, dropout: float = 0.0) -> nn.Module:
    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Linear(d, 16), nn.Tanh()]
    if dropout:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(16, c))
    return nn.Sequential(*layers).eval()


def data(n: int = 64, d: int = 6, c: int = 3, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(n, d, generator=gen), torch.randint(0, c, (n,), generator=gen)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


# ------------------------------------------------------------------------------ FGSM
def test_fgsm_is_the_hand_computed_sign_step_bit_for_bit():
    model = tiny_model()
    x, y = data(48)
    eps = 0.07
    xr = x.clone().requires_grad_(True)
    loss = nn.functional.cross_entropy(model(xr), y, reduction="sum")
    (g,) = torch.autograd.grad(loss, xr)
    expected = torch.clamp(x + eps * g.sign(), 0.0, 1.0)
    assert torch.equal(FGSM(eps=eps)(model, x, y), expected)


def test_fgsm_moves_each_unclipped_coordinate_by_exactly_eps_and_stays_in_box():
    model = tiny_model()
    x, y = data(64)
    for eps in (0.01, 0.1, 0.3):
        adv = FGSM(eps=eps)(model, x, y)
        assert adv.min() >= 0 and adv.max() <= 1
        inside = (x + eps <= 1) & (x - eps >= 0)
        delta = (adv - x).abs()[inside]
        assert torch.allclose(delta, torch.full_like(delta, eps), rtol=0, atol=1e-7)
        assert (adv - x).abs().max() <= eps + 1e-7


def test_targeted_fgsm_descends_the_target_loss():
    model = tiny_model()
    x, y = data(64)
    target = torch.full((64,), 2)
    adv = FGSM(eps=0.2, targeted=True)(model, x, y, target=target)
    ce = nn.functional.cross_entropy
    with torch.no_grad():
        assert ce(model(adv), target) < ce(model(x), target)
        assert (model(adv).argmax(1) == 2).float().mean() > (model(x).argmax(1) == 2).float().mean()


def test_targeted_needs_targets():
    model = tiny_model()
    x, y = data(8)
    with pytest.raises(ValueError, match="target"):
        FGSM(eps=0.1, targeted=True)(model, x, y)


# ------------------------------------------------------------------------------ balls and box
@pytest.mark.parametrize("cls", [BIM, MIM, PGD, APGD, APGDMargin])
def test_linf_ball_and_box_hold(cls):
    model = tiny_model()
    x, y = data(64)
    for eps in (0.05, 0.3):
        adv = cls(eps=eps, steps=15)(model, x, y)
        assert (adv - x).abs().max() <= eps + 1e-6
        assert adv.min() >= 0 and adv.max() <= 1


@pytest.mark.parametrize("cls", [PGD, APGD])
def test_l2_ball_and_box_hold(cls):
    model = tiny_model()
    x, y = data(64)
    for eps in (0.1, 0.5):
        adv = cls(eps=eps, norm="l2", steps=15, restarts=2)(model, x, y)
        assert (adv - x).norm(dim=1).max() <= eps + 1e-5
        assert adv.min() >= 0 and adv.max() <= 1
        assert accuracy(model, adv, y) <= accuracy(model, x, y)


def test_no_bounds_means_no_clipping():
    model = tiny_model()
    x, y = data(32)
    adv = FGSM(eps=0.5, bounds=None)(model, x, y)
    assert adv.min() < 0 or adv.max() > 1


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_random_start_is_uniform_in_the_ball(norm):
    attack = PGD(eps=1.0, norm=norm)
    gen = torch.Generator().manual_seed(0)
    delta, unit = attack._random_delta(2000, 6, torch.device("cpu"), torch.float32, None, gen)
    delta = delta * unit
    norms = delta.norm(dim=1) if norm == "l2" else delta.abs().amax(dim=1)
    assert norms.max() <= 1.0 + 1e-6
    if norm == "l2":  # radius r^(1/D): the median radius of a uniform 6-ball is 0.5^(1/6)
        assert norms.median() == pytest.approx(0.5 ** (1 / 6), abs=0.03)
    else:  # every coordinate uniform in [-1, 1)
        assert delta.mean().abs() < 0.02 and delta.abs().mean() == pytest.approx(0.5, abs=0.02)
        assert delta.min() >= -1 and delta.unique().numel() > 5000
    again, _ = attack._random_delta(2000, 6, torch.device("cpu"), torch.float32, None,
                                    torch.Generator().manual_seed(0))
    assert torch.equal(again * unit, delta)


# ------------------------------------------------------------------------------ strength
@pytest.mark.parametrize("cls", GRADIENT_ATTACKS)
def test_accuracy_drops_monotonically_with_eps(cls):
    model = tiny_model()
    x, y = data(128)
    advs = cls(eps=[0.0, 0.05, 0.2, 0.5], **fast(cls))(model, x, y)
    accs = [accuracy(model, a, y) for a in advs]
    assert accs[0] == accuracy(model, x, y)
    assert all(a >= b - 1e-9 for a, b in itertools.pairwise(accs))
    assert accs[-1] < accs[0]


def test_restarts_and_keep_best_never_hurt():
    model = tiny_model()
    x, y = data(128)
    one = accuracy(model, PGD(eps=0.1, steps=5)(model, x, y), y)
    more = accuracy(model, PGD(eps=0.1, steps=5, restarts=4)(model, x, y), y)
    best = accuracy(model, PGD(eps=0.1, steps=5, keep_best=True)(model, x, y), y)
    assert more <= one and best <= one


def test_early_stop_freezes_successful_rows():
    model = tiny_model()
    x, y = data(128)
    res = BIM(eps=0.3, steps=20, early_stop=True).run(model, x, y)
    full = BIM(eps=0.3, steps=20).run(model, x, y)
    fooled = res.success()
    assert fooled.any()
    # an early-stopped row stops moving once fooled: it is never further than the full run's
    d_stop = (res.x_adv[0] - x).abs().sum(1)[fooled]
    d_full = (full.x_adv[0] - x).abs().sum(1)[fooled]
    assert (d_stop <= d_full + 1e-6).all()
    assert res.gradients <= full.gradients


# ------------------------------------------------------------------------------ eps lists
@pytest.mark.parametrize("cls", GRADIENT_ATTACKS)
def test_eps_list_equals_separate_calls(cls):
    model = tiny_model()
    x, y = data(40)
    eps = [0.02, 0.1, 0.25]
    together = cls(eps=eps, seed=3, **fast(cls))(model, x, y)
    assert isinstance(together, list) and len(together) == 3
    for e, adv in zip(eps, together, strict=True):
        alone = cls(eps=e, seed=3, **fast(cls))(model, x, y)
        assert (adv - alone).abs().max() <= 1e-6


def test_fgsm_eps_list_costs_one_gradient():
    model = tiny_model()
    x, y = data(40)
    res = FGSM(eps=[0.01, 0.05, 0.1, 0.2]).run(model, x, y)
    assert res.gradients == 1
    res = BIM(eps=[0.01, 0.05], steps=7).run(model, x, y)
    assert res.gradients == 7


def test_chunking_does_not_change_the_result():
    model = tiny_model()
    x, y = data(50)
    whole = BIM(eps=0.1)(model, x, y)
    chunked = BIM(eps=0.1, batch_size=7)(model, x, y)
    assert (whole - chunked).abs().max() <= 1e-6


# ------------------------------------------------------------------------------ model handling
def test_eval_mode_used_and_restored():
    model = tiny_model(dropout=0.5)
    x, y = data(32)
    model.train()
    a = BIM(eps=0.1)(model, x, y)
    assert model.training and all(m.training for m in model.modules())
    b = BIM(eps=0.1)(model, x, y)
    assert torch.equal(a, b)  # dropout was off during the attack
    model.eval()
    assert torch.equal(a, BIM(eps=0.1)(model, x, y))
    assert not model.training


def test_mixed_submodule_modes_are_restored():
    model = tiny_model(dropout=0.5)
    model.train()
    model[2].eval()
    x, y = data(8)
    FGSM(eps=0.1)(model, x, y)
    assert model.training and not model[2].training


@pytest.mark.parametrize("opts", [{}, {"keep_best": True}, {"early_stop": True}])
def test_result_never_aliases_the_input(opts):
    model = tiny_model()
    x, y = data(16)
    adv = BIM(eps=0.0, **opts)(model, x, y)
    assert torch.equal(adv, x) and adv.data_ptr() != x.data_ptr()


def test_parameters_get_no_gradients():
    model = tiny_model()
    x, y = data(16)
    PGD(eps=0.1)(model, x, y)
    assert all(p.grad is None for p in model.parameters())


def test_works_under_no_grad_and_returns_on_input_device():
    model = tiny_model()
    x, y = data(16)
    with torch.no_grad():
        adv = PGD(eps=0.1)(model, x, y)
    assert adv.device == x.device and not adv.requires_grad
    assert not torch.equal(adv, x)


def test_detector_and_raw_labels_are_accepted():
    from advsec.models import Detector

    x, y = data(200, c=2)
    labels = ["benign" if v == 0 else "malicious" for v in y.tolist()]
    det = Detector(hidden=(8,), epochs=3, seed=0, device="cpu", validation_split=0).fit(
        x.numpy(), labels)
    a = FGSM(eps=0.1)(det, x, labels)
    b = FGSM(eps=0.1)(det.as_module(), x, det.encode_labels(labels))
    assert torch.equal(a, b)
    res = FGSM(eps=0.1, evasion=True).run(det, x, labels)
    assert res.benign_class == 0 and int(res.attacked.sum()) == labels.count("malicious")


# ------------------------------------------------------------------------------ evasion
@pytest.mark.parametrize("cls", [FGSM, PGD, MIM, APGDMargin, Square])
def test_evasion_leaves_benign_rows_untouched(cls):
    model = tiny_model(c=2)
    x, y = data(80, c=2)
    res = cls(eps=[0.1, 0.4], evasion=True, benign_class=0, **fast(cls)).run(model, x, y)
    benign = y == 0
    assert torch.equal(res.attacked, ~benign)
    for adv in res.x_adv:
        assert torch.equal(adv[benign], x[benign])
    # success = malicious now predicted benign, counted on malicious rows that were detected
    rates = res.success_rate
    assert rates[1] >= rates[0] and rates[1] > 0
    with torch.no_grad():
        pred = model(res.x_adv[1]).argmax(1)
    pool = ~benign & (model(x).argmax(1) != 0)
    assert rates[1] == pytest.approx(float((pred[pool] == 0).float().mean()))


def test_target_benign_string_means_evasion():
    model = tiny_model(c=2)
    x, y = data(40, c=2)
    a = PGD(eps=0.2, benign_class=0, evasion=True)(model, x, y)
    b = PGD(eps=0.2, benign_class=0)(model, x, y, target="benign")
    assert torch.equal(a, b)


# ------------------------------------------------------------------------------ warnings, results
def test_budget_warning_is_logged(caplog):
    model = tiny_model()
    x, y = data(8)
    with caplog.at_level(logging.WARNING, logger="advsec.attacks"):
        BIM(eps=0.1, steps=3, step_size=0.01)(model, x, y)
    assert any("cannot reach" in r.message for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="advsec.attacks"):
        BIM(eps=0.1, steps=10, step_size=0.01)(model, x, y)
        PGD(eps=0.1, steps=2, rel_step_size=0.25)(model, x, y)
    messages = [r.message for r in caplog.records]
    assert len(messages) == 1 and "0.5 * eps" in messages[0]


def test_result_table_columns():
    model = tiny_model()
    x, y = data(32)
    res = PGD(eps=[0.05, 0.1]).run(model, x, y)
    table = res.table()
    assert list(table["eps"]) == [0.05, 0.1]
    for col in ("accuracy", "detection_rate", "attack_success_rate", "mean_linf", "max_linf",
                "valid_share", "seconds"):
        assert col in table.columns
    assert (table["max_linf"] <= table["eps"] + 1e-6).all()
    with pytest.raises(RuntimeError):
        PGD(eps=0.1).run(model, x, y, evaluate=False).table()


def test_bad_arguments():
    with pytest.raises(ValueError):
        PGD(eps=-0.1)
    with pytest.raises(ValueError):
        PGD(norm="l1")
    with pytest.raises(ValueError):
        make_attack("nope")
    with pytest.raises(ValueError):
        PGD(eps=0.1)(tiny_model(), torch.rand(4, 6), torch.zeros(5, dtype=torch.long))


def test_registry_names():
    assert set(ATTACKS) == {"fgsm", "bim", "mim", "pgd", "apgd", "apgd-margin", "square",
                            "hopskipjump", "tree-search"}
    assert isinstance(make_attack("APGD_margin", eps=0.1), APGDMargin)
    assert all(issubclass(ATTACKS[n], GradientAttack) for n in ATTACKS
               if n not in ("square", "hopskipjump", "tree-search"))


# ------------------------------------------------------------------------------ losses, APGD
def test_margin_positive_exactly_when_fooled():
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0]])
    labels = torch.tensor([0, 0])
    m = margin_objective(logits, labels, False)
    assert m[0] < 0 < m[1]
    assert torch.equal(margin_objective(logits, torch.tensor([1, 1]), True), m)  # binary: same
    with pytest.raises(ValueError, match="3 or more"):
        dlr_objective(logits, labels, False)


def test_apgd_halves_the_step_size_when_oscillating():
    rules: list[APGDStep] = []

    class Spy(APGD):
        def step_rule(self) -> APGDStep:
            rules.append(super().step_rule())
            return rules[-1]

    model = tiny_model()
    x, y = data(64)
    Spy(eps=0.3, steps=30)(model, x, y)
    eta = rules[0].eta
    assert eta.max() <= 0.6 + 1e-6  # starts at 2 * eps, never grows
    assert (eta < 0.6 - 1e-6).any()  # some rows got halved at checkpoints
