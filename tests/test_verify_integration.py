"""Verification in the product: ``[[verifiers]]`` in ``advsec run``, ``advsec attack --verify``,
the "Verified vs attacked" tables and the soundness red flag (a record verified and broken)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from advsec.cli import main
from advsec.evaluation.verified import check_verified_unbroken, verified_vs_attacked
from advsec.experiments.config import parse_config
from advsec.reporting.run_report import honesty_warning
from advsec.verification import VerifyResult

pytestmark = pytest.mark.usefixtures("one_thread")

STUDY = """\
[experiment]
name = "verified"
seeds = [0]

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
n_estimators = 10

[[attacks]]
attack = "fgsm"

[[attacks]]
attack = "pgd"
steps = 10

[[verifiers]]
name = "crown"

[threat]
eps = [0, 0.02, 0.05, 0.1]
constraints = ["valid"]
mode = "evasion"
"""


@pytest.fixture(scope="module")
def verified_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("verified")
    f = root / "study.toml"
    f.write_text(STUDY)
    assert main(["run", str(f), "--out", str(root / "run")]) == 0
    return root / "run"


def test_run_writes_verified_accuracy_below_the_attacks(verified_run):
    v = pd.read_csv(verified_run / "verify.csv")
    mlp = v[v.detector == "mlp"].sort_values("eps")
    assert list(mlp.eps) == [0, 0.02, 0.05, 0.1] and set(mlp.verifier) == {"crown"}
    assert (mlp.verified_accuracy <= mlp.attacked_accuracy + 1e-12).all()
    assert (mlp.verified_broken == 0).all()
    np.testing.assert_allclose(mlp.gap, mlp.attacked_accuracy - mlp.verified_accuracy)
    assert mlp.verified_accuracy.iloc[0] > 0.5  # eps 0: the records it classifies correctly
    # evasion mode: the malicious records of the evaluation subset, the ones attacked
    combo = verified_run / "combos" / "s0__mlp__none"
    meta = json.loads((combo / "meta.json").read_text())
    y = load_file(str(combo / "adversarial.safetensors"))["y"].numpy()
    assert (mlp.records == int((y != meta["benign"]).sum())).all()
    # the attacked accuracy on those records is the worst case's detection rate (binary)
    worst = pd.read_csv(verified_run / "worst_case.csv").sort_values("eps")
    np.testing.assert_allclose(mlp.attacked_accuracy, worst.worst_case_detection_rate)
    # crown cannot bound the forest: one n/a row with the reason
    forest = v[v.detector == "forest"]
    assert len(forest) == 1 and forest.verified_accuracy.isna().all()
    assert "crown bounds ReLU MLPs" in forest.note.iloc[0]
    checks = pd.read_csv(combo / "checks.csv")
    sound = checks[checks.scope == "verification"]
    assert len(sound) == 1 and sound.ok.all() and "crown" in sound.check.iloc[0]


def test_report_shows_verified_vs_attacked(verified_run):
    html = (verified_run / "report.html").read_text()
    assert "Verified vs attacked" in html
    assert "Verified accuracy (certified, lower bound)" in html
    assert "Worst-case attacked accuracy (upper bound)" in html
    assert "verified records unbroken by attacks (crown, valid)" in html
    assert "RandomForestClassifier; crown bounds ReLU MLPs" in html
    metrics = json.loads((verified_run / "metrics.json").read_text())
    assert {r["verifier"] for r in metrics["verified_vs_attacked"]} == {"crown"}


TREES = STUDY.replace('n_estimators = 10', 'n_estimators = 5\nmax_depth = 4').replace(
    '[[verifiers]]\nname = "crown"',
    '[[verifiers]]\nname = "crown"\n\n[[verifiers]]\nname = "tree-milp"\ntime_limit = 10.0')


def test_run_verifies_a_tree_baseline_exactly_against_its_transfer(tmp_path):
    """A forest scored by transfer is verified by tree-milp (crown gives it an n/a row, and
    tree-milp gives the MLP one); its verified accuracy never exceeds the transfer worst case,
    equals it at eps 0, and no verified record is broken by a transferred example."""
    assert 'name = "tree-milp"' in TREES and "max_depth = 4" in TREES
    f = tmp_path / "study.toml"
    f.write_text(TREES)
    assert main(["run", str(f), "--out", str(tmp_path / "run")]) == 0
    v = pd.read_csv(tmp_path / "run" / "verify.csv")
    forest = v[(v.detector == "forest") & (v.verifier == "tree-milp")].sort_values("eps")
    assert list(forest.eps) == [0, 0.02, 0.05, 0.1]
    assert (forest.verified_accuracy <= forest.attacked_accuracy + 1e-12).all()
    assert (forest.verified_broken == 0).all()
    assert forest.verified_accuracy.iloc[0] == pytest.approx(forest.attacked_accuracy.iloc[0])
    assert forest.verified_accuracy.is_monotonic_decreasing
    assert forest.note.str.contains("transferred from the surrogate").all()
    # the exact program's own adversarial records count as attacks: with every record of this
    # small forest decided, the upper bound meets the lower one (the exact robust accuracy)
    assert forest.note.str.contains("also the verifier's own adversarial records").all()
    assert (forest.gap.abs() < 1e-12).all()
    # the upper bound is at most the worst case over the transferred attacks, hence at most
    # each one's detection rate (binary evasion: accuracy on the malicious records)
    sweep = pd.read_csv(tmp_path / "run" / "sweep.csv")
    tr = sweep[(sweep.detector == "forest") & (sweep.threat == "valid")]
    per_eps = tr.groupby("eps").detection_rate.min()
    for e, acc in zip(forest.eps, forest.attacked_accuracy, strict=True):
        assert acc <= per_eps[e] + 1e-12
    # the records: the malicious ones of the evaluation subset, as for the MLP
    mlp = v[(v.detector == "mlp") & (v.verifier == "crown")]
    assert (forest.records == mlp.records.iloc[0]).all()
    na = v[v.verified_accuracy.isna()].set_index(["detector", "verifier"]).note
    assert "tree-milp verifies tree ensembles" in na["mlp", "tree-milp"]
    assert "crown bounds ReLU MLPs" in na["forest", "crown"]
    checks = pd.read_csv(tmp_path / "run" / "combos" / "s0__mlp__none" / "checks.csv")
    sound = checks[checks.scope == "verification"].set_index("detector")
    assert sound.ok.all() and "tree-milp" in sound.loc["forest", "check"]


# ---------------------------------------------------------------------- advsec attack --verify
@pytest.fixture(scope="module")
def saved_mlp(tmp_path_factory, small_synthetic_detector) -> Path:
    _, space, det = small_synthetic_detector
    path = tmp_path_factory.mktemp("model") / "mlp"
    det.save(path, feature_space=space)
    return path


def test_attack_verify_writes_verified_beside_the_attack(saved_mlp, tmp_path):
    out = tmp_path / "att"
    assert main(["attack", "--model", str(saved_mlp), "--attack", "pgd", "--steps", "10",
                 "--eps", "0.02,0.1", "--max-rows", "120", "--verify", "crown",
                 "--verify", "ibp,crown", "--all-records", "--out", str(out)]) == 0
    v = pd.read_csv(out / "verify.csv")
    assert list(v.verifier) == ["crown"] * 3 + ["ibp"] * 3
    assert list(v.eps) == [0, 0.02, 0.1] * 2
    assert (v.records == 120).all() and (v.verified_broken == 0).all()
    assert (v.verified_accuracy <= v.attacked_accuracy + 1e-12).all()
    crown, ibp = v[v.verifier == "crown"], v[v.verifier == "ibp"]
    assert (crown.verified.to_numpy() >= ibp.verified.to_numpy()).all()
    results = pd.read_csv(out / "results.csv")  # every row attacked: the same accuracy
    np.testing.assert_allclose(crown.attacked_accuracy, results.accuracy)
    assert json.loads((out / "attack.json").read_text())["verify"] == ["crown", "ibp"]
    html = (out / "report.html").read_text()
    assert "Verified vs attacked" in html and "verified records unbroken" in html


def _one_line_error(args: list[str], pattern: str, root: Path, capsys) -> str:
    """``main(args)`` exits 2 with one matching error line and writes nothing under ``root``;
    returns the line."""
    before = sorted(root.rglob("*"))
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("advsec: error: "), err
    assert re.search(pattern, err[0]), err[0]
    assert sorted(root.rglob("*")) == before, "something was written"
    return err[0]


def test_attack_verify_bad_input_is_one_line(saved_mlp, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    base = ["attack", "--model", str(saved_mlp), "--max-rows", "20", "--out", "out"]
    _one_line_error([*base, "--verify", "crownn"], r"--verify: unknown verifier 'crownn'; "
                    r"known: alpha-crown, crown, ibp, tree-milp", tmp_path, capsys)
    _one_line_error([*base, "--verify", "crown,"], r"--verify: empty verifier name", tmp_path,
                    capsys)
    tree = tmp_path / "rf"
    assert main(["train", "synthetic", "--kind", "random_forest", "--n-estimators", "3",
                 "--max-train-rows", "300", "--out", str(tree)]) == 0
    capsys.readouterr()
    _one_line_error(["attack", "--model", str(tree), "--attack", "square", "--max-rows", "20",
                     "--verify", "crown", "--out", "out"],
                    r"--verify crown: this model cannot be verified .*crown bounds ReLU MLPs",
                    tmp_path, capsys)


@pytest.mark.parametrize(("entry", "pattern"), [
    ('name = "crownx"', r"line \d+: verifiers\[0\]\.name: unknown verifier 'crownx'; known: "
     r"alpha-crown, crown, ibp"),
    ('name = "crown"\nstepz = 3', r"line \d+: verifiers\[0\]\.stepz: unknown key \(allowed: "
     r"name, label, .*with_ibp"),
    ('name = "crown"\nbatch_size = "big"', r"line \d+: verifiers\[0\]\.batch_size: Input "
     r"should be a valid integer"),
    ('name = "ibp"\ncategorical = "all"', r"line \d+: verifiers\[0\]\.categorical: Input "
     r"should be 'enumerate' or 'relax'"),
    ('name = "crown"\nbatch_size = 0', r"verifiers\[0\]: .*batch_size and max_boxes must be"),
])
def test_bad_verifier_entry_is_one_line_and_writes_nothing(entry, pattern, tmp_path, capsys,
                                                           monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = STUDY.replace('[[verifiers]]\nname = "crown"', f"[[verifiers]]\n{entry}")
    (tmp_path / "bad.toml").write_text(text)
    err = _one_line_error(["run", "bad.toml", "--out", "out"], pattern, tmp_path, capsys)
    at = re.search(r"line (\d+)", err)
    assert at, err  # the offending key's line (the entry's, for a constructor's refusal)
    assert text.splitlines()[int(at.group(1)) - 1] in (entry.splitlines()[-1], "[[verifiers]]")


def test_verifier_options_reach_the_verifier():
    cfg = parse_config(STUDY.replace('name = "crown"', 'name = "CROWN"\nlabel = "crown64"\n'
                                     'dtype = "float64"\nwith_ibp = false'))
    (vc,) = cfg.verifiers
    assert vc.name == "crown" and vc.table_label == "crown64"
    assert vc.options() == {"dtype": torch.float64, "with_ibp": False}


# ---------------------------------------------------------------------- the soundness check
def test_soundness_flag_fires_on_a_verified_record_that_an_attack_broke():
    verified = torch.tensor([[True, True, False, True], [True, False, False, True]])
    robust = np.array([[True, True, False, True], [True, False, True, False]])
    flag = check_verified_unbroken(verified, robust, [0.0, 0.05], detector="mlp",
                                   verifier="crown", threat="valid")
    assert not flag.ok
    assert flag.name == "verified records unbroken by attacks (crown, valid)"
    assert "mlp" in flag.detail and "1 of 2 verified record(s) broken at eps=0.05" in flag.detail
    assert "eps=0:" not in flag.detail
    assert check_verified_unbroken(verified, verified.numpy(), [0.0, 0.05]).ok
    result = VerifyResult(verifier="crown", eps=[0.0, 0.05], verified=verified,
                          margin=torch.zeros(2, 4), y=torch.zeros(4, dtype=torch.long),
                          boxes=[4, 4], seconds=[0.1, 0.2])
    t = verified_vs_attacked(result, robust)
    assert list(t.verified_broken) == [0, 1] and list(t.verified_accuracy) == [0.75, 0.5]
    assert list(t.attacked_accuracy) == [0.75, 0.5]
    checks = pd.DataFrame([{"scope": "verification", "check": flag.name, "ok": flag.ok,
                            "detail": flag.detail}])
    assert "soundness bug" in honesty_warning(checks)[0]
