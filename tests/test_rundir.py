"""Atomic run directories and the TOML writer."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from advsec.errors import ConfigError
from advsec.experiments.artifacts import CombinationResult, write_combo
from advsec.experiments.rundir import atomic_run_dir
from advsec.experiments.tomlio import dumps_toml, loads_toml
from advsec.reporting.combos import finished_combos, gather
from advsec.runio import atomic_file, check_new_run_dir, staging_dir, write_text


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

# ------------------------------------------------------------------ the one writer (advsec.runio)
def test_persistent_staging_survives_and_resumes(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt), atomic_run_dir(out, persistent=True) as st:
        (st / "a").write_text("1")
        raise KeyboardInterrupt
    assert not out.exists() and st == staging_dir(out.resolve()) and (st / "a").exists()
    with atomic_run_dir(out, resume=True) as st2:       # continues the same folder
        assert (st2 / "a").read_text() == "1"
        (st2 / "b").write_text("2")
    assert sorted(p.name for p in out.iterdir()) == ["a", "b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_persistent_without_resume_starts_over(tmp_path):
    out = tmp_path / "run"
    staging_dir(out).mkdir()
    (staging_dir(out) / "stale").write_text("x")
    with atomic_run_dir(out, persistent=True) as st:
        assert list(st.iterdir()) == []
    assert list(out.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_force_replaces_persistent_and_keeps_old_on_failure(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "old").write_text("o")
    with pytest.raises(ConfigError, match="already exists"), atomic_run_dir(out, persistent=True):
        pass
    with pytest.raises(RuntimeError), atomic_run_dir(out, force=True, persistent=True):
        raise RuntimeError
    assert (out / "old").exists()
    with atomic_run_dir(out, force=True, resume=True) as st:
        (st / "new").write_text("n")
    assert [p.name for p in out.iterdir()] == ["new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_not_a_directory(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ConfigError, match="not a directory"):
        check_new_run_dir(f, force=True)


def test_atomic_file(tmp_path):
    p = tmp_path / "t.csv"
    write_text(p, "old")
    with pytest.raises(ValueError), atomic_file(p) as tmp:
        tmp.write_text("half")
        raise ValueError
    assert p.read_text() == "old" and [q.name for q in tmp_path.iterdir()] == ["t.csv"]
    with atomic_file(p) as tmp:
        pd.DataFrame({"a": [1]}).to_csv(tmp, index=False)
    assert p.read_text() == "a\n1\n" and [q.name for q in tmp_path.iterdir()] == ["t.csv"]


def test_write_combo_replaces_and_ignores_stale_partial(tmp_path):
    res = CombinationResult(key="k", classes=["a", "b"], benign=0)
    res.clean.append({"accuracy": 1.0})
    stale = tmp_path / "combos" / ".k.partial"
    stale.mkdir(parents=True)
    (stale / "DONE").write_text("complete\n")
    (stale / "meta.json").write_text("{}")
    (stale / "confusion.json").write_text("[]")
    assert finished_combos(tmp_path) == []            # hidden staging folders are not finished
    write_combo(tmp_path, "k", res)
    res.clean[0]["accuracy"] = 0.5
    write_combo(tmp_path, "k", res)
    assert sorted(p.name for p in (tmp_path / "combos").iterdir()) == ["k"]
    assert gather(tmp_path)["clean"].accuracy.tolist() == [0.5]
    assert json.loads((tmp_path / "combos" / "k" / "meta.json").read_text())["key"] == "k"


def test_a_run_dir_created_meanwhile_is_not_replaced_without_force(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match="another run"), atomic_run_dir(out) as st:
        (st / "mine").write_text("1")
        out.mkdir()
        (out / "theirs").write_text("2")
    assert [p.name for p in out.iterdir()] == ["theirs"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    out2 = tmp_path / "run2"
    with pytest.raises(ConfigError, match="another run"), \
            atomic_run_dir(out2, persistent=True) as st:
        (st / "mine").write_text("1")
        out2.mkdir()
    assert (staging_dir(out2) / "mine").exists()    # kept: --resume --force can finish it
    with atomic_run_dir(out2, resume=True, force=True) as st:
        pass
    assert [p.name for p in out2.iterdir()] == ["mine"]
