"""Property-based tests (hypothesis) of FeatureSpace: encode/decode round trips, project and
repair invariants, validate, on a schema with every feature kind and every relation type."""

from __future__ import annotations

from functools import cache

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from advsec.features.schema import Feature, FeatureKind, FeatureSchema
from advsec.features.space import OTHER, FeatureSpace

C, INT = FeatureKind.CONTINUOUS, FeatureKind.INTEGER
B, K = FeatureKind.BINARY, FeatureKind.CATEGORICAL
PROTOS = ("tcp", "udp", "icmp")
SERVICES = ("http", "dns", "ssh")
MAX_BYTES, MAX_PKTS, MAX_SPAN = 10**6, 1000, 10**6

SCHEMA = FeatureSchema(
    features=(
        Feature("proto", K, mutable=False),
        Feature("svc", K),
        Feature("bytes", INT, lower=0, transform="log1p"),
        Feature("pkts", INT, lower=0, transform="log1p"),
        Feature("mean", INT, lower=0, transform="log1p"),
        Feature("rate_a", C, lower=0, upper=1),
        Feature("rate_b", C, lower=0, upper=1),
        Feature("logged", B),
        Feature("cnt", INT, lower=0, upper=100, mutable=False),
        Feature("lo", C, lower=0),
        Feature("mid", C, lower=0),
        Feature("hi", C, lower=0),
        Feature("dur", C, lower=0, transform="log1p"),
    ),
    label="label",
    benign_label="benign",
    relations=(
        {"type": "ratio", "name": "mean_size", "target": "mean", "numerator": "bytes",
         "denominator": "pkts", "tol": 1.0},
        {"type": "sum", "name": "shares", "features": ["rate_a", "rate_b"], "target": 1.0,
         "op": "<=", "tol": 0.01},
        {"type": "zero_if_zero", "name": "login", "when": "logged", "features": ["cnt"]},
        {"type": "order", "name": "lo_mid_hi", "features": ["lo", "mid", "hi"]},
    ),
)


def record(proto, svc, pkts, per_pkt, a, b, logged, cnt, three, dur_us):
    """A valid raw record built from free parameters (relations hold by construction)."""
    bytes_ = 0 if pkts == 0 else min(pkts * per_pkt, MAX_BYTES)
    lo, mid, hi = sorted(three)
    return {
        "proto": proto, "svc": svc, "bytes": bytes_, "pkts": pkts,
        "mean": 0 if pkts == 0 else int(np.floor(bytes_ / pkts + 0.5)),
        "rate_a": a / 100, "rate_b": min(b, 100 - a) / 100, "logged": logged,
        "cnt": cnt if logged else 0, "lo": lo / 1000, "mid": mid / 1000, "hi": hi / 1000,
        "dur": dur_us / 10**6,
    }


def frame(rows):
    df = pd.DataFrame(rows)
    for name in ("proto", "svc"):
        df[name] = df[name].astype("string")
    for f in SCHEMA:
        if f.kind is C:
            df[f.name] = df[f.name].astype(np.float64)
        elif f.kind in (INT, B):
            df[f.name] = df[f.name].astype(np.int64)
    return df


@cache
def fitted() -> FeatureSpace:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(400):
        rows.append(record(PROTOS[i % 3], SERVICES[i % 3], int(rng.integers(0, MAX_PKTS + 1)),
                           int(rng.integers(1, 1500)), int(rng.integers(0, 101)),
                           int(rng.integers(0, 101)), int(rng.integers(0, 2)),
                           int(rng.integers(0, 101)), rng.integers(0, MAX_SPAN + 1, size=3),
                           int(rng.integers(0, 10**8))))
    # extremes, so that the fitted ranges cover everything the strategies draw
    rows.append(record("tcp", "http", MAX_PKTS, MAX_BYTES, 0, 0, 1, 100,
                       [MAX_SPAN] * 3, 10**8))
    rows.append(record("udp", "dns", 1, 1500, 0, 0, 1, 100, [0, 0, 0], 0))
    return FeatureSpace(SCHEMA).fit(frame(rows))


records = st.lists(
    st.builds(
        record,
        st.sampled_from(PROTOS), st.sampled_from((*SERVICES, "gopher")),
        st.integers(0, MAX_PKTS), st.integers(1, 1500), st.integers(0, 100),
        st.integers(0, 100), st.integers(0, 1), st.integers(0, 100),
        st.lists(st.integers(0, MAX_SPAN), min_size=3, max_size=3), st.integers(0, 10**8),
    ),
    min_size=1, max_size=12,
).map(frame)

FAST = settings(max_examples=60, deadline=None)


@FAST
@given(records)
def test_encode_is_float32_in_the_unit_box_with_exact_one_hot_blocks(raw):
    space = fitted()
    x = space.encode(raw)
    assert x.dtype == np.float32 and x.shape == (len(raw), space.n_features_out)
    assert x.min() >= 0.0 and x.max() <= 1.0
    for f, a, b in space.blocks_:
        if f.kind is K:
            assert np.all(x[:, a:b].sum(axis=1) == 1.0)
            assert set(np.unique(x[:, a:b])) <= {0.0, 1.0}


@FAST
@given(records)
def test_decode_of_encode_with_reference_is_the_identity(raw):
    space = fitted()
    back = space.decode(space.encode(raw), reference=raw)
    pd.testing.assert_frame_equal(back, raw[SCHEMA.names], check_dtype=False)
    for f in SCHEMA:
        assert (back[f.name].dtype.kind == "f") == (f.kind is C), f.name


@FAST
@given(records)
def test_decode_of_encode_is_exact_where_float32_allows(raw):
    space = fitted()
    back = space.decode(space.encode(raw))
    for name in ("pkts", "mean", "logged", "cnt", "proto", "rate_a", "rate_b"):
        assert back[name].tolist() == raw[name].tolist(), name
    expected_svc = [s if s in SERVICES else OTHER for s in raw["svc"]]
    assert back["svc"].tolist() == expected_svc
    for name in ("bytes", "lo", "mid", "hi", "dur"):  # log1p / 6 digits: float32 precision
        np.testing.assert_allclose(back[name], raw[name], rtol=2e-6, atol=1e-6, err_msg=name)
    assert space.valid_mask(raw).all()


noise = st.tuples(st.integers(0, 2**31 - 1), st.floats(0.0, 0.6))


def perturb(space, raw, seed_scale):
    seed, scale = seed_scale
    x0 = torch.from_numpy(space.encode(raw))
    g = torch.Generator().manual_seed(seed)
    return x0, x0 + scale * torch.randn(x0.shape, generator=g)


@FAST
@given(records, noise)
def test_project_restores_immutables_clips_and_is_idempotent(raw, seed_scale):
    space = fitted()
    x0, moved = perturb(space, raw, seed_scale)
    p = space.project(moved, x0)
    immutable = ~space.torch_view().mutable
    assert torch.equal(p[:, immutable], x0[:, immutable])
    assert p.min() >= 0 and p.max() <= 1
    assert torch.equal(space.project(p, x0), p)


@FAST
@given(records, noise)
def test_repair_yields_valid_records_and_keeps_what_it_must(raw, seed_scale):
    space = fitted()
    x0, moved = perturb(space, raw, seed_scale)
    r = space.repair(moved, x0)
    immutable = ~space.torch_view().mutable
    assert torch.equal(r[:, immutable], x0[:, immutable])
    for f, a, b in space.blocks_:
        if f.kind is K:
            assert torch.all(r[:, a:b].sum(dim=1) == 1) and set(r[:, a:b].unique().tolist()) <= {
                0.0, 1.0}
    decoded = space.decode(r)
    checks = space.validate(decoded)
    assert not checks.to_numpy().any(), checks.columns[checks.to_numpy().any(axis=0)].tolist()
    # encoding the decoded record gives back the repaired input (it is a fixed point)
    np.testing.assert_allclose(space.encode(decoded), r.numpy(), atol=1e-6)
    # a second repair changes nothing once decoded
    pd.testing.assert_frame_equal(space.decode(space.repair(r, x0)), decoded)


@FAST
@given(records)
def test_repair_of_an_untouched_batch_is_bit_identical(raw):
    space = fitted()
    x0 = torch.from_numpy(space.encode(raw))
    assert torch.equal(space.repair(x0.clone(), x0), x0)


@FAST
@given(records, st.sampled_from(["mean_size", "shares", "login", "lo_mid_hi"]))
def test_validate_flags_the_broken_relation_only(raw, which):
    space = fitted()
    bad = raw.copy()
    row = 0
    if which == "mean_size":
        bad.loc[row, "pkts"] = 10
        bad.loc[row, "bytes"] = 1000
        bad.loc[row, "mean"] = 50
    elif which == "shares":
        bad.loc[row, ["rate_a", "rate_b"]] = [0.8, 0.5]
    elif which == "login":
        bad.loc[row, ["logged", "cnt"]] = [0, 3]
    else:
        bad.loc[row, ["lo", "mid", "hi"]] = [2.0, 1.0, 3.0]
    checks = space.validate(bad)
    flagged = [c for c in checks.columns if checks.loc[row, c]]
    assert flagged == [f"relation:{which}"]
    assert not checks.drop(index=row).to_numpy().any()
    assert space.valid_mask(bad).tolist() == [False] + [True] * (len(bad) - 1)


def test_validate_flags_bounds_kinds_and_missing_values():
    space = fitted()
    raw = frame([record("tcp", "http", 3, 100, 10, 20, 1, 5, [1, 2, 3], 10)] * 5)
    raw["cnt"] = raw["cnt"].astype(np.float64)
    raw.loc[0, "cnt"] = 101        # above upper
    raw.loc[1, "cnt"] = 2.5        # not whole
    raw.loc[2, "rate_a"] = -0.1    # below lower
    raw.loc[3, "dur"] = np.nan     # missing
    checks = space.validate(raw)
    assert checks.loc[0, "bound:cnt"] and checks.loc[1, "bound:cnt"]
    assert checks.loc[2, "bound:rate_a"] and checks.loc[3, "bound:dur"]
    assert checks.sum().sum() == 4 and space.valid_mask(raw).tolist() == [False] * 4 + [True]


def test_relation_violation_is_differentiable_in_model_space():
    space = fitted()
    raw = frame([record("tcp", "http", 3, 100, 10, 20, 1, 5, [1, 2, 3], 10)])
    x = torch.from_numpy(space.encode(raw)).to(torch.float64)
    mean = space.columns_.index("mean")
    x[0, mean] = min(1.0, float(x[0, mean]) + 0.2)
    x.requires_grad_(True)
    v = space.relation_violation(x)
    assert v.shape == (1,) and v.item() > 0
    v.sum().backward()
    assert x.grad[0, mean] > 0  # lowering the mean back reduces the violation


def test_serialisation_keeps_decimals_and_relations():
    space = fitted()
    clone = FeatureSpace.from_dict(space.to_dict())
    assert clone.decimals_ == space.decimals_ and space.decimals_["rate_a"] == 2
    assert [r.name for r in clone.relations_] == [r.name for r in space.relations_]
    raw = frame([record("udp", "dns", 7, 60, 1, 2, 0, 0, [5, 6, 7], 99)])
    pd.testing.assert_frame_equal(clone.decode(clone.encode(raw)), space.decode(space.encode(raw)))


def test_decode_rejects_a_wrong_shape_and_a_wrong_reference():
    space = fitted()
    with pytest.raises(Exception, match=r"shape \(N, "):
        space.decode(np.zeros((2, 3), dtype=np.float32))
    raw = frame([record("udp", "dns", 7, 60, 1, 2, 0, 0, [5, 6, 7], 99)])
    with pytest.raises(Exception, match="reference has 2 rows"):
        space.decode(space.encode(raw), reference=pd.concat([raw, raw]))
