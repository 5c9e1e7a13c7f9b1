"""Edge cases of a user's own table and schema file: nested Parquet columns, duplicate or empty
categories, ranges that overflow float64, overrides that cannot apply, a schema file with a
byte-order mark, integers beyond 2**53, boolean columns with missing values and duplicated or
empty header names. Each gives a note or a one-line error naming the file, the row, the column
or the key; the CLI exits 2 and writes nothing."""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from advsec.cli import main
from advsec.datasets import load
from advsec.datasets.inference import infer_schema
from advsec.datasets.tabular import infer_file_schema, read_table
from advsec.errors import DataError, SchemaError
from advsec.features.schema import Feature, FeatureKind, FeatureSchema
from advsec.features.space import FeatureSpace

N = 60


def base(n: int = N) -> pd.DataFrame:
    """A small labelled flow table: no column predicts the label alone."""
    rng = np.random.default_rng(0)
    return pd.DataFrame({
        "pkts": rng.integers(1, 50, n),
        "dur": np.round(rng.random(n) * 5, 3),
        "proto": rng.choice(["tcp", "udp", "icmp"], n),
        "label": np.where(np.arange(n) % 2 == 0, "benign", "attack"),
    })


def parquet(path: Path, extra: dict[str, pa.Array]) -> Path:
    table = pa.Table.from_pandas(base(), preserve_index=False)
    for name, values in extra.items():
        table = table.append_column(name, values)
    pq.write_table(table, path)
    return path


def toml(path: Path, text: str, *, bom: bool = False) -> Path:
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


def features_toml(extra: str = "") -> str:
    return ('replace = true\n[[features]]\nname = "pkts"\nkind = "integer"\nlower = 0\n'
            '[[features]]\nname = "proto"\nkind = "categorical"\nmutable = false\n' + extra)


def one_line_exit_2(argv: list[str], pattern: str, folder: Path,
                    capsys: pytest.CaptureFixture[str]) -> None:
    before = sorted(p.name for p in folder.iterdir())
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("advsec: error: "), captured.err
    assert re.search(pattern, lines[0]), lines[0]
    assert "Traceback" not in captured.err + captured.out
    assert sorted(p.name for p in folder.iterdir()) == before


# ------------------------------------------------------------------ A: nested Parquet columns
NESTED = {
    "list": lambda: pa.array([[i, 1] for i in range(N)]),
    "large_list": lambda: pa.array([[i] for i in range(N)], type=pa.large_list(pa.int64())),
    "fixed_size_list": lambda: pa.array([[i, i] for i in range(N)],
                                        type=pa.list_(pa.int64(), 2)),
    "struct": lambda: pa.array([{"a": i, "b": "x"} for i in range(N)]),
    "map": lambda: pa.array([[("k", i)] for i in range(N)], type=pa.map_(pa.string(),
                                                                          pa.int64())),
}


@pytest.mark.parametrize("kind", sorted(NESTED))
def test_nested_parquet_column_is_left_out_with_a_note(kind, tmp_path):
    path = parquet(tmp_path / "n.parquet", {"lst": NESTED[kind]()})
    found = infer_file_schema(path, label_column="label", label_like=None)
    shown = kind if kind in ("struct", "map") else "list"
    assert f"column 'lst' left out: nested values ({shown})" in found.notes
    assert "lst" not in found.schema.names and found.schema.names == ["pkts", "dur", "proto"]
    ds = load("tabular", path=path)
    assert "lst" not in ds.schema.names and "lst" not in ds.train.columns
    assert any("'lst' left out: nested values" in n for n in ds.notes)


def test_a_schema_naming_a_nested_column_is_a_one_line_error(tmp_path, capsys):
    path = parquet(tmp_path / "n.parquet", {"lst": NESTED["list"]()})
    schema = toml(tmp_path / "s.toml", features_toml(
        '[[features]]\nname = "lst"\nkind = "categorical"\n'))
    with pytest.raises(DataError, match=r"n\.parquet, column 'lst': nested values \(list\)"):
        load("tabular", path=path, schema_file=schema)
    one_line_exit_2(["data", "info", str(path), "--label-column", "label", "--schema",
                     str(schema)], r"n\.parquet, column 'lst': nested values \(list\)",
                    tmp_path, capsys)


def test_a_nested_label_column_is_an_error(tmp_path):
    path = parquet(tmp_path / "n.parquet", {"cls": NESTED["struct"]()})
    with pytest.raises(DataError, match=r"n\.parquet, column 'cls': nested values \(struct\)"):
        read_table(path, label_column="cls")


def test_nested_values_in_a_table_built_in_python_are_left_out():
    df = base()
    df["lst"] = [np.array([i, 1]) for i in range(N)]
    df["d"] = [{"a": i} for i in range(N)]
    notes: list[str] = []
    schema = infer_schema(df, label_column="label", benign_label="benign", notes=notes,
                          label_like=None)
    assert "column 'lst' left out: nested values (list)" in notes
    assert "column 'd' left out: nested values (dict)" in notes
    assert schema.names == ["pkts", "dur", "proto"]


# ------------------------------------------------------------------- B: categories in a schema
@pytest.mark.parametrize(("cats", "pattern"), [
    ('["tcp", "tcp", "udp"]', r"s\.toml: feature 'proto': category 'tcp' is listed twice"),
    ('["1", 1]', r"s\.toml: feature 'proto': category '1' is listed twice"),
    ("[]", r"s\.toml: feature 'proto': categories is empty"),
])
def test_duplicate_or_empty_categories_are_rejected(cats, pattern, tmp_path, capsys):
    path = tmp_path / "t.csv"
    base().to_csv(path, index=False)
    schema = toml(tmp_path / "s.toml", features_toml().replace(
        "mutable = false\n", f"mutable = false\ncategories = {cats}\n"))
    with pytest.raises(SchemaError, match=pattern):
        FeatureSchema.from_file(schema, replaces=True)
    one_line_exit_2(["data", "info", str(path), "--label-column", "label", "--schema",
                     str(schema)], pattern, tmp_path, capsys)
    with pytest.raises(SchemaError, match="listed twice"):
        Feature("p", FeatureKind.CATEGORICAL, categories=("a", "b", "a"))


def test_distinct_categories_still_load(tmp_path):
    path = tmp_path / "t.csv"
    base().to_csv(path, index=False)
    schema = toml(tmp_path / "s.toml", features_toml().replace(
        "mutable = false\n", 'mutable = false\ncategories = ["tcp", "udp"]\n'))
    ds = load("tabular", path=path, schema_file=schema)
    assert ds.schema["proto"].categories == ("tcp", "udp")


# ------------------------------------------------------------ E: a range float64 cannot hold
def huge_table(path: Path) -> Path:
    df = base()
    rng = np.random.default_rng(1)
    df["huge"] = rng.uniform(-1.0, 1.0, N) * 1.7e308
    df.loc[0, "huge"], df.loc[1, "huge"] = -1.7e308, 1.7e308
    df.to_csv(path, index=False)
    return path


def test_a_range_that_overflows_is_left_out_without_warnings(tmp_path):
    path = huge_table(tmp_path / "h.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        found = infer_file_schema(path, label_column="label")
        ds = load("tabular", path=path)
    note = "column 'huge' left out: its range -1.7e+308 .. 1.7e+308 overflows float64"
    assert any(n.startswith(note) for n in found.notes)
    assert "huge" not in found.schema.names and "huge" not in ds.schema.names
    assert found.schema.names == ["pkts", "dur", "proto"]


def test_a_user_schema_with_such_a_range_is_a_one_line_error(tmp_path, capsys):
    path = huge_table(tmp_path / "h.csv")
    unbounded = toml(tmp_path / "u.toml", features_toml(
        '[[features]]\nname = "huge"\nkind = "continuous"\n'))
    with pytest.raises(DataError, match=r"h\.csv, row \d+, column 'huge': its range -1\.7e\+308 "
                                        r"\.\. 1\.7e\+308 overflows float64"):
        load("tabular", path=path, schema_file=unbounded)
    bounded = toml(tmp_path / "b.toml", features_toml(
        '[[features]]\nname = "huge"\nkind = "continuous"\nlower = -1.7e308\nupper = 1.7e308\n'))
    pattern = r"b\.toml: feature 'huge': its range -1\.7e\+308 \.\. 1\.7e\+308 overflows float64"
    with pytest.raises(SchemaError, match=pattern):
        load("tabular", path=path, schema_file=bounded)
    one_line_exit_2(["data", "info", str(path), "--label-column", "label", "--schema",
                     str(bounded)], pattern, tmp_path, capsys)
    # a wide range that float64 holds is fine
    fine = toml(tmp_path / "f.toml", features_toml(
        '[[features]]\nname = "dur"\nkind = "continuous"\nlower = -5e307\nupper = 5e307\n'))
    assert load("tabular", path=path, schema_file=fine).schema["dur"].upper == 5e307


# ------------------------------------------------------------- C: overrides that cannot apply
def test_an_override_cannot_rename_or_rebound_a_binary_feature(tmp_path):
    path = tmp_path / "t.csv"
    df = base()
    df["flag"] = np.arange(N) % 3 == 0
    df.to_csv(path, index=False)
    rename = toml(tmp_path / "r.toml", '[override.dur]\nname = "dur2"\n')
    with pytest.raises(SchemaError, match=r"r\.toml: override\.dur\.name: an override cannot "
                                          r"rename a feature \(got str 'dur2'\)"):
        load("tabular", path=path, schema_file=rename)
    bound = toml(tmp_path / "b.toml", "[override.flag]\nlower = 5\n")
    with pytest.raises(SchemaError, match=r"b\.toml: feature 'flag': lower = 5, but a binary "
                                          r"feature's bounds are always \[0, 1\]"):
        load("tabular", path=path, schema_file=bound)
    # what an override may change still applies; naming the feature itself is harmless
    ok = toml(tmp_path / "ok.toml", '[override.dur]\nname = "dur"\nupper = 10\n'
              '[override.pkts]\nkind = "binary"\n')
    schema = FeatureSchema.from_file(ok, base=FeatureSchema((
        Feature("dur", FeatureKind.CONTINUOUS, lower=0.0),
        Feature("pkts", FeatureKind.INTEGER, lower=1.0, upper=49.0))))
    assert schema["dur"].upper == 10.0
    assert (schema["pkts"].kind, schema["pkts"].lower, schema["pkts"].upper) == (
        FeatureKind.BINARY, 0.0, 1.0)


# --------------------------------------------------------------- D: a schema file with a BOM
def test_a_schema_file_with_a_utf8_bom_reads_as_without(tmp_path):
    text = features_toml('[[features]]\nname = "dur"\nkind = "continuous"\ndescription = "é"\n')
    plain = FeatureSchema.from_file(toml(tmp_path / "p.toml", text), replaces=True)
    marked = FeatureSchema.from_file(toml(tmp_path / "m.toml", text, bom=True), replaces=True)
    assert marked == plain and marked.names == ["pkts", "proto", "dur"]


# ------------------------------------------------------------------ F: integers beyond 2**53
def big_ints(path: Path, values: list[int]) -> Path:
    df = base()
    text = df.to_csv(index=False).splitlines()
    rows = [f"{text[0]},big", *[f"{line},{v}" for line, v in zip(text[1:], values,
                                                                   strict=True)]]
    path.write_text("\n".join(rows) + "\n")
    return path


U64 = [2**64 - 1 - 37 * i for i in range(N)]  # distinct, all near 2**64


def test_uint64_values_near_2_64_are_read_exactly_and_left_out(tmp_path):
    path = big_ints(tmp_path / "u.csv", U64)
    df = read_table(path, label_column="label")
    assert df["big"].dtype == np.uint64 and df["big"].tolist() == U64
    found = infer_file_schema(path, label_column="label")
    assert any(n.startswith("column 'big' left out: whole numbers beyond 2**53 "
                            f"({U64[0]} at ") for n in found.notes), found.notes
    assert "big" not in found.schema.names


@pytest.mark.parametrize("source", ["csv", "parquet", "int64"])
def test_a_schema_naming_integers_beyond_2_53_is_a_one_line_error(source, tmp_path, capsys):
    if source == "parquet":
        path = parquet(tmp_path / "u.parquet", {"big": pa.array(U64, type=pa.uint64())})
        first = U64
    else:
        first = U64 if source == "csv" else [2**62 + 3 * i for i in range(N)]
        path = big_ints(tmp_path / "u.csv", first)
    schema = toml(tmp_path / "s.toml", features_toml(
        '[[features]]\nname = "big"\nkind = "integer"\n'))
    pattern = r"u\.(csv|parquet), row \d+, column 'big': \d+ is beyond 2\*\*53 in magnitude"
    with pytest.raises(DataError, match=pattern):
        load("tabular", path=path, schema_file=schema)
    one_line_exit_2(["data", "info", str(path), "--label-column", "label", "--schema",
                     str(schema)], pattern, tmp_path, capsys)
    # as a category every value is kept exactly
    cats = toml(tmp_path / "c.toml", features_toml(
        '[[features]]\nname = "big"\nkind = "categorical"\n'))
    ds = load("tabular", path=path, schema_file=cats, max_categories=N)
    both = pd.concat([ds.train, ds.test])
    assert sorted(both["big"].tolist()) == sorted(str(v) for v in first)


def test_ordinary_integers_and_float_text_are_unchanged(tmp_path):
    path = big_ints(tmp_path / "f.csv", [int(v) for v in np.arange(N) * 7])
    df = read_table(path, label_column="label")
    assert df["big"].dtype == np.int64
    floats = tmp_path / "e.csv"
    text = path.read_text().splitlines()
    floats.write_text("\n".join([text[0], *[f"{line.rsplit(',', 1)[0]},{i + 1}e20"
                                            for i, line in enumerate(text[1:])]]) + "\n")
    df = read_table(floats, label_column="label")
    assert df["big"].dtype == np.float64 and df["big"].iloc[0] == 1e20


# ---------------------------------------------------------- G: booleans with missing values
@pytest.mark.parametrize("metadata", [True, False])
def test_a_boolean_column_with_a_missing_value_is_the_same_error_everywhere(metadata, tmp_path,
                                                                          capsys):
    flags = pa.array([bool(i % 2) if i != 3 else None for i in range(N)])
    path = parquet(tmp_path / "b.parquet", {"flag": flags})
    if not metadata:
        pq.write_table(pq.read_table(path).replace_schema_metadata(None), path)
    pattern = r"b\.parquet, row 4, column 'flag': empty value, expected true or false"
    with pytest.raises(DataError, match=pattern):
        infer_file_schema(path, label_column="label", discover=False)
    with pytest.raises(DataError, match=pattern):
        load("tabular", path=path)
    schema = toml(tmp_path / "s.toml", features_toml(
        '[[features]]\nname = "flag"\nkind = "binary"\n'))
    with pytest.raises(DataError, match=pattern):
        load("tabular", path=path, schema_file=schema)
    one_line_exit_2(["data", "schema", str(path), "--label-column", "label", "--out",
                     str(tmp_path / "o.toml")], pattern, tmp_path, capsys)


def test_a_boolean_column_without_missing_values_is_binary(tmp_path):
    path = parquet(tmp_path / "b.parquet", {"flag": pa.array([i % 3 == 0 for i in range(N)])})
    ds = load("tabular", path=path)
    assert ds.schema["flag"].kind is FeatureKind.BINARY
    assert set(ds.train["flag"].tolist()) == {0, 1}


# --------------------------------------------------------------- H: header names
def test_a_duplicated_header_name_is_a_one_line_error(tmp_path, capsys):
    path = tmp_path / "d.csv"
    text = base().to_csv(index=False).replace("pkts,dur,", "pkts,pkts,", 1)
    path.write_text(text)
    pattern = (r"d\.csv, header: column name 'pkts' appears more than once \(columns 1 and "
               r"2\)")
    with pytest.raises(DataError, match=pattern):
        load("tabular", path=path)
    one_line_exit_2(["data", "schema", str(path), "--label-column", "label", "--out",
                     str(tmp_path / "o.toml")], pattern, tmp_path, capsys)


def test_an_empty_header_cell_is_named_with_a_note(tmp_path):
    path = tmp_path / "e.csv"
    path.write_text(base().to_csv(index=False).replace("pkts,dur,", "pkts,,", 1))
    note = f"{path}, header: column 2 has no name; it is called 'column_1'"
    found = infer_file_schema(path, label_column="label")
    assert note in found.notes and "column_1" in found.schema.names
    ds = load("tabular", path=path)
    assert note in ds.notes


# ------------------------------------------------------------ the normal path is unchanged
def test_a_plain_table_loads_as_before(tmp_path):
    path = tmp_path / "t.csv"
    base().to_csv(path, index=False)
    ds = load("tabular", path=path)
    assert ds.schema.names == ["pkts", "dur", "proto"]
    assert not any("left out" in n or "header" in n for n in ds.notes)
    space: Any = FeatureSpace(ds.schema).fit(ds.train)
    assert space.encode(ds.test).shape[0] == len(ds.test)


def test_training_rows_that_break_a_kind_or_value_set_are_named_by_their_file_row(
        tmp_path: Path) -> None:
    from advsec.datasets import load

    rng = np.random.default_rng(0)
    df = pd.DataFrame({"n": rng.integers(0, 5, 80).astype(float), "x": rng.random(80),
                       "label": ["benign", "attack"] * 40})
    df.loc[[10, 50], "n"] = [2.5, 9.0]  # a fraction, a value outside the set below
    path = tmp_path / "t.csv"
    df.to_csv(path, index=False)
    kinds = tmp_path / "kinds.toml"
    kinds.write_text('[override.n]\nkind = "integer"\n')
    with pytest.raises(DataError, match=r"t.csv, row 11, column 'n': 2.5 is not a whole "
                                        r"number; the schema says kind = \"integer\""):
        load("tabular", path=str(path), schema_file=str(kinds), test_path=str(path))
    df.loc[10, "n"] = 2.0
    df.to_csv(path, index=False)
    sets = tmp_path / "sets.toml"
    sets.write_text('[override.n]\nkind = "integer"\nvalues = [0, 1, 2, 3, 4]\n')
    with pytest.raises(DataError, match=r"t.csv, row 51, column 'n': 9 is not one of the "
                                        r"schema's values \(0, 1, 2, 3, 4\)"):
        load("tabular", path=str(path), schema_file=str(sets), test_path=str(path))
    df.loc[50, "n"] = 4.0
    df.to_csv(path, index=False)
    ds = load("tabular", path=str(path), schema_file=str(sets), test_path=str(path))
    assert ds.schema["n"].values == (0.0, 1.0, 2.0, 3.0, 4.0)
