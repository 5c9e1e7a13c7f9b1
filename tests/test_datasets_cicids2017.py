"""CIC-IDS2017 on the fixture written with the published MachineLearningCVE column list
(tests/fixtures/cicids2017, made by make_fixture.py): every documented quirk and its count."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from advsec.datasets import load
from advsec.datasets.cicids2017 import find_day_files
from advsec.errors import DataError, SchemaError
from advsec.features.space import FeatureSpace

FIXTURE = Path(__file__).parent / "fixtures" / "cicids2017"
PUBLISHED = {"benign": 24, "FTP-Patator": 5, "SSH-Patator": 5, "DoS Hulk": 6,
             "Web Attack - Brute Force": 4}


@pytest.fixture(scope="module")
def cic():
    return load("cicids2017", root=FIXTURE, scheme="attack")


def test_fixture_has_the_published_header_quirks():
    header = (FIXTURE / "Tuesday-WorkingHours.pcap_ISCX.csv").read_bytes().splitlines()[0]
    names = header.decode().split(",")
    assert len(names) == 79 and names[0] == " Destination Port" and names[-1] == " Label"
    assert [n.strip() for n in names].count("Fwd Header Length") == 2


def test_rows_labels_and_notes(cic):
    both = pd.concat([cic.train, cic.test])
    counts = both["label"].value_counts().to_dict()
    # one DoS Hulk or Web Attack row has the negative Flow IAT Min and is dropped
    assert sum(counts.values()) == sum(PUBLISHED.values()) - 1
    assert counts["benign"] == 24 and counts["FTP-Patator"] == 5 and counts["SSH-Patator"] == 5
    assert counts["DoS Hulk"] + counts["Web Attack - Brute Force"] == 9
    notes = " | ".join(cic.notes)
    assert "dropped 3 empty rows" in notes
    assert "'Flow Bytes/s': 1 Infinity -> column max" in notes and "1 NaN/empty -> 0" in notes
    assert "'Flow Packets/s': 2 Infinity -> column max" in notes
    assert "dropped 1 rows with values below the physical lower bound in ['Flow IAT Min']" in notes
    assert notes.count("duplicate 'Fwd Header Length' column (identical") == 2
    assert cic.classes[0] == "benign" and cic.benign_label == "benign"


def test_infinity_becomes_the_column_max(cic):
    both = pd.concat([cic.train, cic.test])
    for col in ("Flow Bytes/s", "Flow Packets/s"):
        values = both[col].to_numpy()
        assert np.isfinite(values).all()
    # a zero-duration flow (Infinity packets/s in the file) carries the largest packet rate
    zero = both["Flow Duration"] == 0
    assert zero.sum() >= 1
    assert (both.loc[zero, "Flow Packets/s"] == both["Flow Packets/s"].max()).all()


def test_schema_and_types(cic):
    assert len(cic.schema) == 77 and "Fwd Header Length.1" not in cic.train.columns
    assert [f.name for f in cic.schema if not f.mutable] == ["Destination Port"]
    assert cic.train["Flow Duration"].dtype == np.int64
    assert cic.train["Flow Bytes/s"].dtype == np.float64


def test_split_is_stratified_and_seeded():
    a = load("cicids2017", root=FIXTURE, seed=5)
    b = load("cicids2017", root=FIXTURE, seed=5)
    c = load("cicids2017", root=FIXTURE, seed=6)
    pd.testing.assert_frame_equal(a.test, b.test)
    assert not a.test.equals(c.test)
    assert (a.test["attack"] == "benign").sum() == round(0.3 * 24)
    assert a.classes == ["benign", "attack"]


def test_category_scheme_and_file_filter():
    ds = load("cicids2017", root=FIXTURE, scheme="category", files=["Tuesday"])
    assert ds.classes == ["benign", "bruteforce"]
    assert len(ds.train) + len(ds.test) == 24
    assert len(find_day_files(FIXTURE)) == 2
    with pytest.raises(DataError, match="no MachineLearningCVE CSV files matching"):
        find_day_files(FIXTURE, ["Saturday"])


def test_round_trip_and_validity(cic):
    space = FeatureSpace(cic.schema).fit(cic.train)
    for table in (cic.train, cic.test):
        raw = table[cic.schema.names]
        pd.testing.assert_frame_equal(space.decode(space.encode(raw), reference=raw), raw,
                                      check_dtype=False)
        assert space.valid_mask(raw).all()


def test_keeping_negative_values_flags_them(tmp_path):
    ds = load("cicids2017", root=FIXTURE, negative="keep", seed=0)
    both = pd.concat([ds.train, ds.test])
    assert len(both) == sum(PUBLISHED.values())
    space = FeatureSpace(ds.schema).fit(ds.train, check=False)
    checks = space.validate(both[ds.schema.names])
    assert checks["bound:Flow IAT Min"].sum() == 1
    assert checks.any(axis=1).sum() == 1
    # a training table with a record the schema rejects stops before any attack
    with pytest.raises(SchemaError, match=r"breaks bound 'Flow IAT Min' \(Flow IAT Min=.*1 of "
                                          r"44 training records do\)"):
        FeatureSpace(ds.schema).fit(both)


def test_a_single_day_file_as_root_and_a_missing_folder(tmp_path):
    ds = load("cicids2017", root=FIXTURE / "Wednesday-workingHours.pcap_ISCX.csv")
    assert len(ds.train) + len(ds.test) == 19
    with pytest.raises(DataError, match="ids-2017"):
        load("cicids2017", root=tmp_path)
