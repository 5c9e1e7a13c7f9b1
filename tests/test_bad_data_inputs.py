"""A corpus of malformed data files, schema files and model files.

Each case builds its input in ``tmp_path`` and asserts that loading raises an
:class:`~advsec.errors.AdvsecError` (no other exception) with a one-line message matching the
case's regex (the file name, the row/column/key and what was expected). A subset goes through
``advsec.cli.main``: exit code 2, one ``advsec: error:`` line on stderr, no traceback and no
output folder. Cases that must load (large fields below the limit, clipping) are tested too.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import save_file

from advsec.cli import main
from advsec.datasets import load
from advsec.datasets._common import SCHEMA_DIR
from advsec.errors import AdvsecError
from advsec.features.schema import FeatureSchema
from advsec.features.space import FeatureSpace
from advsec.models import Detector

Case = Callable[[Path], tuple[Callable[[], object], str]]

# ----------------------------------------------------------------------------- builders


def rows_text(n: int = 12, *, header: str = "proto,bytes,share,label", edit=None) -> str:
    """A small labelled CSV: ``edit(i, fields)`` may change the fields of data row ``i``."""
    lines = [header]
    for i in range(1, n + 1):
        fields = ["tcp" if i % 2 else "udp", str((37 * i) % 101 * 10), f"{(i % 10) / 10:.1f}",
                  "benign" if i % 3 else "bad"]
        if edit is not None:
            fields = edit(i, fields) or fields
        lines.append(",".join(fields))
    return "\n".join(lines) + "\n"


def set_field(row: int, col: int, value: str):
    def edit(i, fields):
        if i == row:
            fields[col] = value
        return fields
    return edit


def tabular(path: Path, **options) -> Callable[[], object]:
    return lambda: load("tabular", path=path, **options)


def write(path: Path, data: str | bytes) -> Path:
    if isinstance(data, str):
        path.write_text(data)
    else:
        path.write_bytes(data)
    return path


KDD = ("0,tcp,http,SF,{b},5450,0,0,0,0,0,1,0,0,0,0,0,0,0,0,0,0,8,8,0.00,0.00,0.00,0.00,{r},"
       "0.00,0.00,9,9,1.00,0.00,0.11,0.00,0.00,0.00,0.00,0.00,{label}")


def kdd_root(tmp: Path, labels=("normal.", "smurf.") * 3, edit: dict | None = None) -> Path:
    root = tmp / "kdd"
    root.mkdir()
    lines = []
    for i, lab in enumerate(labels, start=1):
        values = {"b": "181", "r": "1.00", "label": lab, **((edit or {}).get(i, {}))}
        lines.append(KDD.format(**values))
    (root / "kddcup.data_10_percent").write_text("\n".join(lines) + "\n")
    return root


def kdd_load(root: Path, **options) -> Callable[[], object]:
    return lambda: load("kdd99", root=root, test="split", **options)


UNSW_SCHEMA = FeatureSchema.from_file(SCHEMA_DIR / "unsw-nb15.toml")
UNSW_NAMES = UNSW_SCHEMA.names


def unsw_root(tmp: Path, edit: dict | None = None, drop: str | None = None) -> Path:
    root = tmp / "unsw"
    root.mkdir()
    header = ["id", *UNSW_NAMES, "attack_cat", "label"]
    lines = []
    for i in range(1, 9):
        row = {f.name: f"{max(0.0, f.lower or 0.0):g}" for f in UNSW_SCHEMA if f.is_numeric}
        row.update(proto="tcp", service="-", state="FIN", id=str(i))
        row["attack_cat"], row["label"] = ("Normal", "0") if i % 2 else ("DoS", "1")
        row.update((edit or {}).get(i, {}))
        lines.append(",".join(row[c] for c in header if c != drop))
    text = ",".join(c for c in header if c != drop) + "\n" + "\n".join(lines) + "\n"
    (root / "UNSW_NB15_testing-set.csv").write_text(text)
    return root


def schema_case(text: str, *, full: bool = True, name: str = "s.toml") -> Case:
    """A schema file given to the tabular loader (``full``: a complete feature list is added)."""
    def build(tmp: Path):
        data = write(tmp / "f.csv", rows_text())
        body = FULL_SCHEMA + text if full else text
        schema = write(tmp / name, body)
        return tabular(data, schema_file=schema), ""
    return build


FULL_SCHEMA = ("replace = true\n"
               '[[features]]\nname = "bytes"\nkind = "integer"\nlower = 0\n'
               '[[features]]\nname = "proto"\nkind = "categorical"\n')


# ----------------------------------------------------------------------------- data files


def _unreadable(tmp):
    path = write(tmp / "locked.csv", rows_text())
    path.chmod(0)
    return tabular(path), r"locked\.csv: cannot read the file \(permission denied\)"


def _truncated_gzip(tmp):
    data = gzip.compress(rows_text(3000).encode())
    return (tabular(write(tmp / "t.csv.gz", data[: len(data) // 2])),
            r"t\.csv\.gz: cannot read the file \(truncated or corrupt gzip data")


def _corrupt_gzip(tmp):
    data = gzip.compress(rows_text(3000).encode())
    bad = data[:200] + b"\x00" * 64 + data[264:]
    return (tabular(write(tmp / "c.csv.gz", bad)),
            r"c\.csv\.gz: cannot read the file \(truncated or corrupt gzip data")


def _huge_field(tmp):
    path = write(tmp / "big.csv", rows_text(30, edit=set_field(11, 1, "x" * (5 << 20))))
    return (tabular(path, test_path=path),
            r"big\.csv, row 11, column 'bytes': expected a number, got 'x{40}'\.\.\. "
            r"\(5,242,880 characters\)")


def _too_long_line(tmp):
    path = write(tmp / "long.csv", rows_text(edit=set_field(3, 0, "y" * (65 << 20))))
    return tabular(path), r"long\.csv, line 4: [\d,]+ bytes, longer than the limit of 64 MiB"


def _huge_kdd_count(tmp):
    root = kdd_root(tmp, edit={2: {"b": "9" * 300_000}})
    return (kdd_load(root), r"kddcup\.data_10_percent, row 2, column 'src_bytes': expected an "
            r"integer, got '9{40}'\.\.\. \(300,000 characters\)")


def _test_missing_column(tmp):
    train = write(tmp / "train.csv", rows_text())
    test = write(tmp / "test.csv", rows_text(header="proto,bites,share,label"))
    return (tabular(train, test_path=test),
            r"test\.csv: no column 'bytes' \(the training table has it\)")


DATA_CASES: dict[str, Case] = {
    "missing file": lambda t: (tabular(t / "nope.csv"),
                               r"nope\.csv: file not found; expected a CSV or Parquet table"),
    "directory": lambda t: ((t / "d.csv").mkdir() or tabular(t / "d.csv"),
                            r"d\.csv: is a directory, not a file; expected a CSV or Parquet table"),
    "unreadable": _unreadable,
    "empty file": lambda t: (tabular(write(t / "e.csv", "")),
                             r"e\.csv: file is empty; expected a CSV table with a header and "
                             r"a 'label' column"),
    "blank lines only": lambda t: (tabular(write(t / "b.csv", "\n\n  \n")),
                                   r"b\.csv: file is empty"),
    "header only": lambda t: (tabular(write(t / "h.csv", "proto,bytes,share,label\n")),
                              r"h\.csv: no data rows \(header only\)"),
    "binary garbage": lambda t: (tabular(write(t / "g.csv", bytes(range(256)) * 20)),
                                 r"g\.csv: binary data \(a NUL byte at offset 0\), not CSV text"),
    "gzip of binary": lambda t: (tabular(write(t / "g.csv.gz", gzip.compress(b"\x00\x01" * 99))),
                                 r"g\.csv\.gz: binary data \(a NUL byte"),
    "utf-16": lambda t: (tabular(write(t / "u.csv", rows_text().encode("utf-16"))),
                         r"u\.csv: UTF-16 text \(byte-order mark\), not UTF-8"),
    "parquet named csv": lambda t: (
        tabular(write(t / "p.csv", b"PAR1\x15\x04\x15\x10")),
        r"p\.csv: a Parquet file, not CSV text; name it \.parquet"),
    "header not utf-8": lambda t: (
        tabular(write(t / "l.csv", rows_text(header="proto,b\xe9tes,share,label")
                      .encode("latin-1"))),
        r"l\.csv, line 1: the header is not valid UTF-8 \(byte 0xe9 at position 8\)"),
    "value not utf-8": lambda t: (
        tabular(write(t / "v.csv", rows_text(edit=set_field(5, 3, "b\xe9d")).encode("latin-1"))),
        r"v\.csv, row 5, column 'label': text is not valid UTF-8"),
    "feature value not utf-8": lambda t: (
        tabular(write(t / "f.csv", rows_text(edit=set_field(7, 0, "t\xe9p")).encode("latin-1"))),
        r"f\.csv, row 7, column 'proto': text is not valid UTF-8"),
    "parquet bytes column": lambda t: (
        tabular(_parquet(t / "b.parquet", label={}, extra={"raw": [b"\xff\x00"] * 12})),
        r"b\.parquet, row 1, column 'raw': binary data, not UTF-8 text"),
    "truncated gzip": _truncated_gzip,
    "corrupt gzip": _corrupt_gzip,
    "gzip magic only": lambda t: (tabular(write(t / "m.csv.gz", b"\x1f\x8b")),
                                  r"m\.csv\.gz: cannot read the file \(truncated or corrupt"),
    "extra field": lambda t: (tabular(write(t / "x.csv", rows_text(
        edit=lambda i, f: [*f, "9"] if i == 3 else f))), r"x\.csv, row 3: expected 4 fields, "
        r"got 5"),
    "missing field": lambda t: (tabular(write(t / "x.csv", rows_text(
        edit=lambda i, f: f[:3] if i == 7 else f))), r"x\.csv, row 7: expected 4 fields, got 3"),
    "wrong delimiter": lambda t: (tabular(write(t / "s.csv", rows_text().replace(",", ";"))),
                                  r"s\.csv, header: found 1 column \(the file looks "
                                  r"';'-separated; expected ','\)"),
    "no label column": lambda t: (tabular(write(t / "n.csv", rows_text()), label_column="class"),
                                  r"n\.csv: no column 'class' in the header \(found 4 columns: "
                                  r"proto, bytes, share, label\)"),
    "empty label": lambda t: (tabular(write(t / "f.csv", rows_text(edit=set_field(4, 3, "")))),
                              r"f\.csv, row 4, column 'label': empty label; expected a class"),
    "blank label": lambda t: (tabular(write(t / "f.csv", rows_text(edit=set_field(9, 3, "  ")))),
                              r"f\.csv, row 9, column 'label': empty label"),
    "empty quoted label": lambda t: (tabular(write(t / "q.csv", rows_text(
        edit=set_field(2, 3, '""')))), r"q\.csv, row 2, column 'label': empty label"),
    "empty label in test file": lambda t: (
        tabular(write(t / "a.csv", rows_text()),
                test_path=write(t / "b.csv", rows_text(edit=set_field(6, 3, "")))),
        r"b\.csv, row 6, column 'label': empty label"),
    "empty label in parquet": lambda t: (
        tabular(_parquet(t / "p.parquet", label={3: None})),
        r"p\.parquet, row 3, column 'label': empty label"),
    "stray word in numbers": lambda t: (
        tabular(write(t / "w.csv", rows_text(30, edit=set_field(8, 1, "lots")))),
        r"w\.csv, row 8, column 'bytes': expected a number, got 'lots'"),
    "empty number": lambda t: (
        tabular(write(t / "e.csv", rows_text(edit=set_field(5, 1, "")))),
        r"e\.csv, row 5, column 'bytes': empty value, expected a number"),
    "nan number": lambda t: (
        tabular(write(t / "n.csv", rows_text(edit=set_field(10, 2, "nan")))),
        r"n\.csv, row 10, column 'share': empty value, expected a number"),
    "inf number": lambda t: (
        tabular(write(t / "i.csv", rows_text(edit=set_field(4, 2, "inf")))),
        r"i\.csv, row 4, column 'share': got inf; expected a finite number"),
    "-inf number": lambda t: (
        tabular(write(t / "i.csv", rows_text(edit=set_field(6, 1, "-inf")))),
        r"i\.csv, row 6, column 'bytes': got -inf; expected a finite number"),
    "nan with a full schema": lambda t: (
        tabular(write(t / "n.csv", rows_text(edit=set_field(7, 1, "nan"))),
                schema_file=write(t / "s.toml", FULL_SCHEMA)),
        r"n\.csv, row 7, column 'bytes': empty value, expected a number \(blank or NaN\)"),
    "text in a declared number": lambda t: (
        tabular(write(t / "f.csv", rows_text()),
                schema_file=write(t / "s.toml", FULL_SCHEMA.replace(
                    '"proto"\nkind = "categorical"', '"proto"\nkind = "integer"'))),
        r"f\.csv, row 1, column 'proto': expected a number, got 'tcp'"),
    "negative count": lambda t: (
        tabular(write(t / "f.csv", rows_text(edit=set_field(5, 1, "-3"))),
                schema_file=write(t / "s.toml", FULL_SCHEMA)),
        r"f\.csv, row 5, column 'bytes': -3 is below the lower bound 0 of the schema; expected "
        r"a value in \[0, inf\] \(or set on_bound_violation = \"clip\""),
    "above an upper bound": lambda t: (
        tabular(write(t / "f.csv", rows_text(edit=set_field(3, 2, "1.5"))),
                schema_file=write(t / "s.toml", '[override.share]\nupper = 1\n')),
        r"f\.csv, row 3, column 'share': 1\.5 is above the upper bound 1 of the schema"),
    "single class": lambda t: (
        tabular(write(t / "one.csv", rows_text().replace(",bad", ",benign")),
                benign_label="benign"),
        r"one\.csv: the training split has a single class 'benign' \(column 'label', scheme "
        r"'binary'\); a detector needs at least two classes"),
    "huge field": _huge_field,
    "line over the limit": _too_long_line,
    "test file lacks a column": _test_missing_column,
    "not a parquet file": lambda t: (tabular(write(t / "x.parquet", "a,b\n1,2\n")),
                                     r"x\.parquet: not a readable Parquet file"),
    "bad delimiter option": lambda t: (
        tabular(write(t / "f.csv", rows_text()), delimiter=""),
        r"delimiter: expected one character \(not a quote or a line end\), got ''"),
    "kdd: negative count": lambda t: (
        kdd_load(kdd_root(t, edit={3: {"b": "-5"}})),
        r"kddcup\.data_10_percent, row 3, column 'src_bytes': -5 is below the lower bound 0"),
    "kdd: rate above 1": lambda t: (
        kdd_load(kdd_root(t, edit={4: {"r": "1.70"}})),
        r"kddcup\.data_10_percent, row 4, column 'same_srv_rate': 1\.7 is above the upper "
        r"bound 1"),
    "kdd: nan rate": lambda t: (
        kdd_load(kdd_root(t, edit={2: {"r": "nan"}})),
        r"kddcup\.data_10_percent, row 2, column 'same_srv_rate': empty value, expected a "
        r"number"),
    "kdd: text in a count": lambda t: (
        kdd_load(kdd_root(t, edit={5: {"b": "abc"}})),
        r"kddcup\.data_10_percent, row 5, column 'src_bytes': expected an integer, got 'abc'"),
    "kdd: huge field": _huge_kdd_count,
    "kdd: wrong field count": lambda t: (
        kdd_load(kdd_root(t, edit={2: {"b": "1,2"}})),
        r"kddcup\.data_10_percent, row 2: expected 42 fields, got 43"),
    "kdd: empty label": lambda t: (
        kdd_load(kdd_root(t, labels=("normal.", "smurf.", "", "normal."))),
        r"kddcup\.data_10_percent, row 3, column 'label': empty value, expected a label"),
    "kdd: single class": lambda t: (
        kdd_load(kdd_root(t, labels=("normal.",) * 6)),
        r"kddcup\.data_10_percent: the training split has a single class 'normal' \(column "
        r"'label'"),
    "kdd: missing folder": lambda t: (
        kdd_load(t / "none"), r"kdd99: file 'kddcup\.data_10_percent' \(plain or \.gz\) not "
        r"found"),
    "unsw: missing feature column": lambda t: (
        lambda: load("unsw-nb15", root=unsw_root(t, drop="sbytes")),
        r"UNSW_NB15_testing-set\.csv: no column 'sbytes' in the header"),
    "unsw: empty attack_cat": lambda t: (
        lambda: load("unsw-nb15", root=unsw_root(t, edit={2: {"attack_cat": " "}})),
        r"UNSW_NB15_testing-set\.csv, row 2, column 'attack_cat': empty label"),
    "unsw: label not 0/1": lambda t: (
        lambda: load("unsw-nb15", root=unsw_root(t, edit={4: {"label": "7"}})),
        r"UNSW_NB15_testing-set\.csv, row 4, column 'label': expected 0 or 1, got 7"),
    "unsw: negative bytes": lambda t: (
        lambda: load("unsw-nb15", root=unsw_root(t, edit={6: {"sbytes": "-1"}})),
        r"UNSW_NB15_testing-set\.csv, row 6, column 'sbytes': -1 is below the lower bound 0"),
    "unsw: ttl above 255": lambda t: (
        lambda: load("unsw-nb15", root=unsw_root(t, edit={3: {"sttl": "300"}})),
        r"UNSW_NB15_testing-set\.csv, row 3, column 'sttl': 300 is above the upper bound 255"),
}


def _parquet(path: Path, label: dict, extra: dict | None = None) -> Path:
    text = rows_text()
    df = pd.read_csv(io.StringIO(text))
    for name, values in (extra or {}).items():
        df[name] = values
    df["label"] = df["label"].astype(object)
    for row, value in label.items():
        df.loc[row - 1, "label"] = value
    df.to_parquet(path)
    return path


# ----------------------------------------------------------------------------- schema files

SCHEMA_CASES: dict[str, tuple[Case, str]] = {
    "unknown top-level key": (schema_case('colour = "red"\n', full=False),
                              r"s\.toml: unknown key\(s\) \['colour'\]; allowed:"),
    "unknown feature key": (schema_case('minimum = 0\n'),
                            r"s\.toml: feature 'proto': unknown key\(s\) \['minimum'\]"),
    "bound is text": (schema_case('[[features]]\nname = "share"\nkind = "continuous"\n'
                                  'lower = "0"\n'),
                      r"s\.toml: feature 'share': lower must be a finite number, got str '0'"),
    "bound is boolean": (schema_case('[override.share]\nupper = true\n', full=False),
                         r"s\.toml: feature 'share': upper must be a finite number, got bool"),
    "infinite bound": (schema_case('[override.bytes]\nupper = inf\n', full=False),
                       r"s\.toml: feature 'bytes': upper must be a finite number, got float inf"),
    "mutable is text": (schema_case('[override.bytes]\nmutable = "no"\n', full=False),
                        r"s\.toml: feature 'bytes': mutable must be true or false, got str 'no'"),
    "lower above upper": (schema_case('[override.share]\nlower = 5\nupper = 1\n', full=False),
                          r"s\.toml: feature 'share': lower bound 5\.0 exceeds upper bound 1\.0"),
    "duplicate feature": (schema_case('[[features]]\nname = "bytes"\nkind = "integer"\n'),
                          r"s\.toml: feature 'bytes' appears twice in the schema"),
    "unknown kind": (schema_case('[[features]]\nname = "share"\nkind = "real"\n'),
                     r"s\.toml: feature 'share': kind must be one of continuous, integer, "
                     r"binary, categorical, got 'real'"),
    "kind is a number": (schema_case('[[features]]\nname = "share"\nkind = 3\n'),
                         r"s\.toml: feature 'share': kind must be a string, got int 3"),
    "features not a list": (schema_case('features = "bytes"\n', full=False),
                            r"s\.toml: 'features' must be a list of feature tables, got str"),
    "feature not a table": (schema_case('features = [1, 2]\n', full=False),
                            r"s\.toml: features entry #1 must be a table with 'name' and 'kind', "
                            r"got int 1"),
    "feature without name": (schema_case('[[features]]\nkind = "integer"\n'),
                             r"s\.toml: features entry #3: 'name' is required"),
    "override not a table": (schema_case('override = 5\n', full=False),
                             r"s\.toml: 'override' must be a table of per-feature tables"),
    "override entry not a table": (schema_case('[override]\nbytes = 5\n', full=False),
                                   r"s\.toml: override\.bytes must be a table of fields"),
    "drop not names": (schema_case('drop = [1]\n', full=False),
                       r"s\.toml: 'drop' must be a list of feature names, got int 1"),
    "bad policy": (schema_case('on_bound_violation = "ignore"\n', full=False),
                   r"s\.toml: on_bound_violation must be one of \('error', 'clip'\), got str "
                   r"'ignore'"),
    "bad feature policy": (schema_case('[override.bytes]\non_bound_violation = "drop"\n',
                                       full=False),
                           r"s\.toml: feature 'bytes': on_bound_violation must be one of"),
    "not toml": (schema_case("this is = not toml [", full=False),
                 r"s\.toml: not a valid TOML file"),
    "binary schema": (lambda t: (tabular(write(t / "f.csv", rows_text()),
                                         schema_file=write(t / "s.toml", b"\xff\xfe\x00")), ""),
                      r"s\.toml: not a valid TOML file"),
    "relations not a list": (schema_case('relations = "x"\n', full=False),
                             r"s\.toml: 'relations' must be a list of relation tables"),
    "relation not a table": (schema_case('add_relations = [3]\n', full=False),
                             r"s\.toml: add_relations entry #1 must be a table"),
    "categories not a list": (schema_case('[override.proto]\ncategories = "tcp"\n', full=False),
                              r"s\.toml: feature 'proto': categories must be a list of labels"),
    "label not a string": (schema_case('label = 5\n', full=False),
                           r"s\.toml: 'label' must be a column name \(a string\), got int 5"),
    "missing column": (schema_case('[[features]]\nname = "bites"\nkind = "integer"\n'),
                       r"s\.toml: schema names column\(s\) \['bites'\] that the table does not"),
    "log1p without lower": (schema_case('[override.share]\ntransform = "log1p"\nlower = -1\n',
                                        full=False),
                            r"s\.toml: feature 'share': log1p needs a lower bound >= 0"),
    "schema is a directory": (lambda t: ((t / "d.toml").mkdir() or tabular(
        write(t / "f.csv", rows_text()), schema_file=t / "d.toml"), ""),
        r"d\.toml: is a directory, expected a schema file"),
    "schema missing": (lambda t: (tabular(write(t / "f.csv", rows_text()),
                                          schema_file=t / "none.toml"), ""),
                       r"none\.toml: schema file not found"),
    "kdd schema: bad override": (lambda t: (kdd_load(kdd_root(t), schema_file=write(
        t / "k.toml", '[override.src_bytes]\nlower = "zero"\n')), ""),
        r"k\.toml: feature 'src_bytes': lower must be a finite number, got str 'zero'"),
}


# ----------------------------------------------------------------------------- model files


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    """A tiny saved detector (with its FeatureSpace) on a small tabular file."""
    root = tmp_path_factory.mktemp("model")
    data = write(root / "flows.csv", rows_text(30))
    ds = load("tabular", path=data)
    space = FeatureSpace(ds.schema).fit(ds.train)
    det = Detector(hidden=(4,), dropout=0.0, epochs=1, validation_split=0, device="cpu", seed=0)
    det.fit(space.encode(ds.train), ds.labels("train"))
    det.save(root / "m", feature_space=space)
    return root / "m"


def _copy(model: Path, tmp: Path, meta=None, weights=None) -> Path:
    """A copy of ``model`` under ``tmp``; ``meta(dict) -> dict | str | bytes`` and
    ``weights(state dict) -> state dict | bytes`` change it."""
    tmp.mkdir(exist_ok=True)
    data = json.loads(model.with_suffix(".json").read_text())
    out = tmp / "bad"
    text = meta(data) if meta else data
    if isinstance(text, bytes):
        out.with_suffix(".json").write_bytes(text)
    else:
        out.with_suffix(".json").write_text(text if isinstance(text, str) else json.dumps(text))
    from safetensors.torch import load_file

    state = load_file(str(model.with_suffix(".safetensors")))
    changed = weights(state) if weights else state
    if isinstance(changed, bytes):
        out.with_suffix(".safetensors").write_bytes(changed)
    else:
        save_file(changed, str(out.with_suffix(".safetensors")))
    return out


def _set(path: str, value):
    def change(meta):
        *parents, last = path.split(".")
        node = meta
        for p in parents:
            node = node[p]
        if value is _DELETE:
            del node[last]
        else:
            node[last] = value
        return meta
    return change


_DELETE = object()


def _first_feature(meta, key):
    names = [f["name"] for f in meta["feature_space"]["schema"]["features"]
             if f["kind"] != "categorical"]
    del meta["feature_space"][key][names[0]]
    return meta


def _wider_space(meta):
    cat = next(f["name"] for f in meta["feature_space"]["schema"]["features"]
               if f["kind"] == "categorical")
    meta["feature_space"]["categories"][cat].append("zzz")
    return meta


MODEL_CASES: dict[str, tuple[dict, str]] = {
    "json is a list": ({"meta": lambda m: "[1, 2]"},
                       r"bad\.json: expected a JSON object with the detector's metadata, got a "
                       r"JSON list"),
    "json is a string": ({"meta": lambda m: '"x"'}, r"bad\.json: expected a JSON object .* got "
                         r"a JSON str"),
    "invalid json": ({"meta": lambda m: '{"format": '}, r"bad\.json: not valid JSON \("),
    "json not utf-8": ({"meta": lambda m: b"\xff\xfe{}"}, r"bad\.json: not UTF-8 text"),
    "wrong format": ({"meta": _set("format", "other/2")},
                     r"bad\.json, key 'format': not an advsec detector \(expected "
                     r"'advsec\.detector/1', got 'other/2'\)"),
    "no architecture": ({"meta": _set("architecture", _DELETE)},
                        r"bad\.json: missing key 'architecture'"),
    "architecture a list": ({"meta": _set("architecture", [1])},
                            r"bad\.json, key 'architecture': expected an object, got \[1\]"),
    "no hidden": ({"meta": _set("architecture.hidden", _DELETE)},
                  r"bad\.json: missing key 'architecture\.hidden'"),
    "hidden is text": ({"meta": _set("architecture.hidden", "64")},
                       r"bad\.json, key 'architecture\.hidden': expected a list of integers in "
                       r"\[1, 2\*\*31\), got '64'"),
    "absurd width": ({"meta": _set("architecture.hidden", [2**63])},
                     r"bad\.json, key 'architecture\.hidden': expected a list of integers in "
                     r"\[1, 2\*\*31\), got \[9223372036854775808\]"),
    "negative inputs": ({"meta": _set("architecture.n_inputs", -1)},
                        r"bad\.json, key 'architecture\.n_inputs': expected an integer in "
                        r"\[1, 2\*\*31\), got -1"),
    "one output": ({"meta": _set("architecture.n_outputs", 1)},
                   r"bad\.json, key 'architecture\.n_outputs': expected an integer in \[2, "
                   r"2\*\*31\), got 1"),
    "dropout 2": ({"meta": _set("architecture.dropout", 2)},
                  r"bad\.json, key 'architecture\.dropout': expected a number in \[0, 1\), got 2"),
    "unknown activation": ({"meta": _set("architecture.activation", "swish")},
                           r"bad\.json, key 'architecture': activation must be one of"),
    "unknown param": ({"meta": _set("params.colour", "red")},
                      r"bad\.json, key 'params': unknown parameter\(s\) \['colour'\]"),
    "param of the wrong type": ({"meta": _set("params.epochs", "ten")},
                                r"bad\.json, key 'params\.epochs': expected an integer in \[0, "
                                r"2\*\*31\), got 'ten'"),
    "classes not a list": ({"meta": _set("classes", "attack")},
                           r"bad\.json, key 'classes': expected a list of class labels"),
    "classes count": ({"meta": _set("classes", ["a", "b", "c"])},
                      r"bad\.json, key 'classes': 3 labels, but architecture\.n_outputs is 2"),
    "classes unsorted": ({"meta": _set("classes", ["benign", "attack"])},
                         r"bad\.json, key 'classes': expected distinct labels in sorted order"),
    "history not a list": ({"meta": _set("history", 5)},
                           r"bad\.json, key 'history': expected a list of objects, got 5"),
    "space lacks a scale": ({"meta": lambda m: _first_feature(m, "span")},
                            r"bad\.json, key 'feature_space\.span\.bytes': expected a positive "
                            r"number, got None"),
    "space lacks categories": ({"meta": _set("feature_space.categories", [])},
                               r"bad\.json, key 'feature_space\.categories': expected an object"),
    "space width": ({"meta": _wider_space},
                    r"bad\.json, key 'feature_space': encodes records to \d+ columns, but "
                    r"architecture\.n_inputs is \d+"),
    "space with a bad kind": ({"meta": _set("feature_space.schema.features", [
        {"name": "bytes", "kind": "real"}])},
        r"bad\.json, key 'feature_space': feature 'bytes': kind must be one of"),
    "weights not safetensors": ({"weights": lambda s: b"\x80\x04not a tensor file"},
                                r"bad\.safetensors: not a readable safetensors file"),
    "weights empty": ({"weights": lambda s: b""}, r"bad\.safetensors: not a readable "
                      r"safetensors file"),
    "tensor missing": ({"weights": lambda s: {k: v for k, v in s.items() if k != "net.2.bias"}},
                       r"bad\.safetensors: no tensor 'net\.2\.bias', which the architecture in "
                       r"bad\.json needs \(4 tensors expected\)"),
    "tensor extra": ({"weights": lambda s: {**s, "net.9.weight": torch.zeros(2)}},
                     r"bad\.safetensors: unexpected tensor 'net\.9\.weight'"),
    "tensor shape": ({"meta": _set("architecture.hidden", [3])},
                     r"bad\.safetensors, tensor 'net\.0\.weight': shape \[4, \d+\], but the "
                     r"architecture in bad\.json expects \[3, \d+\]"),
    "tensor nan": ({"weights": lambda s: {**s, "net.0.bias": torch.full_like(
        s["net.0.bias"], float("nan"))}},
        r"bad\.safetensors, tensor 'net\.0\.bias': contains NaN or infinite values"),
    "tensor of integers": ({"weights": lambda s: {**s, "net.0.bias": torch.zeros(
        s["net.0.bias"].shape, dtype=torch.int64)}},
        r"bad\.safetensors, tensor 'net\.0\.bias': dtype I64; expected floating point"),
}


# ----------------------------------------------------------------------------- the tests


def assert_one_line_error(fn: Callable[[], object], pattern: str) -> str:
    with pytest.raises(AdvsecError) as exc:
        fn()
    msg = str(exc.value)
    assert "\n" not in msg and "\r" not in msg, msg
    assert len(msg) < 600, msg[:600]
    assert re.search(pattern, msg), f"{pattern!r} not in {msg!r}"
    return msg


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


@pytest.mark.parametrize("name", list(DATA_CASES))
def test_malformed_data_file(name, tmp_path):
    if name == "unreadable" and _is_root():
        pytest.skip("root can read a file without permissions")
    fn, pattern = DATA_CASES[name](tmp_path)
    assert_one_line_error(fn, pattern)


@pytest.mark.parametrize("name", list(SCHEMA_CASES))
def test_malformed_schema_file(name, tmp_path):
    build, pattern = SCHEMA_CASES[name]
    fn, _ = build(tmp_path)
    assert_one_line_error(fn, pattern)


@pytest.mark.parametrize("name", list(MODEL_CASES))
def test_malformed_model_file(name, model, tmp_path):
    changes, pattern = MODEL_CASES[name]
    bad = _copy(model, tmp_path, **changes)
    assert_one_line_error(lambda: Detector.load(bad), pattern)


def test_model_path_problems(model, tmp_path):
    assert_one_line_error(lambda: Detector.load(tmp_path / "none"),
                          r"none\.safetensors: model file not found \(expected none\.safetensors "
                          r"\+ none\.json\)")
    assert_one_line_error(lambda: Detector.load("/"), r"/: not a model path")
    assert_one_line_error(lambda: Detector.load(model.parent),
                          r": is a directory; expected the model path prefix")
    only = _copy(model, tmp_path / "half")
    only.with_suffix(".json").unlink()
    assert_one_line_error(lambda: Detector.load(only), r"bad\.json: model file not found")


def test_the_corpus_is_large():
    assert len(DATA_CASES) + len(SCHEMA_CASES) + len(MODEL_CASES) >= 40


# ----------------------------------------------------------------------------- what still loads


def test_a_large_field_below_the_limit_loads(tmp_path):
    note = "z" * (6 << 20)
    text = rows_text(20, header="proto,bytes,share,note,label",
                     edit=lambda i, f: [*f[:3], note if i == 7 else "short", f[3]])
    ds = load("tabular", path=write(tmp_path / "wide.csv", text), test_path=tmp_path / "wide.csv")
    assert len(ds.train) == 20 and "bytes" in ds.schema.names


def test_integers_beyond_float_precision_stay_exact_floats_not_wrapped(tmp_path):
    # unsigned 64-bit counters beyond int64 must not wrap in an int64 cast
    big = [str(2**64 + 2**44 * ((5 * i) % 12)) for i in range(1, 13)]  # not a row id
    text = rows_text(edit=lambda i, f: [f[0], big[i - 1], *f[2:]])
    ds = load("tabular", path=write(tmp_path / "big.csv", text), test_path=tmp_path / "big.csv")
    col = ds.train["bytes"].to_numpy(dtype=np.float64)
    assert (col >= 2.0**64).all()  # never a wrapped negative value
    np.testing.assert_allclose(col, [float(v) for v in big], rtol=1e-15)


def test_parquet_text_stored_as_bytes_and_boolean_labels(tmp_path):
    text = rows_text()
    df = pd.read_csv(io.StringIO(text))
    df["proto"] = df["proto"].map(str.encode)  # valid UTF-8 as bytes: read as text
    df["label"] = df["label"] == "bad"  # True / False labels: False is guessed benign
    df.to_parquet(tmp_path / "b.parquet")
    ds = load("tabular", path=tmp_path / "b.parquet", test_path=tmp_path / "b.parquet")
    assert ds.benign_label == "False"
    assert set(ds.train["proto"]) == {"tcp", "udp"}
    assert set(ds.labels("train")) == {"False", "attack"}


def test_header_after_blank_lines_and_a_big_header_field(tmp_path):
    text = "\n\nproto,bytes,share,label," + "h" * 300_000 + "\n" + "".join(
        line + ",0\n" for line in rows_text().splitlines()[1:])
    ds = load("tabular", path=write(tmp_path / "h.csv", text), test_path=tmp_path / "h.csv")
    assert len(ds.train) == 12 and ds.train["bytes"].iloc[0] == 370


def test_clip_policy_per_feature_and_per_file(tmp_path, caplog):
    data = write(tmp_path / "f.csv", rows_text(edit=lambda i, f: [
        f[0], "-5" if i in (2, 4) else f[1], "1.5" if i == 3 else f[2], f[3]]))
    per_feature = write(tmp_path / "a.toml", FULL_SCHEMA.replace(
        "lower = 0\n", 'lower = 0\non_bound_violation = "clip"\n'))
    with caplog.at_level(logging.WARNING, logger="advsec"):
        ds = load("tabular", path=data, test_path=data, schema_file=per_feature)
    assert ds.train["bytes"].min() == 0 and ds.train["bytes"].dtype == np.int64
    assert any("clipped 2 value(s) of column 'bytes' to [0, inf]" in n for n in ds.notes)
    assert "clipped 2 value(s) of column 'bytes'" in caplog.text
    per_file = write(tmp_path / "b.toml", 'on_bound_violation = "clip"\n'
                     '[override.share]\nupper = 1\n[override.bytes]\nlower = 0\n')
    ds = load("tabular", path=data, test_path=data, schema_file=per_file)
    assert ds.train["share"].max() == 1.0 and ds.train["bytes"].min() == 0
    assert ds.schema["share"].on_bound_violation == "clip"
    mixed = write(tmp_path / "c.toml", 'on_bound_violation = "clip"\n[override.share]\nupper = 1\n'
                  'on_bound_violation = "error"\n')
    assert_one_line_error(lambda: load("tabular", path=data, schema_file=mixed),
                          r"f\.csv, row 3, column 'share': 1\.5 is above the upper bound 1")


def test_inferred_bounds_never_reject_a_test_row(tmp_path):
    train = write(tmp_path / "a.csv", rows_text())
    test = write(tmp_path / "b.csv", rows_text(edit=set_field(2, 1, "-4")))
    ds = load("tabular", path=train, test_path=test)
    assert ds.schema["bytes"].lower is None and ds.test["bytes"].min() == -4


def test_rows_are_named_by_file_row_after_a_split(tmp_path):
    path = write(tmp_path / "f.csv", rows_text(40, edit=set_field(33, 1, "-2")))
    schema = write(tmp_path / "s.toml", FULL_SCHEMA)
    assert_one_line_error(lambda: load("tabular", path=path, schema_file=schema, seed=3),
                          r"f\.csv, row 33, column 'bytes': -2 is below the lower bound 0")


def test_schema_round_trip_keeps_the_policy():
    schema = FeatureSchema.from_dict({"features": [
        {"name": "a", "kind": "integer", "lower": 0, "on_bound_violation": "clip"}]})
    again = FeatureSchema.from_dict(schema.to_dict())
    assert again["a"].on_bound_violation == "clip" and "on_bound_violation" not in \
        FeatureSchema.from_dict({"features": [{"name": "a", "kind": "integer"}]}).to_dict()[
            "features"][0]


# ----------------------------------------------------------------------------- the CLI


def cli_error(args: list[str], capsys) -> str:
    assert main(args) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("advsec: error: "), captured.err
    assert "Traceback" not in captured.err + captured.out
    return lines[0]


@pytest.mark.parametrize("name", ["empty label", "huge field", "binary garbage", "truncated gzip",
                                  "negative count", "single class", "header not utf-8"])
def test_cli_data_info_on_bad_files(name, tmp_path, capsys, monkeypatch):
    _, pattern = DATA_CASES[name](tmp_path)
    (path,) = [p for p in tmp_path.iterdir() if p.suffix in (".csv", ".gz")]
    args = ["data", "info", str(path)]
    schema = tmp_path / "s.toml"
    if schema.exists():
        args += ["--schema", str(schema)]
    if name == "single class":
        args += ["--benign-label", "benign"]
    monkeypatch.chdir(tmp_path)
    line = cli_error(args, capsys)
    assert re.search(pattern, line), line


def test_cli_data_info_on_a_bad_schema(tmp_path, capsys):
    data = write(tmp_path / "f.csv", rows_text())
    schema = write(tmp_path / "s.toml", "[override.share]\nlower = 5\nupper = 1\n")
    line = cli_error(["data", "info", str(data), "--schema", str(schema)], capsys)
    assert re.search(r"s\.toml: feature 'share': lower bound 5\.0 exceeds upper bound 1\.0", line)


@pytest.mark.parametrize("name", ["json is a list", "tensor shape", "unknown param"])
def test_cli_attack_with_a_bad_model_writes_nothing(name, model, tmp_path, capsys):
    changes, pattern = MODEL_CASES[name]
    bad = _copy(model, tmp_path / "m", **changes)
    out = tmp_path / "out"
    line = cli_error(["attack", "--model", str(bad), "--dataset", "tabular", "--root",
                      str(model.parent / "flows.csv"), "--attack", "fgsm", "--eps", "0.1",
                      "--out", str(out)], capsys)
    assert re.search(pattern, line), line
    assert not out.exists() and not list(tmp_path.glob(".out*"))


def test_cli_attack_on_bad_data_writes_nothing(model, tmp_path, capsys):
    data = write(tmp_path / "d.csv", rows_text(30, edit=set_field(17, 3, "")))
    out = tmp_path / "out"
    line = cli_error(["attack", "--model", str(model), "--dataset", "tabular", "--root",
                      str(data), "--attack", "fgsm", "--eps", "0.1", "--out", str(out)], capsys)
    assert re.search(r"d\.csv, row 17, column 'label': empty label", line), line
    assert not out.exists() and not list(tmp_path.glob(".out*"))


def test_cli_run_on_bad_data_writes_nothing(tmp_path, capsys):
    data = write(tmp_path / "d.csv", rows_text(30, edit=set_field(12, 1, "-inf")))
    config = write(tmp_path / "e.toml", f"""\
[experiment]
name = "bad data"
seeds = [0]

[data]
dataset = "tabular"
path = "{data}"
label_column = "label"

[[detectors]]
name = "mlp"
hidden = [4]
epochs = 1

[[attacks]]
attack = "fgsm"

[threat]
eps = [0.1]
""")
    out = tmp_path / "run"
    line = cli_error(["run", str(config), "--out", str(out)], capsys)
    assert re.search(r"d\.csv, row 12, column 'bytes': got -inf; expected a finite number", line)
    assert not out.exists() and not list(tmp_path.glob(".run*"))
