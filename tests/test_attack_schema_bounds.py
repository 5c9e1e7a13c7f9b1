"""`advsec attack --schema` bounds hold on the attacked records as a schema's bounds hold when
loading: a value outside is a one-line error naming the row, or clipped when the feature says
on_bound_violation = "clip"."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from advsec.cli import main


def test_a_narrower_schema_bound_is_enforced_on_the_records(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(0)
    bad = rng.random(200) < 0.4
    df = pd.DataFrame({"bytes": rng.integers(0, 900, 200) + 300 * bad,
                       "dur": np.round(rng.random(200) * 4, 3),
                       "verdict": np.where(bad, "x", "benign")})
    data = tmp_path / "flows.csv"
    df.to_csv(data, index=False)
    assert main(["train", str(data), "--label-column", "verdict", "--kind", "random_forest",
                 "--n-estimators", "10", "--out", str(tmp_path / "rf")]) == 0
    (tmp_path / "err.toml").write_text("[override.dur]\nupper = 1.0\n")
    (tmp_path / "clip.toml").write_text(
        '[override.dur]\nupper = 1.0\non_bound_violation = "clip"\n')
    first = int(np.flatnonzero(df["dur"].to_numpy() > 1.0)[0]) + 1
    capsys.readouterr()

    def attack(schema: str, out: str) -> int:
        return main(["attack", "--model", str(tmp_path / "rf"), "--data", str(data),
                     "--schema", str(tmp_path / schema), "--attack", "square", "--steps", "5",
                     "--eps", "0.05", "--no-report", "--out", str(tmp_path / out)])

    assert attack("err.toml", "a") == 2
    err = capsys.readouterr().err
    assert f"row {first}, column 'dur'" in err and "above the upper bound 1" in err
    assert not (tmp_path / "a").exists()
    assert attack("clip.toml", "b") == 0
    n = int((df["dur"] > 1.0).sum())
    assert f"clipped {n} value(s) of column 'dur' to [0, 1]" in capsys.readouterr().out
    records = pd.read_csv(tmp_path / "b" / "adversarial.csv")
    assert records["dur"].max() <= 1.0 + 1e-9
