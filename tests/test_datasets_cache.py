"""The opt-in parse cache ($ADVSEC_PARSE_CACHE): same tables, keyed by file identity."""

from __future__ import annotations

import os

import pandas as pd

from advsec.datasets import load
from advsec.datasets._readers import CACHE_ENV, parse_cache_dir

LINE = ("0,tcp,http,SF,181,5450,0,0,0,0,0,1,0,0,0,0,0,0,0,0,0,0,8,8,0.00,0.00,0.00,0.00,1.00,"
        "0.00,0.00,9,9,1.00,0.00,0.11,0.00,0.00,0.00,0.00,0.00,{label}\n")


def test_off_by_default(monkeypatch):
    monkeypatch.delenv(CACHE_ENV, raising=False)
    assert parse_cache_dir() is None
    monkeypatch.setenv(CACHE_ENV, "0")
    assert parse_cache_dir() is None


def test_cached_tables_equal_parsed_ones_and_follow_file_changes(tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    f = data / "kddcup.data_10_percent"
    f.write_text("".join(LINE.format(label=lab) for lab in ["normal.", "smurf."] * 5))
    monkeypatch.delenv(CACHE_ENV, raising=False)
    plain = load("kdd99", root=data, scheme="attack", test="split")
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    first = load("kdd99", root=data, scheme="attack", test="split")
    files = list((tmp_path / "cache").iterdir())
    assert len(files) == 1 and files[0].name.startswith("kddcup.data_10_percent.")
    second = load("kdd99", root=data, scheme="attack", test="split")
    for ds in (first, second):
        pd.testing.assert_frame_equal(ds.train, plain.train)
        pd.testing.assert_frame_equal(ds.test, plain.test)
    f.write_text("".join(LINE.format(label=lab) for lab in ["normal.", "back."] * 6))
    os.utime(f, ns=(1, 1))
    third = load("kdd99", root=data, scheme="attack", test="split")
    assert len(third.train) + len(third.test) == 12 and "back" in third.classes
    assert len(list((tmp_path / "cache").iterdir())) == 2
