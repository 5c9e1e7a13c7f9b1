"""`advsec run` end to end on a tiny synthetic study: files, resume, report, export."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import pandas as pd
import pytest

from advsec.cli import main
from advsec.experiments.config import parse_config
from advsec.experiments.runner import run_experiment, staging_dir

TINY = """\
[experiment]
name = "tiny"
seeds = [0, 1]

[data]
dataset = "synthetic"
options = { rows = 1600 }
max_eval_rows = 300

[[detectors]]
name = "mlp"
hidden = [32, 16]
epochs = 25
batch_size = 128

[[detectors]]
name = "forest"
kind = "random_forest"
n_estimators = 20

[[attacks]]
attack = "fgsm"

[[attacks]]
attack = "bim"
steps = 5

[threat]
eps = [0, 0.05, 0.15]
constraints = ["box", "valid"]
"""

FILES = {"report.html", "sweep.csv", "worst_case.csv", "metrics.json", "config.toml",
         "config.json", "run.log", "figures", "models", "combos"}


def _stable(df: pd.DataFrame) -> pd.DataFrame:
    return df.drop(columns=["seconds"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    f = root / "tiny.toml"
    f.write_text(TINY)
    assert main(["run", str(f), "--out", str(root / "full")]) == 0
    return root / "full"


def test_run_writes_every_file(full_run):
    assert {p.name for p in full_run.iterdir()} >= FILES
    figs = {p.name for p in (full_run / "figures").iterdir()}
    assert {"curves_mlp_box.png", "curves_mlp_valid.png", "per_class.png",
            "features.png"} <= figs
    assert not any(p.name.startswith(".") for p in full_run.parent.iterdir())


def test_sweep_has_every_combination(full_run):
    s = pd.read_csv(full_run / "sweep.csv")
    adaptive = s[s.evaluation == "adaptive"]
    assert len(adaptive) == 2 * 2 * 2 * 3  # seeds x threats x attacks x eps
    assert set(adaptive.threat) == {"box", "valid"}
    assert (adaptive[adaptive.threat == "valid"].valid_share == 1.0).all()
    assert (adaptive[(adaptive.threat == "box") & (adaptive.eps > 0)].valid_share < 0.5).all()
    baseline = s[s.detector == "forest"]
    assert set(baseline.evaluation) == {"transfer-from-mlp"} and len(baseline) == 24
    worst = pd.read_csv(full_run / "worst_case.csv")
    merged = adaptive.groupby(["seed", "threat", "eps"]).accuracy.min().reset_index().merge(
        worst, on=["seed", "threat", "eps"])
    assert (merged.worst_case_accuracy <= merged.accuracy + 1e-12).all()


def test_report_parses_and_embeds_every_plot(full_run):
    html = (full_run / "report.html").read_text()

    class Imgs(HTMLParser):
        def __init__(self):
            super().__init__()
            self.srcs: list[str] = []

        def handle_starttag(self, tag, attrs):
            if tag == "img":
                self.srcs.append(dict(attrs)["src"])

    p = Imgs()
    p.feed(html)
    n_png = len(list((full_run / "figures").glob("*.png")))
    assert len(p.srcs) == n_png >= 5
    assert all(s.startswith("data:image/png;base64,") for s in p.srcs)
    for heading in ("Summary", "Robustness curves", "Per-class recall", "What the attacks change",
                    "Red-flag checks", "Transfer evaluations", "Valid records vs unconstrained"):
        assert heading in html
    metrics = json.loads((full_run / "metrics.json").read_text())
    assert metrics["strongest_attack"] and metrics["worst_case"]


def test_resume_after_interruption_gives_the_same_sweep(full_run, tmp_path):
    cfg = parse_config(TINY)
    out = tmp_path / "resumed"
    calls = []

    def stop_after_first(stage: str, k: int, n: int) -> None:
        calls.append(k)
        if k == 1 and not stage.endswith("(reused)"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_experiment(cfg, out=out, config_text=TINY, progress=stop_after_first)
    assert not out.exists() and staging_dir(out.resolve()).exists()
    result = run_experiment(cfg, out=out, config_text=TINY, resume=True)
    assert result.reused == 1 and result.combinations == 2
    pd.testing.assert_frame_equal(_stable(pd.read_csv(out / "sweep.csv")),
                                  _stable(pd.read_csv(full_run / "sweep.csv")))


def test_report_rebuilds_and_export_writes_original_columns(full_run, tmp_path):
    (full_run / "report.html").unlink()
    assert main(["report", str(full_run)]) == 0
    assert (full_run / "report.html").exists()
    target = tmp_path / "adv.csv"
    assert main(["export", str(full_run), "--format", "csv", "--out", str(target)]) == 0
    adv = pd.read_csv(target)
    assert {"record_id", "true_label", "pred_clean", "pred_adversarial", "protocol",
            "src_bytes", "packets"} <= set(adv.columns)
    valid = adv[adv.threat == "valid"]
    assert (valid.packets == valid.packets.round()).all() and (valid.src_bytes >= 0).all()
    assert main(["export", str(full_run), "--format", "parquet"]) == 0
    assert len(pd.read_parquet(full_run / "adversarial.parquet")) == len(adv)


def test_report_on_a_non_run_directory_fails_cleanly(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "not an advsec run directory" in capsys.readouterr().err


def test_defended_detector_is_reattacked_and_transfer_is_labelled(tmp_path):
    text = TINY.replace("seeds = [0, 1]", "seeds = [0]").replace(
        'constraints = ["box", "valid"]', 'constraints = ["valid"]') + (
        '\n[[defenses]]\nmethod = "pgd_at"\neps = 0.1\nsteps = 3\nepochs = 3\n')
    cfg = parse_config(text)
    run_experiment(cfg, out=tmp_path / "run", config_text=text)
    s = pd.read_csv(tmp_path / "run" / "sweep.csv")
    defended = s[(s.defense == "pgd_at") & (s.detector == "mlp")]
    assert set(defended.evaluation) == {"adaptive", "transfer-from-undefended"}
    clean = pd.read_csv(tmp_path / "run" / "combos" / "s0__mlp__pgd_at" / "clean.csv")
    assert {"accuracy", "detection_rate", "fpr"} <= set(clean.columns)
    assert (tmp_path / "run" / "models" / "mlp-pgd_at-s0.safetensors").exists()
    assert "transfer-from-undefended" in (tmp_path / "run" / "report.html").read_text()


def test_red_flags_are_counted_listed_and_fail_the_command_on_request(full_run, tmp_path,
                                                                     capsys):
    import re
    import shutil

    run = tmp_path / "run"
    shutil.copytree(full_run, run)
    assert main(["report", str(run), "--fail-on-red-flags"]) in (0, 1)
    metrics = json.loads((run / "metrics.json").read_text())
    counts = metrics["checks"]
    # the counts in metrics.json are the report's
    html = (run / "report.html").read_text()
    m = re.search(r"(\d+) red flag\(s\); (\d+) check\(s\) passed; .*?(\d+) could not run", html)
    assert m is not None
    assert (counts["red_flags"], counts["passed"], counts["not_run"]) == tuple(
        int(g) for g in m.groups())
    assert counts["red_flags"] == len(metrics["red_flags"])
    before = counts["red_flags"]
    # one more failed model check in a combination's checks.csv
    combo = sorted((run / "combos").iterdir())[0]
    checks = pd.read_csv(combo / "checks.csv")
    row = checks.iloc[0].to_dict() | {"scope": "model", "check": "injected_check", "ok": False,
                                      "detail": "an injected failure"}
    pd.concat([checks, pd.DataFrame([row])]).to_csv(combo / "checks.csv", index=False)
    capsys.readouterr()
    assert main(["report", str(run)]) == 0  # listed, but the exit code only on request
    assert "injected_check" in capsys.readouterr().out
    assert main(["report", str(run), "--fail-on-red-flags"]) == 1
    out = capsys.readouterr().out
    assert f"{before + 1} red flag(s)" in out and "an injected failure" in out
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["checks"]["red_flags"] == before + 1
    assert any(f["check"] == "injected_check" for f in metrics["red_flags"])


def test_raised_checks_read_ok_as_a_value_whatever_its_type():
    from advsec.reporting.run_report import flag_counts, raised_checks

    checks = pd.DataFrame({"check": list("abcdef"),
                           "ok": [True, False, "True", "False", None, "n/a"],
                           "detail": ["x", "y", "z", "w", "v", "n/a: not run"]})
    assert list(raised_checks(checks).check) == ["b", "d", "e", "f"]
    assert flag_counts(checks) == {"red_flags": 4, "passed": 2, "not_run": 0}
    assert raised_checks(pd.DataFrame(columns=["check", "detail"])).empty
