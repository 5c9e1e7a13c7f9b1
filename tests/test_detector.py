"""Detector: learns the synthetic task, deterministic, sklearn conventions, save/load."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from advsec.datasets import load
from advsec.errors import DataError
from advsec.features.space import FeatureSpace
from advsec.models import Detector


@pytest.fixture(scope="module")
def data():
    ds = load("synthetic")  # the default demo configuration
    space = FeatureSpace(ds.schema).fit(ds.train)
    return ds, space, space.encode(ds.train), space.encode(ds.test)


@pytest.fixture(scope="module")
def trained(data):
    ds, _, x_train, _ = data
    return Detector(seed=0).fit(x_train, ds.labels("train"))


def test_learns_the_default_synthetic_task(data, trained):
    ds, _, _, x_test = data
    assert trained.score(x_test, ds.labels("test")) >= 0.95


def test_sklearn_conventions(data, trained):
    _, _, _, x_test = data
    assert list(trained.classes_) == ["benign", "malicious"]
    assert trained.n_features_in_ == x_test.shape[1]
    proba = trained.predict_proba(x_test)
    assert proba.shape == (len(x_test), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    assert set(trained.predict(x_test)) <= {"benign", "malicious"}
    assert (trained.predict(x_test) == trained.classes_[proba.argmax(1)]).all()
    assert trained.get_params()["seed"] == 0 and trained.history_


def test_same_seed_same_weights_other_seed_differs(data, trained):
    ds, _, x_train, x_test = data
    again = Detector(seed=0).fit(x_train, ds.labels("train"))
    other = Detector(seed=1, epochs=2).fit(x_train, ds.labels("train"))
    np.testing.assert_array_equal(again.predict_proba(x_test), trained.predict_proba(x_test))
    assert not np.array_equal(other.predict_proba(x_test), trained.predict_proba(x_test))


def test_multiclass(data):
    ds, _, x_train, x_test = data
    det = Detector(epochs=10, seed=0).fit(x_train, ds.train["attack_type"].astype(str))
    assert len(det.classes_) == 5
    assert det.predict_proba(x_test).shape == (len(x_test), 5)
    assert det.score(x_test, ds.test["attack_type"].astype(str)) > 0.8


def test_save_load_round_trip_gives_identical_predictions(tmp_path, data, trained):
    _, space, _, x_test = data
    w, j = trained.save(tmp_path / "model", feature_space=space)
    assert w.name == "model.safetensors" and j.name == "model.json"
    meta = json.loads(j.read_text())
    assert meta["architecture"]["hidden"] == [64, 32] and meta["classes"] == ["benign", "malicious"]
    loaded = Detector.load(tmp_path / "model")
    np.testing.assert_array_equal(loaded.predict_proba(x_test), trained.predict_proba(x_test))
    np.testing.assert_array_equal(loaded.feature_space_.encode(data[0].test), x_test)


def test_weights_file_is_safetensors_not_pickle(tmp_path, trained):
    w, _ = trained.save(tmp_path / "m")
    header_len = int.from_bytes(w.read_bytes()[:8], "little")
    header = json.loads(w.read_bytes()[8 : 8 + header_len])
    assert "net.0.weight" in header


def test_bad_input_errors(tmp_path, data, trained):
    _, _, x_train, _ = data
    with pytest.raises(DataError, match="columns"):
        trained.predict(np.zeros((3, 5), dtype=np.float32))
    with pytest.raises(DataError, match="NaN"):
        trained.predict(np.full((2, x_train.shape[1]), np.nan, dtype=np.float32))
    with pytest.raises(DataError, match="not seen in training"):
        trained.encode_labels(["benign", "weird"])
    with pytest.raises(DataError, match="at least 2 classes"):
        Detector().fit(x_train[:10], ["benign"] * 10)
    with pytest.raises(DataError, match="not found"):
        Detector.load(tmp_path / "missing")


def test_warm_start_continues_training(data):
    ds, _, x_train, _ = data
    det = Detector(epochs=2, validation_split=0, seed=0, warm_start=True)
    det.fit(x_train, ds.labels("train"))
    first = [p.detach().clone() for p in det.module_.parameters()]
    det.fit(x_train, ds.labels("train"))
    assert len(det.history_) == 4
    assert any(not torch.equal(a, b) for a, b in zip(first, det.module_.parameters(),
                                                        strict=True))
