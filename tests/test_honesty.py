"""Honesty checks: they warn before a report claims robustness (a leaking feature, a perfect or
single-class detector) and stay quiet on a sound study; bad budgets and options are rejected."""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd
import pytest

from advsec.cli import main
from advsec.datasets import load
from advsec.errors import ConfigError
from advsec.evaluation.checks import red_flags
from advsec.evaluation.honesty import (
    check_clean,
    check_clean_accuracy,
    check_single_class,
    check_single_feature,
    single_feature_scores,
)
from advsec.experiments.config import parse_config
from advsec.features.schema import Feature, FeatureKind, FeatureSchema
from advsec.models.metrics import detection_metrics

pytestmark = pytest.mark.usefixtures("one_thread")

LEAK = "clean accuracy not suspiciously perfect"
SINGLE = "detector predicts more than one class"
SEPARATES = "no single feature separates the classes"


def _schema(numeric: list[str], categorical: tuple[str, ...] = ()) -> FeatureSchema:
    feats = [Feature(n, FeatureKind.CONTINUOUS) for n in numeric]
    feats += [Feature(n, FeatureKind.CATEGORICAL) for n in categorical]
    return FeatureSchema(features=tuple(feats), label="label", benign_label="benign")


def _table(n: int, d: int, *, seed: int = 0, share: float = 0.3) -> tuple[pd.DataFrame, np.ndarray]:
    """``d`` noise columns ``f0..`` and labels (``share`` malicious) of ``n`` rows."""
    rng = np.random.default_rng(seed)
    y = rng.random(n) < share
    df = pd.DataFrame(rng.normal(size=(n, d)), columns=[f"f{i}" for i in range(d)])
    df["label"] = np.where(y, "attack", "benign")
    return df, y


# ---------------------------------------------------------------------------- single feature
def test_a_copy_of_the_label_is_found_and_noise_is_not():
    df, y = _table(4000, 6)
    df["leak"] = y.astype(float)
    df["tag"] = np.where(y, "evil", "good")  # a second label column, as text
    rng = np.random.default_rng(1)
    df["port"] = rng.integers(0, 50, len(df)).astype(str)  # 50 values, unrelated to the class
    schema = _schema([*(f"f{i}" for i in range(6)), "leak"], ("tag", "port"))
    scores = single_feature_scores(df, df["label"], schema)
    assert set(scores.index) == set(schema.names)
    assert scores["leak"] == 1.0 and scores["tag"] == 1.0
    # held out, a per-value majority over 50 noise values does not look predictive
    assert scores.drop(["leak", "tag"]).max() < 0.6
    assert scores.between(0, 1).all() and scores.is_monotonic_decreasing


def test_threshold_rule_is_rank_based_and_finds_both_directions():
    df, y = _table(3000, 1)
    rng = np.random.default_rng(2)
    df["signal"] = y + rng.normal(scale=0.35, size=len(df))  # overlapping classes
    df["stretched"] = 3 * np.exp(df["signal"])  # strictly increasing transform of it
    df["mirrored"] = -df["signal"]  # malicious rows low: the rule flips
    names = ["signal", "stretched", "mirrored"]
    scores = single_feature_scores(df, df["label"], _schema(names))
    assert 0.7 < scores["signal"] < 0.99
    assert scores["stretched"] == scores["signal"]  # the same cut, the same held-out rows
    # the same cut; only held-out values between two training values may fall the other way
    assert scores["mirrored"] == pytest.approx(scores["signal"], abs=0.01)
    flag = check_single_feature(df, df["label"], _schema(names))
    assert flag.ok and "balanced accuracy" in flag.detail


def test_a_row_id_does_not_separate_and_high_cardinality_text_is_skipped():
    df, _ = _table(3000, 0)
    df["row_id"] = np.arange(len(df), dtype=float)  # unique per row: memorising it cannot help
    df["address"] = [f"10.0.{i // 256}.{i % 256}" for i in range(len(df))]  # > 100 values
    scores = single_feature_scores(df, df["label"], _schema(["row_id"], ("address",)))
    assert list(scores.index) == ["row_id"] and scores["row_id"] < 0.6


def test_multiclass_label_code_is_found_by_its_values():
    """A numeric copy of a multi-class label (benign in the middle of the codes): no single
    threshold isolates benign, the per-value majority does."""
    rng = np.random.default_rng(3)
    label = rng.choice(["dos", "benign", "probe"], size=3000)
    df = pd.DataFrame({"code": pd.Series(label).map({"dos": 0, "benign": 1, "probe": 2}),
                       "noise": rng.normal(size=3000), "label": label})
    scores = single_feature_scores(df, df["label"], _schema(["code", "noise"]))
    assert scores["code"] == 1.0 and scores["noise"] < 0.6
    flag = check_single_feature(df, df["label"], _schema(["code", "noise"]))
    assert not flag.ok and "code (1.000)" in flag.detail and "noise" not in flag.detail


def test_missing_values_and_one_class_tables():
    df, y = _table(2000, 1)
    df["leak"] = np.where(y, 5.0, np.nan)  # the label shows in which rows are empty
    assert single_feature_scores(df, df["label"], _schema(["f0", "leak"]))["leak"] == 1.0
    one = df.assign(label="benign")
    assert single_feature_scores(one, one["label"], _schema(["f0"])).empty
    assert check_single_feature(one, one["label"], _schema(["f0"])).ok
    with pytest.raises(ValueError, match="rows"):
        single_feature_scores(df, df["label"].iloc[:10], _schema(["f0"]))


def test_synthetic_data_raise_no_separation_flag():
    for seed in (0, 1):
        ds = load("synthetic", rows=3000, seed=seed)
        flag = check_single_feature(ds.train, ds.labels("train"), ds.schema, seed=seed)
        assert flag.ok, flag


def test_separation_check_is_fast_on_100k_rows_by_50_features():
    df, y = _table(100_000, 50)
    df["f17"] = y + np.random.default_rng(4).normal(scale=0.01, size=len(df))
    schema = _schema([f"f{i}" for i in range(50)])
    t0 = time.perf_counter()
    flag = check_single_feature(df, df["label"], schema)
    assert time.perf_counter() - t0 < 10.0
    assert not flag.ok and "f17" in flag.detail and "f16" not in flag.detail


def test_raised_flags_are_logged(caplog):
    df, y = _table(1000, 1)
    df["leak"] = y.astype(float)
    with caplog.at_level(logging.WARNING, logger="advsec"):
        flag = check_single_feature(df, df["label"], _schema(["f0", "leak"]))
    assert not flag.ok and "leak (1.000)" in flag.detail and "\n" not in flag.detail
    assert any(r.levelno == logging.WARNING and "leak (1.000)" in r.getMessage()
               for r in caplog.records)


# ---------------------------------------------------------------------------- clean detector
def test_perfect_clean_accuracy_is_flagged_as_a_possible_leak():
    y = np.array([0] * 70 + [1] * 30)
    flag = check_clean_accuracy(detection_metrics(y, y))
    assert not flag.ok
    assert flag.detail.startswith("clean accuracy 1.000: a feature may leak the label")
    wrong = y.copy()
    wrong[:5] = 1
    assert check_clean_accuracy(detection_metrics(y, wrong)).ok
    # errors at the default threshold but a perfect ranking: the AUC gives it away
    proba = np.stack([1 - y * 0.6 - 0.2, y * 0.6 + 0.2], axis=1)
    wrong_but_ranked = detection_metrics(y, wrong, proba=proba)
    assert wrong_but_ranked["accuracy"] < 0.999 and wrong_but_ranked["roc_auc"] == 1.0
    assert not check_clean_accuracy(wrong_but_ranked).ok
    assert check_clean_accuracy({"accuracy": float("nan")}).detail.startswith("n/a")


def test_single_class_detector_is_flagged():
    y = np.array([0] * 700 + [1] * 300)
    flag = check_single_class(np.zeros(1000, dtype=int), classes=["benign", "attack"])
    assert not flag.ok and flag.detail == ("the detector predicts 'benign' for 100.0 % of test "
                                           "records: robust accuracy equals the class share")
    almost = np.zeros(1000, dtype=int)
    almost[:4] = 1
    assert not check_single_class(almost).ok  # 99.6 %
    almost[:6] = 1
    assert check_single_class(almost).ok  # 99.4 %
    # no malicious record detected though predictions are mixed: detection rate 0
    blind = np.where(y == 0, np.arange(1000) % 2, 0)
    flags = check_clean(y, blind, classes=["benign", "attack"])
    assert [f.name for f in flags] == [LEAK, SINGLE]
    assert flags[0].ok and not flags[1].ok and "detection rate 0.000" in flags[1].detail
    sound = np.where(np.arange(1000) % 10 == 0, 1 - y, y)
    assert all(f.ok for f in check_clean(y, sound))


def test_red_flags_aggregates_the_honesty_checks():
    ds = load("synthetic", rows=1000, seed=0)
    y = np.array([0] * 80 + [1] * 20)
    flags = red_flags(y=y, y_pred=y, train=ds.train, schema=ds.schema)
    assert [f.name for f in flags] == [LEAK, SINGLE, SEPARATES]
    assert [f.ok for f in flags] == [False, True, True]
    assert red_flags(y=y) == []


# ---------------------------------------------------------------------------- bad inputs
STUDY = """\
[experiment]
name = "honesty"
seeds = [0]

[data]
{data}

[[detectors]]
name = "mlp"
hidden = [16]
epochs = 15
batch_size = 64

[[attacks]]
attack = "fgsm"

[threat]
eps = {eps}
constraints = ["box"]
"""
SYNTHETIC = 'dataset = "synthetic"\noptions = { rows = 1200 }\nmax_eval_rows = 100'


def test_eps_over_one_is_rejected_as_a_fraction_of_the_range(tmp_path, capsys):
    text = STUDY.format(data=SYNTHETIC, eps="[0, 5, 10]")
    with pytest.raises(ConfigError) as err:
        parse_config(text)
    msg = str(err.value)
    assert "\n" not in msg and "threat.eps" in msg and "fraction of each feature's range" in msg
    f = tmp_path / "bad.toml"
    f.write_text(text)
    assert main(["run", str(f), "--out", str(tmp_path / "run")]) == 2
    assert "threat.eps" in capsys.readouterr().err and not (tmp_path / "run").exists()


def test_attack_command_rejects_linf_eps_over_one(tmp_path, capsys):
    from advsec.features.space import FeatureSpace
    from advsec.models import Detector

    ds = load("synthetic", rows=400, seed=0)
    space = FeatureSpace(ds.schema).fit(ds.train)
    det = Detector(hidden=(8,), epochs=1, seed=0, device="cpu").fit(
        space.encode(ds.train), ds.labels("train"))
    det.save(tmp_path / "det", feature_space=space)
    out = tmp_path / "attack"
    assert main(["attack", "--model", str(tmp_path / "det"), "--dataset", "synthetic",
                 "--eps", "0.1,5", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--eps" in err and "fraction of each feature's range" in err and not out.exists()


@pytest.mark.parametrize("dataset", ["synthetic", "csv"])
def test_unknown_loader_option_is_rejected_with_the_allowed_list(tmp_path, dataset):
    data = (SYNTHETIC if dataset == "synthetic" else
            f'dataset = "csv"\npath = "{tmp_path / "x.csv"}"\nlabel_column = "label"')
    text = STUDY.format(data=data, eps="[0, 0.1]").replace(
        "\n\n[[detectors]]", "\noptions = { max_categorie = 200 }\n\n[[detectors]]", 1)
    if dataset == "synthetic":
        text = text.replace("options = { rows = 1200 }\n", "")
    with pytest.raises(ConfigError) as err:
        parse_config(text)
    msg = str(err.value)
    assert "data.options.max_categorie" in msg and "unknown option" in msg and "\n" not in msg
    assert "allowed:" in msg
    assert ("max_categories" in msg) == (dataset == "csv")
    assert ("rows" in msg) == (dataset == "synthetic")


# ---------------------------------------------------------------------------- in a run
def _checks(run) -> pd.DataFrame:
    return pd.concat(pd.read_csv(p) for p in sorted((run / "combos").glob("*/checks.csv")))


LEAKY_SCHEMA = """\
replace = true

[[features]]
name = "connections"
kind = "integer"
lower = 0

[[features]]
name = "dst_bytes"
kind = "continuous"
lower = 0
transform = "log1p"

[[features]]
name = "protocol"
kind = "categorical"
mutable = false

[[features]]
name = "verdict"
kind = "binary"
"""


def test_a_run_on_a_leaking_table_raises_the_flags(tmp_path):
    """A CSV with the label copied into a numeric column, declared a feature by a schema file
    (the loader's own inference might leave such a column out; a declared one stays)."""
    ds = load("synthetic", rows=1500, seed=0)
    table = pd.concat([ds.train, ds.test]).drop(columns=["attack_type"])
    table["verdict"] = (table["label"] != "benign").astype(int)  # the label, as a number
    path = tmp_path / "leaky.csv"
    table.to_csv(path, index=False)
    (tmp_path / "schema.toml").write_text(LEAKY_SCHEMA)
    data = (f'dataset = "csv"\npath = "{path}"\nlabel_column = "label"\nbenign_label = '
            f'"benign"\nschema_file = "{tmp_path / "schema.toml"}"')
    f = tmp_path / "leaky.toml"
    f.write_text(STUDY.format(data=data, eps="[0, 0.1]"))
    assert main(["run", str(f), "--out", str(tmp_path / "run")]) == 0
    checks = _checks(tmp_path / "run").set_index("check")
    assert not checks.loc[SEPARATES, "ok"] and "verdict (1.000)" in checks.loc[SEPARATES, "detail"]
    assert checks.loc[SEPARATES, "scope"] == "data"
    assert not checks.loc[LEAK, "ok"] and "may leak the label" in checks.loc[LEAK, "detail"]
    report = (tmp_path / "run" / "report.html").read_text()
    assert "Red flag before any robustness claim" in report and "verdict (1.000)" in report
    assert "red flag: no single feature separates" in (tmp_path / "run" / "run.log").read_text()


def test_a_sound_synthetic_run_raises_no_honesty_flag(tmp_path):
    f = tmp_path / "sound.toml"
    f.write_text(STUDY.format(data=SYNTHETIC, eps="[0, 0.1]"))
    assert main(["run", str(f), "--out", str(tmp_path / "run")]) == 0
    checks = _checks(tmp_path / "run")
    honesty = checks[checks.scope.isin(["data", "clean"])]
    assert set(honesty.check) == {LEAK, SINGLE, SEPARATES}
    assert honesty.ok.all(), honesty[~honesty.ok].detail.tolist()
    assert "Red flag before any robustness claim" not in (
        tmp_path / "run" / "report.html").read_text()
