"""`advsec data list|info|fetch` through the typer sub-app (errors propagate as AdvsecError;
the main app turns them into one line and exit code 2)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from advsec.cli.data import app
from advsec.errors import AdvsecError, DataError

FIXTURE = Path(__file__).parent / "fixtures" / "cicids2017"
runner = CliRunner()


def test_list_names_every_loader():
    result = runner.invoke(app, ["list"])
    assert result.exit_code == 0, result.output
    for name in ("synthetic", "kdd99", "nsl-kdd", "unsw-nb15", "cicids2017", "tabular"):
        assert name in result.output


def test_info_on_a_csv_path_uses_the_tabular_loader(tmp_path):
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"x": rng.random(40), "n": rng.integers(0, 5, 40),
                       "verdict": np.where(np.arange(40) % 4 == 0, "evil", "fine")})
    df.to_csv(tmp_path / "t.csv", index=False)
    result = runner.invoke(app, ["info", str(tmp_path / "t.csv"), "--label-column", "verdict",
                                 "--benign-label", "fine", "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["name"] == "tabular" and info["features"] == 2
    rows = {k: v["rows"] for k, v in info["splits"].items()}
    assert rows == {"train": 28, "test": 12}
    assert info["splits"]["test"]["classes"] == {"fine": 9, "attack": 3}


def test_info_on_the_cicids2017_fixture():
    result = runner.invoke(app, ["info", "cicids2017", "--root", str(FIXTURE), "--scheme",
                                 "category"])
    assert result.exit_code == 0, result.output
    assert "bruteforce" in result.output and "Destination Port" in result.output


def test_errors_are_advsec_errors():
    result = runner.invoke(app, ["info", "kdd98"])
    assert isinstance(result.exception, DataError) and "unknown dataset" in str(result.exception)
    result = runner.invoke(app, ["fetch", "nsl-kdd"])
    assert isinstance(result.exception, AdvsecError)
    assert "no direct download" in str(result.exception)
    result = runner.invoke(app, ["info", "unsw-nb15", "--root", str(FIXTURE)])
    assert isinstance(result.exception, DataError)
    assert "UNSW_NB15" in str(result.exception) and "\n" not in str(result.exception)
