"""A corpus of malformed experiment files and command lines: each one gives exactly one line
``advsec...: error: ...`` naming what is wrong, exit code 2, no traceback, and creates nothing
(no run directory, no staging folder, no default ``runs/``), through ``advsec.cli.main``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from advsec.cli import main
from advsec.experiments.config import load_config
from advsec.runio import staging_dir

GOOD = """\
[experiment]
name = "bad-config corpus"
seeds = [0]

[data]
dataset = "synthetic"
options = { rows = 400 }

[[detectors]]
name = "mlp"
hidden = [8]
epochs = 1

[[attacks]]
attack = "fgsm"

[[attacks]]
attack = "pgd"
steps = 2

[threat]
eps = [0, 0.1]
"""

CSV_STUDY = """\
[data]
dataset = "csv"
path = "{path}"
label_column = "label"
benign_label = "{benign}"

[[detectors]]
name = "mlp"

[[attacks]]
attack = "fgsm"
"""


def _edit(old: str, new: str) -> str:
    assert old in GOOD, old
    return GOOD.replace(old, new)


#: (id, experiment file text, expected message regex); each is run as `advsec run FILE --out OUT`
FILES = [
    ("empty file", "", r"bad\.toml: empty experiment file \(it needs \[data\], \[\[detectors\]\] "
     r"and \[\[attacks\]\]"),
    ("comments only", "# nothing here\n", r"bad\.toml: empty experiment file"),
    ("only [experiment]", "[experiment]\nname = 'x'\n",
     r"bad\.toml: missing \[data\] .*\[\[detectors\]\] .*\[\[attacks\]\] "),
    ("no [data]", GOOD.split("[data]")[0] + "[[detectors]]" + GOOD.split("[[detectors]]")[1],
     r"bad\.toml: missing \[data\] \(the dataset\); an experiment file needs"),
    ("no [[attacks]]", GOOD.split("[[attacks]]")[0] + "[threat]" + GOOD.split("[threat]")[1],
     r"bad\.toml: missing \[\[attacks\]\] \(the attacks to run\)"),
    ("no [[detectors]]", GOOD.split("[[detectors]]")[0] + "[[attacks]]"
     + GOOD.split("[[attacks]]", 1)[1], r"bad\.toml: missing \[\[detectors\]\]"),
    ("[data] without dataset", _edit('dataset = "synthetic"\n', ""),
     r"bad\.toml, line 5: data\.dataset: missing"),
    ("invalid TOML", _edit("seeds = [0]", "seeds = [0"), r"bad\.toml: invalid TOML"),
    ("unknown top-level key", "colour = 'red'\n" + GOOD,
     r"bad\.toml, line 1: colour: unknown key \(allowed: .*attacks"),
    ("unknown key in a section", _edit("hidden = [8]", "hiden = [8]"),
     r"bad\.toml, line 11: detectors\[0\]\.hiden: unknown key \(allowed: .*hidden"),
    ("wrong type", _edit("epochs = 1", 'epochs = "one"'),
     r"bad\.toml, line 12: detectors\[0\]\.epochs: Input should be a valid integer"),
    ("out of range", _edit("epochs = 1", "epochs = 0"),
     r"bad\.toml, line 12: detectors\[0\]\.epochs: Input should be greater than or equal to 1"),
    ("no seeds", _edit("seeds = [0]", "seeds = []"), r"bad\.toml, line 3: experiment\.seeds"),
    ("unknown attack", _edit('attack = "pgd"', 'attack = "pgdx"'),
     r"bad\.toml, line 18: attacks\[1\]\.attack: unknown attack 'pgdx'; known: .*fgsm"),
    ("tree attack in a run", _edit('attack = "pgd"', 'attack = "tree-search"'),
     r"bad\.toml, line 18: attacks\[1\]\.attack: tree-search searches the splits of a tree "
     r"ensemble, but a run attacks its MLP detectors"),
    ("unknown attack option", _edit("steps = 2", "stepz = 2"),
     r"bad\.toml, line 19: attacks\[1\]\.stepz: unknown key \(allowed: .*steps"),
    ("wrong attack option type", _edit("steps = 2", 'steps = "2"'),
     r"bad\.toml, line 19: attacks\[1\]\.steps: Input should be a valid integer"),
    ("unknown dataset", _edit('dataset = "synthetic"', 'dataset = "nope"'),
     r"bad\.toml, line 6: data\.dataset: unknown dataset 'nope'; known: .*synthetic"),
    ("unknown loader option", _edit("rows = 400", "rowz = 400"),
     r"bad\.toml, line 7: data\.options\.rowz: unknown option of dataset 'synthetic' "
     r"\(allowed: .*rows"),
    ("path with a registered dataset", _edit("options = { rows = 400 }", 'path = "x.csv"'),
     r"bad\.toml, line 7: data\.path: only for dataset = \"csv\""),
    ("unknown defence", GOOD + '\n[[defenses]]\nmethod = "magic"\n',
     r"bad\.toml, line 25: defenses\[0\]\.method: unknown defence 'magic'; known: .*pgd_at"),
    ("defence eps over 1", GOOD + '\n[[defenses]]\nmethod = "pgd_at"\neps = 5\n',
     r"bad\.toml, line 26: defenses\[0\]\.eps: Input should be less than or equal to 1"),
    ("negative eps", _edit("eps = [0, 0.1]", "eps = [0, -0.1]"),
     r"bad\.toml, line 22: threat\.eps: eps must be a non-empty list of numbers >= 0"),
    ("eps over 1 (percent)", _edit("eps = [0, 0.1]", "eps = [0, 5, 10]"),
     r"bad\.toml, line 22: threat\.eps: 10 is over 1, but an L-inf eps is a fraction"),
    ("eps not a list", _edit("eps = [0, 0.1]", 'eps = "0.1"'),
     r"bad\.toml, line 22: threat\.eps: Input should be a valid list"),
    ("nan eps", _edit("eps = [0, 0.1]", "eps = [0, nan]"), r"threat\.eps: eps must be"),
    ("unknown constraint", _edit("eps = [0, 0.1]", 'eps = [0, 0.1]\nconstraints = ["any"]'),
     r"bad\.toml, line 23: threat\.constraints\[0\]: Input should be 'box' or 'valid'"),
    ("duplicate attack names", _edit('attack = "pgd"', 'attack = "fgsm"'),
     r"bad\.toml: attack names must be unique"),
    ("no MLP detector", _edit('name = "mlp"', 'name = "rf"\nkind = "random_forest"'),
     r"bad\.toml: at least one detector must be an advsec MLP"),
    ("surrogate is not an MLP", GOOD + '\n[[detectors]]\nname = "rf"\nkind = "random_forest"\n'
     '\n[[detectors]]\nname = "lr"\nkind = "logistic_regression"\nsurrogate = "rf"\n',
     r"bad\.toml, line 31: detectors\[2\]\.surrogate: 'rf' is not an MLP detector"),
    ("csv without label_column", _edit('dataset = "synthetic"\noptions = { rows = 400 }',
                                       'dataset = "csv"\npath = "x.csv"'),
     r"bad\.toml, line 5: data: a CSV/Parquet dataset needs 'path' and 'label_column'"),
    ("loader refuses an option value", _edit("rows = 400", "rows = 400, malicious_share = 1.5"),
     r"malicious_share must be in \(0, 1\)"),
    ("schema override of an unknown column", _edit(
        "options = { rows = 400 }",
        "options = { rows = 400 }\nschema_overrides = { no_such_column = { mutable = false } }"),
     r"no_such_column"),
]


def _snapshot(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _check(args: list[str], pattern: str, root: Path, capsys) -> None:
    """``main(args)`` exits 2 with one matching error line and creates nothing under ``root``."""
    before = _snapshot(root)
    code = main(args)
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2, (code, captured.err)
    assert len(lines) == 1, lines
    assert re.match(r"advsec( \w+)?: error: ", lines[0]), lines[0]
    assert re.search(pattern, lines[0]), f"{pattern!r} not in {lines[0]!r}"
    assert "Traceback" not in captured.err + captured.out
    assert _snapshot(root) == before, "something was created"


@pytest.fixture
def here(tmp_path, monkeypatch) -> Path:
    """A folder that is also the working directory (a default runs/ would show up in it)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize(("text", "pattern"), [c[1:] for c in FILES], ids=[c[0] for c in FILES])
def test_bad_experiment_file(text, pattern, here, capsys):
    f = here / "bad.toml"
    f.write_text(text)
    _check(["run", str(f.name), "--out", "out"], pattern, here, capsys)
    _check(["run", str(f.name)], pattern, here, capsys)  # the default runs/bad neither


def _table(path: Path, labels: list[str]) -> Path:
    rng = np.random.default_rng(0)
    rows = ["a,b,label"] + [f"{rng.integers(0, 50)},{rng.random():.3f},{lab}" for lab in labels]
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize(
    ("labels", "benign", "pattern"),
    [
        (None, "benign", r"missing\.csv: file not found"),
        (["benign"] * 40, "benign", r"one-class\.csv.*(single class|one class|only)"),
        (["benign", "attack"] * 20, "zzz", r"one-class\.csv.*benign label 'zzz'"),
        ([], "benign", r"one-class\.csv"),
    ],
    ids=["missing data file", "single-class training split", "benign label absent",
         "no rows"],
)
def test_bad_data_is_found_before_anything_is_created(labels, benign, pattern, here, capsys):
    name = "missing.csv" if labels is None else "one-class.csv"
    if labels is not None:
        _table(here / name, labels)
    f = here / "study.toml"
    f.write_text(CSV_STUDY.format(path=name, benign=benign))
    _check(["run", f.name, "--out", "out"], pattern, here, capsys)


def test_bad_command_lines(here, capsys, tmp_path_factory):
    f = here / "good.toml"
    f.write_text(GOOD)
    (here / "a-file").write_text("x")
    (here / "taken").mkdir()
    (here / "not-utf8.toml").write_bytes(b"\xff\xfe[data]\n")
    (here / "a-folder.toml").mkdir()
    cases = [
        (["run", "good.toml", "--out", "a-file"], r"a-file: exists and is not a directory"),
        (["run", "good.toml", "--out", "a-file", "--force"], r"a-file: exists and is not a dir"),
        (["run", "good.toml", "--out", "a-file/run"],
         r"a-file/run: cannot create it: .*a-file is not a directory"),
        (["run", "good.toml", "--out", "taken"],
         r"taken: run directory already exists \(use --force to replace it\)"),
        (["run", "nope.toml"], r"nope\.toml: experiment file not found"),
        (["run", "a-folder.toml"], r"a-folder\.toml: is a folder, expected an experiment"),
        (["run", "not-utf8.toml"], r"not-utf8\.toml: not a UTF-8 text file"),
        (["run", "good.toml", "--data-root", "no-such-dir"], r"--data-root: no-such-dir is not"),
        (["run", "good.toml", "--frobnicate"], r"^advsec run: error: No such option"),
        (["run"], r"^advsec run: error: Missing argument 'config'"),
        (["demo", "--rows", "100", "--malicious-share", "0.005", "--out", "d"],
         r"synthetic data: the train split has only 'benign'"),
        (["demo", "--eps", "0,2", "--out", "d"], r"--eps"),
        (["reproduce", "no-such-study"], r"unknown study 'no-such-study'"),
        (["reproduce", "kdd99-adversarial-training", "--root", "no-such-dir"],
         r"--root: no-such-dir does not exist"),
        (["reproduce", "kdd99-adversarial-training", "--root", str(tmp_path_factory.mktemp(
            "empty")), "--out", "rep"], r"expected the KDD Cup 99 10% file"),
        (["report", "no-such-run"], r"no-such-run: no such run directory"),
        (["export", "taken"], r"taken: not an advsec run directory|taken"),
        (["attack", "--model", "no-model", "--out", "atk"], r"no-model.*model file not found"),
    ]
    for args, pattern in cases:
        _check(args, pattern, here, capsys)


def test_resume_with_a_different_configuration(here, capsys):
    f = here / "good.toml"
    f.write_text(GOOD)
    # an interrupted run of another configuration, with a finished combination
    stage = staging_dir(here / "out")
    (stage / "combos" / "s0__mlp__none").mkdir(parents=True)
    (stage / "combos" / "s0__mlp__none" / "DONE").write_text("complete\n")
    (stage / "config.json").write_text(json.dumps({"experiment": {"name": "another"}}))
    _check(["run", "good.toml", "--out", "out", "--resume"],
           r"out\.partial: the interrupted run used a different configuration; run without "
           r"--resume to start over", here, capsys)
    # a finished run of another configuration
    (here / "done").mkdir()
    (here / "done" / "config.json").write_text(json.dumps({"experiment": {"name": "another"}}))
    _check(["run", "good.toml", "--out", "done", "--resume"],
           r"done: holds a finished run of a different configuration \(use --force", here, capsys)


def test_resume_with_a_model_that_does_not_fit(here, capsys):
    from advsec.models import Detector

    f = here / "good.toml"
    f.write_text(GOOD)
    stage = staging_dir(here / "out")
    (stage / "models").mkdir(parents=True)
    (stage / "config.json").write_text(load_config(f).model_dump_json())
    rng = np.random.default_rng(0)
    det = Detector(hidden=[4], epochs=1, seed=0).fit(
        rng.random((60, 3)).astype(np.float32), np.array(["benign", "attack"] * 30))
    det.save(stage / "models" / "mlp-s0")
    _check(["run", "good.toml", "--out", "out", "--resume"],
           r"mlp-s0\.json: the saved model does not fit this run \(3 inputs, the data encode to "
           r"\d+\); run without --resume to start over", here, capsys)
    (stage / "models" / "mlp-s0.json").write_text("{")
    _check(["run", "good.toml", "--out", "out", "--resume"],
           r"mlp-s0\.json: not valid JSON.*; run without --resume to start over", here, capsys)


def test_a_run_being_written_by_another_process_is_left_alone(here, capsys):
    from advsec.runio import atomic_run_dir

    (here / "good.toml").write_text(GOOD)
    with atomic_run_dir(here / "out", persistent=True) as stage:  # holds the staging's lock
        (stage / "theirs").write_text("1")
        for extra in ([], ["--resume"]):
            _check(["run", "good.toml", "--out", "out", *extra],
                   r"out: another process is writing this run now .*out\.partial is locked",
                   here, capsys)
        assert (stage / "theirs").read_text() == "1"
    assert (here / "out" / "theirs").exists()
