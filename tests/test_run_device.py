"""``--device`` on ``advsec run`` and ``advsec reproduce``, ``[run] device`` in experiment files.

On a machine without CUDA: ``--device cpu`` and ``--device auto`` give exactly the numbers and
the model files of a run without the flag, and the command line's device replaces the file's;
a device that is not there (``--device cuda``, ``[run] device = "cuda"``) is one line naming
the option, exit 2, nothing created. With CUDA, the same tiny study runs on the GPU.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pytest
import torch

from advsec.cli import main
from advsec.errors import ConfigError
from advsec.experiments.config import parse_config
from advsec.experiments.executors import combination_device
from advsec.experiments.run_config import RunConfig

NO_CUDA = not torch.cuda.is_available()

# one seed; an MLP hardened with fast AT (train, harden, attack, transfer), a forest scored by
# transfer from it, CROWN beside the attacks: every stage that meets the device
STUDY = """\
[experiment]
name = "device"
seeds = [0]

[data]
dataset = "synthetic"
options = { rows = 400 }
max_eval_rows = 60

[[detectors]]
name = "mlp"
hidden = [8]
epochs = 3
batch_size = 128

[[detectors]]
name = "forest"
kind = "random_forest"
n_estimators = 5

[[defenses]]
method = "fast_at"
epochs = 1

[[attacks]]
attack = "fgsm"

[[attacks]]
attack = "bim"
steps = 3

[[verifiers]]
name = "crown"

[threat]
eps = [0, 0.1]
constraints = ["valid"]
"""
FILES = ("sweep.csv", "worst_case.csv", "verify.csv", "clean.csv")


def _write(folder: Path, name: str, run_section: str = "") -> Path:
    path = folder / name
    path.write_text(STUDY + run_section)
    return path


def _table(run: Path, name: str) -> pd.DataFrame:
    df = pd.read_csv(run / name)
    return df.drop(columns=[c for c in df if c.endswith("seconds")]).reset_index(drop=True)


def _models(run: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((run / "models").iterdir())}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("device")
    study = _write(folder, "study.toml")
    out = folder / "reference"
    assert main(["run", str(study), "--out", str(out)]) == 0
    return out


@pytest.mark.skipif(not NO_CUDA, reason="auto and a file's cuda pick CUDA here")
@pytest.mark.parametrize(("flag", "run_section"), [
    ("auto", ""),  # the flag's auto
    ("cpu", '\n[run]\ndevice = "cuda"\n'),  # the flag's cpu, replacing the file's device
    (None, '\n[run]\ndevice = "auto"\n')])  # the file's auto
def test_cpu_and_auto_give_the_numbers_and_files_of_a_run_without_a_device(
        reference, tmp_path, flag, run_section):
    study = _write(tmp_path, "study.toml", run_section)
    out = tmp_path / "out"
    args = ["run", str(study), "--out", str(out)]
    assert main(args + (["--device", flag] if flag else [])) == 0
    for name in FILES:
        if (reference / name).exists():
            pd.testing.assert_frame_equal(_table(out, name), _table(reference, name),
                                          check_exact=True)
    assert (out / "verify.csv").exists()
    assert _models(out) == _models(reference)  # weights and JSON, byte for byte


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.mark.skipif(not NO_CUDA, reason="CUDA is available here")
def test_cuda_flag_without_cuda_is_one_line_and_nothing_is_created(tmp_path, capsys):
    study = _write(tmp_path, "study.toml")
    assert main(["run", str(study), "--out", str(tmp_path / "out"), "--device", "cuda"]) == 2
    err = _one_line(capsys)
    assert "--device: device 'cuda': CUDA is not available" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.toml"]


@pytest.mark.skipif(not NO_CUDA, reason="CUDA is available here")
def test_cuda_in_the_file_without_cuda_names_the_key_and_its_line(tmp_path, capsys):
    study = _write(tmp_path, "study.toml", '\n[run]\ndevice = "cuda"\n')
    line = study.read_text().splitlines().index('device = "cuda"') + 1
    assert main(["run", str(study), "--out", str(tmp_path / "out")]) == 2
    err = _one_line(capsys)
    assert f"study.toml, line {line}: run.device: device 'cuda': CUDA is not available" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.toml"]
    with pytest.raises(ConfigError, match=r"run\.device: device 'cuda'"):
        combination_device(parse_config(study.read_text()))


def test_bad_device_names_are_one_line(tmp_path, capsys):
    study = _write(tmp_path, "study.toml", '\n[run]\ndevice = "gpu"\n')
    assert main(["run", str(study), "--out", str(tmp_path / "out")]) == 2
    err = _one_line(capsys)
    assert "line" in err and "run.device" in err and "'gpu'" in err, err
    study = _write(tmp_path, "plain.toml")
    assert main(["run", str(study), "--out", str(tmp_path / "out"), "--device", "gpu"]) == 2
    assert _one_line(capsys).startswith("advsec: error: --device: device 'gpu'")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.toml", "study.toml"]


def test_the_flag_replaces_the_file_and_auto_resolves_here():
    run = RunConfig(device="cuda")
    assert run.overridden(device="cpu").device == "cpu"
    assert RunConfig().overridden(executor="processes").device == "cpu"
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert RunConfig(device="auto").resolved_device() == expected
    assert combination_device(parse_config(STUDY)) == "cpu"


@pytest.mark.skipif(not NO_CUDA, reason="CUDA is available here")
def test_reproduce_refuses_cuda_before_writing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "repro"
    assert main(["reproduce", "kdd99-adversarial-training", "--quick", "--out", str(out),
                 "--root", str(tmp_path / "nowhere"), "--device", "cuda"]) == 2
    err = _one_line(capsys)
    assert "--device: device 'cuda': CUDA is not available" in err, err
    assert list(tmp_path.iterdir()) == []


def test_reproduce_config_carries_the_resolved_device(tmp_path, monkeypatch):
    from advsec.experiments.reproductions import kdd99_adversarial_training as study
    from advsec.experiments.reproductions import run_reproduction

    seen = []
    monkeypatch.setattr(study, "run_kdd99_adversarial_training",
                        lambda cfg, **kwargs: seen.append(cfg))
    run_reproduction("kdd99-adversarial-training", out=tmp_path / "x", quick=True,
                     device="auto")
    run_reproduction("kdd99-adversarial-training", out=tmp_path / "x", device="cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert [c.device for c in seen] == [expected, "cpu"]
    assert seen[0].quick and not seen[1].quick
    assert "device" not in seen[1].model_dump()  # config.toml and metrics.json unchanged
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(NO_CUDA, reason="needs CUDA")
def test_the_tiny_study_runs_on_cuda(reference, tmp_path):
    from advsec.models import Detector

    study = _write(tmp_path, "study.toml")
    out = tmp_path / "cuda"
    assert main(["run", str(study), "--out", str(out), "--device", "cuda"]) == 0
    for name in FILES:
        if (reference / name).exists():
            got, ref = _table(out, name), _table(reference, name)
            assert list(got.columns) == list(ref.columns) and len(got) == len(ref)
    assert sorted(_models(out)) == sorted(_models(reference))
    det = Detector.load(out / "models" / "mlp-fast_at-s0")  # CUDA-trained, loads on the CPU
    assert next(det.as_module().parameters()).device.type == "cpu"
