"""The CLI end to end in a temporary directory, and bad arguments."""

from __future__ import annotations

import json
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from advsec import __version__
from advsec.cli import main
from advsec.experiments.tomlio import loads_toml

RUN_FILES = {"metrics.json", "sweep.csv", "robustness.png", "confusion.png", "projection.png",
             "report.html", "model.safetensors", "model.json", "config.toml", "run.log"}


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.srcs: list[str] = []
        self.external: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        d = dict(attrs)
        if tag == "img":
            self.srcs.append(d.get("src") or "")
        for key in ("src", "href"):
            v = d.get(key) or ""
            if v.startswith(("http:", "https:", "//")):
                self.external.append(v)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    code = main(["demo", "--out", str(out), "--rows", "1500", "--epochs", "15",
                 "--eps", "0,0.05,0.1,0.2"])
    assert code == 0
    return out


def test_demo_writes_every_file(demo_run):
    assert {p.name for p in demo_run.iterdir()} >= RUN_FILES
    assert not any(p.name.startswith(".") for p in demo_run.parent.iterdir())  # no temp left


def test_sweep_and_metrics_contents(demo_run):
    sweep = pd.read_csv(demo_run / "sweep.csv")
    for col in ("attack", "eps", "accuracy", "detection_rate", "attack_success_rate", "mean_linf"):
        assert col in sweep.columns
    assert set(sweep.attack) == {"fgsm", "fgsm-valid"}
    assert sorted(set(sweep.eps)) == [0.0, 0.05, 0.1, 0.2]
    fgsm = sweep[sweep.attack == "fgsm"].sort_values("eps")
    assert fgsm.mean_linf.iloc[0] == 0 and fgsm.mean_linf.iloc[-1] == pytest.approx(0.2, abs=0.02)
    metrics = json.loads((demo_run / "metrics.json").read_text())
    assert metrics["seed"] == 0 and metrics["clean"]["accuracy"] == pytest.approx(
        fgsm.accuracy.iloc[0])
    # the clean detector's honesty checks ran and raise nothing on a sound demo
    flags = {f["check"]: f["ok"] for f in metrics["red_flags"]}
    assert len(flags) == 2 and all(flags.values()), metrics["red_flags"]
    config = loads_toml((demo_run / "config.toml").read_text())
    assert config["rows"] == 1500 and config["eps"] == [0.0, 0.05, 0.1, 0.2]


def test_report_is_self_contained_and_embeds_every_plot(demo_run):
    html = (demo_run / "report.html").read_text()
    parser = _Images()
    parser.feed(html)
    assert len(parser.srcs) == 3
    assert all(s.startswith("data:image/png;base64,") for s in parser.srcs)
    # one inline script (sortable tables), nothing loaded: no script with a src
    assert parser.external == [] and html.count("<script") == 1 and "<script src" not in html
    assert "seed 0" in html and "torch" in html and "fgsm-valid" in html


def test_existing_out_needs_force(demo_run, capsys):
    assert main(["demo", "--out", str(demo_run)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "already exists" in err and "--force" in err


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["demo", "--eps", "0,abc"], "--eps"),
        (["demo", "--rows", "12"], "--rows"),
        (["demo", "--rows", "many"], "--rows"),
        (["demo", "--hidden", "64,x"], "--hidden"),
        (["demo", "--eps", "0,2"], "--eps"),
        (["demo", "--no-such-option"], "no-such-option"),
        (["frobnicate"], "frobnicate"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(args, needle, capsys, tmp_path):
    assert main([*args, "--out", str(tmp_path / "x")] if args[0] == "demo" else args) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "error" in lines[0] and needle in lines[0]
    assert "Traceback" not in captured.err
    assert not (tmp_path / "x").exists()


def test_version_and_help(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"advsec {__version__}"
    assert main(["demo", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--eps" in out and "--rows" in out and "--seed" in out


def test_console_script_runs_as_a_process():
    exe = Path(sys.executable).with_name("advsec")
    if not exe.exists():
        pytest.skip("console script not installed in this environment")
    proc = subprocess.run([str(exe), "demo", "--rows", "3"], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "--rows" in proc.stderr
