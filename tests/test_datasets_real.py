"""The real files in ../shared/datasets: exact row and label counts from the folder READMEs,
typed tables, decode(encode(raw)) == raw, every record valid, and `advsec data info`."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from advsec.cli.data import app
from advsec.datasets import load
from advsec.features.schema import FeatureKind
from advsec.features.space import OTHER, FeatureSpace

# label counts from kdd99/README.md (trailing dots removed)
KDD10 = {
    "smurf": 280_790, "neptune": 107_201, "normal": 97_278, "guess_passwd": 53, "back": 2_203,
    "satan": 1_589, "warezmaster": 20, "ipsweep": 1_247, "portsweep": 1_040,
    "warezclient": 1_020, "teardrop": 979, "pod": 264, "nmap": 231, "buffer_overflow": 30,
    "land": 21, "multihop": 7, "rootkit": 10, "imap": 12, "ftp_write": 8, "loadmodule": 9,
    "phf": 4, "perl": 3, "spy": 2,
}
CORRECTED = {
    "smurf": 164_091, "neptune": 58_001, "normal": 60_593, "snmpgetattack": 7_741,
    "mailbomb": 5_000, "guess_passwd": 4_367, "back": 1_098, "satan": 1_633,
    "snmpguess": 2_406, "warezmaster": 1_602, "ipsweep": 306, "portsweep": 354, "mscan": 1_053,
    "teardrop": 12, "apache2": 794, "processtable": 759, "saint": 736, "pod": 87, "nmap": 84,
    "httptunnel": 158, "buffer_overflow": 22, "land": 9, "multihop": 18, "rootkit": 13,
    "named": 17, "sendmail": 17, "ps": 16, "imap": 1, "xterm": 13, "ftp_write": 3,
    "loadmodule": 2, "xlock": 9, "phf": 2, "perl": 2, "xsnoop": 4, "sqlattack": 2,
    "udpstorm": 2, "worm": 2,
}
# nsl-kdd/README.md
NSL_TRAIN = {
    "normal": 67_343, "neptune": 41_214, "satan": 3_633, "ipsweep": 3_599, "smurf": 2_646,
    "portsweep": 2_931, "guess_passwd": 53, "nmap": 1_493, "warezmaster": 20, "back": 956,
    "teardrop": 892, "warezclient": 890, "pod": 201, "buffer_overflow": 30, "multihop": 7,
    "rootkit": 10, "land": 18, "imap": 11, "ftp_write": 8, "loadmodule": 9, "phf": 4, "perl": 3,
    "spy": 2,
}
NSL_TEST = {
    "normal": 9_711, "neptune": 4_657, "satan": 735, "ipsweep": 141, "smurf": 665,
    "portsweep": 157, "guess_passwd": 1_231, "mscan": 996, "nmap": 73, "warezmaster": 944,
    "back": 359, "apache2": 737, "processtable": 685, "teardrop": 12, "snmpguess": 331,
    "saint": 319, "mailbomb": 293, "snmpgetattack": 178, "pod": 41, "httptunnel": 133,
    "buffer_overflow": 20, "multihop": 18, "rootkit": 13, "named": 17, "land": 7, "ps": 15,
    "sendmail": 14, "xterm": 13, "imap": 1, "xlock": 9, "ftp_write": 3, "loadmodule": 2,
    "phf": 2, "xsnoop": 4, "perl": 2, "sqlattack": 2, "udpstorm": 2, "worm": 2,
}
# unsw-nb15/README.md
UNSW = {
    "Normal": 37_000, "Generic": 18_871, "Exploits": 11_132, "Fuzzers": 6_062, "DoS": 4_089,
    "Reconnaissance": 3_496, "Analysis": 677, "Backdoor": 583, "Shellcode": 378, "Worms": 44,
}


def counts(table: pd.DataFrame, column: str = "label") -> dict[str, int]:
    return {str(k): int(v) for k, v in table[column].value_counts().items()}


@pytest.fixture(scope="module")
def kdd99(shared_datasets):
    return load("kdd99", root=shared_datasets / "kdd99", scheme="attack")


@pytest.fixture(scope="module")
def nsl(shared_datasets):
    return load("nsl-kdd", root=shared_datasets / "nsl-kdd", scheme="attack")


@pytest.fixture(scope="module")
def unsw(shared_datasets):
    return load("unsw-nb15", root=shared_datasets / "unsw-nb15", scheme="category")


def test_kdd99_rows_and_attack_counts_match_the_readme(kdd99):
    assert counts(kdd99.train) == KDD10 and len(kdd99.train) == 494_021
    assert counts(kdd99.test) == CORRECTED and len(kdd99.test) == 311_029
    assert kdd99.classes[0] == "normal" and set(kdd99.classes) == set(KDD10) | set(CORRECTED)
    assert len(set(CORRECTED) - set(KDD10)) == 17
    assert any("17 attack names absent from training" in n for n in kdd99.notes)
    assert (kdd99.train["attack"] == kdd99.train["label"]).all()


def test_nsl_kdd_rows_and_attack_counts_match_the_readme(nsl):
    assert counts(nsl.train) == NSL_TRAIN and len(nsl.train) == 125_973
    assert counts(nsl.test) == NSL_TEST and len(nsl.test) == 22_544
    assert nsl.train["difficulty"].between(0, 21).all()
    assert "difficulty" not in nsl.schema.names and "attack" not in nsl.schema.names


def test_nsl_kdd_other_files(shared_datasets):
    ds = load("nsl-kdd", root=shared_datasets / "nsl-kdd", train="20percent", test="21",
              scheme="attack")
    assert (len(ds.train), len(ds.test)) == (25_192, 11_850)
    assert (ds.train["label"].nunique(), ds.test["label"].nunique()) == (22, 38)
    assert ds.test["difficulty"].between(0, 20).all()


def test_category_scheme_maps_every_test_only_attack(shared_datasets):
    ds = load("kdd99", root=shared_datasets / "kdd99", scheme="category")
    assert ds.classes == ["normal", "dos", "probe", "r2l", "u2r"]
    assert counts(ds.train) == {"dos": 391_458, "normal": 97_278, "probe": 4_107, "r2l": 1_126,
                                "u2r": 52}
    assert counts(ds.test) == {"dos": 229_853, "normal": 60_593, "r2l": 16_189,
                               "probe": 4_166, "u2r": 228}
    assert len(ds.test) == 311_029  # nothing dropped: the table covers all 38 names


def test_kdd99_split_and_duplicates(shared_datasets):
    ds = load("kdd99", root=shared_datasets / "kdd99", test="split", drop_duplicates=True,
              seed=3)
    assert len(ds.train) + len(ds.test) == 145_586  # 494,021 - 348,435 duplicates
    assert any("348,435 exact duplicate rows" in n for n in ds.notes)
    assert len(ds.test) == pytest.approx(0.3 * 145_586, abs=30)
    both = pd.concat([ds.train, ds.test])
    assert not both.duplicated(subset=[*ds.schema.names, "attack"]).any()


def test_unsw_nb15_counts_and_stratified_split(unsw):
    both = pd.concat([unsw.train, unsw.test])
    assert len(both) == 82_332 and counts(both) == UNSW
    assert (len(unsw.train), len(unsw.test)) == (57_632, 24_700)
    for cat, n in UNSW.items():
        assert (unsw.test["label"] == cat).sum() == round(0.3 * n)
    assert unsw.classes[0] == "Normal" and unsw.benign_label == "Normal"
    assert any("test partition" in n for n in unsw.notes)
    assert "id" not in unsw.train.columns


def test_unsw_binary_labels_follow_the_label_column(shared_datasets):
    ds = load("unsw-nb15", root=shared_datasets / "unsw-nb15", seed=0)
    both = pd.concat([ds.train, ds.test])
    assert counts(both) == {"attack": 45_332, "normal": 37_000}
    assert ((both["label"] == "normal") == (both["attack_cat"] == "Normal")).all()


@pytest.mark.parametrize("which", ["kdd99", "nsl", "unsw"])
def test_tables_are_typed_by_the_schema(which, request):
    ds = request.getfixturevalue(which)
    for table in (ds.train, ds.test):
        for f in ds.schema:
            kind = table[f.name].dtype
            if f.kind is FeatureKind.CATEGORICAL:
                assert pd.api.types.is_string_dtype(kind), f.name
            elif f.kind is FeatureKind.CONTINUOUS:
                assert kind == np.float64, f.name
            else:
                assert kind == np.int64, f.name
        assert pd.api.types.is_string_dtype(table["label"].dtype)
    immutable = {f.name for f in ds.schema if not f.mutable}
    assert immutable in ({"protocol_type", "service", "flag"}, {"proto", "service", "state"})


@pytest.mark.parametrize("which", ["kdd99", "nsl", "unsw"])
def test_round_trip_and_validity_on_every_real_record(which, request):
    ds = request.getfixturevalue(which)
    space = FeatureSpace(ds.schema).fit(ds.train)
    for table in (ds.train, ds.test):
        raw = table[ds.schema.names]
        x = space.encode(raw)
        assert x.dtype == np.float32 and x.min() >= 0.0 and x.max() <= 1.0
        pd.testing.assert_frame_equal(space.decode(x, reference=raw), raw, check_dtype=False)
        checks = space.validate(raw)
        stated = {f"relation:{r.name}": r.holds_on for r in space.relations_}
        for name in checks.columns:  # everything holds, a relation with holds_on on its share
            share = stated.get(name)
            if table is ds.test and name.startswith("values:"):
                share = 0.999  # "observed" value sets come from the training split
            held = 1.0 - float(checks[name].mean())
            assert held == 1.0 if share is None else held >= share - 0.01, (name, held)
        plain = space.decode(x)  # no reference: exact for categories, flags and rates
        for f in ds.schema:
            if f.kind is FeatureKind.CATEGORICAL:
                seen = raw[f.name].isin(space.categories_[f.name])
                assert (plain[f.name][seen] == raw[f.name][seen]).all(), f.name
                assert (plain[f.name][~seen] == OTHER).all(), f.name
            elif f.kind is FeatureKind.BINARY or (f.upper == 1.0 and f.lower == 0.0):
                assert (plain[f.name].to_numpy() == raw[f.name].to_numpy()).all(), f.name


def info_json(root, name: str) -> dict:
    result = CliRunner().invoke(app, ["info", name, "--root", str(root), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_cli_info_prints_the_readme_counts(shared_datasets):
    nsl = info_json(shared_datasets / "nsl-kdd", "nsl-kdd")
    assert nsl["splits"]["train"]["rows"] == 125_973 and nsl["splits"]["test"]["rows"] == 22_544
    assert nsl["splits"]["train"]["classes"] == {"normal": 67_343, "attack": 58_630}
    assert nsl["splits"]["test"]["classes"] == {"normal": 9_711, "attack": 12_833}
    kdd = info_json(shared_datasets / "kdd99", "kdd99")
    assert kdd["splits"]["train"]["classes"] == {"normal": 97_278, "attack": 396_743}
    assert kdd["splits"]["test"]["classes"] == {"normal": 60_593, "attack": 250_436}
    unsw = info_json(shared_datasets / "unsw-nb15", "unsw-nb15")
    total = {c: unsw["splits"]["train"]["classes"][c] + unsw["splits"]["test"]["classes"][c]
             for c in ("normal", "attack")}
    assert total == {"normal": 37_000, "attack": 45_332}
    assert unsw["features"] == 42 and kdd["features"] == 41 and nsl["relations"] == 9


def test_cli_info_table_output(shared_datasets):
    result = CliRunner().invoke(app, ["info", "nsl-kdd", "--root",
                                      str(shared_datasets / "nsl-kdd"), "--scheme", "category"])
    assert result.exit_code == 0, result.output
    for text in ("125,973", "22,544", "148,517", "dos", "u2r", "protocol_type"):
        assert text in result.output
