"""The thread policy of the CLI (advsec.runtime): usable cores from affinity and cgroup quotas,
ADVSEC_THREADS / --threads, passive OpenMP waiting before torch loads, identical results."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_info, threadpool_limits

from advsec import runtime
from advsec.cli import main
from advsec.errors import ConfigError
from advsec.runtime import (
    ThreadPolicy,
    apply_thread_policy,
    cgroup_v1_cpus,
    cgroup_v2_cpus,
    prepare_cli_environment,
    thread_policy,
    usable_cores,
)

ADVSEC = Path(sys.executable).parent / "advsec"


@pytest.fixture
def restore_policy():
    """Put the session's policy (conftest) and torch's thread count back after the test."""
    policy, before = runtime._state["applied"], torch.get_num_threads()
    yield
    apply_thread_policy(policy or thread_policy())
    torch.set_num_threads(before)


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.mark.parametrize(("text", "cpus"), [
    ("max 100000", None), ("200000 100000", 2.0), ("150000 100000\n", 1.5), ("50000 100000", 0.5),
    ("", None), ("garbage", None), ("100000", None), ("-1 100000", None), ("1 0", None),
    ("a b", None), ("1 2 3", None),
])
def test_cgroup_v2_cpu_max(tmp_path, text, cpus):
    assert cgroup_v2_cpus(_write(tmp_path / "cpu.max", text)) == cpus


def test_cgroup_files_absent_or_unreadable(tmp_path):
    assert cgroup_v2_cpus(tmp_path / "nope") is None
    assert cgroup_v2_cpus(tmp_path) is None  # a directory
    (tmp_path / "bytes").write_bytes(b"\xff\xfe 100000")
    assert cgroup_v2_cpus(tmp_path / "bytes") is None
    assert cgroup_v1_cpus(tmp_path / "q", tmp_path / "p") is None


@pytest.mark.parametrize(("quota", "period", "cpus"), [
    ("-1", "100000", None), ("300000", "100000", 3.0), ("50000", "100000", 0.5),
    ("x", "100000", None), ("100000", "", None), ("100000", "0", None),
])
def test_cgroup_v1_cfs_quota(tmp_path, quota, period, cpus):
    q = _write(tmp_path / "cpu.cfs_quota_us", quota)
    p = _write(tmp_path / "cpu.cfs_period_us", period)
    assert cgroup_v1_cpus(q, p) == cpus


def test_usable_cores_is_the_smallest_limit_rounded_down(tmp_path):
    none = tmp_path / "no-proc-cgroup"
    assert usable_cores(cgroup_root=tmp_path, proc_cgroup=none, affinity=lambda: 8) == 8
    _write(tmp_path / "cpu.max", "250000 100000")
    assert usable_cores(cgroup_root=tmp_path, proc_cgroup=none, affinity=lambda: 8) == 2
    assert usable_cores(cgroup_root=tmp_path, proc_cgroup=none, affinity=lambda: 1) == 1
    # the process's own (nested) cgroup v2 counts too
    proc = _write(tmp_path / "proc-cgroup", "1:cpu:/\n0::/jobs/one\n")
    _write(tmp_path / "jobs" / "one" / "cpu.max", "100000 100000")
    assert usable_cores(cgroup_root=tmp_path, proc_cgroup=proc, affinity=lambda: 8) == 1


def test_usable_cores_from_cgroup_v1_and_at_least_one(tmp_path):
    none = tmp_path / "no-proc-cgroup"
    _write(tmp_path / "cpu,cpuacct" / "cpu.cfs_quota_us", "350000")
    _write(tmp_path / "cpu,cpuacct" / "cpu.cfs_period_us", "100000")
    assert usable_cores(cgroup_root=tmp_path, proc_cgroup=none, affinity=lambda: 16) == 3
    _write(tmp_path / "cpu" / "cpu.cfs_quota_us", "20000")
    _write(tmp_path / "cpu" / "cpu.cfs_period_us", "100000")
    assert usable_cores(cgroup_root=tmp_path, proc_cgroup=none, affinity=lambda: 16) == 1
    assert usable_cores(cgroup_root=tmp_path / "x", proc_cgroup=none, affinity=lambda: None) == 1

    def broken() -> int:
        raise OSError("no affinity here")

    assert usable_cores(cgroup_root=tmp_path / "x", proc_cgroup=none, affinity=broken) == 1


def test_affinity_is_read(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3}, raising=False)
    assert usable_cores(cgroup_root=tmp_path, proc_cgroup=tmp_path / "none") == 1
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 5}, raising=False)
    assert usable_cores(cgroup_root=tmp_path, proc_cgroup=tmp_path / "none") == 4


def test_this_machine():
    n = usable_cores()
    assert 1 <= n <= (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                      else (os.cpu_count() or 1))


def test_thread_policy_precedence():
    assert thread_policy(3, environ={"ADVSEC_THREADS": "5"}) == ThreadPolicy(3, "--threads")
    assert thread_policy(None, environ={"ADVSEC_THREADS": " 5 "}) == ThreadPolicy(5,
                                                                                  "ADVSEC_THREADS")
    assert thread_policy(None, environ={"ADVSEC_THREADS": "0"}).legacy
    assert thread_policy(0, environ={}).legacy
    assert thread_policy(None, environ={}) == ThreadPolicy(usable_cores(), "usable cores")
    assert thread_policy(None, environ={"ADVSEC_THREADS": ""}).source == "usable cores"
    assert thread_policy(None, environ={"OMP_NUM_THREADS": "1"}) == ThreadPolicy(
        1, "OMP_NUM_THREADS")
    assert thread_policy(None, environ={"OMP_NUM_THREADS": "3,1"}).threads == 3
    assert thread_policy(None, environ={"OMP_NUM_THREADS": "x"}).source == "usable cores"
    assert thread_policy(None, environ={"OMP_NUM_THREADS": "1",
                                        "ADVSEC_THREADS": "2"}).threads == 2


@pytest.mark.parametrize("bad", ["abc", "-1", "1.5", "2x", "+2", "two threads\nplease"])
def test_bad_env_value_is_a_one_line_config_error(bad):
    with pytest.raises(ConfigError, match="ADVSEC_THREADS") as info:
        thread_policy(None, environ={"ADVSEC_THREADS": bad})
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="--threads"):
        thread_policy(-1)


def test_bad_env_value_through_the_cli_exits_2_with_one_line(monkeypatch, capsys):
    monkeypatch.setenv("ADVSEC_THREADS", "many")
    assert main(["data", "list"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "ADVSEC_THREADS" in err, err
    monkeypatch.delenv("ADVSEC_THREADS")
    assert main(["--threads", "-1", "data", "list"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--threads" in err, err


@pytest.mark.usefixtures("restore_policy")
def test_threads_option_sets_torch_and_every_pool(monkeypatch, capsys):
    monkeypatch.setenv("ADVSEC_THREADS", "2")  # the flag wins over the variable
    assert main(["--threads", "1", "data", "list"]) == 0
    assert torch.get_num_threads() == 1
    assert {p["num_threads"] for p in threadpool_info()} == {1}
    assert "nsl-kdd" in capsys.readouterr().out


@pytest.mark.usefixtures("restore_policy")
def test_env_var_works_without_the_flag(monkeypatch):
    monkeypatch.setenv("ADVSEC_THREADS", "1")
    assert main(["data", "list"]) == 0
    assert torch.get_num_threads() == 1


@pytest.mark.usefixtures("restore_policy")
def test_apply_logs_is_idempotent_and_scoped_limits_restore_it(caplog):
    with caplog.at_level("INFO", logger="advsec.runtime"):
        apply_thread_policy(ThreadPolicy(2, "--threads"))
    assert "threads: 2 from --threads" in caplog.text and "OMP_WAIT_POLICY" in caplog.text
    assert os.environ.get("OMP_WAIT_POLICY")
    torch.set_num_threads(1)  # a caller's own setting (the one_thread fixture) ...
    apply_thread_policy(ThreadPolicy(2, "--threads"))
    assert torch.get_num_threads() == 1  # ... survives the same policy applied again
    # advsec run scores baselines on one BLAS thread; the policy's limit comes back after
    def blas() -> set[int]:
        return {p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"}

    with threadpool_limits(limits=1, user_api="blas"):
        assert blas() == {1}
    assert blas() == {2}


def test_prepare_cli_environment(monkeypatch):
    monkeypatch.setattr(runtime, "_state", dict(runtime._state))
    cases = [
        (["python", "demo"], {}, None),
        (["/venv/bin/advsec", "demo"], {}, "PASSIVE"),
        (["advsec", "--threads", "0", "demo"], {}, None),
        (["advsec", "-v", "--threads=0", "demo"], {}, None),
        (["advsec", "--threads", "2", "demo"], {}, "PASSIVE"),
        (["advsec", "demo"], {"ADVSEC_THREADS": "0"}, None),
        (["advsec", "demo"], {"ADVSEC_THREADS": "junk"}, "PASSIVE"),  # the CLI reports it
        (["advsec", "demo"], {"OMP_WAIT_POLICY": "ACTIVE"}, "ACTIVE"),
    ]
    for argv, env, expected in cases:
        prepare_cli_environment(argv, environ=env)
        assert env.get("OMP_WAIT_POLICY") == expected, (argv, env)
    env = {}
    prepare_cli_environment(["python"], environ=env, force=True)
    assert env == {"OMP_WAIT_POLICY": "PASSIVE"}


def _spin_counts(*args: str) -> set[str]:
    """GOMP_SPINCOUNT of every libgomp the ``advsec`` command loads (OMP_DISPLAY_ENV)."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "ADVSEC_THREADS")}
    out = subprocess.run([str(ADVSEC), *args, "--version"], capture_output=True, text=True,
                         env={**env, "OMP_DISPLAY_ENV": "verbose"}, timeout=300, check=True)
    return {line.split("=")[1].strip().strip("'") for line in out.stderr.splitlines()
            if line.strip().startswith("GOMP_SPINCOUNT")}


@pytest.mark.skipif(not ADVSEC.exists(), reason="the advsec console script is not installed")
def test_the_command_waits_passively_before_torch_loads_unless_opted_out():
    # libgomp reads the wait policy when it loads (import torch), so this is the real effect
    assert _spin_counts() == {"0"}
    assert _spin_counts("--threads", "0") == {"300000"}


@pytest.mark.usefixtures("restore_policy")
def test_results_are_identical_with_the_policy_for_the_same_thread_count():
    from sklearn.ensemble import HistGradientBoostingClassifier

    from advsec.datasets import load
    from advsec.features.space import FeatureSpace
    from advsec.models import Detector

    ds = load("synthetic", rows=600, seed=0)
    space = FeatureSpace(ds.schema).fit(ds.train)
    x, y = space.encode(ds.train), ds.labels("train")
    xt = space.encode(ds.test)
    n = torch.get_num_threads()

    def fit() -> tuple[np.ndarray, np.ndarray]:
        det = Detector(hidden=(16,), epochs=5, batch_size=64, lr=3e-3, seed=0, device="cpu")
        hgb = HistGradientBoostingClassifier(max_iter=20, random_state=0)
        return det.fit(x, y).predict_proba(xt), hgb.fit(x, y).predict_proba(xt)

    apply_thread_policy(ThreadPolicy(n, "--threads"))
    with_policy = fit()
    apply_thread_policy(ThreadPolicy(0, "--threads"))  # lift the limits: the old defaults
    torch.set_num_threads(n)
    without = fit()
    for a, b in zip(with_policy, without, strict=True):
        np.testing.assert_array_equal(a, b)
