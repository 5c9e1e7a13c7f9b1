"""Worst case over an attack ensemble, adaptive re-attack and labelled transfer rows."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from advsec.attacks import BIM, FGSM, PGD
from advsec.evaluation.worst_case import (
    WORST_CASE_COLUMNS,
    adaptive_evaluation,
    transfer_table,
    worst_case,
)

EPS = [0.02, 0.05, 0.1]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def setup(fit_small_net):
    """A small trained 3-class network on separable blobs in [0, 1]."""
    gen = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.3, 0.3, 0.5, 0.5], [0.7, 0.3, 0.5, 0.5], [0.5, 0.7, 0.5, 0.5]])
    y = torch.randint(0, 3, (600,), generator=gen)
    x = (centres[y] + 0.08 * torch.randn(600, 4, generator=gen)).clamp(0, 1)
    model = fit_small_net(x, y, n_classes=3, n_train=400, lr=0.01, steps=200)
    return model, x[400:], y[400:]


def attacks():
    return [FGSM(), BIM(steps=5), PGD(steps=10, seed=3)]


def test_worst_case_is_at_most_every_per_attack_accuracy(setup):
    model, x, y = setup
    wc = worst_case(model, attacks(), x, y, eps=EPS, benign_class=0)
    t = wc.table
    assert list(t.columns) == WORST_CASE_COLUMNS
    assert len(t) == 3 * len(EPS) + len(EPS)
    for e in EPS:
        rows = t[t.eps == e]
        worst = rows[rows.attack == "worst-case"].iloc[0]
        per = rows[rows.attack != "worst-case"]
        assert worst.accuracy <= per.accuracy.min() + 1e-12
        assert worst.accuracy == pytest.approx(wc.robust[e].mean())
        # cumulative accuracy never rises along the sequence and ends at the worst case
        assert np.all(np.diff(per.cumulative_accuracy.to_numpy()) <= 1e-12)
        assert per.cumulative_accuracy.iloc[-1] == pytest.approx(worst.accuracy)
        assert int(per.n_broken.sum()) == int(worst.n_broken)
        assert (rows.max_linf <= e + 1e-6).all()
    # the attacks do something at the largest eps
    assert wc.accuracy(0.1) < wc.pred_clean.__eq__(y.numpy()).mean()


def test_worst_inputs_are_in_the_ball_and_misclassified(setup):
    model, x, y = setup
    wc = worst_case(model, attacks(), x, y, eps=EPS)
    y_np = y.numpy()
    for e in EPS:
        broken = (wc.pred_clean == y_np) & ~wc.robust[e]
        assert broken.any()
        xw = wc.x_worst[e]
        assert float((xw - x).abs().amax()) <= e + 1e-6
        assert xw.min() >= 0 and xw.max() <= 1
        with torch.no_grad():
            pred = model(xw).argmax(1).numpy()
        assert np.array_equal(pred, wc.pred_worst[e])
        assert np.all(pred[broken] != y_np[broken])
        assert np.all(pred[wc.robust[e]] == y_np[wc.robust[e]])
        # records never broken keep their clean input
        keep = wc.robust[e] | (wc.pred_clean != y_np)
        assert torch.equal(xw[torch.as_tensor(keep)], x[torch.as_tensor(keep)])


def test_survivor_mode_runs_later_attacks_only_on_survivors(setup):
    model, x, y = setup
    seq = worst_case(model, attacks(), x, y, eps=EPS, per_attack=False)
    full = worst_case(model, attacks(), x, y, eps=EPS, per_attack=True)
    t = seq.table
    attack_rows = t[t.attack != "worst-case"]
    assert attack_rows.accuracy.isna().all()  # no standalone numbers in this mode
    for e in EPS:
        worst = t[(t.eps == e) & (t.attack == "worst-case")].iloc[0]
        assert worst.accuracy == pytest.approx(seq.robust[e].mean())
        # FGSM is deterministic and runs first on the same records in both modes
        fgsm_seq = t[(t.eps == e) & (t.attack == "fgsm")].iloc[0]
        fgsm_full = full.table[(full.table.eps == e) & (full.table.attack == "fgsm")].iloc[0]
        assert fgsm_seq.cumulative_accuracy == pytest.approx(fgsm_full.cumulative_accuracy)
        assert abs(seq.accuracy(e) - full.accuracy(e)) <= 0.02


def test_transfer_rows_are_labelled_and_separate(setup):
    model, x, y = setup
    torch.manual_seed(1)
    other = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    crafted = {0.1: PGD(steps=10)(other, x, y)}
    tr = transfer_table(model, crafted, y, name="pgd", x=x)
    assert list(tr.columns) == WORST_CASE_COLUMNS
    assert tr.evaluation.iloc[0] == "transfer-from-undefended"
    table, wc = adaptive_evaluation(model, attacks(), x, y, eps=[0.1],
                                    transfer={"pgd": crafted})
    assert set(table.evaluation) == {"adaptive", "transfer-from-undefended"}
    adaptive_pgd = table[(table.evaluation == "adaptive") & (table.attack == "pgd")].accuracy
    transfer_pgd = table[table.evaluation == "transfer-from-undefended"].accuracy
    # attacking a model afresh is at least as strong as transferring from an unrelated one
    assert float(adaptive_pgd.iloc[0]) <= float(transfer_pgd.iloc[0])
    assert wc.accuracy(0.1) <= float(adaptive_pgd.iloc[0])


def test_named_attacks_and_duplicate_names(setup):
    model, x, y = setup
    wc = worst_case(model, {"a": FGSM(), "b": PGD(steps=3)}, x[:50], y[:50], eps=0.05)
    assert list(wc.table.attack) == ["a", "b", "worst-case"]
    wc2 = worst_case(model, [PGD(steps=2, seed=0), PGD(steps=2, seed=1)], x[:50], y[:50],
                     eps=0.05)
    assert list(wc2.table.attack) == ["pgd", "pgd-2", "worst-case"]
    with pytest.raises(ValueError):
        worst_case(model, [], x, y, eps=0.1)
