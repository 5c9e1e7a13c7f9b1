"""Experiment files: validation errors name the key and its line; relative paths resolve."""

from __future__ import annotations

import pytest

from advsec.cli import main
from advsec.errors import ConfigError
from advsec.experiments.config import load_config, parse_config

GOOD = """\
[experiment]
name = "t"
seeds = [0, 1]

[data]
dataset = "synthetic"

[[detectors]]
name = "mlp"
hidden = [16]

[[attacks]]
attack = "fgsm"

[[attacks]]
attack = "pgd"
steps = 5

[threat]
eps = [0.1, 0.05]
"""


def test_good_file_parses_with_defaults():
    cfg = parse_config(GOOD)
    assert cfg.experiment.seeds == [0, 1]
    assert [a.attack for a in cfg.attacks] == ["fgsm", "pgd"]
    assert cfg.attacks[1].options() == {"steps": 5}
    assert cfg.threat.eps == [0.0, 0.05, 0.1]  # sorted, clean point added
    assert cfg.threat.constraints == ["valid"] and cfg.threat.mode == "auto"


def test_the_default_threat_is_evasion_when_the_data_have_a_benign_class():
    threat = parse_config(GOOD).threat
    assert threat.resolved_mode(has_benign=True) == "evasion" and threat.evasion()
    assert threat.resolved_mode(has_benign=False) == "all"
    assert not threat.evasion(has_benign=False)
    for mode in ("all", "evasion"):  # set explicitly: the data do not change it
        pinned = parse_config(GOOD.replace("[threat]", f'[threat]\nmode = "{mode}"')).threat
        assert pinned.resolved_mode(True) == pinned.resolved_mode(False) == mode


@pytest.mark.parametrize(
    ("edit", "line", "needle"),
    [
        (("steps = 5", "stepz = 5"), 17, "attacks[1].stepz: unknown key"),
        (("steps = 5", 'steps = "many"'), 17, "attacks[1].steps"),
        (('attack = "pgd"', 'attack = "pgdx"'), 16, "unknown attack 'pgdx'"),
        (("hidden = [16]", "hidden = [16]\nepochs = -3"), 11, "detectors[0].epochs"),
        (('name = "t"', 'name = "t"\ncolour = "red"'), 3, "experiment.colour: unknown key"),
        (("[threat]", '[threat]\nmode = "sometimes"'), 20, "threat.mode"),
        (("eps = [0.1, 0.05]", "eps = [-1]"), 20, "threat.eps"),
    ],
)
def test_errors_name_key_and_line(edit, line, needle):
    with pytest.raises(ConfigError) as info:
        parse_config(GOOD.replace(*edit), source="study.toml")
    msg = str(info.value)
    assert msg.startswith(f"study.toml, line {line}: ") and needle in msg
    assert "\n" not in msg


def test_invalid_toml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="invalid TOML"):
        parse_config("a = [", source="x.toml")
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")


def test_cross_field_checks():
    twice = GOOD.replace('attack = "pgd"', 'attack = "fgsm"')
    with pytest.raises(ConfigError, match="attack names must be unique"):
        parse_config(twice)
    only_forest = GOOD.replace('name = "mlp"', 'name = "rf"\nkind = "random_forest"')
    with pytest.raises(ConfigError, match="advsec MLP"):
        parse_config(only_forest)
    csv = GOOD.replace('dataset = "synthetic"', 'dataset = "csv"')
    with pytest.raises(ConfigError, match="path"):
        parse_config(csv)


def test_relative_data_paths_resolve_against_the_file(tmp_path):
    (tmp_path / "sub").mkdir()
    f = tmp_path / "sub" / "study.toml"
    f.write_text(GOOD.replace('dataset = "synthetic"', 'dataset = "nsl-kdd"\nroot = "../data"'))
    assert load_config(f).data.root == str(tmp_path / "sub" / "../data")


def test_cli_reports_config_error_in_one_line(tmp_path, capsys):
    f = tmp_path / "bad.toml"
    f.write_text(GOOD.replace("steps = 5", "stepz = 5"))
    assert main(["run", str(f), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "line 17" in err[0] and "stepz" in err[0]
    assert not (tmp_path / "run").exists()


def test_mlflow_requested_but_missing_fails_before_running(tmp_path, capsys):
    pytest.importorskip("pandas")
    import importlib.util

    if importlib.util.find_spec("mlflow") is not None:
        pytest.skip("mlflow is installed here")
    f = tmp_path / "track.toml"
    f.write_text(GOOD + "\n[tracking]\nmlflow = true\n")
    assert main(["run", str(f), "--out", str(tmp_path / "run")]) == 2
    assert "mlflow is not installed" in capsys.readouterr().err
    assert not any(tmp_path.glob(".run*")) and not (tmp_path / "run").exists()
