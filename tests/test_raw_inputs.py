"""RawInputs: encoded inputs back to raw values, as decode gives them, with gradients."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from advsec.datasets.synthetic import make_flows
from advsec.errors import SchemaError
from advsec.features.raw_inputs import RawInputs, raw_feature_names
from advsec.features.schema import Feature, FeatureKind, FeatureSchema
from advsec.features.space import OTHER, FeatureSpace


@pytest.fixture(scope="module")
def numeric_space():
    """The synthetic flows with the protocol as a number (6, 17, 1) and no text feature."""
    table, schema = make_flows(600, seed=3)
    table = table.copy()
    table["protocol"] = table["protocol"].map({"tcp": "6", "udp": "17", "icmp": "1"})
    feats = [f for f in schema.features if f.name != "service"]
    space = FeatureSpace(FeatureSchema(feats)).fit(table.iloc[:400], check=False)
    return space, table.iloc[400:].reset_index(drop=True)


def test_raw_of_encoded_records_is_the_records(numeric_space):
    space, test = numeric_space
    raw = RawInputs(space)(torch.as_tensor(space.encode(test))).numpy()
    names = raw_feature_names(space)
    assert raw.shape == (len(test), len(names))
    for j, name in enumerate(names):
        want = pd.to_numeric(test[name]).to_numpy(dtype=np.float64)
        np.testing.assert_allclose(raw[:, j], want, rtol=2e-6, atol=1e-6, err_msg=name)


def test_raw_of_any_input_agrees_with_decode(numeric_space):
    space, _ = numeric_space
    x = torch.rand(300, space.n_features_out, generator=torch.Generator().manual_seed(0))
    raw = RawInputs(space)(x).numpy()
    decoded = space.decode(x)
    for j, name in enumerate(raw_feature_names(space)):
        col = decoded[name].astype(object).replace(OTHER, np.nan)
        want = pd.to_numeric(col).to_numpy(dtype=np.float64)
        np.testing.assert_allclose(raw[:, j], want, rtol=2e-6, atol=1e-6, err_msg=name)


def test_gradients_flow_through_the_rounding(numeric_space):
    space, test = numeric_space
    x = torch.as_tensor(space.encode(test[:20])).requires_grad_(True)
    RawInputs(space)(x).sum().backward()
    assert x.grad is not None
    numeric = [space.columns_.index(n) for n in space.numeric_features_]
    assert (x.grad[:, numeric].abs() > 0).all()
    a, b = next((a, b) for f, a, b in space.blocks_ if f.name == "protocol")
    assert x.grad[:, a:b].abs().sum() > 0  # the categories' numbers


def test_unseen_category_is_nan(numeric_space):
    space, test = numeric_space
    odd = test[:3].copy()
    odd["protocol"] = "58"
    raw = RawInputs(space)(torch.as_tensor(space.encode(odd))).numpy()
    assert np.isnan(raw[:, raw_feature_names(space).index("protocol")]).all()


def test_text_categories_are_refused_with_the_feature_name():
    table, schema = make_flows(200, seed=0)
    space = FeatureSpace(schema).fit(table)
    with pytest.raises(SchemaError, match=r"'protocol'.*text values"):
        RawInputs(space)


def test_unrounded_values_are_smooth():
    table = pd.DataFrame({"n": np.arange(10), "label": ["a", "b"] * 5})
    space = FeatureSpace(FeatureSchema([Feature("n", FeatureKind.INTEGER, lower=0.0)])).fit(table)
    x = torch.tensor([[0.52]])
    assert RawInputs(space)(x).item() == 5.0
    assert RawInputs(space, rounding=False)(x).item() == pytest.approx(4.68, rel=1e-6)
