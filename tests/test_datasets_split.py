"""The seeded, stratified split used where a dataset ships as one partition."""

from __future__ import annotations

import numpy as np
import pytest

from advsec.datasets._split import stratified_indices
from advsec.errors import ConfigError

STRATA = np.array(["a"] * 50 + ["b"] * 7 + ["c"] * 2 + ["d"])


def test_disjoint_cover_sorted_and_stratified():
    train, test = stratified_indices(STRATA, test_size=0.3, seed=0)
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(len(STRATA)))
    assert np.all(np.diff(train) > 0) and np.all(np.diff(test) > 0)
    per = {k: int((STRATA[test] == k).sum()) for k in "abcd"}
    assert per == {"a": 15, "b": 2, "c": 1, "d": 0}  # round(0.3 n); a singleton stays in train


def test_deterministic_per_seed_and_independent_of_row_order_labels():
    a = stratified_indices(STRATA, test_size=0.3, seed=7)
    b = stratified_indices(STRATA, test_size=0.3, seed=7)
    c = stratified_indices(STRATA, test_size=0.3, seed=8)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[1], c[1])


@pytest.mark.parametrize("size", [0.0, 1.0, -0.1, 1.5])
def test_bad_test_size(size):
    with pytest.raises(ConfigError, match="test_size must be in"):
        stratified_indices(STRATA, test_size=size, seed=0)
