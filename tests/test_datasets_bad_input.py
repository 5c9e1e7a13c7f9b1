"""Bad input: each case is a one-line DataError/SchemaError naming file, row or column and what
was expected, or a documented handling (tested here)."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from advsec.datasets import load
from advsec.errors import AdvsecError, ConfigError, DataError, SchemaError

LINE = ("0,tcp,http,SF,181,5450,0,0,0,0,0,1,0,0,0,0,0,0,0,0,0,0,8,8,0.00,0.00,0.00,0.00,1.00,"
        "0.00,0.00,9,9,1.00,0.00,0.11,0.00,0.00,0.00,0.00,0.00,{label}")


def kdd_lines(labels) -> str:
    return "".join(LINE.format(label=lab) + "\n" for lab in labels)


def write_kdd(folder: Path, train: str, test: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "kddcup.data_10_percent").write_text(train)
    if test is not None:
        (folder / "corrected").write_text(test)
    return folder


def one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text and isinstance(exc.value, AdvsecError)
    return text


GOOD = kdd_lines(["normal.", "smurf.", "normal.", "neptune.", "normal.", "smurf."])


def test_good_tiny_files_load(tmp_path):
    root = write_kdd(tmp_path, GOOD, kdd_lines(["normal.", "mscan."]))
    ds = load("kdd99", root=root, scheme="category")
    assert len(ds.train) == 6 and ds.test["label"].tolist() == ["normal", "probe"]


def test_empty_file(tmp_path):
    root = write_kdd(tmp_path, "")
    with pytest.raises(DataError) as exc:
        load("kdd99", root=root)
    msg = one_line(exc)
    assert "kddcup.data_10_percent: file is empty; expected 42 comma-separated fields" in msg


def test_wrong_delimiter(tmp_path):
    root = write_kdd(tmp_path, GOOD.replace(",", ";"))
    with pytest.raises(DataError) as exc:
        load("kdd99", root=root)
    assert "row 1: expected 42 fields, got 1 (the file looks ';'-separated" in one_line(exc)


def test_wrong_column_count_names_the_row(tmp_path):
    lines = GOOD.splitlines()
    lines[2] = lines[2].replace(",tcp,", ",")  # 41 fields on the third row
    root = write_kdd(tmp_path, "\n".join(lines) + "\n")
    with pytest.raises(DataError) as exc:
        load("kdd99", root=root)
    assert "kddcup.data_10_percent, row 3: expected 42 fields, got 41" in one_line(exc)


def test_non_numeric_text_in_a_numeric_column(tmp_path):
    lines = GOOD.splitlines()
    lines[4] = lines[4].replace(",181,", ",abc,")
    root = write_kdd(tmp_path, "\n".join(lines) + "\n")
    with pytest.raises(DataError) as exc:
        load("kdd99", root=root)
    assert "row 5, column 'src_bytes': expected an integer, got 'abc'" in one_line(exc)


def test_empty_value_in_a_numeric_column(tmp_path):
    lines = GOOD.splitlines()
    lines[1] = lines[1].replace(",181,", ",,")
    root = write_kdd(tmp_path, "\n".join(lines) + "\n")
    with pytest.raises(DataError) as exc:
        load("kdd99", root=root)
    assert "row 2, column 'src_bytes': empty value, expected a number" in one_line(exc)


def test_empty_symbolic_value_or_label(tmp_path):
    lines = GOOD.splitlines()
    lines[3] = lines[3].replace(",http,", ",,")
    root = write_kdd(tmp_path / "a", "\n".join(lines) + "\n")
    with pytest.raises(DataError) as exc:
        load("kdd99", root=root)
    assert "row 4, column 'service': empty value, expected a label" in one_line(exc)
    lines = GOOD.splitlines()
    lines[0] = lines[0].rsplit(",", 1)[0] + ","
    root = write_kdd(tmp_path / "b", "\n".join(lines) + "\n")
    with pytest.raises(DataError, match="row 1, column 'label': empty value"):
        load("kdd99", root=root)


def test_missing_file_says_where_to_get_it(tmp_path):
    with pytest.raises(DataError) as exc:
        load("kdd99", root=tmp_path)
    msg = one_line(exc)
    assert "'kddcup.data_10_percent' (plain or .gz) not found in" in msg
    assert "kdd.ics.uci.edu" in msg and "advsec data fetch kdd99" in msg
    with pytest.raises(DataError) as exc:
        load("nsl-kdd", root=tmp_path)
    assert "KDDTrain+.txt" in one_line(exc) and "unb.ca/cic/datasets/nsl.html" in str(exc.value)


def test_missing_corrected_falls_back_to_a_split_but_not_when_required(tmp_path):
    root = write_kdd(tmp_path, GOOD * 3)
    ds = load("kdd99", root=root, seed=1)
    assert len(ds.train) + len(ds.test) == 18 and any("not found" in n for n in ds.notes)
    with pytest.raises(DataError, match="'corrected'"):
        load("kdd99", root=root, test="corrected")


def test_gzip_is_recognised_by_content(tmp_path):
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "kddcup.data_10_percent").write_bytes(gzip.compress(GOOD.encode()))
    ds = load("kdd99", root=tmp_path, scheme="attack")
    assert len(ds.train) + len(ds.test) == 6 and set(ds.classes) == {"normal", "smurf", "neptune"}


def test_attack_names_outside_the_category_table(tmp_path):
    root = write_kdd(tmp_path, GOOD, kdd_lines(["normal.", "smurf.", "zeroday.", "zeroday."]))
    ds = load("kdd99", root=root, scheme="category")
    assert len(ds.test) == 2
    assert any("dropped 2 rows" in n and "zeroday (2)" in n for n in ds.notes)
    with pytest.raises(DataError) as exc:
        load("kdd99", root=root, scheme="category", unknown_attacks="error")
    assert "test has attack name(s) outside the category table: zeroday (2)" in one_line(exc)
    kept = load("kdd99", root=root, scheme="category", unknown_attacks="keep")
    assert kept.classes[-1] == "unknown" and (kept.test["label"] == "unknown").sum() == 2
    mapped = load("kdd99", root=root, scheme="category", category_map={"zeroday": "r2l"})
    assert (mapped.test["label"] == "r2l").sum() == 2


def test_binary_and_attack_schemes_keep_unseen_test_labels(tmp_path):
    root = write_kdd(tmp_path, GOOD, kdd_lines(["normal.", "zeroday."]))
    binary = load("kdd99", root=root)
    assert binary.test["label"].tolist() == ["normal", "attack"]
    attack = load("kdd99", root=root, scheme="attack")
    assert attack.classes == ["normal", "neptune", "smurf", "zeroday"]
    assert any("absent from training: zeroday" in n for n in attack.notes)


@pytest.mark.parametrize("options, error, match", [
    ({"scheme": "colour"}, ConfigError, "label scheme must be one of binary, category, attack"),
    ({"train": "half"}, ConfigError, "train must be one of"),
    ({"test": "later"}, ConfigError, "test must be"),
    ({"unknown_attacks": "ignore"}, ConfigError, "unknown_attacks must be one of"),
])
def test_bad_options(tmp_path, options, error, match):
    root = write_kdd(tmp_path, GOOD)
    with pytest.raises(error, match=match):
        load("kdd99", root=root, **options)


def test_unknown_dataset():
    with pytest.raises(DataError, match="unknown dataset 'kdd98'; known datasets: cicids2017"):
        load("kdd98")


def test_schema_file_naming_unknown_columns(tmp_path):
    root = write_kdd(tmp_path / "data", GOOD)
    bad = tmp_path / "schema.toml"
    bad.write_text('[override.src_bites]\nmutable = false\n')
    with pytest.raises(SchemaError) as exc:
        load("kdd99", root=root, schema_file=bad)
    assert "schema.toml" in one_line(exc) and "['src_bites']" in str(exc.value)
    good = tmp_path / "ok.toml"
    good.write_text('drop = ["num_outbound_cmds"]\n[override.src_bytes]\nmutable = false\n')
    ds = load("kdd99", root=root, schema_file=good)
    assert not ds.schema["src_bytes"].mutable and "num_outbound_cmds" not in ds.schema.names
    assert ds.schema.benign_label == "normal" and ds.schema.label == "label"


def test_advsec_data_env_is_searched(tmp_path, monkeypatch):
    write_kdd(tmp_path / "kdd99", GOOD)
    monkeypatch.setenv("ADVSEC_DATA", str(tmp_path))
    assert len(load("kdd99").train) > 0
