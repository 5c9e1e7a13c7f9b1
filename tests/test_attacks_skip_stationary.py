"""``skip_stationary``: rows that stopped moving reuse their last gradient."""

from __future__ import annotations

import torch
from torch import nn

from advsec.attacks import BIM, MIM


def _mlp(d: int = 12, c: int = 3, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, 32), nn.ReLU(), nn.Linear(32, c)).eval()


def _data(n: int = 64, d: int = 12, c: int = 3, seed: int = 1) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, d, generator=g), torch.randint(0, c, (n,), generator=g)


def test_linear_model_pins_every_row_after_two_gradients() -> None:
    # a linear objective of a linear model has one gradient everywhere: the first step of size
    # eps reaches the corner of the ball, the second is clipped back to it, nothing moves after
    torch.manual_seed(0)
    model = nn.Linear(12, 3).eval()
    x, y = _data()
    x = x * 0.5 + 0.25  # the whole ball inside the box

    def first_logit(logits: torch.Tensor, labels: torch.Tensor, targeted: bool) -> torch.Tensor:
        return logits[:, 0]

    plain = BIM(eps=0.1, steps=10, step_size=0.1, loss=first_logit)
    skip = BIM(eps=0.1, steps=10, step_size=0.1, loss=first_logit, skip_stationary=True)
    a, b = plain.run(model, x, y, evaluate=False), skip.run(model, x, y, evaluate=False)
    assert torch.equal(a.x_adv[0], b.x_adv[0])
    assert a.gradients == 10
    assert b.gradients == 2


def test_faithful_mim_setting_gives_the_same_examples_with_fewer_passes() -> None:
    # the KDD'99 study's MIM: step = eps, decay 1, many iterations, no clipping
    model = _mlp()
    x, y = _data()
    x = x * 4 - 2  # standardised-like inputs, no box
    opts = {"eps": 0.1, "steps": 60, "step_size": 0.1, "decay": 1.0, "bounds": None}
    a = MIM(**opts).run(model, x, y, evaluate=False)
    b = MIM(**opts, skip_stationary=True).run(model, x, y, evaluate=False)
    assert (a.x_adv[0] - b.x_adv[0]).abs().max() <= 1e-6
    assert b.gradients <= a.gradients


def test_skip_stationary_is_ignored_when_rows_need_objectives() -> None:
    model = _mlp()
    x, y = _data()
    opts = {"eps": 0.1, "steps": 8, "early_stop": True}
    a = BIM(**opts).run(model, x, y, evaluate=False)
    b = BIM(**opts, skip_stationary=True).run(model, x, y, evaluate=False)
    assert torch.equal(a.x_adv[0], b.x_adv[0])
    assert a.gradients == b.gradients
