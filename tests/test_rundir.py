"""Atomic run directories and the TOML writer."""

from __future__ import annotations

import pytest

from advsec.errors import ConfigError
from advsec.experiments.rundir import atomic_run_dir
from advsec.experiments.tomlio import dumps_toml, loads_toml


def test_failure_leaves_nothing_behind(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(RuntimeError), atomic_run_dir(out) as tmp:
        (tmp / "half.csv").write_text("a,b\n")
        raise RuntimeError("boom")
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_success_renames_and_force_replaces(tmp_path):
    out = tmp_path / "run"
    with atomic_run_dir(out) as tmp:
        (tmp / "a.txt").write_text("1")
    assert (out / "a.txt").read_text() == "1"
    with pytest.raises(ConfigError, match="already exists"), atomic_run_dir(out):
        pass
    with pytest.raises(RuntimeError), atomic_run_dir(out, force=True) as tmp:
        raise RuntimeError("interrupted")
    assert (out / "a.txt").read_text() == "1"  # the old run survives a failed replacement
    with atomic_run_dir(out, force=True) as tmp:
        (tmp / "b.txt").write_text("2")
    assert sorted(p.name for p in out.iterdir()) == ["b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_toml_round_trip():
    data = {"rows": 10, "eps": [0.0, 0.1], "name": 'a "quoted" name', "flag": True,
            "model": {"hidden": [64, 32], "lr": 0.001, "inner": {"x": "y"}}}
    assert loads_toml(dumps_toml(data)) == data
