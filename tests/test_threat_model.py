"""The attacker action model (directions, value sets), formula relations, the reference-based
validator and the training-record invariant."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from advsec.attacks import PGD, make_attack
from advsec.attacks.projection import Projector
from advsec.attacks.validity import valid_records
from advsec.datasets import load
from advsec.errors import SchemaError
from advsec.features.constraints import parse_relation
from advsec.features.schema import Feature, FeatureKind, FeatureSchema
from advsec.features.space import FeatureSpace
from advsec.features.threat import snap_values
from advsec.models import Detector
from record_audit import audit

CONNECTION_COUNTS = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0)


def strict_synthetic():
    """The synthetic flows with directions on duration/bytes, a decreasing failed_logins and
    connections restricted to a sparse value set, plus an MLP trained on them."""
    ds = load("synthetic", rows=1500, seed=1)
    for table in (ds.train, ds.test):
        c = table["connections"].to_numpy()
        table["connections"] = np.array(CONNECTION_COUNTS)[
            np.clip(np.searchsorted(CONNECTION_COUNTS, c), 0, len(CONNECTION_COUNTS) - 1)
        ].astype(np.int64)
    direction = {"duration": "increase", "src_bytes": "increase", "dst_bytes": "increase",
                 "packets": "increase", "failed_logins": "decrease"}
    feats = tuple(replace(f, direction=direction.get(f.name, "any"),
                          values="observed" if f.name == "connections" else None)
                  for f in ds.schema)
    schema = replace(ds.schema, features=feats)
    space = FeatureSpace(schema).fit(ds.train)
    det = Detector(hidden=(32,), epochs=10, batch_size=64, lr=3e-3, seed=0, device="cpu").fit(
        space.encode(ds.train), ds.labels("train"))
    return ds, schema, space, det


@pytest.fixture(scope="module")
def strict():
    return strict_synthetic()


def xy(ds, space, det, n=300):
    test = ds.test.iloc[:n]
    classes = [str(c) for c in det.classes_]
    y = torch.tensor([classes.index(v) for v in test[ds.label].astype(str)])
    return test, torch.as_tensor(space.encode(test)), y


@pytest.mark.parametrize("attack,norm", [("pgd", "linf"), ("pgd", "l2"), ("fgsm", "linf"),
                                         ("square", "linf"), ("hopskipjump", "l2")])
def test_attacks_keep_directions_and_value_sets(strict, attack, norm):
    ds, schema, space, det = strict
    test, x, y = xy(ds, space, det, n=120)
    eps = 0.2 if norm == "linf" else 0.8
    kwargs = {"steps": 20} if attack == "pgd" else {}
    if attack in ("square", "hopskipjump"):
        kwargs = {"queries": 200} if attack == "square" else {"queries": 300}
    atk = make_attack(attack, eps=eps, norm=norm, feature_space=space, seed=0, **kwargs)
    x_adv = atk(det, x, y)
    assert bool((x_adv != x).any())
    orig = test[schema.names].reset_index(drop=True)
    adv = space.decode(x_adv, reference=orig)
    values = {k: list(v) for k, v in space.values_.items()}
    assert audit(schema.to_dict(), values, adv, orig) == {}
    assert set(adv["connections"]) <= set(CONNECTION_COUNTS)
    # the one validator agrees with the independent audit
    assert valid_records(space, x_adv, x).all()


def test_the_loose_attack_breaks_what_the_action_model_forbids(strict):
    ds, schema, space, det = strict
    loose_schema = replace(schema, features=tuple(replace(f, direction="any", values=None)
                                                  for f in schema))
    loose = FeatureSpace(loose_schema).fit(ds.train)
    test, x, y = xy(ds, loose, det)
    x_adv = PGD(eps=0.2, steps=20, feature_space=loose, seed=0)(det, x, y)
    orig = test[schema.names].reset_index(drop=True)
    adv = loose.decode(x_adv, reference=orig)
    broken = audit(schema.to_dict(), {k: list(v) for k, v in space.values_.items()}, adv, orig)
    assert broken.get("direction:duration", 0) > 0 and broken.get("values:connections", 0) > 0
    # and the strict space's validator flags those records
    assert not valid_records(space, x_adv, x).all()


def test_linf_projection_folds_in_the_directions(strict):
    ds, _, space, _ = strict
    x0 = torch.as_tensor(space.encode(ds.test.iloc[:50]))
    eps = torch.full((50, 1), 0.3)
    v = space.torch_view()
    proj = Projector(x0, eps, norm="linf", lower=v.lower, upper=v.upper, mutable=v.mutable,
                     space=space)
    x = proj(x0 + torch.randn(x0.shape, generator=torch.Generator().manual_seed(0)))
    tv = space.threat_view()
    assert bool((x[:, tv.increase] >= x0[:, tv.increase]).all())
    assert bool((x[:, tv.decrease] <= x0[:, tv.decrease]).all())
    assert bool(((x - x0).abs() <= 0.3 + 1e-6).all())


def test_snap_values_takes_the_nearest_allowed_value_inside_the_limits(strict):
    ds, _, space, _ = strict
    tv = space.threat_view()
    (c,), (allowed,) = tv.value_cols, tv.value_model
    x0 = torch.as_tensor(space.encode(ds.test.iloc[:64]))
    x = x0.clone()
    x[:, c] = torch.rand(64, generator=torch.Generator().manual_seed(1))
    lo, hi = x0 - 0.15, x0 + 0.15
    out = snap_values(tv, x, x0, lo, hi)
    for i in range(64):
        inside = allowed[(allowed >= lo[i, c]) & (allowed <= hi[i, c])]
        want = x0[i, c] if len(inside) == 0 else inside[(inside - x[i, c]).abs().argmin()]
        assert float(out[i, c]) == float(want)
    # other columns untouched
    mask = torch.ones(x.shape[1], dtype=torch.bool)
    mask[c] = False
    assert torch.equal(out[:, mask], x[:, mask])


def test_validate_with_a_reference_flags_directions_and_immutables(strict):
    ds, schema, space, _ = strict
    test = ds.test[ds.test["duration"] > 0.5]
    orig = test.iloc[:5][schema.names].reset_index(drop=True)
    adv = orig.copy()
    adv.loc[0, "duration"] = orig.loc[0, "duration"] - 0.5
    adv.loc[1, "failed_logins"] = orig.loc[1, "failed_logins"] + 1
    adv.loc[2, "protocol"] = "sctp" if orig.loc[2, "protocol"] != "sctp" else "tcp"
    adv.loc[3, "connections"] = 3  # not in the value set
    checks = space.validate(adv, reference=orig)
    bad = {c: list(np.flatnonzero(checks[c])) for c in checks if checks[c].any()}
    assert bad == {"direction:duration": [0], "direction:failed_logins": [1],
                   "immutable:protocol": [2], "values:connections": [3]}


def test_schema_keys_are_checked():
    with pytest.raises(SchemaError, match="direction must be one of"):
        Feature("a", FeatureKind.INTEGER, direction="up")
    with pytest.raises(SchemaError, match="direction is for numeric features"):
        Feature("a", FeatureKind.CATEGORICAL, direction="increase")
    with pytest.raises(SchemaError, match="values must be a non-empty list of finite numbers"):
        Feature("a", FeatureKind.INTEGER, values=())
    with pytest.raises(SchemaError, match="values must be a list of numbers or 'observed'"):
        Feature("a", FeatureKind.INTEGER, values="seen")
    with pytest.raises(SchemaError, match="'values' is for numeric features"):
        Feature("a", FeatureKind.CATEGORICAL, values=(1,))
    f = Feature("ttl", FeatureKind.INTEGER, direction="decrease", values=(64, 32, 64.0, 128))
    assert f.values == (32.0, 64.0, 128.0)
    assert Feature.from_dict(f.to_dict()) == f


@pytest.mark.parametrize("expr,match", [
    ("pkts.real / dur", "uses Attribute"), ("abs(pkts)", "uses Call"),
    ("pkts ** 2", "uses the operator Pow"),
    ("", "non-empty expression"), ("pkts /", "cannot parse"), ("`a` + `", "unbalanced backtick"),
    ("rate * 2", "also appears in its expression"), ("3 + 4", "names no feature"),
])
def test_formula_expressions_are_whitelisted(expr, match):
    with pytest.raises(SchemaError, match=match):
        parse_relation({"type": "formula", "target": "rate", "expr": expr})


def test_formula_values_agree_with_pandas_eval():
    rel = parse_relation({"type": "formula", "target": "r",
                          "expr": "8 * (`a b` + c - 1) / (c * d)", "tol": 0.01})
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"r": rng.random(50), "a b": rng.integers(0, 9, 50).astype(float),
                       "c": rng.integers(0, 3, 50).astype(float), "d": rng.random(50)})
    rel.bind({"r": 0, "a b": 1, "c": 2, "d": 3})
    got = rel.expected(lambda n: torch.as_tensor(df[n].to_numpy(copy=True)))
    with np.errstate(divide="ignore", invalid="ignore"):
        den = df["c"] * df["d"]
        want = np.where(den != 0, 8 * (df["a b"] + df["c"] - 1) / den.where(den != 0, 1), 0.0)
    assert np.allclose(got.numpy(), want)
    repaired = rel.repair(torch.as_tensor(df.to_numpy()), torch.ones(4, dtype=torch.bool))
    assert float(rel.violation(repaired).max()) == 0.0


def test_training_records_must_validate():
    feats = (Feature("pkts", FeatureKind.INTEGER, lower=0), Feature("bytes", FeatureKind.INTEGER,
                                                                    lower=0))
    df = pd.DataFrame({"pkts": [1, 2, 0, 4], "bytes": [10, 20, 5, 40]})
    rel = {"type": "zero_if_zero", "name": "empty", "when": "pkts", "features": ["bytes"]}
    schema = FeatureSchema(features=feats, relations=(rel,))
    with pytest.raises(SchemaError, match=r"training record 2 breaks relation 'empty' \(pkts=0, "
                                          r"bytes=5; 1 of 4 training records do\)"):
        FeatureSpace(schema).fit(df)
    # a stated share is a promise too: 3 of 4 is too few for holds_on = 0.99 ...
    low = FeatureSchema(features=feats, relations=({**rel, "holds_on": 0.99},))
    with pytest.raises(SchemaError, match=r"'empty' holds on 75.00 % of the 4 training records"):
        FeatureSpace(low).fit(df)
    # ... and enough for holds_on = 0.7, where it is enforced on the records it holds on
    ok = FeatureSpace(FeatureSchema(features=feats, relations=({**rel, "holds_on": 0.7},))).fit(df)
    x = torch.as_tensor(ok.encode(df))
    x_adv = x.clone()
    x_adv[0, 0] = float(ok.encode(pd.DataFrame({"pkts": [0], "bytes": [0]}))[0, 0])
    assert list(valid_records(ok, x_adv, x)) == [False, True, True, True]
    assert list(valid_records(ok, x, x)) == [True] * 4  # record 2 breaks it, but not by attack
