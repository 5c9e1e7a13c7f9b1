"""A detector trained by `advsec run` on a user's CSV keeps how the table was read; `advsec
attack --model M --data other.csv` needs nothing more, and exports keep what the attack left."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from advsec.cli import main
from advsec.datasets import load
from advsec.models.io import load_data_options, load_feature_space

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
    captured = capsys.readouterr()
    assert code == 0, captured.err
    # the user is told that the model saw row 1's protocol as <other>, in the terminal, in
    # attack.json and in the report
    note = ("column 'protocol': 1 record(s) with a category the model never saw (1 distinct; "
            "first: row 1, 'sctp'), encoded as <other>")
    assert f"note: {note}" in captured.out
    assert note in json.loads((out / "attack.json").read_text())["encoding_notes"]
    assert "encoding-notes" in (out / "report.html").read_text()
    adv = pd.read_csv(out / "adversarial.csv")
    assert len(adv) == len(other)
    # immutable and untouched features are exported exactly as they were
    assert adv.loc[0, "protocol"] == "sctp"
    assert (adv["protocol"].to_numpy() == other["protocol"].to_numpy()).all()
    assert set(adv["true_label"]) <= {"ok", "attack"}
    # the raw label column comes back as read, beside the features
    assert (adv["verdict"].astype(str).to_numpy() == other["verdict"].astype(str).to_numpy()).all()
    table = pd.read_csv(out / "results.csv")
    assert table["valid_share"].iloc[-1] == pytest.approx(adv["valid"].mean())


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


# ------------------------------------------------ a wide categorical kept by max_categories
WIDE = STUDY.replace("options = {{ max_categories = 3 }}",
                     "options = {{ max_categories = 200 }}\n"
                     "schema_overrides = {{ protocol = {{ mutable = true }} }}")
PROTOS = [f"p{i}" for i in range(120)]  # over the loader's default max_categories (100)


def wide_flows(rows: int, seed: int) -> pd.DataFrame:
    """Flows with a ``proto`` column of 120 values, which only ``max_categories = 200`` keeps."""
    df = flows(rows, seed)
    df["proto"] = np.random.default_rng(seed).choice(PROTOS, size=len(df))
    return df


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    root = tmp_path_factory.mktemp("wide")
    csv = root / "train.csv"
    wide_flows(900, 0).to_csv(csv, index=False)
    study = root / "study.toml"
    study.write_text(WIDE.format(path=csv))
    assert main(["run", str(study), "--out", str(root / "run")]) == 0
    return root, root / "run" / "models" / "mlp-s0"


def test_stored_options_are_public_and_max_categories_matters(wide):
    root, model = wide
    record = load_data_options(model)
    assert record == json.loads(model.with_suffix(".json").read_text())["data"]
    assert record is not None and record["options"]["max_categories"] == 200
    names = load_feature_space(model).schema.names
    assert "proto" in names
    # read with the loader's defaults, the table would lose the column the model needs
    default = load("tabular", path=root / "train.csv", label_column="verdict",
                   benign_label="ok")
    assert "proto" not in default.schema.names


def test_new_flows_of_a_wide_model_are_read_like_training(wide, tmp_path, capsys):
    _, model = wide
    other = wide_flows(300, 5)
    other.loc[:29, "protocol"] = "sctp"  # unseen in training: encoded as <other>
    other.loc[:29, "proto"] = "p999"
    path = tmp_path / "other.csv"
    other.to_csv(path, index=False)
    out = tmp_path / "attack"
    code = main(["attack", "--model", str(model), "--data", str(path), "--attack", "pgd",
                 "--eps", "0.3", "--steps", "10", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    adv = pd.read_csv(out / "adversarial.csv", keep_default_na=False)
    assert len(adv) == len(other)
    assert (adv["proto"] == other["proto"]).all()  # immutable: every value as it was
    assert (adv.loc[:29, "proto"] == "p999").all()
    # unconstrained, eps 0 changes nothing and eps 1 changes protocol in most rows: wherever
    # the attack left a feature's encoding alone, the raw value is exported as it was
    out = tmp_path / "free"
    code = main(["attack", "--model", str(model), "--data", str(path), "--attack", "fgsm",
                 "--eps", "0,1", "--unconstrained", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    adv = pd.read_csv(out / "adversarial.csv", keep_default_na=False)
    space = load_feature_space(model)
    names = space.schema.names
    before = space.encode(other[names])
    for e, rows in adv.groupby("eps"):
        rows = rows.reset_index(drop=True)
        after = space.encode(rows[names])
        for name in ("protocol", "proto"):
            cols = [i for i, c in enumerate(space.columns_) if str(c).startswith(f"{name}=")]
            same = (after[:, cols] == before[:, cols]).all(axis=1)
            kept = rows[name].to_numpy() == other[name].to_numpy()
            assert (kept == same).all(), (e, name)
            if e == 0:
                assert same.all() and (rows.loc[:29, name] != "<other>").all()
        if e == 1:
            assert not (rows["protocol"] == other["protocol"]).all()
    # the registered-dataset route (its split) reuses the stored options as well
    out2 = tmp_path / "split"
    code = main(["attack", "--model", str(model), "--dataset", "tabular", "--root", str(path),
                 "--attack", "fgsm", "--eps", "0.1", "--out", str(out2)])
    assert code == 0, capsys.readouterr().err
    assert json.loads((out2 / "attack.json").read_text())["data_options"]["max_categories"] == 200


def test_a_model_without_stored_options_needs_the_label_column(wide, tmp_path, capsys):
    _, model = wide
    old = tmp_path / "old"
    for suffix in (".safetensors", ".json"):
        old.with_suffix(suffix).write_bytes(model.with_suffix(suffix).read_bytes())
    meta = json.loads(old.with_suffix(".json").read_text())
    del meta["data"]
    old.with_suffix(".json").write_text(json.dumps(meta))
    assert load_data_options(old) is None
    path = tmp_path / "other.csv"
    wide_flows(120, 2).to_csv(path, index=False)
    args = ["attack", "--model", str(old), "--data", str(path), "--attack", "fgsm",
            "--eps", "0.1"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err.strip()
    assert "--label-column" in err and "\n" not in err
    assert not (tmp_path / "a").exists()
    code = main([*args, "--label-column", "verdict", "--benign-label", "ok",
                 "--out", str(tmp_path / "b")])
    assert code == 0, capsys.readouterr().err
    assert set(pd.read_csv(tmp_path / "b" / "adversarial.csv")["true_label"]) <= {"ok", "attack"}


def test_a_schema_file_changes_the_threat_model_not_the_encoding(wide, tmp_path, capsys):
    _, model = wide
    path = tmp_path / "other.csv"
    wide_flows(120, 4).to_csv(path, index=False)
    frozen = tmp_path / "frozen.toml"
    frozen.write_text("[override.protocol]\nmutable = false\n")
    out = tmp_path / "a"
    assert main(["attack", "--model", str(model), "--data", str(path), "--schema", str(frozen),
                 "--attack", "pgd", "--eps", "0.3", "--steps", "5", "--out", str(out)]) == 0
    other = pd.read_csv(path, keep_default_na=False)
    adv = pd.read_csv(out / "adversarial.csv", keep_default_na=False)
    assert (adv["protocol"] == other["protocol"]).all()
    dropping = tmp_path / "drop.toml"
    dropping.write_text('drop = ["proto"]\n')
    assert main(["attack", "--model", str(model), "--data", str(path), "--schema",
                 str(dropping), "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip()
    assert "'proto'" in err and "\n" not in err
    assert not (tmp_path / "b").exists()


def test_a_run_reports_how_its_detectors_see_a_separate_test_file(tmp_path):
    train, test = flows(600, 1), flows(200, 2)
    test.loc[[3, 8], "protocol"] = "sctp"  # never in training: <other> for every detector
    train.to_csv(tmp_path / "train.csv", index=False)
    test.to_csv(tmp_path / "test.csv", index=False)
    study = tmp_path / "study.toml"
    study.write_text(STUDY.format(path=tmp_path / "train.csv").replace(
        'label_column = "verdict"',
        f'test_path = "{tmp_path / "test.csv"}"\nlabel_column = "verdict"').replace(
        "max_eval_rows = 100", "max_eval_rows = 200"))
    assert main(["run", str(study), "--out", str(tmp_path / "run")]) == 0
    facts = json.loads((tmp_path / "run" / "data" / "s0.json").read_text())
    (note,) = [n for n in facts["encoding_notes"] if n.startswith("column 'protocol'")]
    assert note == ("column 'protocol': 2 record(s) with a category the model never saw "
                    "(1 distinct; first: 'sctp'), encoded as <other>")
    html = (tmp_path / "run" / "report.html").read_text()
    assert 'id="encoding-notes"' in html and "2 record(s) with a category" in html
