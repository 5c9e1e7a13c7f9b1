"""Edge cases of experiment files that used to run silently wrong: names that escape the run
directory or break its keys, defences that collide, ``[data]`` keys a loader ignores, a figure
eps the report and the runner resolve differently, coerced types, keys that do not apply,
duplicates, a data file that changed before ``--resume``, and data errors without their line.
Each one is now a one-line ConfigError naming the file, the line and the key (exit 2, nothing
created), checked before anything runs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from advsec.cli import main
from advsec.errors import AdvsecError, ConfigError
from advsec.experiments.config import ExperimentConfig, load_config, parse_config
from advsec.experiments.runner import run_experiment, validate_run
from advsec.runio import staging_dir

BASE = """\
[experiment]
name = "edge cases"
seeds = [0]

[data]
dataset = "synthetic"
options = { rows = 400 }
max_eval_rows = 50

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
eps = [0, 0.05, 0.1]
constraints = ["box"]
"""


def _edit(old: str, new: str, text: str = BASE) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


def _rejects(text: str, pattern: str) -> str:
    """``text`` is refused with one line naming the source and a line, matching ``pattern``."""
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="edge.toml")
    msg = str(info.value)
    assert "\n" not in msg
    assert re.match(r"edge\.toml(, line \d+)?: ", msg), msg
    assert re.search(pattern, msg), f"{pattern!r} not in {msg!r}"
    return msg


def _line(text: str, needle: str) -> int:
    """The 1-based line of ``text`` holding ``needle``."""
    return next(i for i, s in enumerate(text.splitlines(), 1) if needle in s)


DEFENSE = '\n[[defenses]]\nmethod = "pgd_at"\nepochs = 1\n'


# ---------------------------------------------------------------------- 3: names
@pytest.mark.parametrize(("old", "new", "key"), [
    ('name = "mlp"', 'name = "mlp/x"', r"detectors\[0\]\.name"),
    ('name = "mlp"', 'name = ""', r"detectors\[0\]\.name"),
    ('name = "mlp"', 'name = ".."', r"detectors\[0\]\.name"),
    ('name = "mlp"', 'name = "a__b"', r"detectors\[0\]\.name"),
    ('attack = "fgsm"', 'attack = "fgsm"\nname = "a__b"', r"attacks\[0\]\.name"),
    ('attack = "fgsm"', 'attack = "fgsm"\nname = ""', r"attacks\[0\]\.name"),
    ('attack = "fgsm"', 'attack = "fgsm"\nname = "x/y"', r"attacks\[0\]\.name"),
])
def test_names_that_are_not_file_names_are_refused(old, new, key):
    text = _edit(old, new)
    _rejects(text, rf"line {_line(text, new.splitlines()[-1])}: {key}: .* is not a valid name")


@pytest.mark.parametrize("name", ["../../../ESCAPED", ".", "-x", "x_", "a b", "c:\\\\d"])
def test_defence_names_cannot_escape_the_run_directory(name):
    text = BASE + DEFENSE + f'name = "{name}"\n'
    _rejects(text, rf"line {_line(text, 'name = ' + json.dumps(name)[:4])}: defenses\[0\]\.name:"
             " .* is not a valid name")


def test_usual_names_are_kept():
    text = _edit('name = "mlp"', 'name = "hist-gradient-boosting.v2_b"')
    cfg = parse_config(_edit('attack = "fgsm"', 'attack = "fgsm"\nname = "FGSM-1"', text))
    assert cfg.detectors[0].name == "hist-gradient-boosting.v2_b"
    assert cfg.attacks[0].label == "FGSM-1"


# ---------------------------------------------------------------------- 2: defences
def test_two_defences_of_one_method_need_names():
    text = BASE + DEFENSE + DEFENSE.replace("epochs = 1", "epochs = 2")
    _rejects(text, r"line 30: defenses\[1\]\.name: defence names must be unique, got "
             r"\['pgd_at', 'pgd_at'\] \(set 'name'\)")
    named = BASE + DEFENSE + DEFENSE.replace("epochs = 1", 'epochs = 2\nname = "pgd_at-2"')
    cfg = parse_config(named)
    from advsec.experiments.units import plan

    assert [c.key for c in plan(cfg)] == ["s0__mlp__none", "s0__mlp__pgd_at", "s0__mlp__pgd_at-2"]


def test_a_defence_cannot_be_named_none():
    _rejects(BASE + DEFENSE + 'name = "none"\n', r"defenses\[0\]\.name: 'none' names the "
             "undefended combination")


def test_model_files_of_two_detectors_cannot_collide():
    text = _edit('[[attacks]]', '[[detectors]]\nname = "mlp-adv"\nhidden = [8]\nepochs = 1\n\n'
                 '[[attacks]]') + DEFENSE + 'name = "adv"\n'
    _rejects(text, r"would both save the model models/mlp-adv-s0")


# ---------------------------------------------------------------------- 1: [data] keys
@pytest.mark.parametrize(("old", "new", "pattern"), [
    ('max_eval_rows', 'schema_file = "nosuch.toml"\nmax_eval_rows',
     r"line 8: data\.schema_file: not used by dataset 'synthetic'"),
    ('max_eval_rows', 'scheme = "weird"\nmax_eval_rows',
     r"line 8: data\.scheme: dataset 'synthetic' has the label scheme\(s\) binary; got 'weird'"),
    ('max_eval_rows', 'root = "/tmp"\nmax_eval_rows',
     r"line 8: data\.root: not used by dataset 'synthetic'"),
    ('dataset = "synthetic"\noptions = { rows = 400 }', 'dataset = "nsl-kdd"\nscheme = "weird"',
     r"line 7: data\.scheme: dataset 'nsl-kdd' has the label scheme\(s\) binary, category, "
     r"attack; got 'weird'"),
    ('dataset = "synthetic"\noptions = { rows = 400 }',
     'dataset = "nsl-kdd"\nbenign_label = "attack"',
     r"line 7: data\.benign_label: only for dataset = \"csv\" or \"parquet\""),
])
def test_data_keys_the_loader_would_ignore_are_refused(old, new, pattern):
    _rejects(_edit(old, new), pattern)


def test_a_valid_scheme_and_the_synthetic_binary_scheme_are_kept():
    assert parse_config(_edit("max_eval_rows", 'scheme = "binary"\nmax_eval_rows')).data.scheme \
        == "binary"
    nsl = _edit('dataset = "synthetic"\noptions = { rows = 400 }',
                'dataset = "nsl-kdd"\nscheme = "category"')
    assert parse_config(nsl).data.scheme == "category"


def test_a_missing_schema_file_is_named_with_its_line(tmp_path):
    f = tmp_path / "study.toml"
    f.write_text(_edit('dataset = "synthetic"\noptions = { rows = 400 }',
                       'dataset = "nsl-kdd"\nschema_file = "nosuch.toml"'))
    with pytest.raises(ConfigError, match=r"study\.toml, line 7: data\.schema_file: .*"
                       r"nosuch\.toml: file not found"):
        load_config(f)


def test_a_worker_copy_keeps_a_data_root_set_by_the_command_line():
    """``--data-root`` sets root after validation (also for synthetic data); a worker
    re-validates the dumped configuration, where every default is set too."""
    cfg = parse_config(_edit('name = "mlp"', 'name = "mlp"\n\n[[detectors]]\nname = "rf"\n'
                             'kind = "random_forest"\n\n[[detectors]]\nname = "m2"', BASE))
    cfg.data.root = "/data"
    dumped = cfg.model_dump(mode="json")
    copy = ExperimentConfig.model_validate(dumped, context={"dumped": True})
    assert copy.model_dump(mode="json") == dumped


# ---------------------------------------------------------------------- 4: figure eps
@pytest.mark.parametrize("figure_eps", ["0.0", "0", "-0.05", "0.07", "0.2", "nan", "0.05",
                                        "0.1"])
def test_runner_and_report_resolve_the_same_figure_eps(figure_eps):
    """Either the figure eps is refused, or the runner's eps (confusion matrices, feature
    changes, exports) is the one the report's headline and tables use."""
    from advsec.reporting.run_report import _figure_eps

    text = _edit('constraints = ["box"]', f'constraints = ["box"]\nfigure_eps = {figure_eps}')
    try:
        cfg = parse_config(text, source="edge.toml")
    except ConfigError as exc:
        assert re.match(r"edge\.toml, line 25: threat\.figure_eps: expected one of the swept "
                        r"eps over 0 \(0\.05, 0\.1\)", str(exc)), exc
        return
    sweep = pd.DataFrame({"eps": cfg.threat.eps})
    assert cfg.threat.chosen_eps() == _figure_eps(json.loads(cfg.model_dump_json()), sweep)
    assert cfg.threat.chosen_eps() == float(figure_eps)


# ---------------------------------------------------------------------- 6: types
@pytest.mark.parametrize(("old", "new", "key"), [
    ("epochs = 1", 'epochs = "2"', r"detectors\[0\]\.epochs: Input should be a valid integer"),
    ("epochs = 1", "epochs = true", r"detectors\[0\]\.epochs: Input should be a valid integer"),
    ("epochs = 1", "epochs = 2.0", r"detectors\[0\]\.epochs: Input should be a valid integer"),
    ("hidden = [8]", 'hidden = ["16"]', r"detectors\[0\]\.hidden\[0\]: Input should be a valid "
     "integer"),
    ("hidden = [8]", "hidden = [16.0]", r"detectors\[0\]\.hidden\[0\]: Input should be a valid "
     "integer"),
    ("seeds = [0]", 'seeds = ["0"]', r"experiment\.seeds\[0\]: Input should be a valid integer"),
    ("seeds = [0]", "seeds = [true]", r"experiment\.seeds\[0\]: Input should be a valid "
     "integer"),
    ("eps = [0, 0.05, 0.1]", 'eps = ["0", "0.1"]', r"threat\.eps\[0\]: Input should be a valid "
     "number"),
    ("max_eval_rows = 50", "max_eval_rows = true", r"data\.max_eval_rows: Input should be a "
     "valid integer"),
    ("rows = 400", 'rows = "400"', r"data\.options\.rows: Input should be a valid integer"),
    ("rows = 400", "rows = 400.0", r"data\.options\.rows: Input should be a valid integer"),
])
def test_wrong_types_are_not_coerced(old, new, key):
    text = _edit(old, new)
    _rejects(text, rf"line {_line(text, new)}: {key}")


@pytest.mark.parametrize("value", ["true", "2.0", '"2"'])
def test_run_workers_are_not_coerced(value):
    text = BASE + f'\n[run]\nexecutor = "processes"\nworkers = {value}\n'
    _rejects(text, r"line 28: run\.workers: Input should be a valid integer")


def test_an_integer_is_a_valid_float():
    cfg = parse_config(_edit("eps = [0, 0.05, 0.1]", "eps = [0, 1]"))
    assert cfg.threat.eps == [0.0, 1.0]


# ---------------------------------------------------------------------- 7: keys, duplicates
@pytest.mark.parametrize(("kind", "key"), [
    ("random_forest", "epochs = 3"), ("random_forest", "hidden = [4]"),
    ("hist_gradient_boosting", "dropout = 0.2"), ("logistic_regression", "n_estimators = 5"),
])
def test_detector_keys_of_another_kind_are_refused(kind, key):
    text = BASE + f'\n[[detectors]]\nname = "b"\nkind = "{kind}"\n{key}\n'
    _rejects(text, rf"line {_line(text, key)}: detectors\[1\]\.{key.split()[0]}: not used by a "
             f"'{kind}' detector")


@pytest.mark.parametrize(("method", "key"), [
    ("pgd_at", "beta = 3.0"), ("fast_at", "steps = 3"), ("crown_ibp", "ratio = 0.5"),
    ("trades", "ratio = 2.0"), ("data_augmentation", "steps = 3"),
])
def test_defence_keys_of_another_method_are_refused(method, key):
    text = BASE + f'\n[[defenses]]\nmethod = "{method}"\n{key}\n'
    _rejects(text, rf"line {_line(text, key)}: defenses\[0\]\.{key.split()[0]}: not used by "
             f"the '{method}' defence")


def test_defence_keys_of_their_method_are_kept():
    cfg = parse_config(BASE + '\n[[defenses]]\nmethod = "trades"\nbeta = 3.0\nsteps = 2\n'
                       '\n[[defenses]]\nmethod = "data_augmentation"\nattack = "pgd"\n'
                       'steps = 3\nratio = 0.5\n')
    assert cfg.defenses[0].beta == 3.0 and cfg.defenses[1].steps == 3


def test_mlp_keys_of_a_baseline_are_refused():
    _rejects(_edit("epochs = 1", "epochs = 1\nn_estimators = 10"),
             r"line 14: detectors\[0\]\.n_estimators: not used by a 'mlp' detector")


@pytest.mark.parametrize("key", ["steps = 5", "step_size = 0.01", "rel_step_size = 0.5"])
def test_fgsm_is_one_step(key):
    text = _edit('attack = "fgsm"', f'attack = "fgsm"\n{key}')
    _rejects(text, rf"line 17: attacks\[0\]\.{key.split()[0]}: fgsm is one step of size eps")


@pytest.mark.parametrize(("old", "new", "key"), [
    ("seeds = [0]", "seeds = [0, 0]", r"line 3: experiment\.seeds: seed\(s\) 0 listed more "),
    ("eps = [0, 0.05, 0.1]", "eps = [0, 0.1, 0.1]", r"line 23: threat\.eps: 0\.1 listed more"),
    ('constraints = ["box"]', 'constraints = ["box", "box"]',
     r"line 24: threat\.constraints: 'box' listed more"),
])
def test_duplicates_are_refused(old, new, key):
    _rejects(_edit(old, new), key)


# ---------------------------------------------------------------------- 5: test_size
@pytest.mark.parametrize("value", ["1.5", "0", "1", "-0.2", "true", '"0.3"'])
def test_test_size_must_be_a_share(value):
    _rejects(_edit("rows = 400", f"rows = 400, test_size = {value}"),
             r"line 7: data\.options\.test_size: ")


def test_a_test_size_share_is_kept():
    assert parse_config(_edit("rows = 400", "rows = 400, test_size = 0.25")).data.options[
        "test_size"] == 0.25


# ---------------------------------------------------------------------- 9: data errors
def test_a_loader_error_names_the_file_line_and_option(tmp_path):
    f = tmp_path / "study.toml"
    f.write_text(_edit("rows = 400", "rows = 0"))
    with pytest.raises(AdvsecError, match=r"^.*study\.toml, line 7: data\.options\.rows: .*"
                       "rows must be"):
        validate_run(load_config(f), out=tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.toml"]


def test_a_missing_dataset_names_the_run_option(tmp_path, monkeypatch):
    f = tmp_path / "study.toml"
    (tmp_path / "empty").mkdir()
    monkeypatch.delenv("ADVSEC_DATA", raising=False)  # the loader's hint is for this case
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty"))
    f.write_text(_edit('dataset = "synthetic"\noptions = { rows = 400 }',
                       'dataset = "nsl-kdd"'))
    with pytest.raises(AdvsecError) as info:
        validate_run(load_config(f), out=tmp_path / "out")
    assert "--data-root PATH" in str(info.value) and "--root PATH" not in str(info.value)


# ---------------------------------------------------------------------- through the CLI
def test_the_cli_refuses_a_bad_name_in_one_line_and_creates_nothing(tmp_path, monkeypatch,
                                                                      capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.toml").write_text(BASE + DEFENSE + 'name = "../../../ESCAPED"\n')
    before = sorted(tmp_path.rglob("*"))
    code = main(["run", "bad.toml", "--out", "run"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "Traceback" not in err[0]
    assert re.match(r"advsec: error: bad\.toml, line 29: defenses\[0\]\.name: ", err[0]), err
    assert sorted(tmp_path.rglob("*")) == before
    assert not (tmp_path.parent / "ESCAPED").exists()


# ---------------------------------------------------------------------- 8: resume
CSV = """\
[experiment]
seeds = [0]

[data]
dataset = "csv"
path = "flows.csv"
label_column = "label"
max_eval_rows = 40

[[detectors]]
name = "mlp"
hidden = [8]
epochs = 1

[[attacks]]
attack = "fgsm"

[threat]
eps = [0, 0.1]
constraints = ["box"]
"""


def _flows(path: Path, rows: int, seed: int) -> None:
    from advsec.datasets import load

    ds = load("synthetic", rows=rows, seed=seed)
    pd.concat([ds.train, ds.test]).to_csv(path, index=False)


def test_resume_refuses_a_data_file_that_changed(tmp_path):
    _flows(tmp_path / "flows.csv", 300, 0)
    study = tmp_path / "study.toml"
    study.write_text(CSV)
    out = tmp_path / "run"
    run_experiment(load_config(study), out=out)
    digest = json.loads((out / "data_digest.json").read_text())
    assert set(digest) == {"data.path"} and len(digest["data.path"]["sha256"]) == 64
    out.rename(staging_dir(out))  # an interrupted run, every combination finished
    stat = (tmp_path / "flows.csv").stat()
    _flows(tmp_path / "flows.csv", 300, 1)  # other rows, same name (size and mtime aside)
    import os

    os.utime(tmp_path / "flows.csv", ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with pytest.raises(ConfigError, match=r"flows\.csv \(data\.path\): changed since the "
                       "interrupted run started"):
        run_experiment(load_config(study), out=out, resume=True)
    assert not out.exists() and staging_dir(out).is_dir()
    _flows(tmp_path / "flows.csv", 300, 0)  # the same bytes again: it resumes
    result = run_experiment(load_config(study), out=out, resume=True)
    assert result.reused == result.combinations == 1
