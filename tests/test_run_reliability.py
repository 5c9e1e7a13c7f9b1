"""`advsec run` survives kill -9, resumes to the same numbers, runs side by side, is deterministic.

One tiny synthetic study (800 rows, one small MLP, 2 seeds, FGSM + BIM, eps [0, 0.1]) is run
once uninterrupted in-process on one torch thread (the module's reference). Then, as
subprocesses (``sys.executable -c "from advsec.cli import _script; _script()" run ...``):

- kill -9 five times in a row, each time at a random point (a seeded random delay of up to
  0.2 s after the run's log opens the phase: training seed 0, an attack on seed 0, training
  seed 1, an attack on seed 1, the report), each followed by ``--resume``, until a last
  ``--resume`` finishes; the final ``sweep.csv`` (and ``worst_case.csv``) equal the
  reference's exactly, ``seconds`` aside;
- meanwhile (started with the module, beside the reference and the kills), a second run into
  another folder on two torch threads: both finish and both equal the reference (two runs at
  the same time do not interfere; the thread count and the global RNG's state do not change
  the numbers: the reference ran on one thread after disturbing the RNG).

In-process: ``--resume`` on a finished run exits 0 saying "nothing to do"; leftovers of a
killed write are discarded; an internal error is one line naming its traceback file.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from advsec.cli import EXIT_INTERNAL, main
from advsec.experiments import runner
from advsec.runio import staging_dir

STUDY = """\
[experiment]
name = "kill-9"
seeds = [0, 1]

[data]
dataset = "synthetic"
options = { rows = 800 }
max_eval_rows = 200

[[detectors]]
name = "mlp"
hidden = [16]
epochs = 10
batch_size = 128

[[attacks]]
attack = "fgsm"

[[attacks]]
attack = "bim"
steps = 5

[threat]
eps = [0, 0.1]
constraints = ["valid"]
"""

#: where each kill lands: the run's log line that opens the phase (in run order; a resumed run
#: repeats the unfinished phases, so each marker is reached again after the previous kill)
KILL_AT = ("training mlp, seed 0", "s0__mlp__none: attack bim", "training mlp, seed 1",
           "s1__mlp__none: attack fgsm", "report: building")
CLI = [sys.executable, "-c", "from advsec.cli import _script; _script()"]


def _stable(run: Path, name: str = "sweep.csv") -> pd.DataFrame:
    df = pd.read_csv(run / name)
    return df.drop(columns=[c for c in ("seconds",) if c in df]).reset_index(drop=True)


def _same_as(run: Path, reference: Path) -> None:
    pd.testing.assert_frame_equal(_stable(run), _stable(reference), check_exact=True)
    pd.testing.assert_frame_equal(_stable(run, "worst_case.csv"),
                                  _stable(reference, "worst_case.csv"), check_exact=True)


def _env(threads: int) -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    return env


def _start(study: Path, out: Path, *extra: str, threads: int = 1) -> subprocess.Popen[bytes]:
    """``advsec run STUDY --out OUT ...`` as a subprocess; its stderr goes to OUT.stderr."""
    with open(out.parent / f"{out.name}.stderr", "ab") as errors:
        return subprocess.Popen([*CLI, "run", str(study), "--out", str(out), *extra],
                                stdout=subprocess.DEVNULL, stderr=errors, env=_env(threads))


def _stderr(out: Path) -> str:
    f = out.parent / f"{out.name}.stderr"
    return f.read_text(errors="replace")[-2000:] if f.exists() else ""


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    f = tmp_path_factory.mktemp("study") / "kill9.toml"
    f.write_text(STUDY)
    return f


@pytest.fixture(scope="module")
def beside(study) -> tuple[subprocess.Popen[bytes], Path]:
    """A run on two torch threads in its own process, started first so that it runs at the
    same time as the reference and the killed runs; tests wait for it."""
    out = study.parent / "beside"
    proc = _start(study, out, threads=2)
    yield proc, out
    if proc.poll() is None:  # pragma: no cover - only when a test failed early
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def reference(study, beside) -> Path:
    """The uninterrupted run (in-process, one torch thread, global RNG disturbed)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(12345)
    torch.rand(17)
    try:
        assert main(["run", str(study), "--out", str(study.parent / "reference")]) == 0
    finally:
        torch.set_num_threads(before)
    return study.parent / "reference"


def _finished(beside: tuple[subprocess.Popen[bytes], Path]) -> Path:
    proc, out = beside
    assert proc.wait(timeout=300) == 0, _stderr(out)
    return out


def test_kill_9_at_random_points_then_resume_while_another_run_goes_on(study, beside, reference,
                                                                      tmp_path):
    ref = reference
    out = tmp_path / "killed"
    log = staging_dir(out) / "run.log"
    rng = random.Random(20261203)
    landed: list[str] = []   # the last log line before each kill (for failure messages)
    for k, marker in enumerate(KILL_AT):
        offset = log.stat().st_size if log.exists() else 0
        proc = _start(study, out, *(["--resume"] if k else []))
        deadline, seen = time.monotonic() + 120, False
        while not seen and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
            seen = log.exists() and marker in log.read_text(errors="replace")[offset:]
        time.sleep(rng.uniform(0.0, 0.2))
        assert seen and proc.poll() is None, (
            f"kill {k + 1}: the run ended (rc {proc.returncode}) or hung before {marker!r} "
            f"(kills so far after: {landed}): {_stderr(out)}")
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL
        lines = log.read_text(errors="replace").strip().splitlines()
        landed.append(lines[-1].split(": ", 1)[-1])
        # never a half-written run directory: only the resumable staging folder
        assert not out.exists(), landed
        assert staging_dir(out).is_dir()
    finished = _start(study, out, "--resume")
    assert finished.wait(timeout=300) == 0, _stderr(out)
    _same_as(out, ref)
    _same_as(_finished(beside), ref)  # the run beside was not disturbed
    left = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("."))
    assert left == [], left
    hidden = [str(p.relative_to(out)) for p in out.rglob(".*")]
    assert hidden == [], hidden
    assert (out / "report.html").exists() and "kill-9" in (out / "report.html").read_text()


def test_resume_on_a_finished_run_has_nothing_to_do(study, reference, capsys):
    ref = reference
    before = (ref / "sweep.csv").stat().st_mtime_ns
    assert main(["run", str(study), "--out", str(ref), "--resume"]) == 0
    out = capsys.readouterr().out
    assert "nothing to do" in out and str(ref.resolve()) in out
    assert (ref / "sweep.csv").stat().st_mtime_ns == before


def test_same_seed_same_numbers_on_one_or_two_threads_in_any_process(beside, reference):
    """Two torch threads in a fresh process == one thread in this process, RNG disturbed."""
    _same_as(_finished(beside), reference)


def test_internal_error_is_one_line_with_the_traceback_in_the_run_log(
        study, tmp_path, capsys, monkeypatch):
    def bug(*args, **kwargs):
        raise RuntimeError("simulated bug\nin two lines")

    monkeypatch.setattr(runner, "_run_combination", bug)
    out = tmp_path / "bug"
    assert main(["run", str(study), "--out", str(out)]) == EXIT_INTERNAL
    err = capsys.readouterr().err.strip().splitlines()
    stage = staging_dir(out.resolve())
    assert len(err) == 1, err
    assert err[0].startswith("advsec: error: internal error: RuntimeError: simulated bug in two "
                             f"lines (traceback in {stage / 'run.log'})")
    assert "--resume continues it" in err[0]
    assert "Traceback (most recent call last)" in (stage / "run.log").read_text()
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == [".bug.partial"]


def test_internal_error_outside_a_run_goes_to_a_temporary_log(tmp_path, capsys, monkeypatch):
    import advsec.experiments.demo as demo

    def bug(*args, **kwargs):
        raise KeyError("no such thing")

    monkeypatch.setattr(demo, "evaluate_attack", bug)
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--rows", "300", "--epochs", "1"]) == EXIT_INTERNAL
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "internal error: KeyError: 'no such thing'" in err[0], err
    log = Path(err[0].split("(traceback in ", 1)[1].split(")", 1)[0])
    try:
        assert "KeyError" in log.read_text() and "Traceback" in log.read_text()
    finally:
        log.unlink(missing_ok=True)
    assert list(tmp_path.iterdir()) == []   # the demo's temporary staging is gone


def test_a_killed_model_write_is_not_mistaken_for_a_model(study, reference, tmp_path):
    """A model's JSON appears last: a weights file without it is trained again."""
    ref = reference
    out = tmp_path / "half"
    stage = staging_dir(out.resolve())
    (stage / "models").mkdir(parents=True)
    (stage / "models" / "mlp-s0.safetensors").write_bytes(b"truncated")
    (stage / "models" / ".mlp-s1.tmp.json").write_text("{")
    (stage / "combos" / ".s0__mlp__none.partial").mkdir(parents=True)
    assert main(["run", str(study), "--out", str(out), "--resume"]) == 0
    _same_as(out, ref)
    assert sorted(p.name for p in (out / "combos").iterdir()) == ["s0__mlp__none",
                                                                  "s1__mlp__none"]
    assert not list(out.rglob(".*"))
