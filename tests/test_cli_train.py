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
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == f"model: {model}"  # the terminal ends with the clean metrics and path
    assert lines[-2].startswith(f"mlp detector on {path}, clean test split: accuracy ")
    assert "detection rate" in lines[-2] and "false-positive rate" in lines[-2]
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


def _refit(kind, x, y):
    """The model `advsec train --kind KIND --n-estimators 15` fits, fitted again here."""
    from sklearn.ensemble import (
        ExtraTreesClassifier,
        HistGradientBoostingClassifier,
        RandomForestClassifier,
    )

    from advsec.models.boosters import BoostedTrees

    if kind in ("xgboost", "lightgbm"):
        return BoostedTrees.fit(x, y, kind=kind, n_estimators=15, threads=torch.get_num_threads())
    if kind == "hist_gradient_boosting":
        return HistGradientBoostingClassifier(max_iter=15, early_stopping=False,
                                              random_state=0).fit(x, y)
    cls = RandomForestClassifier if kind == "random_forest" else ExtraTreesClassifier
    return cls(n_estimators=15, random_state=0, n_jobs=1).fit(x, y)


TREE_FILES = {
    "random_forest": ["forest.json"], "extra_trees": ["forest.json"],
    "hist_gradient_boosting": ["forest.json"],
    "xgboost": ["forest.json", "forest.xgboost.json"],
    "lightgbm": ["forest.json", "forest.lightgbm.txt"],
}


@pytest.mark.parametrize("kind", list(TREE_FILES))
def test_a_tree_model_is_saved_without_pickle_reloads_identically_and_is_attacked(
        csv, tmp_path, capsys, monkeypatch, kind):
    import pickle

    from advsec.models.io import load_model

    _, path, _ = csv
    model = tmp_path / "forest"
    assert main(["train", str(path), "--label-column", "verdict", "--benign-label", "ok",
                 "--kind", kind, "--n-estimators", "15", "--out", str(model)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [*TREE_FILES[kind], "forest.metrics.json"])
    # no file is unpickled on the way back
    def refuse(*args, **kwargs):
        raise AssertionError("pickle.load called")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    forest = load_model(model)
    assert getattr(forest, "kind", None) == kind
    assert forest.data_["options"]["label_column"] == "verdict"
    # the same model fitted again predicts exactly what the reloaded files predict
    split = load("tabular", path=path, label_column="verdict", benign_label="ok", seed=0)
    space = forest.feature_space_
    ref = _refit(kind, space.encode(split.train),
                 split.train[split.label].astype(str).to_numpy())
    x = space.encode(split.test)
    assert np.array_equal(ref.predict_proba(x), forest.predict_proba(x))
    assert list(forest.classes_) == sorted(set(split.train[split.label].astype(str)))
    # gradient attacks are refused with one line; a score-based attack runs
    assert main(["attack", "--model", str(model), "--data", str(path), "--attack", "pgd",
                 "--out", str(tmp_path / "a")]) == 2
    assert "needs gradients" in capsys.readouterr().err
    assert main(["attack", "--model", str(model), "--data", str(path), "--attack", "square",
                 "--eps", "0.1", "--steps", "50", "--max-rows", "40",
                 "--out", str(tmp_path / "b")]) == 0
    adv = pd.read_csv(tmp_path / "b" / "adversarial.csv")
    assert len(adv) == 40 and adv["valid"].all()


def test_a_multiclass_boosted_ensemble_reloads_identically(tmp_path):
    """Softmax over one raw score per class (three classes): the JSON file predicts what
    scikit-learn's model predicts, and so do the boosters' files."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    from advsec.models.boosters import BoostedTrees
    from advsec.models.io import load_model
    from advsec.models.trees import TreeEnsemble

    rng = np.random.default_rng(1)
    x = rng.random((600, 5)).astype(np.float32)
    y = np.array(["dos", "normal", "probe"])[np.minimum((x[:, 0] * 3 + x[:, 1]).astype(int), 2)]
    hgb = HistGradientBoostingClassifier(max_iter=12, random_state=0).fit(x, y)
    ens = TreeEnsemble.from_sklearn(hgb)
    assert len(ens.trees) == 12 * 3 and ens.base_score.shape == (3,)
    back = load_model(ens.save(tmp_path / "hgb"))
    assert np.array_equal(back.predict_proba(x), hgb.predict_proba(x))
    assert np.array_equal(back.predict(x), hgb.predict(x))
    for kind in ("xgboost", "lightgbm"):
        det = BoostedTrees.fit(x, y, kind=kind, n_estimators=8)
        det.save(tmp_path / kind)
        again = load_model(tmp_path / kind)
        proba = again.predict_proba(x)
        assert proba.shape == (600, 3) and np.allclose(proba.sum(1), 1)
        assert np.array_equal(proba, det.predict_proba(x))


def test_boosters_without_their_library_name_the_extra(csv, tmp_path, capsys, monkeypatch):
    import sys

    _, path, _ = csv
    model = tmp_path / "xgb"
    assert main(["train", str(path), "--label-column", "verdict", "--benign-label", "ok",
                 "--kind", "xgboost", "--n-estimators", "3", "--out", str(model)]) == 0
    capsys.readouterr()
    monkeypatch.setitem(sys.modules, "xgboost", None)  # as if not installed
    monkeypatch.setitem(sys.modules, "lightgbm", None)
    for args in (["train", str(path), "--label-column", "verdict", "--kind", "lightgbm",
                  "--out", str(tmp_path / "lgb")],
                 ["attack", "--model", str(model), "--data", str(path), "--attack", "square",
                  "--out", str(tmp_path / "atk")]):
        assert main(args) == 2
        err = capsys.readouterr().err.strip()
        assert "pip install 'advsec[trees]'" in err and "\n" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "xgb.json", "xgb.metrics.json", "xgb.xgboost.json"]


@pytest.mark.parametrize("edit,message", [
    ({"booster": "../elsewhere.xgboost.json"}, "key 'booster': expected the file name"),
    ({"kind": "catboost"}, "key 'kind': expected one of xgboost, lightgbm"),
    ({"n_features": 3}, "takes 12 inputs, but"),
    ({"classes": ["a", "b", "c"]}, "scores 2 classes, but"),
])
def test_a_malformed_booster_file_is_one_line(tmp_path, edit, message):
    from advsec.errors import DataError
    from advsec.models.boosters import BoostedTrees

    rng = np.random.default_rng(0)
    x = rng.random((200, 12)).astype(np.float32)
    det = BoostedTrees.fit(x, np.where(x[:, 0] > 0.5, "a", "b"), kind="xgboost",
                           n_estimators=3)
    meta, _ = det.save(tmp_path / "m")
    doc = json.loads(meta.read_text())
    doc.update(edit)
    meta.write_text(json.dumps(doc))
    with pytest.raises(DataError, match=message) as info:
        BoostedTrees.load(meta)
    assert "\n" not in str(info.value)


def test_a_corrupt_native_booster_file_is_one_line(tmp_path):
    from advsec.errors import DataError
    from advsec.models.boosters import BoostedTrees

    x = np.random.default_rng(0).random((100, 4)).astype(np.float32)
    for kind in ("xgboost", "lightgbm"):
        meta, native = BoostedTrees.fit(x, np.where(x[:, 0] > 0.5, "a", "b"), kind=kind,
                                        n_estimators=2).save(tmp_path / kind)
        native.write_text("{not a model")
        with pytest.raises(DataError, match=f"not a readable {kind} model") as info:
            BoostedTrees.load(meta)
        assert "\n" not in str(info.value)
        native.unlink()
        with pytest.raises(DataError, match="is missing"):
            BoostedTrees.load(meta)


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


def test_label_options_are_refused_for_a_registered_dataset(tmp_path, capsys):
    assert main(["train", "synthetic", "--label-column", "label", "--out",
                 str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.strip()
    assert "--label-column: only for CSV/Parquet files" in err and "\n" not in err
    assert list(tmp_path.iterdir()) == []


def test_a_split_without_malicious_records_prints_na_and_an_immutable_space_is_noted(
        csv, tmp_path, capsys):
    _, _, df = csv
    # one malicious record in 600: the split keeps it for training, the test split has none
    few = pd.concat([df[df.verdict == "ok"].head(599), df[df.verdict == "bad"].head(1)])
    path = tmp_path / "few.csv"
    few.to_csv(path, index=False)
    schema = tmp_path / "frozen.toml"
    names = [c for c in few.columns if c != "verdict"]
    schema.write_text("".join(f'[override."{n}"]\nmutable = false\n' for n in names))
    model = tmp_path / "m"
    assert main(["train", str(path), "--label-column", "verdict", "--benign-label", "ok",
                 "--epochs", "2", "--schema", str(schema), "--out", str(model)]) == 0
    out = capsys.readouterr().out
    test_bad = json.loads((tmp_path / "m.metrics.json").read_text())["test"]["detection_rate"]
    assert test_bad is None  # null (strict JSON): no malicious record in the test split
    assert "detection rate n/a" in out
    assert "nan" not in out.lower().replace("nano", "")
    assert main(["attack", "--model", str(model), "--data", str(path), "--eps", "0.1",
                 "--max-rows", "60", "--out", str(tmp_path / "atk")]) == 0
    out = capsys.readouterr().out
    assert "note: the model's feature space lets the attacker change no feature" in out
    assert "nan" not in out.lower()
    # a detector that calls everything benign: a red flag, listed, exit code 1 on request
    checks = pd.read_csv(tmp_path / "atk" / "checks.csv")
    raised = checks[~checks.ok.astype(bool)]
    assert "detector predicts more than one class" in set(raised.check)
    assert "red flag(s)" in out and "  detector predicts more than one class (clean):" in out
    assert main(["attack", "--model", str(model), "--data", str(path), "--eps", "0.1",
                 "--max-rows", "60", "--out", str(tmp_path / "atk"), "--force",
                 "--fail-on-red-flags"]) == 1
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.strip()]
    assert lines[-1].startswith("report: ")  # everything written before the exit code


def test_train_states_what_the_model_sees_of_the_test_split(csv, tmp_path, capsys):
    """A model fitted on a small sample sees test values beyond the sample's range clipped:
    the notes printed and kept in OUT.metrics.json are exactly what encoding_notes finds
    for the saved model's space on the same test split."""
    from advsec.features.coverage import encoding_notes

    _, path, _ = csv
    model = tmp_path / "small"
    assert main(["train", str(path), "--label-column", "verdict", "--benign-label", "ok",
                 "--epochs", "1", "--max-train-rows", "60", "--out", str(model)]) == 0
    out = capsys.readouterr().out
    notes = json.loads((tmp_path / "small.metrics.json").read_text())["encoding_notes"]
    split = load("tabular", path=path, label_column="verdict", benign_label="ok", seed=0)
    space = Detector.load(model).feature_space_
    assert notes == encoding_notes(space, split.test, rows=False) and notes
    for note in notes:
        assert f"note (test split): {note}" in out
