"""A detector trained by `advsec run` on a user's CSV keeps how the table was read; `advsec
attack --model M --data other.csv` needs nothing more, and exports keep what the attack left."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from advsec.cli import main
from advsec.datasets import load

STUDY = """\
[experiment]
name = "own"
seeds = [0]

[data]
dataset = "tabular"
path = "{path}"
label_column = "verdict"
benign_label = "ok"
options = {{ max_categories = 3 }}
max_eval_rows = 100

[[detectors]]
name = "mlp"
hidden = [16]
epochs = 5

[[attacks]]
attack = "fgsm"

[threat]
eps = [0, 0.1]
constraints = ["valid"]
"""


def flows(rows: int, seed: int) -> pd.DataFrame:
    """Synthetic flows as a user's export: the label renamed, text categoricals kept."""
    ds = load("synthetic", rows=rows, seed=seed)
    df = pd.concat([ds.train, ds.test], ignore_index=True).drop(columns=["attack_type"])
    df["verdict"] = np.where(df.pop("label") == "benign", "ok", "bad")
    return df


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("own")
    csv = root / "train.csv"
    flows(900, 0).to_csv(csv, index=False)
    study = root / "study.toml"
    study.write_text(STUDY.format(path=csv))
    assert main(["run", str(study), "--out", str(root / "run")]) == 0
    model = root / "run" / "models" / "mlp-s0"
    return root, model


def test_the_saved_model_keeps_how_its_table_was_read(trained):
    _, model = trained
    meta = json.loads(model.with_suffix(".json").read_text())
    assert meta["data"]["dataset"] == "tabular"
    opts = meta["data"]["options"]
    assert opts["label_column"] == "verdict" and opts["benign_label"] == "ok"
    assert opts["max_categories"] == 3 and opts["scheme"] == "binary"
    assert "path" not in opts and "seed" not in opts


def test_attack_a_new_file_with_nothing_but_the_model(trained, capsys):
    root, model = trained
    other = flows(300, 7)
    other.loc[0, "protocol"] = "sctp"  # never seen in training: encoded as <other>
    path = root / "other.csv"
    other.to_csv(path, index=False)
    out = root / "attack"
    code = main(["attack", "--model", str(model), "--data", str(path), "--attack", "pgd",
                 "--eps", "0.1", "--steps", "5", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    adv = pd.read_csv(out / "adversarial.csv")
    assert len(adv) == len(other)
    # immutable and untouched features are exported exactly as they were
    assert adv.loc[0, "protocol"] == "sctp"
    assert (adv["protocol"].to_numpy() == other["protocol"].to_numpy()).all()
    assert set(adv["label"]) <= {"ok", "attack"}
    table = pd.read_csv(out / "results.csv")
    assert table["valid_share"].iloc[0] == pytest.approx(adv["valid"].mean())


def test_bad_inputs_stop_with_one_line(trained, tmp_path, capsys):
    _, model = trained
    short = flows(50, 3).drop(columns=["src_bytes"])
    path = tmp_path / "short.csv"
    short.to_csv(path, index=False)
    assert main(["attack", "--model", str(model), "--data", str(path), "--out",
                 str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err.strip()
    assert "no column 'src_bytes'" in err and "\n" not in err
    assert not (tmp_path / "a").exists()
    # a model file whose 'data' key is malformed
    bad = tmp_path / "bad"
    for suffix in (".safetensors", ".json"):
        bad.with_suffix(suffix).write_bytes(model.with_suffix(suffix).read_bytes())
    meta = json.loads(bad.with_suffix(".json").read_text())
    meta["data"] = {"dataset": "tabular", "options": {"label_column": {"x": 1}}}
    bad.with_suffix(".json").write_text(json.dumps(meta))
    assert main(["attack", "--model", str(bad), "--data", str(path), "--out",
                 str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip()
    assert "key 'data'.options.label_column" in err and "\n" not in err
