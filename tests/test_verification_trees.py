"""Tree ensembles: the exact MILP verifier against brute-force enumeration, and the fast search.

Brute force: the thresholds of a tiny ensemble cut the box into cells on which the ensemble is
constant; the minimal L-inf distance to another class is the smallest distance from the record
to a cell of another class (an infimum: the cell's boundary on the far side of a threshold is
open). The MILP's distance is that of a real record just past the threshold (float32), so the
two agree to 1e-6.
"""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import pytest
import torch
from sklearn.ensemble import (
    ExtraTreesClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)

from advsec.attacks import FGSM, make_attack
from advsec.attacks.validity import valid_records
from advsec.errors import ConfigError
from advsec.features.space import FeatureSpace
from advsec.models.trees_boosters import as_tree_ensemble
from advsec.verification import CROWN, VERIFIERS, TreeMILP, make_verifier

pytest.importorskip("highspy")


def _data(seed: int, n: int, d: int, classes: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.random((n, d)).astype(np.float32)
    score = x @ rng.normal(size=d) + 0.3 * np.sin(6 * x[:, 0])
    cuts = np.quantile(score, np.linspace(0, 1, classes + 1)[1:-1])
    return x, np.searchsorted(cuts, score)


def _brute_min_eps(model, x0: np.ndarray, y: int) -> float:
    """The infimum L-inf distance in [0, 1]^D from ``x0`` to a point of another class."""
    ens = as_tree_ensemble(model)
    d = len(x0)
    cuts = [set() for _ in range(d)]
    for tree in ens.trees:
        for f, t in zip(tree.feature, tree.threshold, strict=True):
            if f >= 0 and 0.0 <= t < 1.0:
                cuts[f].add(float(t))
    # intervals (lo, hi] between consecutive thresholds (x <= t goes left), the first closed
    edges = [[0.0, *sorted(c), 1.0] for c in cuts]
    best = np.inf
    for cell in itertools.product(*[range(len(e) - 1) for e in edges]):
        lo = np.array([edges[j][k] for j, k in enumerate(cell)])
        hi = np.array([edges[j][k + 1] for j, k in enumerate(cell)])
        mid = ((lo + hi) / 2).astype(np.float32)[None, :]
        if int(np.argmax(model.predict_proba(mid)[0])) == y:
            continue
        dist = np.maximum(np.maximum(lo - x0, x0 - hi), 0.0).max()
        best = min(best, float(dist))
    return best


TINY = [
    ("rf-binary", lambda: RandomForestClassifier(n_estimators=4, max_depth=3, random_state=0), 2),
    ("rf-3-class", lambda: RandomForestClassifier(n_estimators=3, max_depth=3, random_state=1),
     3),
    ("extra-trees", lambda: ExtraTreesClassifier(n_estimators=3, max_depth=3, random_state=2),
     2),
    ("hist-gb", lambda: HistGradientBoostingClassifier(max_iter=5, max_depth=2, max_bins=16,
                                                       random_state=0), 2),
    ("hist-gb-3-class", lambda: HistGradientBoostingClassifier(
        max_iter=3, max_depth=2, max_bins=8, random_state=0), 3),
]


@pytest.mark.parametrize(("name", "make", "classes"), TINY, ids=[t[0] for t in TINY])
def test_milp_equals_brute_force(name, make, classes):
    x, y = _data(0, 300, 3, classes)
    model = make().fit(x, y)
    xs, ys = x[:25], np.asarray(model.predict(x[:25]))  # correctly classified by construction
    res = TreeMILP(time_limit=30).minimal(model, xs, ys)
    assert set(res.status) <= {"exact"}, res.status
    for i in range(len(xs)):
        want = _brute_min_eps(model, xs[i].astype(np.float64), int(ys[i]))
        assert res.min_eps[i] == pytest.approx(want, abs=1e-6), (name, i)
        assert res.bound[i] <= res.min_eps[i] + 1e-12
        # the record at U really changes the decision and lies at distance U
        xa = res.x_adv[i].astype(np.float32)[None, :]
        assert int(np.argmax(model.predict_proba(xa)[0])) != ys[i]
        assert float(np.abs(res.x_adv[i] - xs[i]).max()) == pytest.approx(res.min_eps[i],
                                                                          abs=1e-9)


@pytest.mark.parametrize("kind", ["xgboost", "lightgbm"])
def test_boosters_equal_brute_force(kind):
    pytest.importorskip(kind)
    from advsec.models.boosters import BoostedTrees

    x, y = _data(3, 300, 2, 2)
    model = BoostedTrees.fit(x, y, kind=kind, n_estimators=4, max_depth=2, learning_rate=0.5)
    pred = np.asarray(model.predict_proba(x[:20])).argmax(1)
    res = TreeMILP(time_limit=30).minimal(model, x[:20], pred)
    assert set(res.status) <= {"exact"}, res.status
    for i in range(20):
        want = _brute_min_eps(model, x[i].astype(np.float64), int(pred[i]))
        assert res.min_eps[i] == pytest.approx(want, abs=1e-6), (kind, i)


def test_registered_and_refuses_what_it_cannot_read(small_synthetic_detector):
    _, _, det = small_synthetic_detector
    assert VERIFIERS["tree-milp"] is TreeMILP
    x, y = _data(0, 100, 3, 2)
    forest = RandomForestClassifier(n_estimators=3, max_depth=3, random_state=0).fit(x, y)
    v = make_verifier("tree-milp", time_limit=5)
    assert v.unsupported(forest) is None
    assert "tree ensembles" in v.unsupported(det)
    assert "ReLU MLPs" in CROWN().unsupported(forest)
    with pytest.raises(ConfigError, match="time_limit"):
        make_verifier("tree-milp", time_limit=0)


@pytest.fixture(scope="module")
def synthetic_forest():
    """A forest on the synthetic flows with a strict space (directions, a value set, a mutable
    categorical; immutables, integer grids and bounds from the schema)."""
    from advsec.datasets import load

    ds = load("synthetic", rows=1200, seed=0)
    direction = {"duration": "increase", "src_bytes": "increase", "failed_logins": "decrease"}
    feats = tuple(replace(f, direction=direction.get(f.name, "any"),
                          mutable=True if f.name == "protocol" else f.mutable,
                          values="observed" if f.name == "connections" else None)
                  for f in ds.schema)
    space = FeatureSpace(replace(ds.schema, features=feats)).fit(ds.train)
    forest = RandomForestClassifier(n_estimators=20, max_depth=6, random_state=0).fit(
        space.encode(ds.train), ds.labels("train"))
    test = ds.test.iloc[:80]
    x = space.encode(test).astype(np.float32)
    y = np.searchsorted(forest.classes_, ds.labels("test")[:80])
    return space, forest, x, y


EPS = [0.02, 0.05, 0.1]


def test_valid_region_bounds_hold_and_exact_beats_every_attack(synthetic_forest):
    space, forest, x, y = synthetic_forest
    res = TreeMILP(feature_space=space, time_limit=20)(forest, x, y, eps=EPS)
    assert sum(res.unknown) == 0
    # the records at U are valid records that change the decision
    broken = np.isfinite(res.min_eps.numpy()) & (res.min_eps.numpy() > 0)
    xa = res.x_adv.numpy()
    assert broken.any()
    assert valid_records(space, xa[broken], x[broken]).all()
    assert (forest.predict(xa[broken]) != forest.classes_[y[broken]]).all()
    # sampling the valid region inside the proven bound L never changes the decision
    rng = np.random.default_rng(0)
    v = space.torch_view()
    lower, upper = v.lower.numpy(), v.upper.numpy()
    mutable = v.mutable.numpy()
    for i in np.flatnonzero(res.bound.numpy() > 0)[:20]:
        r = min(float(res.bound[i]), 1.0) * (1 - 1e-6)
        pts = np.repeat(x[i:i + 1], 2000, axis=0)
        pts[:, mutable] += rng.uniform(-r, r, (2000, int(mutable.sum()))).astype(np.float32)
        pts = np.clip(pts, lower, upper)
        ok = valid_records(space, pts, np.repeat(x[i:i + 1], 2000, axis=0))
        if ok.any():
            assert (forest.predict(pts[ok]) == forest.classes_[y[i]]).all(), i
    # no attack breaks a verified record; the exact attack is at least as strong as each
    verified = res.verified.numpy()
    exact_acc = 1 - res.broken.numpy().mean(axis=1)
    for name, opts in (("tree-search", {}), ("square", {"queries": 200}),
                       ("hopskipjump", {"queries": 300})):
        attack = make_attack(name, eps=EPS, feature_space=space, seed=0, **opts)
        out = attack.run(forest, torch.as_tensor(x), torch.as_tensor(y))
        for k in range(len(EPS)):
            robust = out.adv_pred[k].numpy() == y
            assert not (verified[k] & ~robust).any(), (name, EPS[k])
            assert robust.mean() >= exact_acc[k] - 1e-9, (name, EPS[k])
    # no record unknown: the bounds of the robust accuracy meet
    bounds = np.array(res.robust_accuracy_bounds)
    assert np.allclose(bounds[:, 0], exact_acc) and np.allclose(bounds[:, 1], exact_acc)


def test_tree_search_records_are_valid_and_within_eps(synthetic_forest):
    space, forest, x, y = synthetic_forest
    attack = make_attack("tree-search", eps=EPS, feature_space=space, seed=0)
    out = attack.run(forest, torch.as_tensor(x), torch.as_tensor(y))
    for k, e in enumerate(EPS):
        xa = out.x_adv[k].numpy()
        assert valid_records(space, xa, x).all()
        assert float(np.abs(xa - x).max()) <= e + 1e-5
    again = make_attack("tree-search", eps=EPS, feature_space=space, seed=0).run(
        forest, torch.as_tensor(x), torch.as_tensor(y))
    assert all(torch.equal(a, b) for a, b in zip(out.x_adv, again.x_adv, strict=True))
    with pytest.raises(TypeError, match="tree ensembles only"):
        attack.run(torch.nn.Linear(x.shape[1], 2), torch.as_tensor(x[:2]), torch.as_tensor(y[:2]))


def test_transfer_from_mlp_never_beats_the_exact_attack(synthetic_forest, small_synthetic_detector):
    space, forest, x, y = synthetic_forest
    _, base, det = small_synthetic_detector
    assert base.n_features_out == space.n_features_out
    labels = forest.classes_[y]
    adv = FGSM(feature_space=space)(det, torch.as_tensor(x), det.encode_labels(labels), eps=EPS)
    res = TreeMILP(feature_space=space, time_limit=20)(forest, x, y, eps=EPS)
    for k, xa in enumerate(adv):
        robust = forest.predict(xa.numpy()) == labels
        assert not (res.verified[k].numpy() & ~robust).any()
        assert robust.mean() >= 1 - res.broken[k].float().mean().item() - 1e-9


def test_cli_attacks_and_verifies_a_saved_forest(tmp_path, capsys):
    from advsec.cli import main

    model = tmp_path / "rf"
    assert main(["train", "synthetic", "--kind", "random_forest", "--n-estimators", "10",
                 "--max-depth", "5", "--out", str(model)]) == 0
    out = tmp_path / "attack"
    assert main(["attack", "--model", str(model), "--dataset", "synthetic", "--attack",
                 "tree-search", "--eps", "0.05,0.1", "--max-rows", "120", "--verify",
                 "tree-milp", "--out", str(out)]) == 0
    import pandas as pd

    table = pd.read_csv(out / "verify.csv")
    results = pd.read_csv(out / "results.csv")
    assert list(table.verifier.unique()) == ["tree-milp"]
    assert (table.verified_broken == 0).all()
    # the exact lower bound never exceeds the attack's accuracy (an upper bound)
    assert (table.verified_accuracy <= table.attacked_accuracy + 1e-12).all()
    assert (results.valid_share == 1.0).all()
    # a verifier that cannot read the model: one line, exit 2, nothing written
    capsys.readouterr()
    bad = main(["attack", "--model", str(model), "--dataset", "synthetic", "--attack",
                "square", "--verify", "crown", "--out", str(tmp_path / "no")])
    err = capsys.readouterr().err
    assert bad == 2 and not (tmp_path / "no").exists()
    assert "--verify crown" in err and len(err.strip().splitlines()) == 1
