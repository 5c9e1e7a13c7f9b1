"""`advsec run --executor serial|processes|ray`: the same numbers, resumable across executors.

One tiny synthetic study (2 seeds, one MLP hardened with fast AT, a random-forest baseline: 4
combinations, a defended one waiting for its undefended MLP) is run serially once (the module's
reference). Then with 2 worker processes and with Ray on a local instance of 2 CPUs (started
once for the module; skipped without Ray), each compared with the reference exactly
(``seconds`` aside); a Ray run interrupted after its first finished combination and a process
run whose task fails are each finished serially with ``--resume``, equal to the reference. The
executor's errors (Ray missing, bad ``--workers``) are one line, exit 2, nothing written.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from advsec.cli import main
from advsec.errors import DataError
from advsec.experiments import executors
from advsec.experiments.config import load_config, parse_config
from advsec.experiments.run_config import RunConfig
from advsec.experiments.runner import run_experiment, staging_dir

STUDY = """\
[experiment]
name = "executors"
seeds = [0, 1]

[data]
dataset = "synthetic"
options = { rows = 800 }
max_eval_rows = 200

[[detectors]]
name = "mlp"
hidden = [16]
epochs = 8
batch_size = 128

[[detectors]]
name = "forest"
kind = "random_forest"
n_estimators = 10

[[defenses]]
method = "fast_at"
epochs = 2

[[attacks]]
attack = "fgsm"

[[attacks]]
attack = "bim"
steps = 5

[threat]
eps = [0, 0.1]
constraints = ["valid"]
"""
KEYS = ["s0__mlp__fast_at", "s0__mlp__none", "s1__mlp__fast_at", "s1__mlp__none"]


def _stable(run: Path, name: str) -> pd.DataFrame:
    df = pd.read_csv(run / name)
    return df.drop(columns=[c for c in ("seconds",) if c in df]).reset_index(drop=True)


def _same_as(run: Path, reference: Path) -> None:
    for name in ("sweep.csv", "worst_case.csv"):
        pd.testing.assert_frame_equal(_stable(run, name), _stable(reference, name),
                                      check_exact=True)
    assert sorted(p.name for p in (run / "combos").iterdir()) == KEYS
    hidden = [str(p.relative_to(run)) for p in run.rglob(".*")]
    assert hidden == [], hidden


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    f = tmp_path_factory.mktemp("executors") / "study.toml"
    f.write_text(STUDY)
    return f


@pytest.fixture(scope="module")
def reference(study) -> Path:
    out = study.parent / "serial"
    assert main(["run", str(study), "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray instance of 2 CPUs for the module (the executor uses it as it is)."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_processes_give_the_serial_numbers(study, reference):
    out = study.parent / "processes"
    assert main(["run", str(study), "--out", str(out), "--executor", "processes",
                 "--workers", "2"]) == 0
    _same_as(out, reference)
    log = (out / "run.log").read_text()
    assert "executor: processes, 2 worker(s) x 1 thread(s)" in log
    assert "s1__mlp__none: started in a worker (1 thread(s))" in log  # the workers log here


def test_ray_gives_the_serial_numbers(study, reference, local_ray):
    study.with_name("ray.toml").write_text(STUDY + '\n[run]\nexecutor = "ray"\nworkers = 2\n')
    out = study.parent / "ray"
    assert main(["run", str(study.with_name("ray.toml")), "--out", str(out)]) == 0
    _same_as(out, reference)
    assert local_ray.is_initialized()  # an instance the caller started is left running
    assert "num_cpus 1" in (out / "run.log").read_text()


def test_an_interrupted_ray_run_is_finished_serially_with_resume(study, reference, local_ray):
    cfg = load_config(study)
    cfg.run = RunConfig(executor="ray", workers=2)
    out = study.parent / "ray-interrupted"
    finished: list[str] = []

    def stop_after_the_first(what: str, k: int, n: int) -> None:
        if " done, " in what:
            finished.append(what)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_experiment(cfg, out=out, config_text=STUDY, progress=stop_after_the_first)
    stage = staging_dir(out.resolve())
    assert not out.exists() and stage.is_dir() and len(finished) == 1
    done = sorted(p.parent.name for p in (stage / "combos").glob("*/DONE"))
    # the other worker may have finished its task too before the interrupt reached the run
    assert finished[0].split(" ")[0] in done and 1 <= len(done) <= 2
    cfg.run = RunConfig()  # serial
    result = run_experiment(cfg, out=out, config_text=STUDY, resume=True)
    assert result.reused == len(done) and result.combinations == 4
    _same_as(out, reference)


def _fail_on_s1_defended(config: dict[str, Any], key: str, stage: str, *,
                         threads: int | None = None) -> float:
    """The executor's task, failing for one combination (imported by the worker processes)."""
    if key == "s1__mlp__fast_at":
        raise DataError("injected failure of s1__mlp__fast_at")
    return executors.run_task(config, key, stage, threads=threads)


def test_a_failed_task_fails_the_run_and_keeps_the_finished_ones(study, reference, monkeypatch,
                                                                 capsys):
    monkeypatch.setattr(executors, "run_task", _fail_on_s1_defended)
    out = study.parent / "failed"
    assert main(["run", str(study), "--out", str(out), "--executor", "processes",
                 "--workers", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("advsec: error: injected failure of s1__mlp__fast_at")
    assert len(err.splitlines()) == 1 and "--resume" in err and "Traceback" not in err
    stage = staging_dir(out.resolve())
    assert not out.exists()
    done = {p.parent.name for p in (stage / "combos").glob("*/DONE")}
    log = (stage / "run.log").read_text()
    assert done and "s1__mlp__fast_at" not in done
    assert done == {k for k in KEYS if f"{k} finished in" in log}  # as they finished
    monkeypatch.undo()
    assert main(["run", str(study), "--out", str(out), "--resume"]) == 0
    assert f"4 combination(s), {len(done)} reused" in capsys.readouterr().out
    _same_as(out, reference)


def test_a_combination_depends_on_its_seed_only(study, reference, tmp_path):
    """Seed 1 alone (nothing ran before it in the process or the run) gives its rows of the
    two-seed run."""
    text = STUDY.replace("seeds = [0, 1]", "seeds = [1]")
    run_experiment(parse_config(text), out=tmp_path / "s1", config_text=text)
    both = _stable(reference, "sweep.csv")
    pd.testing.assert_frame_equal(_stable(tmp_path / "s1", "sweep.csv"),
                                  both[both.seed == 1].reset_index(drop=True), check_exact=True)


def test_ray_missing_is_one_line_naming_the_extra(study, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    out = tmp_path / "run"
    assert main(["run", str(study), "--out", str(out), "--executor", "ray"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"advsec: error: {executors.RAY_MISSING}"
    assert "pip install 'advsec[ray]'" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("args", "message"), [
    (["--workers", "0"], "--workers 0: expected a positive integer"),
    (["--executor", "processes", "--workers", "-1"], "--workers -1: expected a positive"),
    (["--workers", "2"], 'needs executor = "processes" or "ray"'),
    (["--executor", "threads"], "--executor threads: expected one of serial, processes, ray"),
    (["--executor", "processes", "--address", "head:6379"], 'only for executor = "ray"'),
])
def test_bad_executor_options_are_one_line(study, tmp_path, capsys, args, message):
    assert main(["run", str(study), "--out", str(tmp_path / "run"), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_run_section_is_checked_overridden_and_not_recorded(tmp_path):
    with pytest.raises(Exception, match=r"line 3\d: run.workers: Input should be greater"):
        parse_config(STUDY + "\n[run]\nexecutor = \"processes\"\nworkers = 0\n")
    cfg = parse_config(STUDY + '\n[run]\nexecutor = "processes"\nworkers = 3\n')
    assert cfg.run == RunConfig(executor="processes", workers=3)
    assert cfg.run.overridden(executor="serial", workers=1) == RunConfig(workers=1)
    assert cfg.run.overridden(workers=2) == RunConfig(executor="processes", workers=2)
    # how a study is executed is not part of its configuration: resume works across executors
    assert cfg.model_dump_json() == parse_config(STUDY).model_dump_json()


def test_threads_and_ray_resources_share_the_cores():
    assert executors.worker_threads(workers=2, cores=2) == 1
    assert executors.worker_threads(workers=2, cores=8) == 4
    assert executors.worker_threads(workers=3, cores=2) == 1
    assert executors.ray_resources(cpus=8, workers=2, device="cpu") == {"num_cpus": 4.0}
    assert executors.ray_resources(cpus=2, workers=4, device="cpu") == {"num_cpus": 1.0}
    assert executors.ray_resources(cpus=8, workers=4, device="cuda:0") == {
        "num_cpus": 2.0, "num_gpus": 0.25}
    assert executors.combination_device(parse_config(STUDY)) == "cpu"
