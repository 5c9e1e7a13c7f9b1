"""`advsec data schema FILE` (a commented TOML schema inferred from a whole table) and
`advsec data info ... --show-schema`: the written file reads back as the same schema, the tabular
loader given it as its schema file has the same features, bad input exits 2 with one line and
writes nothing."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from advsec.cli import app, main
from advsec.datasets import load
from advsec.features.schema import FeatureSchema

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

runner = CliRunner()
CICIDS = Path(__file__).parent / "fixtures" / "cicids2017"
UNSW = Path("unsw-nb15") / "UNSW_NB15_testing-set.csv.gz"
ODD = ['src "bytes"', "dur\\s", "Flow Bytes/s", "ünï ©", "#pkts", "back pkts", "all=pkts"]


def flows_csv(folder: Path, n: int = 300) -> Path:
    """A flow table with awkward column names, a row id, a second label and a constant."""
    rng = np.random.default_rng(0)
    attack = np.arange(n) % 4 == 0
    pkts = rng.integers(1, 40, n) + 3 * attack
    back = rng.integers(0, 30, n)
    df = pd.DataFrame({
        "rid": rng.permutation(n) + 1,
        ODD[0]: pkts * rng.integers(40, 1500, n),
        ODD[1]: np.round(rng.exponential(2.0, n) + attack, 6),
        ODD[2]: np.round(rng.random(n), 4),
        ODD[3]: rng.choice(["tcp", "udp"], n),
        ODD[4]: pkts,
        ODD[5]: back,
        ODD[6]: pkts + back,  # a sum relation between awkward names
        "version": 4,
        "kind": np.where(attack, "scan", "none"),
        "class": np.where(attack, "bad", "benign"),
    })
    path = folder / "flows.csv"
    df.to_csv(path, index=False)
    return path


def invoke(*args: str):
    result = runner.invoke(app, ["data", *map(str, args)])
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def test_schema_file_reads_back_and_the_loader_gets_the_same_features(tmp_path):
    path = flows_csv(tmp_path)
    out = tmp_path / "schema.toml"
    result = invoke("schema", path, "--label-column", "class", "--out", out)
    assert result.stdout == ""
    summary = result.stderr
    assert "300 rows; 7 features kept" in summary and f"schema written to {out}" in summary
    assert "relations: 1 enforced (1 hold on every row" in summary
    written = FeatureSchema.from_file(out, replaces=True)
    assert written.names == ODD and (written.label, written.benign_label) == ("class", "benign")
    (rel,) = written.relations  # all=pkts == #pkts + back pkts, found on the whole file
    assert (rel["type"], rel["target"], rel["holds_on"]) == ("sum", ODD[6], 1.0)
    text = out.read_text(encoding="utf-8")
    for why in ("column 'rid' left out: a row id", "column 'version' left out: constant",
                "column 'kind' left out: label-like"):
        assert why in summary and why in text
    assert f"[[features]]  # observed 1 .. {int(pd.read_csv(path)[ODD[4]].max())}" in text
    ds = load("tabular", path=path, label_column="class", schema_file=out)
    assert ds.schema.features == written.features
    assert ds.schema.relations == written.relations
    printed = invoke("schema", path, "--label-column", "class")  # to stdout: the same file
    assert printed.stdout == text and tomllib.loads(printed.stdout)["replace"] is True


def test_no_discover_writes_no_relations_or_value_sets(tmp_path):
    path = flows_csv(tmp_path)
    result = invoke("schema", path, "--label-column", "class", "--no-discover",
                    "--benign-label", "benign", "--max-categories", "1")
    data = tomllib.loads(result.stdout)
    assert "relations" not in data and all("values" not in f for f in data["features"])
    assert ODD[3] not in [f["name"] for f in data["features"]]  # 2 categories > 1
    assert "relations: 0 enforced" in result.stderr


def test_unsw_schema_round_trip(shared_datasets, tmp_path):
    path = shared_datasets / UNSW
    if not path.is_file():
        pytest.skip(f"{path} not found")
    out = tmp_path / "unsw.toml"
    result = invoke("schema", path, "--label-column", "label", "--out", out)
    assert "column 'id' left out" in result.stderr
    assert "column 'attack_cat' left out: label-like" in result.stderr
    written = FeatureSchema.from_file(out, replaces=True)
    assert "id" not in written.names and "attack_cat" not in written.names
    assert written["ct_srv_src"].lower == 1.0 and written.benign_label == "0"
    ds = load("tabular", path=path, label_column="label", schema_file=out)
    assert ds.schema.features == written.features


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def cases(folder: Path, good: Path) -> dict[str, tuple[list[str], str]]:
    (folder / "adir").mkdir()
    (folder / "adir.toml").mkdir()
    lines = good.read_text().splitlines()
    lines[5] = "lots" + lines[5][lines[5].index(","):]  # data row 5: a word in column rid
    (folder / "stray.csv").write_text("\n".join(lines) + "\n")
    (folder / "ids.csv").write_text("n,label\n" + "".join(f"{i},{'ab'[i % 2]}\n"
                                                          for i in range(30)))
    g, base = str(good), ["data", "schema"]
    out = ["--out", str(folder / "s.toml")]
    return {
        "missing file": ([*base, str(folder / "nope.csv"), "--label-column", "class", *out],
                         r"nope\.csv"),
        "a directory": ([*base, str(folder / "adir"), "--label-column", "class", *out],
                        r"adir: is a directory"),
        "no label column": ([*base, g, "--label-column", "verdict", *out], r"'verdict'"),
        "benign label absent": ([*base, g, "--label-column", "class", "--benign-label", "ok",
                                 *out], r"no row has the benign label 'ok'"),
        "out folder missing": ([*base, g, "--label-column", "class", "--out",
                                str(folder / "no" / "s.toml")], r"folder .*no does not exist"),
        "out is a directory": ([*base, g, "--label-column", "class", "--out",
                                str(folder / "adir.toml")], r"is a directory"),
        "out not toml": ([*base, g, "--label-column", "class", "--out", str(folder / "s.csv")],
                         r"must end in \.toml"),
        "negative max categories": ([*base, g, "--label-column", "class", "--max-categories",
                                     "-1", *out], r"--max-categories: expected an integer >= 0"),
        "wrong delimiter": ([*base, g, "--label-column", "class", "--delimiter", ";", *out],
                            r"flows\.csv, header: found 1 column"),
        "stray word": ([*base, str(folder / "stray.csv"), "--label-column", "class", *out],
                       r"stray\.csv, row 5, column 'rid': expected a number, got 'lots'"),
        "nothing usable": ([*base, str(folder / "ids.csv"), "--label-column", "label",
                            "--benign-label", "a", *out], r"no usable feature columns"),
        "show-schema and json": (["data", "info", g, "--label-column", "class", "--json",
                                  "--show-schema"], r"--json and --show-schema: choose one"),
    }


@pytest.mark.parametrize("name", ["missing file", "a directory", "no label column",
                                  "benign label absent", "out folder missing",
                                  "out is a directory", "out not toml",
                                  "negative max categories", "wrong delimiter", "stray word",
                                  "nothing usable", "show-schema and json"])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(name, tmp_path, capsys):
    good = flows_csv(tmp_path)
    argv, pattern = cases(tmp_path, good)[name]
    before = snapshot(tmp_path)
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("advsec: error: "), captured.err
    assert re.search(pattern, lines[0]), lines[0]
    assert "Traceback" not in captured.err + captured.out
    assert snapshot(tmp_path) == before


def test_info_show_schema_prints_the_schema_in_effect(tmp_path):
    path = flows_csv(tmp_path)
    result = invoke("info", path, "--label-column", "class", "--show-schema")
    (tmp_path / "shown.toml").write_text(result.stdout, encoding="utf-8")
    shown = FeatureSchema.from_file(tmp_path / "shown.toml", replaces=True)
    ds = load("tabular", path=path, label_column="class")
    assert shown == ds.schema
    assert "column 'rid' left out" in result.stdout  # the loader's notes head the file
    for name, options in (("synthetic", {}), ("cicids2017", {"root": CICIDS})):
        args = [f"--{k}={v}" for k, v in options.items()]
        builtin = invoke("info", name, *args, "--show-schema")
        (tmp_path / f"{name}.toml").write_text(builtin.stdout, encoding="utf-8")
        schema = load(name, **options).schema
        assert FeatureSchema.from_file(tmp_path / f"{name}.toml", replaces=True) == schema
        assert len(schema.relations) > 0 or name == "synthetic"
