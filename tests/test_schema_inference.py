"""Schema inference for a user's own table (advsec.datasets.inference), the loader's constraint
discovery step, and the TOML schema writer (advsec.features.schema_toml).

The real UNSW-NB15 testing CSV is read once per module through the tabular loader with only
``label_column="label"``; the rule cases are small synthetic tables."""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from advsec.datasets import load
from advsec.datasets.inference import cross_fit_folds, describe_features, label_score
from advsec.datasets.tabular import infer_schema, read_table
from advsec.errors import ConfigError
from advsec.features.constraints import VIOLATION_EPS, relations_from_schema
from advsec.features.schema import Feature, FeatureKind, FeatureSchema
from advsec.features.schema_toml import schema_to_toml, toml_string

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

UNSW = Path("unsw-nb15") / "UNSW_NB15_testing-set.csv.gz"
CT = ["ct_srv_src", "ct_state_ttl", "ct_dst_ltm", "ct_src_dport_ltm", "ct_dst_sport_ltm",
      "ct_dst_src_ltm", "ct_ftp_cmd", "ct_flw_http_mthd", "ct_src_ltm", "ct_srv_dst"]


# ----------------------------------------------------------------------------- UNSW-NB15


@pytest.fixture(scope="module")
def unsw_path(shared_datasets) -> Path:
    path = shared_datasets / UNSW
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return path


@pytest.fixture(scope="module")
def unsw(unsw_path):
    return load("tabular", path=unsw_path, label_column="label")


@pytest.fixture(scope="module")
def unsw_shuffled(unsw_path, tmp_path_factory):
    df = pd.read_csv(unsw_path)
    path = tmp_path_factory.mktemp("unsw") / "shuffled.csv"
    df.sample(frac=1.0, random_state=7).to_csv(path, index=False)
    return load("tabular", path=path, label_column="label", discover=False)  # inference only


def notes_of(ds) -> str:
    return " | ".join(ds.notes)


@pytest.mark.parametrize("which", ["unsw", "unsw_shuffled"])
def test_unsw_id_and_attack_cat_are_left_out(which, request):
    ds = request.getfixturevalue(which)
    notes = notes_of(ds)
    assert "id" not in ds.schema.names and "attack_cat" not in ds.schema.names
    assert "column 'id' left out: a row id" in notes
    how = "shuffled row id" if which == "unsw_shuffled" else "strictly increasing"
    assert how in notes
    assert ("column 'attack_cat' left out: label-like (alone it predicts benign vs attack with "
            "balanced accuracy 1.0000") in notes
    assert ds.benign_label == "0" and {"dur", "sbytes", "sttl", "service"} <= set(ds.schema.names)


def test_unsw_counts_keep_their_minimum_as_lower_bound(unsw):
    rows = pd.concat([unsw.train, unsw.test], ignore_index=True)
    checked = 0
    for name in CT:
        lo = rows[name].min()
        f = unsw.schema[name]
        if lo >= 1:
            assert f.lower == lo, name
            checked += 1
        else:
            assert f.lower == 0.0, name
    assert checked >= 6  # ct_srv_src, ct_dst_ltm, ... never 0 in the file
    assert unsw.schema["spkts"].lower == rows["spkts"].min() == 1
    for f in unsw.schema:  # every bound holds for every row of both splits
        if f.is_numeric:
            values = rows[f.name].to_numpy(dtype=np.float64)
            assert f.lower is None or values.min() >= f.lower, f.name
            assert f.upper is None or values.max() <= f.upper, f.name


def test_unsw_infers_in_a_few_seconds(unsw_path):
    df = read_table(unsw_path, label_column="label")
    start = time.perf_counter()
    infer_schema(df, label_column="label", benign_label="0")
    assert time.perf_counter() - start < 5.0


def test_unsw_discovered_relations_hold_on_the_training_rows_they_claim(unsw):
    assert len(unsw.schema.relations) > 0
    assert any(n.startswith("constraint discovery: ") for n in unsw.notes)
    check_relations_hold(unsw)
    # the rate and load relations are derived values found on ~98.5 % of the rows: enforced
    # with their share
    derived = {r["target"]: r for r in unsw.schema.relations if r["type"] == "formula"}
    assert {"rate", "sload", "dload"} <= set(derived)
    assert derived["rate"]["expr"] == "(spkts + dpkts - 1) / dur"


def check_relations_hold(ds) -> None:
    """Every relation holds on every training row, or (derived values) on at least the share
    its holds_on states."""
    rels = relations_from_schema(ds.schema)
    numeric = [f.name for f in ds.schema if f.is_numeric]
    raw = torch.tensor(ds.train[numeric].to_numpy(dtype=np.float64))
    for rel in rels:
        rel.bind({n: j for j, n in enumerate(numeric)})
        broken = (rel.violation(raw) > VIOLATION_EPS).double().mean().item()
        if rel.holds_on == 1.0:
            assert broken == 0.0, rel.name
        else:
            assert rel.type_name in ("formula", "ratio") and rel.holds_on is not None
            assert 0.98 <= rel.holds_on <= 1.0 - broken + 1e-4, rel.name


# ----------------------------------------------------------------------------- synthetic rules


def table(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    attack = np.arange(n) % 3 == 0
    return pd.DataFrame({
        "weak": np.round(rng.normal(0, 1, n) + 1.2 * attack, 4),
        "proto": rng.choice(["tcp", "udp", "icmp"], n),
        "count": rng.integers(0, 50, n),
        "label": np.where(attack, "attack", "benign"),
    })


def infer(df: pd.DataFrame, **kwargs: Any) -> tuple[FeatureSchema, str]:
    notes: list[str] = []
    schema = infer_schema(df, label_column="label", benign_label="benign", notes=notes, **kwargs)
    return schema, " | ".join(notes)


def test_legit_weak_columns_are_kept():
    schema, notes = infer(table())
    assert schema.names == ["weak", "proto", "count"], notes
    assert "left out" not in notes


def test_constant_columns_are_left_out():
    df = table().assign(const=7, same="x", empty=None)
    schema, notes = infer(df)
    assert schema.names == ["weak", "proto", "count"]
    assert "column 'const' left out: constant (every training row holds '7')" in notes
    assert "column 'same' left out: constant (every training row holds 'x')" in notes
    assert "column 'empty' left out: every value is empty" in notes


def test_row_ids_monotone_or_shuffled_are_left_out():
    n = 400
    rng = np.random.default_rng(1)
    sparse = np.sort(rng.choice(np.arange(2 * n), n, replace=False))  # covers about 50 %
    df = table(n).assign(up=np.arange(5, 5 + n), down=np.arange(n, 0, -1),
                         shuffled=rng.permutation(np.arange(10_000, 10_000 + n)),
                         sparse=rng.permutation(sparse))
    schema, notes = infer(df)
    assert "column 'up' left out: a row id (strictly increasing integers)" in notes
    assert "column 'down' left out: a row id (strictly decreasing integers)" in notes
    assert "column 'shuffled' left out: a row id (distinct integers covering 100% of " \
           "10000..10399: a shuffled row id)" in notes
    # distinct integers, but a gappy set: a measurement, not an id
    assert "sparse" in schema.names and schema["sparse"].kind is FeatureKind.INTEGER


def test_a_shuffled_id_is_left_out_after_a_split(tmp_path):
    df = table(300).assign(rid=np.random.default_rng(2).permutation(300))
    df.to_csv(tmp_path / "t.csv", index=False)
    ds = load("tabular", path=tmp_path / "t.csv", label_column="label", discover=False)
    assert "rid" not in ds.schema.names  # 70 % of the ids in training: the cover uses both splits
    assert "column 'rid' left out: a row id (distinct integers covering 100%" in notes_of(ds)


def test_a_leaking_numeric_column_is_left_out_in_either_direction():
    df = table()
    attack = df["label"] == "attack"
    rng = np.random.default_rng(3)
    df["bytes"] = np.where(attack, rng.integers(10_000, 10**7, len(df)), rng.integers(0, 800,
                                                                                     len(df)))
    df["ttl"] = np.where(attack, rng.normal(30, 3, len(df)), rng.normal(120, 3, len(df)))
    schema, notes = infer(df)
    assert schema.names == ["weak", "proto", "count"]
    for name in ("bytes", "ttl"):
        assert f"column {name!r} left out: label-like (alone it predicts benign vs attack with " \
               "balanced accuracy 1.0000, 2-fold cross-fitted; label_like=0.99)" in notes


def test_a_leaking_text_or_code_column_is_left_out_by_its_values():
    df = table()
    attack = (df["label"] == "attack").to_numpy()
    i = np.arange(len(df))
    df["attack_cat"] = np.where(attack, np.where(i % 2 == 0, "DoS", "Exploits"), "Normal")
    # codes 1 and 3 are attacks, 2 and 4 benign: no single threshold, but the values tell
    df["code"] = np.where(attack, np.where(i % 2 == 0, 1, 3), np.where(i % 2 == 0, 2, 4))
    schema, notes = infer(df)
    assert schema.names == ["weak", "proto", "count"]
    assert "column 'attack_cat' left out: label-like" in notes
    assert "column 'code' left out: label-like" in notes


def test_label_like_threshold_is_a_keyword():
    df = table()
    kept, _ = infer(df, label_like=None)
    assert kept.names == ["weak", "proto", "count"]
    strict, notes = infer(df, label_like=0.6)  # the weak column predicts better than that
    assert "weak" not in strict.names and "column 'weak' left out: label-like" in notes
    for bad in (0.5, 1.5, True, "high"):
        with pytest.raises(ConfigError, match="label_like: expected a balanced accuracy"):
            infer(df, label_like=bad)


def test_small_tables_skip_the_label_like_rule():
    df = pd.DataFrame({"x": [1.0, 2, 3, 4, 5, 6, 7, 8, 10.5, 11.5, 12.5, 13.5, 14.5, 15.5],
                       "label": ["benign"] * 8 + ["attack"] * 6})
    schema, _ = infer(df)
    assert schema.names == ["x"]  # a perfect separation, but 6 attack rows: too few to tell


def test_integer_lower_bounds():
    df = table().assign(ones=lambda d: d["count"] + 3, neg=lambda d: d["count"] - 5)
    also = df.head(5).assign(ones=2)
    schema, _ = infer(df, also=also)
    assert schema["ones"].lower == 2.0  # the minimum over training and test rows
    assert schema["count"].lower == 0.0 and schema["neg"].lower is None
    assert schema["weak"].lower is None


def test_label_score_known_values():
    n = 200
    attack = np.arange(n) % 4 == 0
    folds = cross_fit_folds(attack)
    assert folds is not None and set(np.unique(folds)) == {0, 1}
    for k in (0, 1):  # stratified halves
        assert abs(int(attack[folds == k].sum()) - int(attack.sum()) / 2) <= 1
    assert label_score(attack.astype(int), attack, folds, by_value=True) == 1.0
    assert label_score(np.where(attack, 5.0, -5.0), attack, folds, by_value=False) == 1.0
    assert label_score(np.where(attack, -5.0, 5.0), attack, folds, by_value=False) == 1.0
    assert label_score(np.zeros(n), attack, folds, by_value=True) == 0.5
    flipped = attack.copy()
    flipped[[1, 2, 3, 0]] = ~flipped[[1, 2, 3, 0]]  # 3 benign rows look like attacks, 1 reverse
    expected = []
    for k in (0, 1):  # the per-value majority is the identity: score the flipped values
        y, pred = attack[folds != k], flipped[folds != k]
        expected.append(0.5 * (pred[y].mean() + (~pred[~y]).mean()))
    assert math.isclose(label_score(flipped, attack, folds, by_value=True), np.mean(expected))
    assert cross_fit_folds(np.arange(30) < 9) is None  # 9 attack rows: the rule is skipped


def test_describe_features_states_range_and_distinct_values():
    df = table()
    schema, _ = infer(df)
    notes = describe_features(df, schema)
    lo, hi, n = df["count"].min(), df["count"].max(), df["count"].nunique()
    assert notes["count"] == f"observed {lo} .. {hi}, {n} distinct values"
    assert notes["proto"].startswith("3 categories: ")


# ----------------------------------------------------------------------------- discovery step


@dataclass(frozen=True)
class FakeDiscovered:
    relations: list[dict[str, Any]]
    candidates: list[dict[str, Any]]
    value_sets: dict[str, list[float]]
    notes: list[str]


def fake_discover(monkeypatch, calls: list[Any]) -> None:
    import advsec.features.discovery as discovery

    def discover(df: pd.DataFrame, schema: FeatureSchema, *, min_share: float = 0.99) -> Any:
        calls.append((len(df), schema.names))
        return FakeDiscovered(
            relations=[{"type": "order", "name": "c<=d", "features": ["c", "d"],
                        "holds_on": 1.0}],
            candidates=[{"type": "order", "name": "w<=d", "features": ["weak", "d"],
                         "holds_on": 0.995}],
            value_sets={"c": sorted({float(v) for v in df["c"]})}, notes=["checked 3 pairs"])

    monkeypatch.setattr(discovery, "discover", discover)


def relation_table(n: int = 300) -> pd.DataFrame:
    df = table(n)
    rng = np.random.default_rng(4)
    df["c"] = rng.choice([64, 128, 255], n)
    df["d"] = df["c"] + rng.integers(0, 5, n)
    return df


def test_the_loader_adds_discovered_relations_and_value_sets(tmp_path, monkeypatch):
    calls: list[Any] = []
    fake_discover(monkeypatch, calls)
    df = relation_table()
    df.loc[df.index[-1], "c"] = 32  # a value only one row has
    df.loc[df.index[-1], "d"] = 33
    df.to_csv(tmp_path / "t.csv", index=False)
    ds = load("tabular", path=tmp_path / "t.csv", label_column="label")
    assert calls == [(len(ds.train), ds.schema.names)]
    assert [r["name"] for r in ds.schema.relations] == ["c<=d"]
    observed = set(pd.concat([ds.train["c"], ds.test["c"]]).astype(float))
    assert ds.schema["c"].values == tuple(sorted(observed))  # training values, widened by test
    assert ds.schema["d"].values is None
    assert any(n.startswith("constraint discovery: 1 relation(s) hold on every training row")
               for n in ds.notes)
    off = load("tabular", path=tmp_path / "t.csv", label_column="label", discover=False)
    assert off.schema.relations == () and off.schema["c"].values is None and len(calls) == 1
    # a schema file's relations win: `relations` replaces, `add_relations` appends
    extra = '[[{key}]]\ntype = "order"\nname = "w<=c"\nfeatures = ["weak", "c"]\n'
    for key, names in (("relations", ["w<=c"]), ("add_relations", ["c<=d", "w<=c"])):
        (tmp_path / "s.toml").write_text(extra.format(key=key))
        ds = load("tabular", path=tmp_path / "t.csv", label_column="label",
                  schema_file=tmp_path / "s.toml")
        assert [r["name"] for r in ds.schema.relations] == names
    full = tmp_path / "full.toml"
    full.write_text('replace = true\n[[features]]\nname = "c"\nkind = "integer"\n')
    n_calls = len(calls)
    ds = load("tabular", path=tmp_path / "t.csv", label_column="label", schema_file=full)
    assert ds.schema.relations == () and len(calls) == n_calls  # nothing inferred: no discovery


def test_real_discovery_relations_hold_on_the_training_rows(tmp_path):
    relation_table().to_csv(tmp_path / "t.csv", index=False)
    ds = load("tabular", path=tmp_path / "t.csv", label_column="label")
    assert [r["features"] for r in ds.schema.relations] == [["c", "d"]]  # c <= d, by design
    check_relations_hold(ds)
    with pytest.raises(ConfigError, match="discover must be true or false"):
        load("tabular", path=tmp_path / "t.csv", label_column="label", discover="yes")


# ----------------------------------------------------------------------------- TOML writer

AWKWARD = ["a b", 'quo"te', "back\\slash", "tab\there", "new\nline", "ünï ©ødé", "日本",
           "#hash", "=eq", "[br]", "'single'", "\x00nul", "\x7fdel", "e\u2028x", "-", "1.5"]
names = st.one_of(st.sampled_from(AWKWARD),
                  st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12))
finite = st.floats(-1e300, 1e300, allow_nan=False, allow_infinity=False)
texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=10)


@st.composite
def features(draw: Any, name: str) -> Feature:
    kind = draw(st.sampled_from(list(FeatureKind)))
    if kind is FeatureKind.CATEGORICAL:
        cats = draw(st.none() | st.lists(texts, min_size=1, max_size=4, unique_by=str))
        return Feature(name, kind, mutable=draw(st.booleans()), description=draw(texts),
                       categories=tuple(cats) if cats is not None else None)
    bounds = sorted(draw(st.lists(finite, min_size=2, max_size=2)))
    lower = draw(st.sampled_from([None, bounds[0]]))
    upper = draw(st.sampled_from([None, bounds[1]]))
    log1p = lower is not None and lower >= 0 and draw(st.booleans())
    values = draw(st.none() | st.just("observed") | st.lists(finite, min_size=1, max_size=4)
                  | st.lists(st.integers(-2**60, 2**60).map(float), min_size=1, max_size=4))
    return Feature(name, kind, lower=lower, upper=upper, mutable=draw(st.booleans()),
                   transform="log1p" if log1p else "none", description=draw(texts),
                   on_bound_violation=draw(st.sampled_from(["error", "clip"])),
                   direction=draw(st.sampled_from(["any", "increase", "decrease"])),
                   values=tuple(values) if isinstance(values, list) else values)


@st.composite
def schemas(draw: Any) -> FeatureSchema:
    cols = draw(st.lists(names, min_size=1, max_size=6, unique=True))
    label = draw(names.filter(lambda s: s not in cols))
    feats = tuple(draw(features(n)) for n in cols)
    numeric = [f.name for f in feats if f.is_numeric]
    rels: list[dict[str, Any]] = []
    for i in range(draw(st.integers(0, 3)) if len(numeric) >= 2 else 0):
        pair = draw(st.permutations(numeric))[:2]
        rel: dict[str, Any] = draw(st.sampled_from([
            {"type": "order", "features": list(pair)},
            {"type": "sum", "features": list(pair), "target": draw(finite), "op": "<="},
            {"type": "zero_if_zero", "when": pair[0], "features": [pair[1]]},
            {"type": "ratio", "target": pair[0], "numerator": pair[1], "denominator": pair[0],
             "scale": draw(finite)}]))
        rel.update(name=f"r{i} {draw(names)}", tol=draw(finite.map(abs)),
                   holds_on=draw(st.floats(0, 1)), description=draw(texts))
        rels.append(rel)
    return FeatureSchema(features=feats, label=label, benign_label=draw(names),
                         relations=tuple(rels))


def round_trip(schema: FeatureSchema, folder: Path, **kwargs: Any) -> FeatureSchema:
    path = folder / "s.toml"
    path.write_text(schema_to_toml(schema, **kwargs), encoding="utf-8")
    return FeatureSchema.from_file(path, replaces=True)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(schema=schemas(), header=st.lists(texts, max_size=3), note=texts)
def test_written_schemas_read_back_equal(tmp_path, schema, header, note):
    notes = {f.name: note for f in schema.features}
    candidates = [{**dict(r), "holds_on": 0.5} for r in schema.relations]
    back = round_trip(schema, tmp_path, header=header, feature_notes=notes,
                      candidates=candidates)
    assert back.features == schema.features
    assert back.relations == schema.relations
    assert (back.label, back.benign_label) == (schema.label, schema.benign_label)


def test_writer_details(tmp_path):
    feats = (Feature("n", FeatureKind.INTEGER, lower=1.0, values=(1.0, 2.0, 1e20)),
             Feature("x", FeatureKind.CONTINUOUS, lower=0.1, upper=2.5e-7 + 1),
             Feature("p", FeatureKind.CATEGORICAL, mutable=False, categories=("tcp", "udp")),
             Feature("Flow Bytes/s", FeatureKind.CONTINUOUS, lower=0.0))
    rel = {"type": "formula", "name": "rate", "target": "Flow Bytes/s", "expr": "`n` * x",
           "tol": 0.0, "rtol": 1e-9, "holds_on": 1.0}
    cand = {"type": "order", "name": "n<=x", "features": ["n", "x"], "holds_on": 0.9973}
    schema = FeatureSchema(features=feats, benign_label="normal", relations=(rel,))
    text = schema_to_toml(schema, header=["file f.csv, 10 rows", "bad\nname"],
                          feature_notes={"n": "observed 1 .. 2"}, candidates=[cand])
    data = tomllib.loads(text)
    assert data["replace"] is True and data["label"] == "label"
    assert data["features"][0]["lower"] == 1 and isinstance(data["features"][0]["lower"], int)
    assert isinstance(data["features"][1]["lower"], float)
    assert data["features"][0]["values"] == [1, 2, 10**20]
    assert "[[features]]  # observed 1 .. 2" in text and "# bad\n# name" in text
    assert "# candidate: holds on 99.73% of the rows\n# [[relations]]\n" in text
    assert "direction" in text and "mutable" in text  # the guide comment
    assert round_trip(schema, tmp_path) == schema
    block = text[text.index("\n# [[relations]]\n"):].splitlines()
    enabled = text + "\n".join(line[2:] for line in block if line.startswith("# ")) + "\n"
    (tmp_path / "e.toml").write_text(enabled, encoding="utf-8")  # the candidate uncommented
    back = FeatureSchema.from_file(tmp_path / "e.toml", replaces=True)
    assert back.relations == (rel, cand)
    assert toml_string('a"b\\c\n\x01é') == '"a\\"b\\\\c\\n\\u0001é"'

