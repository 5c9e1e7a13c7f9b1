"""The tabular loader (any labelled CSV/Parquet): schema inference, schema files, test files,
CSV quirks (BOM, CRLF, padded and duplicated header names) and bad input."""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest

from advsec.datasets import load
from advsec.datasets.tabular import infer_schema
from advsec.errors import DataError, SchemaError
from advsec.features.schema import FeatureKind
from advsec.features.space import FeatureSpace


def flows(n: int = 60, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    malicious = np.arange(n) % 3 == 0
    heavy = malicious | (np.arange(n) % 9 == 1)  # some benign flows are large: not a leak
    return pd.DataFrame({
        "row": np.arange(1, n + 1),
        "proto": rng.choice(["tcp", "udp"], n),
        "bytes": np.where(heavy, rng.integers(10_000, 10**7, n), rng.integers(0, 800, n)),
        "share": np.round(rng.random(n), 3),
        "delta": np.round(rng.normal(0, 1, n), 4),
        "flag": rng.integers(0, 2, n),
        "src_ip": [f"10.0.{i // 256}.{i % 256}" for i in range(n)],
        "empty": [None] * n,
        "class": np.where(malicious, "bad", "benign"),
    })


def write_csv(path, df: pd.DataFrame, **kwargs) -> None:
    df.to_csv(path, index=False, **kwargs)


def test_inference_rules(tmp_path):
    path = tmp_path / "flows.csv"
    write_csv(path, flows())
    ds = load("tabular", path=path, label_column="class", benign_label="benign",
              max_categories=20)
    s = ds.schema
    assert s.names == ["proto", "bytes", "share", "delta", "flag"]
    assert s["proto"].kind is FeatureKind.CATEGORICAL and not s["proto"].mutable
    assert s["bytes"].kind is FeatureKind.INTEGER and s["bytes"].transform == "log1p"
    assert (s["share"].lower, s["share"].upper) == (0.0, 1.0)
    assert s["delta"].kind is FeatureKind.CONTINUOUS and s["delta"].lower is None
    assert s["flag"].kind is FeatureKind.BINARY
    notes = " | ".join(ds.notes)
    assert "'row' left out: a row id" in notes and "'empty' left out: every value is empty" in notes
    assert "'src_ip' left out: text with 42 distinct values" in notes
    assert ds.classes == ["benign", "attack"] and set(ds.train["label"]) == {"benign", "attack"}
    assert (len(ds.train), len(ds.test)) == (42, 18)
    space = FeatureSpace(ds.schema).fit(ds.train)
    raw = ds.test[s.names]
    pd.testing.assert_frame_equal(space.decode(space.encode(raw), reference=raw), raw,
                                  check_dtype=False)


def test_parquet_gzip_and_a_separate_test_file_with_an_unseen_label(tmp_path):
    train = flows(60, seed=1).drop(columns=["empty"])
    test = flows(30, seed=2).drop(columns=["empty"])
    test.loc[0, "class"] = "worse"
    train.to_parquet(tmp_path / "train.parquet")
    with gzip.open(tmp_path / "test.csv.gz", "wt") as fh:
        test.to_csv(fh, index=False)
    ds = load("tabular", path=tmp_path / "train.parquet", test_path=tmp_path / "test.csv.gz",
              label_column="class", benign_label="benign", scheme="attack")
    assert (len(ds.train), len(ds.test)) == (60, 30)
    assert ds.classes == ["benign", "bad", "worse"]
    assert any("labels never seen in training (kept as classes of their own): worse" in n
               for n in ds.notes)
    binary = load("tabular", path=tmp_path / "train.parquet",
                  test_path=tmp_path / "test.csv.gz", label_column="class")
    assert binary.benign_label == "benign"
    assert binary.test["label"].iloc[0] == "attack"


def test_csv_quirks_bom_crlf_padded_and_duplicate_names(tmp_path):
    text = "\ufeff a , b ,a,label\r\n1,2,3,benign\r\n4,0,6,attack\r\n0,8,2,benign\r\n"
    path = tmp_path / "q.csv"
    path.write_bytes(text.encode("utf-8"))
    # a name that comes twice (once padded) is ambiguous: refused, naming both columns
    with pytest.raises(DataError, match=r"header: column name 'a' appears more than once "
                                        r"\(columns 1 and 3\)"):
        load("tabular", path=path, test_path=path)
    path.write_bytes(text.replace(",a,", ",c,").encode("utf-8"))
    ds = load("tabular", path=path, test_path=path)
    assert ds.schema.names == ["a", "b", "c"] and ds.benign_label == "benign"
    assert ds.train["c"].tolist() == [3, 6, 2]


def test_schema_file_overrides_and_full_schema(tmp_path):
    path = tmp_path / "flows.csv"
    write_csv(path, flows())
    over = tmp_path / "over.toml"
    over.write_text('drop = ["delta"]\n[override.proto]\nmutable = true\n'
                    '[override.bytes]\nupper = 1e8\n'
                    '[[add_relations]]\ntype = "order"\nfeatures = ["flag", "bytes"]\n')
    ds = load("tabular", path=path, label_column="class", schema_file=over)
    assert "delta" not in ds.schema.names and ds.schema["proto"].mutable
    assert ds.schema["bytes"].upper == 1e8 and len(ds.schema.relations) == 1
    full = tmp_path / "full.toml"
    features = ('[[features]]\nname = "bytes"\nkind = "integer"\nlower = 0\n'
                '[[features]]\nname = "proto"\nkind = "categorical"\n')
    full.write_text(features)
    # a features list never replaces the inferred schema silently
    with pytest.raises(SchemaError, match=r"full.toml: a 'features' list replaces the whole "
                                          r"schema; say so with 'replace = true'"):
        load("tabular", path=path, label_column="class", schema_file=full)
    full.write_text("replace = true\n" + features)
    ds = load("tabular", path=path, label_column="class", schema_file=full)
    assert ds.schema.names == ["bytes", "proto"] and ds.schema["proto"].mutable
    wrong = tmp_path / "wrong.toml"
    wrong.write_text('replace = true\n[[features]]\nname = "bites"\nkind = "integer"\n')
    with pytest.raises(SchemaError, match=r"wrong.toml: schema names column\(s\) \['bites'\]"):
        load("tabular", path=path, label_column="class", schema_file=wrong)


def test_missing_label_column(tmp_path):
    path = tmp_path / "flows.csv"
    write_csv(path, flows())
    with pytest.raises(DataError, match=r"flows.csv: no column 'label' in the header \(found 9"):
        load("tabular", path=path)


def test_stray_word_in_a_numeric_column(tmp_path):
    df = flows().astype({"bytes": object})
    df.loc[7, "bytes"] = "lots"
    write_csv(tmp_path / "f.csv", df)
    with pytest.raises(DataError, match="row 8, column 'bytes': expected a number, got 'lots'"):
        load("tabular", path=tmp_path / "f.csv", label_column="class", seed=0, test_size=0.01,
             test_path=tmp_path / "f.csv")


def test_empty_value_in_a_numeric_column(tmp_path):
    df = flows()
    df["share"] = df["share"].astype(object)
    df.loc[4, "share"] = None
    write_csv(tmp_path / "f.csv", df)
    with pytest.raises(DataError, match="row 5, column 'share': empty value, expected a number"):
        load("tabular", path=tmp_path / "f.csv", label_column="class",
             test_path=tmp_path / "f.csv")


def test_benign_label_checks(tmp_path):
    write_csv(tmp_path / "f.csv", flows())
    with pytest.raises(DataError, match="no row has the benign label 'normal'"):
        load("tabular", path=tmp_path / "f.csv", label_column="class", benign_label="normal")
    df = flows()
    df["class"] = np.where(df["class"] == "benign", "x", "y")
    write_csv(tmp_path / "g.csv", df)
    with pytest.raises(DataError, match="cannot tell the benign label"):
        load("tabular", path=tmp_path / "g.csv", label_column="class")


def test_semicolon_file_with_the_wrong_delimiter(tmp_path):
    write_csv(tmp_path / "f.csv", flows(), sep=";")
    with pytest.raises(DataError, match="header: found 1 column \\(the file looks ';'-separated"):
        load("tabular", path=tmp_path / "f.csv", label_column="class")
    ds = load("tabular", path=tmp_path / "f.csv", label_column="class", delimiter=";")
    assert len(ds.train) == 42


def test_infer_schema_keeps_high_cardinality_limit():
    df = flows()
    s = infer_schema(df, label_column="class", benign_label="benign", max_categories=1000)
    assert s["src_ip"].kind is FeatureKind.CATEGORICAL
