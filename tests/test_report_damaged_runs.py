"""`advsec report` and `advsec export` on damaged run directories: a one-line error naming the
file (exit 2), nothing of the run overwritten; and what a good run's report and export claim."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from advsec.cli import main
from advsec.experiments.config import parse_config
from advsec.experiments.runner import run_experiment
from advsec.reporting.headline import headline
from advsec.reporting.html import json_text

TINY = """\
[experiment]
name = "damaged"
seeds = [0]

[data]
dataset = "synthetic"
options = { rows = 600, malicious_share = 0.3, separation = 1.0 }
max_eval_rows = 100

[[detectors]]
name = "mlp"
hidden = [16]
epochs = 2

[[attacks]]
attack = "fgsm"

[[attacks]]
attack = "pgd"
steps = 3

[threat]
eps = [0, 0.05, 0.1]
constraints = ["box", "valid"]
"""

COMBO = "combos/s0__mlp__none"


@pytest.fixture(scope="module")
def good_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("damaged") / "run"
    run_experiment(parse_config(TINY), out=out, config_text=TINY)
    return out


@pytest.fixture
def run(good_run: Path, tmp_path: Path) -> Path:
    """A fresh copy of the good run, to damage."""
    return Path(shutil.copytree(good_run, tmp_path / "run"))


def _snapshot(run: Path) -> dict[str, bytes]:
    """The bytes of every file of ``run`` outside ``combos/`` (what a report may write)."""
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*"))
            if p.is_file() and p.relative_to(run).parts[0] != "combos"}


def _fails(run: Path, capsys: pytest.CaptureFixture[str], *parts: str,
           command: str = "report") -> str:
    """Run ``advsec COMMAND RUN``: exit 2, one error line holding every part of ``parts``,
    and the run's files as they were; returns the line."""
    before = _snapshot(run)
    capsys.readouterr()
    assert main([command, str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    assert err.startswith("advsec: error: "), err
    for part in parts:
        assert part in err, err
    assert _snapshot(run) == before
    assert not [p for p in run.iterdir() if p.name.startswith(".report-")]
    return err


def _edit_lines(path: Path, keep: slice) -> None:
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[keep]))


# ---------------------------------------------------------------------- bug 1: missing rows
def test_dropped_sweep_rows_are_named_not_reported(run, capsys):
    _edit_lines(run / COMBO / "sweep.csv", slice(None, -3))  # the valid-record PGD rows
    err = _fails(run, capsys, f"{COMBO}/sweep.csv", "3 row(s) missing",
                 "threat valid, attack pgd")
    assert "fgsm, pgd" in err  # what meta.json lists


@pytest.mark.parametrize("table", ["worst", "checks", "clean", "sweep", "per_class",
                                   "features"])
def test_a_missing_table_is_an_error(run, capsys, table):
    (run / COMBO / f"{table}.csv").unlink()
    _fails(run, capsys, f"{COMBO}/{table}.csv: missing")


def test_worst_case_rows_and_attack_count_match_meta(good_run, run, capsys):
    _edit_lines(run / COMBO / "worst.csv", slice(None, -1))
    _fails(run, capsys, f"{COMBO}/worst.csv", "row(s) missing", "threat valid, ε 0.1")
    w = pd.read_csv(good_run / COMBO / "worst.csv")
    w["attacks"] = 1
    w.to_csv(run / COMBO / "worst.csv", index=False)
    _fails(run, capsys, f"{COMBO}/worst.csv", "worst case over 1 attacks",
           "meta.json lists 2")


# ---------------------------------------------------------------------- bug 2: corrupt tables
def test_a_sweep_cut_mid_line_leaves_the_run_untouched(run, capsys):
    path = run / COMBO / "sweep.csv"
    text = path.read_text()
    path.write_text(text[: len(text) - 30])
    _fails(run, capsys, f"{COMBO}/sweep.csv", "no value in column")


def test_a_sweep_cut_short(run, capsys):
    _edit_lines(run / COMBO / "sweep.csv", slice(None, 3))
    _fails(run, capsys, f"{COMBO}/sweep.csv", "row(s) missing", "ε 0.05")


def test_a_sweep_with_a_wrong_header(run, capsys):
    (run / COMBO / "sweep.csv").write_text("x,y\n1,2\n")
    _fails(run, capsys, f"{COMBO}/sweep.csv", "expected columns", "evaluation", "(it has x, y)")


def test_text_in_a_numeric_column(run, capsys):
    path = run / COMBO / "sweep.csv"
    s = pd.read_csv(path)
    s["accuracy"] = s["accuracy"].astype(object)
    s.loc[1, "accuracy"] = "abc"
    s.to_csv(path, index=False)
    _fails(run, capsys, f"{COMBO}/sweep.csv", "line 3", "'accuracy' must be a number", "'abc'")


def test_a_check_that_is_neither_true_nor_false(run, capsys):
    path = run / COMBO / "checks.csv"
    c = pd.read_csv(path)
    c["ok"] = c["ok"].astype(object)
    c.loc[0, "ok"] = "Tr"
    c.to_csv(path, index=False)
    _fails(run, capsys, f"{COMBO}/checks.csv", "'ok' must be True or False")


def test_a_failure_while_building_replaces_nothing(run, capsys, monkeypatch):
    from advsec.reporting import run_sections

    (run / "sweep.csv").write_text("marker\n")
    before = _snapshot(run)

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("late failure")

    monkeypatch.setattr(run_sections, "features", broken)
    from advsec.reporting.run_report import build_run_report

    with pytest.raises(RuntimeError, match="late failure"):
        build_run_report(run)
    assert _snapshot(run) == before
    assert not [p for p in run.iterdir() if p.name.startswith(".")]


# ---------------------------------------------------------------------- bug 3: meta.json
@pytest.mark.parametrize(("text", "part"), [
    ("[]", "expected a JSON object, got list"),
    ('{"key": "s0__mlp__none"}', "expected 'classes'"),
])
def test_a_meta_json_that_is_not_a_combination_record(run, capsys, text, part):
    (run / COMBO / "meta.json").write_text(text)
    _fails(run, capsys, f"{COMBO}/meta.json", part)


def test_export_and_report_read_meta_json_alike(run, capsys):
    (run / COMBO / "meta.json").write_text("[]")
    _fails(run, capsys, f"{COMBO}/meta.json: expected a JSON object, got list")
    _fails(run, capsys, f"{COMBO}/meta.json: expected a JSON object, got list",
           command="export")


# ---------------------------------------------------------------------- bug 4: output paths
def test_figures_that_is_a_file(run, capsys):
    shutil.rmtree(run / "figures")
    (run / "figures").touch()
    _fails(run, capsys, f"{run / 'figures'} is a file; expected a folder")


def test_a_report_html_that_is_a_folder(run, capsys):
    (run / "report.html").unlink()
    (run / "report.html").mkdir()
    _fails(run, capsys, f"{run / 'report.html'} is a folder; expected a file")


# ---------------------------------------------------------------------- good runs
def test_a_good_run_rebuilds_to_the_same_claims(good_run, run, capsys):
    before = _snapshot(run)
    assert main(["report", str(run)]) == 0
    after = _snapshot(run)
    for name in ("sweep.csv", "worst_case.csv", "metrics.json"):
        assert after[name] == before[name], name
    assert sorted(after) == sorted(before)
    assert not [p for p in run.iterdir() if p.name.startswith(".")]
    json.loads((run / "metrics.json").read_text(), parse_constant=_no_nan)


def test_names_that_look_missing_stay_names(run, capsys):
    combo = run / COMBO
    for path in combo.glob("*.csv"):
        path.write_text(path.read_text().replace(",pgd,", ",None,").replace("pgd,", "None,"))
    for name in ("meta.json", "confusion.json"):
        path = combo / name
        path.write_text(path.read_text().replace('"pgd"', '"None"'))
    assert main(["report", str(run)]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["headline_numbers"]["main"]["attacks"] == ["fgsm", "None"]


def test_a_damaged_data_facts_file_is_named(run, capsys):
    (run / "data" / "s0.json").write_text("[1]")
    _fails(run, capsys, "data/s0.json: expected a JSON object, got list")


def _no_nan(name: str) -> None:
    raise AssertionError(f"metrics.json holds {name}: not strict JSON")


# ---------------------------------------------------------------------- bug 5: export
def test_export_says_which_rows_are_valid_records(run):
    from advsec.features.space import FeatureSpace
    from advsec.models import Detector

    assert main(["export", str(run)]) == 0
    adv = pd.read_csv(run / "adversarial.csv")
    assert adv["valid"].dtype == bool
    assert adv[adv.threat == "valid"]["valid"].all()
    assert not adv[adv.threat == "box"]["valid"].all()  # box rows: decoded, not all valid
    det = Detector.load(run / "models" / "mlp-s0")
    model = json.loads((run / "models" / "mlp-s0.json").read_text())
    space = FeatureSpace.from_dict(model["feature_space"])
    x = space.encode(adv[[f.name for f in space.schema]])
    pred = np.asarray(det.classes_)[det.predict_proba(x).argmax(1)].astype(str)
    same = pred == adv.pred_adversarial.astype(str).to_numpy()
    assert same[adv["valid"].to_numpy()].all()  # a valid row is what the detector scored


# ---------------------------------------------------------------------- bug 6: eps = [0]
def _sweep(eps: list[float]) -> pd.DataFrame:
    rows = [{"detector": "mlp", "defense": "none", "threat": t, "attack": a, "eps": e,
             "detection_rate": 0.27, "evasion_rate": 0.0, "false_alarm_rate": 0.0,
             "fpr": 0.2, "valid_share": 1.0}
            for t in ("box", "valid") for a in ("fgsm", "pgd") for e in eps]
    return pd.DataFrame(rows)


def test_no_attacked_eps_makes_no_attack_claim():
    head = headline(_sweep([0.0]), pd.DataFrame(), 0.0)
    assert head is not None
    text = head.text()
    assert "would claim" not in text and not text.startswith(("Valid-record", "Unconstrained"))
    assert head.aside == "" and "no robustness claim" in text
    assert "0.27" in text  # the clean numbers are still stated
    attacked = headline(_sweep([0.0, 0.1]), pd.DataFrame(), 0.1)
    assert attacked is not None and "would claim" in attacked.aside


# ---------------------------------------------------------------------- bug 7: strict JSON
def test_json_text_writes_null_for_nan():
    text = json_text({"precision": math.nan, "x": [np.float64("inf"), np.int64(3)],
                      "ok": 0.5})
    assert json.loads(text, parse_constant=_no_nan) == {"precision": None, "x": [None, 3],
                                                        "ok": 0.5}
