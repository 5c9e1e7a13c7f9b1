"""``advsec attack``: a saved detector attacked over an eps list, results written atomically."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from advsec.cli.attack import attack_command
from advsec.datasets import load
from advsec.errors import AdvsecError, ConfigError, DataError
from advsec.features.space import FeatureSpace
from advsec.models import Detector


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    ds = load("synthetic", rows=1000, seed=0)
    space = FeatureSpace(ds.schema).fit(ds.train)
    det = Detector(hidden=(16,), epochs=20, batch_size=64, lr=3e-3, seed=0, device="cpu").fit(
        space.encode(ds.train), ds.labels("train"))
    path = tmp_path_factory.mktemp("model") / "detector"
    det.save(path, feature_space=space)
    return path, ds


@pytest.fixture(scope="module")
def app():
    app = typer.Typer()
    app.command("attack")(attack_command)
    app.command("other")(lambda: None)  # keep "attack" a subcommand
    return app


def invoke(app, *args: str):
    return CliRunner().invoke(app, ["attack", *args])


def test_attack_writes_table_and_records_in_original_columns(saved, app, tmp_path):
    model, _ = saved
    out = tmp_path / "run"
    res = invoke(app, "--model", str(model), "--dataset", "synthetic", "--attack", "pgd",
                 "--eps", "0.05,0.2", "--steps", "5", "--max-rows", "80", "--out", str(out))
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == ["adversarial.csv", "attack.json", "checks.csv",
                                                     "report.html", "results.csv"]
    table = pd.read_csv(out / "results.csv")
    assert list(table["eps"]) == [0.0, 0.05, 0.2]  # eps 0: the clean baseline, always first
    for col in ("accuracy", "detection_rate", "attack_success_rate", "mean_linf",
                "valid_share", "seconds"):
        assert col in table.columns
    assert (table["valid_share"] == 1.0).all()
    records = pd.read_csv(out / "adversarial.csv")
    assert len(records) == 160
    assert list(records.columns[:8]) == ["record_id", "eps", "true_label", "pred_clean",
                                         "pred_adv", "attacked", "success", "valid"]
    attacked = load("synthetic", seed=0).test.iloc[:80]  # what the command loaded
    assert list(records.columns[8:]) == list(attacked.columns)  # each record's own columns
    first = records[records["eps"] == 0.05].reset_index(drop=True)
    assert list(first["true_label"]) == list(attacked["label"].astype(str))
    assert list(first["label"]) == list(attacked["label"].astype(str))
    # immutable features keep their original values
    assert list(first["protocol"]) == list(attacked["protocol"].astype(str))
    assert list(first["record_id"]) == list(range(80))
    settings = json.loads((out / "attack.json").read_text())
    assert settings["attack"] == "pgd" and settings["rows"] == 80


def test_parquet_unconstrained_evasion(saved, app, tmp_path):
    model, _ = saved
    out = tmp_path / "run"
    res = invoke(app, "--model", str(model), "--attack", "fgsm", "--eps", "0.3",
                 "--unconstrained", "--evasion", "--format", "parquet", "--max-rows", "60",
                 "--out", str(out))
    assert res.exit_code == 0, res.output
    records = pd.read_parquet(out / "adversarial.parquet")
    assert len(records) == 60
    assert (records["attacked"] == (records["true_label"] != "benign")).all()
    assert pd.read_csv(out / "results.csv")["valid_share"].iloc[-1] < 1.0


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        (["--attack", "nope"], ConfigError, "unknown attack"),
        (["--format", "xlsx"], ConfigError, "csv or parquet"),
        (["--eps", "a,b"], ConfigError, "--eps"),
        (["--eps", "0.1,,0.2"], ConfigError, "--eps: empty item in '0.1,,0.2'"),
        (["--eps", "0.1,"], ConfigError, "--eps: empty item"),
        (["--steps", "0"], ConfigError, "--steps"),
        (["--dataset", "nope"], DataError, "unknown dataset"),
        (["--attack", "tree-search"], ConfigError,
         "searches the splits of a tree ensemble; "),
    ],
)
def test_bad_options_raise_one_line_errors(saved, app, tmp_path, args, error, match):
    model, _ = saved
    res = invoke(app, "--model", str(model), "--out", str(tmp_path / "run"), *args)
    assert isinstance(res.exception, error) and match in str(res.exception)
    assert "\n" not in str(res.exception)
    assert not (tmp_path / "run").exists()


def test_missing_model_and_existing_output(saved, app, tmp_path):
    model, _ = saved
    res = invoke(app, "--model", str(tmp_path / "none"), "--out", str(tmp_path / "run"))
    assert isinstance(res.exception, AdvsecError) and "not found" in str(res.exception)
    (tmp_path / "run").mkdir()
    res = invoke(app, "--model", str(model), "--out", str(tmp_path / "run"), "--max-rows", "5")
    assert isinstance(res.exception, ConfigError) and "--force" in str(res.exception)
