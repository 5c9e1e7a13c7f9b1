"""`advsec train`: a detector trained from the CLI is saved with its space and data options,
reloads with the same predictions, attacks with `advsec attack --data`, and bad input stops
with one line and nothing written."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from advsec.cli import main
from advsec.datasets import load
from advsec.models import Detector


@pytest.fixture(scope="module")
def csv(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    ds = load("synthetic", rows=1200, seed=0)
    df = pd.concat([ds.train, ds.test]).drop(columns=["attack_type"])
    df["verdict"] = np.where(df.pop("label") == "benign", "ok", "bad")
    path = root / "flows.csv"
    df.to_csv(path, index=False)
    return root, path, df


def test_train_saves_a_model_that_attack_reads(csv, capsys):
    root, path, _ = csv
    model = root / "det"
    assert main(["train", str(path), "--label-column", "verdict", "--benign-label", "ok",
                 "--epochs", "15", "--hidden", "32", "--out", str(model)]) == 0
    out = capsys.readouterr().out
    assert "test: accuracy" in out and "detection rate" in out
    meta = json.loads(model.with_suffix(".json").read_text())
    assert meta["data"] == {"dataset": "tabular", "options": {
        "label_column": "verdict", "benign_label": "ok", "scheme": "binary"}}
    assert meta["feature_space"] is not None
    scores = json.loads((root / "det.metrics.json").read_text())
    det = Detector.load(model)
    space = det.feature_space_
    # the printed accuracy is the reloaded model's on the same split
    split = load("tabular", path=path, label_column="verdict", benign_label="ok", seed=0)
    x = torch.as_tensor(space.encode(split.test))
    y = det.encode_labels(split.test[split.label].astype(str).to_numpy()).numpy()
    acc = float((det.predict_proba(x.numpy()).argmax(1) == y).mean())
    assert acc == pytest.approx(scores["test"]["accuracy"])
    assert main(["attack", "--model", str(model), "--data", str(path), "--eps", "0.1",
                 "--max-rows", "50", "--out", str(root / "atk")]) == 0
    assert len(pd.read_csv(root / "atk" / "adversarial.csv")) == 50


@pytest.mark.parametrize("args,message", [
    (["--epochs", "0"], "--epochs: must be >= 1"),
    (["--hidden", "3.5"], "--hidden: expected positive whole layer sizes"),
    (["--kind", "svm"], "--kind: expected one of mlp"),
    (["--out", "missing/dir/m"], "--out: folder missing"),
    (["--lr", "0"], "--lr: must be > 0"),
    (["--kind", "random_forest", "--max-depth", "0"], "--max-depth: must be >= 1"),
    (["--kind", "extra_trees", "--n-estimators", "0"], "--n-estimators: must be >= 1"),
])
def test_bad_options_stop_with_one_line(csv, tmp_path, capsys, monkeypatch, args, message):
    _, path, _ = csv
    monkeypatch.chdir(tmp_path)
    base = ["train", str(path), "--label-column", "verdict", "--out", "m"]
    if "--out" in args:
        base = base[:-2]
    assert main([*base, *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert list(tmp_path.iterdir()) == []


def test_a_file_needs_its_label_column(csv, tmp_path, capsys):
    _, path, _ = csv
    assert main(["train", str(path), "--out", str(tmp_path / "m")]) == 2
    assert "pass --label-column" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_single_class_detector_is_flagged(csv, tmp_path, capsys):
    _, _, df = csv
    # 6 attacks among 1,000 flows: the network learns to say "ok" to everything
    rare = df.copy()
    rare["verdict"] = "ok"
    rare.iloc[:6, rare.columns.get_loc("verdict")] = "bad"
    path = tmp_path / "rare.csv"
    rare.to_csv(path, index=False)
    assert main(["train", str(path), "--label-column", "verdict", "--benign-label", "ok",
                 "--epochs", "2", "--out", str(tmp_path / "m")]) == 0
    err = capsys.readouterr().err
    assert "red flag:" in err and "predicts" in err


@pytest.mark.parametrize("kind", ["random_forest", "extra_trees"])
def test_a_forest_is_saved_as_json_reloads_identically_and_is_attacked(csv, tmp_path, capsys,
                                                                       monkeypatch, kind):
    import pickle

    from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier

    from advsec.models.io import load_model
    from advsec.models.trees import TreeEnsemble

    _, path, _ = csv
    model = tmp_path / "forest"
    assert main(["train", str(path), "--label-column", "verdict", "--benign-label", "ok",
                 "--kind", kind, "--n-estimators", "15", "--out", str(model)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["forest.json", "forest.metrics.json"]
    # no file is unpickled on the way back
    def refuse(*args, **kwargs):
        raise AssertionError("pickle.load called")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    forest = load_model(model)
    assert isinstance(forest, TreeEnsemble) and forest.data_["options"]["label_column"] == "verdict"
    # the same forest fitted again predicts exactly what the reloaded file predicts
    split = load("tabular", path=path, label_column="verdict", benign_label="ok", seed=0)
    space = forest.feature_space_
    cls = RandomForestClassifier if kind == "random_forest" else ExtraTreesClassifier
    ref = cls(n_estimators=15, random_state=0, n_jobs=1).fit(
        space.encode(split.train), split.train[split.label].astype(str).to_numpy())
    x = space.encode(split.test)
    assert np.array_equal(ref.predict_proba(x), forest.predict_proba(x))
    # gradient attacks are refused with one line; a score-based attack runs
    assert main(["attack", "--model", str(model), "--data", str(path), "--attack", "pgd",
                 "--out", str(tmp_path / "a")]) == 2
    assert "needs gradients" in capsys.readouterr().err
    assert main(["attack", "--model", str(model), "--data", str(path), "--attack", "square",
                 "--eps", "0.1", "--steps", "50", "--max-rows", "40",
                 "--out", str(tmp_path / "b")]) == 0
    adv = pd.read_csv(tmp_path / "b" / "adversarial.csv")
    assert len(adv) == 40 and adv["valid"].all()


def test_a_malformed_tree_file_is_one_line(tmp_path, capsys):
    from advsec.models.trees import FORMAT

    bad = tmp_path / "f.json"
    bad.write_text(json.dumps({"format": FORMAT, "n_features": 2, "classes": ["a", "b"],
                               "trees": [{"feature": [0, -2, -2], "threshold": [0.5, 0, 0],
                                          "left": [1, -1, -1], "right": [0, -1, -1],
                                          "value": [[1, 0], [1, 0], [0, 1]]}]}))
    data = tmp_path / "d.csv"
    data.write_text("x,y\n1,a\n")
    assert main(["attack", "--model", str(bad), "--data", str(data), "--attack", "square",
                 "--label-column", "y", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "trees[0]" in err and "children must point forward" in err and "\n" not in err
