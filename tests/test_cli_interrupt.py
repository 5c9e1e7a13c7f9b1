"""Ctrl-C in any command: exit code 130 and one line saying so, with how to continue (typer
alone turns a KeyboardInterrupt into a silent exit 130)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from advsec.cli import main
from advsec.runio import note_error

STUDY = """\
[experiment]
name = "tiny"
seeds = [0]
[data]
dataset = "synthetic"
options = { rows = 300 }
[[detectors]]
name = "mlp"
hidden = [8]
epochs = 1
[[attacks]]
attack = "fgsm"
[threat]
eps = [0, 0.1]
"""


def test_an_interrupted_run_says_so_and_how_to_resume(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import advsec.experiments.runner as runner

    def interrupted(*args: Any, **kwargs: Any) -> None:
        exc = KeyboardInterrupt()
        note_error(exc, hint="the same command with --resume continues it")
        raise exc

    monkeypatch.setattr(runner, "run_experiment", interrupted)
    config = tmp_path / "tiny.toml"
    config.write_text(STUDY)
    assert main(["run", str(config), "-o", str(tmp_path / "out")]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "advsec: interrupted; the same command with --resume continues it"


def test_an_interrupted_data_command_says_so(monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    import advsec.cli.data as data

    def interrupted(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(data, "load", interrupted)
    assert main(["data", "info", "synthetic"]) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == "advsec: interrupted"
