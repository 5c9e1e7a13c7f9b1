"""The synthetic flow generator: determinism, schema, types and the knobs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from advsec.datasets import load
from advsec.datasets.synthetic import ATTACK_TYPES, make_flows
from advsec.errors import DataError
from advsec.features.schema import FeatureKind


def test_same_seed_same_table_other_seed_differs():
    a, _ = make_flows(800, seed=3)
    b, _ = make_flows(800, seed=3)
    c, _ = make_flows(800, seed=4)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)


def test_columns_follow_schema_and_types():
    table, schema = make_flows(1000, seed=0)
    assert [*schema.names, "label", "attack_type"] == list(table.columns)
    for f in schema:
        col = table[f.name]
        if f.kind is FeatureKind.CATEGORICAL:
            assert col.dtype == "string"
        elif f.kind in (FeatureKind.INTEGER, FeatureKind.BINARY):
            assert col.dtype == np.int64
        else:
            assert col.dtype == np.float64
        if f.lower is not None and f.is_numeric:
            assert col.min() >= f.lower
        if f.upper is not None and f.is_numeric:
            assert col.max() <= f.upper
    assert set(table["urgent"]) <= {0, 1} and set(table["encrypted"]) <= {0, 1}
    assert set(table["attack_type"]) <= {"benign", *ATTACK_TYPES}
    assert ((table["label"] == "benign") == (table["attack_type"] == "benign")).all()
    # heavy tails: bytes span several orders of magnitude
    assert table["src_bytes"].max() > 100 * max(table["src_bytes"].median(), 1)


@pytest.mark.parametrize("share", [0.1, 0.5])
def test_malicious_share_is_respected(share):
    table, _ = make_flows(2000, malicious_share=share, seed=1)
    assert (table["label"] == "malicious").mean() == pytest.approx(share, abs=1e-3)


def test_separation_zero_makes_classes_indistinguishable_in_means():
    far, _ = make_flows(4000, separation=1.0, seed=0)
    none, _ = make_flows(4000, separation=0.0, seed=0)

    def gap(t: pd.DataFrame) -> float:
        logc = np.log1p(t["connections"])
        return abs(logc[t.label == "malicious"].mean() - logc[t.label == "benign"].mean())

    assert gap(none) < 0.1 < gap(far)


def test_bad_arguments_raise_one_line_errors():
    with pytest.raises(DataError, match="rows"):
        make_flows(5)
    with pytest.raises(DataError, match="malicious_share"):
        make_flows(100, malicious_share=1.5)


def test_registry_split_is_stratified_and_disjoint():
    ds = load("synthetic", rows=1000, seed=2, test_size=0.3)
    assert len(ds.train) == 700 and len(ds.test) == 300
    assert ds.classes == ["benign", "malicious"] and ds.benign_label == "benign"
    share_tr = (ds.train.label == "malicious").mean()
    share_te = (ds.test.label == "malicious").mean()
    assert abs(share_tr - share_te) < 0.02
