"""FeatureSpace (first version) on synthetic flows: range, round trip, layout, projection."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from advsec.datasets.synthetic import make_flows
from advsec.features.space import OTHER, FeatureSpace


@pytest.fixture(scope="module")
def fitted():
    table, schema = make_flows(1500, seed=0)
    train, test = table.iloc[:1000].reset_index(drop=True), table.iloc[1000:].reset_index(drop=True)
    return FeatureSpace(schema).fit(train), train, test


def test_encode_is_float32_in_unit_box(fitted):
    space, train, test = fitted
    for t in (train, test):
        x = space.encode(t)
        assert x.dtype == np.float32 and x.shape == (len(t), space.n_features_out)
        assert x.min() >= 0.0 and x.max() <= 1.0
    # one-hot blocks sum to one
    for _, a, b in space.blocks_:
        if b - a > 1:
            assert np.all(space.encode(test)[:, a:b].sum(axis=1) == 1.0)


def test_decode_encode_round_trip_on_training_records(fitted):
    space, train, _ = fitted
    back = space.decode(space.encode(train))
    for f in space.schema:
        if f.is_numeric and f.kind.value != "continuous":
            assert (back[f.name].to_numpy() == train[f.name].to_numpy()).all(), f.name
        elif f.is_numeric:
            np.testing.assert_allclose(back[f.name], train[f.name], rtol=1e-5, atol=1e-6)
        else:
            assert (back[f.name].astype(str) == train[f.name].astype(str)).all()


def test_min_max_fitted_on_training_data_only(fitted):
    space, train, _ = fitted
    x = space.encode(train)
    col = space.columns_.index("connections")
    assert x[:, col].max() == pytest.approx(1.0) and x[:, col].min() >= 0.0
    assert space.span_["connections"] == pytest.approx(np.log1p(train["connections"].max()))


def test_unknown_category_goes_to_other_slot(fitted):
    space, _, test = fitted
    odd = test.head(3).copy()
    odd["service"] = pd.array(["gopher"] * 3, dtype="string")
    x = space.encode(odd)
    assert (x[:, space.columns_.index(f"service={OTHER}")] == 1).all()
    assert (space.decode(x)["service"] == OTHER).all()


def test_project_restores_immutable_and_clips(fitted):
    space, _, test = fitted
    x0 = torch.from_numpy(space.encode(test.head(50)))
    moved = x0 + torch.randn_like(x0)
    p = space.project(moved, x0)
    mutable = torch.from_numpy(space.mutable_mask)
    assert torch.equal(p[:, ~mutable], x0[:, ~mutable])
    assert p.min() >= 0 and p.max() <= 1


def test_repair_rounds_integers_and_keeps_untouched_columns(fitted):
    space, _, test = fitted
    x0 = torch.from_numpy(space.encode(test.head(50)))
    x = x0.clone()
    col = space.columns_.index("packets")
    x[:, col] = torch.clamp(x[:, col] + 0.013, 0, 1)
    r = space.repair(x, x0)
    other = [i for i in range(x.shape[1]) if i != col]
    assert torch.equal(r[:, other], x0[:, other])
    packets = space.decode(r)["packets"].to_numpy()
    # the repaired value encodes exactly that whole number of packets
    again = space.encode(space.decode(r))[:, col]
    np.testing.assert_allclose(again, r[:, col].numpy(), atol=1e-6)
    assert packets.dtype == np.int64


def test_serialisation_round_trip(fitted):
    space, _, test = fitted
    clone = FeatureSpace.from_dict(space.to_dict())
    np.testing.assert_array_equal(clone.encode(test), space.encode(test))
