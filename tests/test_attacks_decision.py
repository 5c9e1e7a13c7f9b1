"""HopSkipJump, the decision-based attack: it sees only labels, finds the closest adversarial
point (checked against the analytic distance of a linear classifier and a brute-force search on
a 2-feature network), keeps the threat model (eps-ball, box, immutable columns, valid records,
evasion) and its budget, and runs on scikit-learn models and through every entry point."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.ensemble import RandomForestClassifier
from torch import nn

from advsec.attacks import HopSkipJump, label_only, make_attack
from advsec.attacks.spec import attack_spec
from advsec.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")


def _dist(a: torch.Tensor, b: torch.Tensor, norm: str) -> torch.Tensor:
    d = a - b
    return d.abs().amax(1) if norm == "linf" else d.norm(dim=1)


@pytest.fixture(scope="module")
def flows(small_synthetic_detector):
    ds, space, det = small_synthetic_detector
    x = torch.as_tensor(space.encode(ds.test.iloc[:120]))
    y = det.encode_labels(ds.labels("test")[:120])
    return ds, space, det, x, y


# ------------------------------------------------------------------------------ the facts
def test_registry_facts_and_make_attack():
    spec = attack_spec("hopskipjump")
    assert spec.cls is HopSkipJump
    assert (spec.family, spec.budget, spec.norms, spec.needs_gradients) == (
        "decision", "queries", ("linf", "l2"), False)
    assert spec.black_box and not spec.single_step
    assert {"queries", "init_evals", "max_evals", "gamma", "donors"} <= set(
        spec.config_options())
    atk = make_attack("HopSkipJump".lower(), eps=0.1, queries=50, norm="l2")
    assert isinstance(atk, HopSkipJump) and atk.queries == 50 and atk.norm == "l2"
    assert atk.settings()["queries"] == 50
    with pytest.raises(ValueError, match="steps"):
        make_attack("hopskipjump", steps=3)  # its budget is `queries`
    with pytest.raises(ValueError):
        HopSkipJump(queries=0)


# ------------------------------------------------------------------------------ the geometry
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_linear_classifier_distance_is_the_analytic_minimum(norm):
    w, b = torch.tensor([3.0, -2.0]), -0.5
    lin = nn.Linear(2, 2)
    with torch.no_grad():
        lin.weight.copy_(torch.stack([torch.zeros(2), w]))
        lin.bias.copy_(torch.tensor([0.0, b]))
    gen = torch.Generator().manual_seed(1)
    x = torch.rand((200, 2), generator=gen)
    margin = x @ w + b
    y = (margin > 0).long()
    # closest point of the line w.x + b = 0: L-inf moves every coordinate by |m| / ||w||_1
    # along -sign(m) sign(w); L2 moves along -m w / ||w||^2
    dstar = margin.abs() / (w.abs().sum() if norm == "linf" else w.norm())
    opt = (x - (margin.sign() * dstar)[:, None] * w.sign() if norm == "linf"
           else x - (margin / w.square().sum())[:, None] * w)
    free = ((opt >= 0) & (opt <= 1)).all(1) & (dstar > 0.05)  # the box does not bind
    eps = [0.01, 1.0]  # stops only once within 0.01: the search minimises the distance
    res = HopSkipJump(eps=eps, norm=norm, queries=400, seed=0).run(lin, x, y)
    for i, e in enumerate(eps):
        assert float(_dist(res.x_adv[i], x, norm).max()) <= e + 1e-6
        assert res.x_adv[i].min() >= 0 and res.x_adv[i].max() <= 1
    d = _dist(res.x_adv[1], x, norm)
    hit = res.success(1)
    assert bool(hit[dstar < 0.99].all())  # every record with a reachable boundary is broken
    ratio = d[free] / dstar[free]
    assert float(ratio.min()) >= 1 - 1e-4  # nothing beats the true minimum ...
    assert float(ratio.median()) < 1.01 and float(ratio.max()) < 1.05  # ... and it gets there
    # below the boundary distance nothing is a success; at eps well above it, all are
    assert not bool(res.success(0)[dstar > 0.011].any())


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_trained_network_distance_matches_a_brute_force_search(norm):
    gen = torch.Generator().manual_seed(0)
    x = torch.rand((400, 2), generator=gen)
    y = ((x[:, 1] - 0.5 - 0.25 * torch.sin(6 * x[:, 0])) > 0).long()  # a curved boundary
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Linear(32, 2))
    opt = torch.optim.Adam(net.parameters(), lr=0.02)
    for _ in range(300):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    net.eval()
    xt = x[:100]
    h = 1 / 400  # grid step of the brute force
    axis = torch.linspace(0, 1, 401)
    grid = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)
    with torch.no_grad():
        pred, grid_pred = net(xt).argmax(1), net(grid).argmax(1)
    gap = [(xt[:, j, None] - grid[None, :, j]).abs() for j in range(2)]  # (100, 401**2)
    far = torch.maximum(*gap) if norm == "linf" else torch.hypot(*gap)
    dmin = far.masked_fill_(pred[:, None] == grid_pred[None, :], float("inf")).min(1).values
    res = HopSkipJump(eps=[0.005, 1.0], norm=norm, queries=500, seed=0).run(net, xt, pred)
    hit = res.success(1)
    assert float(hit.float().mean()) == 1.0  # sufficient eps: every record is broken
    d, ok = _dist(res.x_adv[1], xt, norm), dmin > 0.02
    assert bool((d[ok] >= dmin[ok] - h).all())  # the grid's minimum is the truth to within h
    assert float((d[ok] / dmin[ok]).median()) < 1.02
    assert float((d[ok] / (dmin[ok] + h)).max()) < 1.1


def test_targeted_on_unbounded_inputs_reaches_the_target():
    lin = nn.Linear(2, 3)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.5]]))
        lin.bias.zero_()
    x = torch.rand((90, 2), generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        y = lin(x).argmax(1)
    tgt = (y + 1) % 3
    res = HopSkipJump(eps=[0.1, 3.0], targeted=True, bounds=None, queries=300).run(
        lin, x, y, target=tgt)
    with torch.no_grad():
        pred = lin(res.x_adv[1]).argmax(1)
    s = res.success(1)
    assert bool((pred[s] == tgt[s]).all()) and res.success_rate[1] > 0.9
    assert res.success_rate[0] < res.success_rate[1]


# ------------------------------------------------------------------------------ threat model
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_feature_space_ball_box_immutables_and_valid_records(flows, norm):
    _, space, det, x, y = flows
    eps = [0.05, 0.1] if norm == "linf" else [0.2, 0.5]
    res = HopSkipJump(eps=eps, norm=norm, queries=300, feature_space=space, seed=0).run(
        det, x, y)
    fixed = torch.as_tensor(~space.mutable_mask)
    v = space.torch_view()
    for i, e in enumerate(eps):
        adv = res.x_adv[i]
        assert float(_dist(adv, x, norm).max()) <= e * (1 + 1e-5) + 1e-6
        assert bool(((adv >= v.lower) & (adv <= v.upper)).all())
        assert torch.equal(adv[:, fixed], x[:, fixed])
        assert res.valid_share[i] == 1.0
        # success means an independent prediction of the returned record is wrong
        s = res.success(i).numpy()
        assert (det.predict(adv.numpy())[s] != det.classes_[y.numpy()][s]).all()
        # a failure returns the clean record
        eligible = res.eligible().numpy()
        assert torch.equal(adv[~s & eligible], x[~s & eligible])
    assert res.success_rate[1] > 0.0 and res.success_rate[1] >= res.success_rate[0]


def test_it_reads_only_the_label(flows):
    _, space, det, x, y = flows
    module = det.as_module()

    def one_hot(a: torch.Tensor) -> torch.Tensor:
        return nn.functional.one_hot(module(a).argmax(1), 2).float()

    atk = HopSkipJump(eps=[0.05, 0.1], queries=200, feature_space=space, evasion=True, seed=3)
    with torch.no_grad():
        a, b = atk(det, x, y), atk(one_hot, x, y)
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))
    benign = y == int(np.flatnonzero(det.classes_ == "benign")[0])
    assert torch.equal(a[1][benign], x[benign])  # evasion changes malicious rows only


def test_random_forest_through_predict_proba_and_labels_only(flows):
    ds, space, _, _, _ = flows
    x_tr, y_tr = space.encode(ds.train), ds.labels("train")
    forest = RandomForestClassifier(n_estimators=10, max_depth=8, random_state=0).fit(x_tr, y_tr)
    x = torch.as_tensor(space.encode(ds.test.iloc[:100]))
    labels = ds.labels("test")[:100]
    y = torch.as_tensor(np.searchsorted(forest.classes_, labels))
    atk = HopSkipJump(eps=[0.1, 0.3], queries=200, evasion=True, seed=0)
    by_proba = atk.run(forest, x, y)
    by_label = atk.run(label_only(forest.predict, forest.classes_), x, y)
    for i in range(2):
        assert torch.equal(by_proba.x_adv[i], by_label.x_adv[i])
        assert (by_proba.x_adv[i] - x).abs().max() <= [0.1, 0.3][i] + 1e-6
        adv_pred = forest.predict(by_label.x_adv[i].numpy())
        s = by_label.success(i).numpy()
        assert (adv_pred[s] == "benign").all()  # evasion success: predicted benign
    benign = labels == "benign"
    assert torch.equal(by_label.x_adv[1][torch.as_tensor(benign)], x[torch.as_tensor(benign)])
    assert by_label.success_rate == by_proba.success_rate and by_label.success_rate[1] > 0.3
    idx = label_only(lambda a: np.searchsorted(forest.classes_, forest.predict(a)), 2)
    assert torch.equal(idx(x), label_only(forest.predict, forest.classes_)(x))
    with pytest.raises(ValueError, match="outside"):
        label_only(forest.predict, ["a", "b"])(x)


# ------------------------------------------------------------------------------ budget, seed
def test_same_seed_same_output_and_the_budget_holds(flows):
    _, space, det, x, y = flows
    x, y = x[:60], y[:60]

    def go(queries: int, seed: int = 0):
        atk = HopSkipJump(eps=[0.05, 0.1], queries=queries, feature_space=space, donors=0,
                          seed=seed)
        return atk.run(det, x, y)

    a, b, c = go(150), go(150), go(150, seed=1)
    assert all(torch.equal(p, q) for p, q in zip(a.x_adv, b.x_adv, strict=True))
    assert a.queries == b.queries and a.info == b.info
    assert not all(torch.equal(p, q) for p, q in zip(a.x_adv, c.x_adv, strict=True))
    small, big = go(40), go(600)
    for res, q in ((small, 40), (a, 150), (big, 600)):
        assert res.gradients == 0
        assert res.info["label_queries_max"] <= q  # per record, every eps included
        s, h = 10, 10  # binary-search steps (23 columns, 10 mutable) and halvings
        iters = q // (1 + min(h, 1 + s))
        assert res.queries <= 2 + 0 + 20 + s + iters * (1 + h + s)  # the documented bound
    assert small.queries < a.queries < big.queries
    assert small.info["label_queries"] < a.info["label_queries"] < big.info["label_queries"]
    assert big.success_rate[0] >= small.success_rate[0]


def test_advsec_attack_runs_it(flows, tmp_path):
    _, space, det, _, _ = flows
    model = tmp_path / "det"
    det.save(model, feature_space=space)
    out = tmp_path / "attack"
    code = main(["attack", "--model", str(model), "--dataset", "synthetic", "--attack",
                 "hopskipjump", "--steps", "120", "--eps", "0.05,0.1", "--evasion",
                 "--max-rows", "60", "--out", str(out)])
    assert code == 0
    settings = json.loads((out / "attack.json").read_text())
    assert settings["attack"] == "hopskipjump" and settings["steps"] == 120
    table = pd.read_csv(out / "results.csv")
    assert list(table.eps) == [0.0, 0.05, 0.1] and (table.valid_share == 1.0).all()
    bad = main(["attack", "--model", str(model), "--dataset", "synthetic", "--attack",
                "hopskipjump", "--norm", "l1", "--out", str(tmp_path / "no")])
    assert bad == 2 and not (tmp_path / "no").exists()
