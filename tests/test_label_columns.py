"""A user's columns never clash with the names advsec keeps labels under, and `advsec attack
--data` maps a file's own benign label onto the model's benign class, or says why it cannot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from advsec.cli import main
from advsec.datasets import load


def _table(rows: int = 240, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    bad = rng.random(rows) < 0.4
    return pd.DataFrame({
        "bytes": np.where(bad, rng.integers(500, 900, rows), rng.integers(0, 400, rows)),
        "dur": np.round(rng.random(rows) * 10, 2),
        "pkts": rng.integers(1, 50, rows),
        "verdict": np.where(bad, "1", "0"),
    })


def test_a_feature_named_raw_label_keeps_its_values(tmp_path: Path) -> None:
    df = _table().rename(columns={"verdict": "label"})
    df["raw_label"] = np.arange(len(df)) % 50  # a feature, not the labels
    path = tmp_path / "t.csv"
    df.to_csv(path, index=False)
    ds = load("tabular", path=str(path), label_column="label", discover=False)
    assert "raw_label" in ds.schema.names
    both = pd.concat([ds.train, ds.test])
    assert set(both["raw_label"].astype(int)) == set(range(50))
    assert set(both["raw_label_2"]) == {"0", "1"}  # the raw labels, under a free name
    assert set(ds.labels("train")) == {"0", "attack"}


def test_a_feature_named_label_beside_another_label_column(tmp_path: Path) -> None:
    df = _table()
    df["label"] = np.arange(len(df)) % 7
    path = tmp_path / "t.csv"
    df.to_csv(path, index=False)
    ds = load("tabular", path=str(path), label_column="verdict", discover=False)
    assert "label" in ds.schema.names and ds.schema.label != "label"
    both = pd.concat([ds.train, ds.test])
    assert set(both["label"].astype(int)) == set(range(7))
    raw = ds.train["verdict"].to_numpy()
    assert (np.where(raw == "0", "0", "attack") == np.asarray(ds.labels("train"))).all()
    assert main(["data", "schema", str(path), "--label-column", "verdict", "--out",
                 str(tmp_path / "s.toml")]) == 0
    assert '"label"' in (tmp_path / "s.toml").read_text()


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    tmp = tmp_path_factory.mktemp("lab")
    df = _table()
    df.to_csv(tmp / "train.csv", index=False)
    assert main(["train", str(tmp / "train.csv"), "--label-column", "verdict", "--kind",
                 "random_forest", "--n-estimators", "10",
                 "--out", str(tmp / "rf")]) == 0
    return tmp / "rf", df


def _attack(model: Path, data: Path, out: Path, *extra: str) -> int:
    return main(["attack", "--model", str(model), "--data", str(data), "--attack", "square",
                 "--steps", "5", "--eps", "0.05", "--no-report", "--out", str(out), *extra])


def test_attack_maps_the_files_benign_label_to_the_models(
        model: tuple[Path, pd.DataFrame], tmp_path: Path) -> None:
    path, df = model
    same = tmp_path / "same.csv"
    df.to_csv(same, index=False)
    renamed = tmp_path / "renamed.csv"
    df.assign(verdict=df.verdict.map({"0": "normal", "1": "attack"})).to_csv(renamed,
                                                                             index=False)
    assert _attack(path, same, tmp_path / "a") == 0
    assert _attack(path, renamed, tmp_path / "b", "--benign-label", "normal") == 0
    a = pd.read_csv(tmp_path / "a" / "results.csv")
    b = pd.read_csv(tmp_path / "b" / "results.csv")
    pd.testing.assert_frame_equal(a.drop(columns="seconds"), b.drop(columns="seconds"))


def test_attack_refuses_a_benign_label_no_row_has(
        model: tuple[Path, pd.DataFrame], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    path, df = model
    data = tmp_path / "d.csv"
    df.to_csv(data, index=False)
    assert _attack(path, data, tmp_path / "x", "--benign-label", "foo") == 2
    err = capsys.readouterr().err
    assert "no row has the benign label 'foo'" in err and "'0', '1'" in err
    assert not (tmp_path / "x").exists()


def test_attack_notes_a_file_without_benign_records(
        model: tuple[Path, pd.DataFrame], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    path, df = model
    data = tmp_path / "d.csv"
    df.assign(verdict=df.verdict.map({"0": "normal", "1": "attack"})).to_csv(data, index=False)
    assert _attack(path, data, tmp_path / "x") == 0
    out = capsys.readouterr().out
    assert "no record has the model's benign label '0'" in out
    assert "every record counts as malicious" in out


def test_attack_refuses_a_label_column_that_is_a_feature(
        model: tuple[Path, pd.DataFrame], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    path, df = model
    data = tmp_path / "d.csv"
    df.to_csv(data, index=False)
    assert _attack(path, data, tmp_path / "x", "--label-column", "pkts") == 2
    assert "--label-column 'pkts' is a feature of the model" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
