"""A ';'-separated table works end to end: `data schema`, `data info`, `train` take
--delimiter, the model keeps it, and `attack --data` reads the file as training did."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from advsec.cli import main


def test_a_semicolon_separated_table_end_to_end(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(0)
    bad = rng.random(200) < 0.4
    df = pd.DataFrame({"bytes": rng.integers(0, 900, 200) + 300 * bad,
                       "dur": np.round(rng.random(200), 3),
                       "verdict": np.where(bad, "x", "benign")})
    path = tmp_path / "flows.csv"
    df.to_csv(path, sep=";", index=False)
    assert main(["data", "schema", str(path), "--label-column", "verdict", "--delimiter", ";",
                 "--out", str(tmp_path / "s.toml")]) == 0
    assert main(["data", "info", str(path), "--label-column", "verdict", "--delimiter", ";",
                 "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["splits"]["train"]["rows"] + info["splits"]["test"]["rows"] == 200
    # without the separator: the loader's one-line advice, nothing written
    assert main(["train", str(path), "--label-column", "verdict", "--kind", "random_forest",
                 "--out", str(tmp_path / "no")]) == 2
    assert "';'-separated" in capsys.readouterr().err
    assert not list(tmp_path.glob("no*"))
    assert main(["train", str(path), "--label-column", "verdict", "--delimiter", ";",
                 "--schema", str(tmp_path / "s.toml"), "--kind", "random_forest",
                 "--n-estimators", "10", "--out", str(tmp_path / "rf")]) == 0
    stored = json.loads((tmp_path / "rf.json").read_text())["data"]["options"]
    assert stored["delimiter"] == ";"
    assert main(["attack", "--model", str(tmp_path / "rf"), "--data", str(path), "--attack",
                 "square", "--steps", "5", "--eps", "0.05", "--no-report",
                 "--out", str(tmp_path / "atk")]) == 0
    records = pd.read_csv(tmp_path / "atk" / "adversarial.csv")
    assert set(records["record_id"]) <= set(range(200)) and len(records) > 0
    assert (records["bytes"] >= 0).all()  # the columns were split: numbers, not one text
    # a registered dataset has its own format
    assert main(["data", "info", "synthetic", "--delimiter", ";"]) == 2


def test_a_tab_is_typed_as_backslash_t(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    df = pd.DataFrame({"a": rng.random(60), "b": rng.integers(0, 9, 60),
                       "verdict": ["benign", "x"] * 30})
    path = tmp_path / "flows.tsv.csv"
    df.to_csv(path, sep="\t", index=False)
    assert main(["data", "info", str(path), "--label-column", "verdict", "--delimiter",
                 "\\t"]) == 0
    assert main(["train", str(path), "--label-column", "verdict", "--delimiter", "\\t",
                 "--kind", "random_forest", "--n-estimators", "5",
                 "--out", str(tmp_path / "rf")]) == 0
    stored = json.loads((tmp_path / "rf.json").read_text())["data"]["options"]
    assert stored["delimiter"] == "\t"
