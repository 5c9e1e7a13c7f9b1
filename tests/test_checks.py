"""Red-flag checks: they fire on deliberately broken evaluations and stay quiet on sound ones."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from torch import nn

from advsec.attacks import BIM, FGSM, MIM, PGD
from advsec.evaluation import evaluate_attack
from advsec.evaluation.checks import (
    Flag,
    check_black_box_vs_white_box,
    check_budget,
    check_gradients,
    check_iterative_vs_fgsm,
    check_monotone_eps,
    check_outputs_are_logits,
    check_sweep,
    check_unbounded_success,
    flags_html,
    flags_table,
    red_flags,
)
from advsec.experiments.reproductions.faithful import OwnPredictionAttack

pytestmark = pytest.mark.usefixtures("one_thread")


def table(rows: list[tuple[str, float, float, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["attack", "eps", "accuracy", "attack_success_rate"])


SOUND = table([
    ("fgsm", 0.0, 0.95, 0.0), ("fgsm", 0.05, 0.80, 0.16), ("fgsm", 0.1, 0.60, 0.37),
    ("pgd", 0.0, 0.95, 0.0), ("pgd", 0.05, 0.70, 0.26), ("pgd", 0.1, 0.40, 0.58),
    ("square", 0.05, 0.85, 0.1), ("square", 0.1, 0.55, 0.4),
    ("pgd", 10.0, 0.0, 1.0), ("worst-case", 0.1, 0.35, 0.6),
])


def test_sound_table_raises_no_flag():
    flags = check_sweep(SOUND, large_eps=10.0)
    assert [f.ok for f in flags] == [True, True, True, True], flags


def test_accuracy_rising_with_eps_is_flagged():
    bad = table([("pgd", 0.05, 0.70, 0.3), ("pgd", 0.1, 0.80, 0.2), ("pgd", 0.2, 0.5, 0.5)])
    flag = check_monotone_eps(bad)
    assert not flag.ok and "pgd" in flag.detail and "0.05" in flag.detail
    # within tolerance (noise) it stays quiet
    assert check_monotone_eps(table([("pgd", 0.05, 0.700, 0.3), ("pgd", 0.1, 0.703, 0.3)])).ok


def test_iterative_weaker_than_fgsm_is_flagged_within_the_same_variant():
    bad = table([("fgsm-valid", 0.1, 0.60, 0.4), ("pgd-valid", 0.1, 0.75, 0.2),
                 ("fgsm", 0.1, 0.9, 0.1), ("pgd", 0.1, 0.2, 0.8)])
    flag = check_iterative_vs_fgsm(bad)
    assert not flag.ok and "pgd-valid" in flag.detail and "pgd 0.2" not in flag.detail
    assert check_iterative_vs_fgsm(table([("pgd", 0.1, 0.5, 0.5)])).detail.startswith("n/a")


def test_black_box_stronger_than_white_box_is_flagged():
    bad = table([("fgsm", 0.1, 0.6, 0.4), ("pgd", 0.1, 0.5, 0.5), ("square", 0.1, 0.3, 0.7)])
    assert not check_black_box_vs_white_box(bad).ok
    assert check_black_box_vs_white_box(SOUND).ok


def test_unbounded_attack_below_full_success_is_flagged():
    bad = table([("pgd", 10.0, 0.2, 0.8), ("fgsm", 10.0, 0.0, 1.0)])
    flag = check_unbounded_success(bad, large_eps=10.0)
    assert not flag.ok and "pgd 80.0%" in flag.detail and "fgsm" not in flag.detail
    assert check_unbounded_success(bad, large_eps=10.0, attacks=["fgsm"]).ok
    assert check_unbounded_success(SOUND, large_eps=100.0).detail.startswith("n/a")


def test_perturbation_beyond_the_budget_is_flagged():
    t = table([("pgd", 0.05, 0.7, 0.3), ("pgd-valid", 0.05, 0.6, 0.4)])
    t["max_linf"] = [0.05, 0.33]
    flag = check_budget(t)
    assert not flag.ok and "pgd-valid" in flag.detail and "0.33" in flag.detail
    t["max_linf"] = [0.05, 0.0499]
    assert check_budget(t).ok
    assert len(check_sweep(t)) == 4 and len(check_sweep(SOUND)) == 3


@pytest.fixture(scope="module")
def net(fit_small_net):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(400, 5, generator=gen)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long() + (x[:, 2] > 1).long()
    model = fit_small_net(x, y, n_classes=3, n_train=300, lr=0.02, steps=150)
    return model, x[300:], y[300:]


def test_model_checks_fire_on_probabilities_and_dead_gradients(net):
    model, x, y = net
    assert check_outputs_are_logits(model, x).ok
    assert check_gradients(model, x, y).ok
    probs = nn.Sequential(model, nn.Softmax(dim=1))
    flag = check_outputs_are_logits(probs, x)
    assert not flag.ok and "probabilities" in flag.detail
    dead = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3))
    with torch.no_grad():
        dead[0].weight.zero_()
        dead[0].bias.fill_(-1.0)  # every ReLU off: the input gradient is exactly zero
    assert not check_gradients(dead, x, y).ok

    class NaNNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(5, 3)

        def forward(self, t: torch.Tensor) -> torch.Tensor:
            return self.lin(t) * torch.sqrt(t[:, :1] - 10.0)

    flag = check_gradients(NaNNet(), x, y)
    assert not flag.ok and "NaN" in flag.detail


def test_the_faithful_protocol_raises_flags_and_the_corrected_one_does_not(net):
    """End to end: the KDD'99 study's attack calls against the same model as sound ones."""
    model, x, y = net
    eps = [0.1, 0.5, 20.0]
    broken = [
        OwnPredictionAttack(FGSM(bounds=None), name="fgsm (faithful)"),
        OwnPredictionAttack(BIM(steps=10, step_size=0.1, targeted=True, bounds=None),
                            name="bim (faithful)"),
        OwnPredictionAttack(MIM(steps=20, step_size=0.1, targeted=True, bounds=None),
                            name="mim (faithful)"),
    ]
    sound = [FGSM(bounds=None), BIM(steps=10, bounds=None),
             PGD(steps=100, rel_step_size=0.05, loss="margin", bounds=None)]
    t_bad = pd.concat([evaluate_attack(model, a, x, y, eps=eps, name=a.name).table
                       for a in broken])
    t_ok = pd.concat([evaluate_attack(model, a, x, y, eps=eps).table for a in sound])
    bad = red_flags(t_bad, model=nn.Sequential(model, nn.Softmax(dim=1)), x=x, y=y,
                    large_eps=20.0)
    ok = red_flags(t_ok, model=model, x=x, y=y, large_eps=20.0, unbounded_attacks=["pgd"])
    by_name = {f.name: f for f in bad}
    assert not by_name["iterative attacks at least as strong as FGSM"].ok
    assert not by_name["attack loss computed on logits"].ok
    assert not by_name["unbounded attacks reach 100% success at eps >= 20"].ok
    assert all(f.ok for f in ok), [str(f) for f in ok if not f.ok]


def test_presentation_helpers():
    flags = [Flag("a", True, "fine"), Flag("b", False, "broken <x>")]
    t = flags_table(flags, model="m")
    assert list(t.status) == ["ok", "RED FLAG"] and set(t.model) == {"m"}
    text = flags_html(flags)
    assert "flag-bad" in text and "&lt;x&gt;" in text
    assert str(flags[1]).startswith("[RED FLAG] b")
