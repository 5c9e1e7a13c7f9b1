"""``--device`` on the commands that train: a bad or absent device is one line, exit 2, nothing
written; ``auto`` runs on this machine's device and, on a CPU, gives the CPU's numbers."""

from __future__ import annotations

import json

import pytest
import torch

from advsec.cli import main

BAD = [("nonsense", "--device: device 'nonsense'")]
if not torch.cuda.is_available():
    BAD.append(("cuda", "--device: device 'cuda': CUDA is not available"))


@pytest.mark.parametrize(("device", "message"), BAD)
@pytest.mark.parametrize("command", ["train", "demo"])
def test_bad_device_is_one_line(command, device, message, tmp_path, capsys):
    out = tmp_path / "out"
    args = (["train", "synthetic", "--epochs", "1", "--out", str(out)] if command == "train"
            else ["demo", "--rows", "300", "--epochs", "1", "--out", str(out)])
    assert main([*args, "--device", device]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not list(tmp_path.iterdir())


@pytest.mark.skipif(torch.cuda.is_available(), reason="auto picks CUDA here")
def test_auto_on_a_cpu_machine_is_the_cpu(tmp_path):
    for device in ("cpu", "auto"):
        assert main(["train", "synthetic", "--epochs", "2", "--hidden", "16",
                     "--max-train-rows", "400", "--out", str(tmp_path / device),
                     "--device", device]) == 0
    a = json.loads((tmp_path / "cpu.metrics.json").read_text())
    b = json.loads((tmp_path / "auto.metrics.json").read_text())
    assert a["test"] == b["test"]
