"""Schema files (TOML, YAML): complete schemas, overrides of a base schema, and one-line errors
naming the file and the offending key or column."""

from __future__ import annotations

import importlib.util

import pytest

from advsec.errors import SchemaError
from advsec.features.schema import Feature, FeatureKind, FeatureSchema

BASE = FeatureSchema(
    features=(Feature("proto", FeatureKind.CATEGORICAL, mutable=False),
              Feature("bytes", FeatureKind.INTEGER, lower=0, transform="log1p"),
              Feature("pkts", FeatureKind.INTEGER, lower=0)),
    label="label", benign_label="normal",
)

FULL = '''
label = "y"
benign_label = "ok"
[[features]]
name = "bytes"
kind = "integer"
lower = 0
transform = "log1p"
[[features]]
name = "pkts"
kind = "integer"
lower = 1
[[relations]]
type = "order"
features = ["pkts", "bytes"]
'''


def test_complete_toml_schema(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(FULL)
    s = FeatureSchema.from_file(path, columns=["bytes", "pkts", "y"])
    assert s.names == ["bytes", "pkts"] and (s.label, s.benign_label) == ("y", "ok")
    assert s["pkts"].lower == 1 and s.relations[0]["type"] == "order"


def test_overrides_drop_and_relations_on_a_base(tmp_path):
    path = tmp_path / "o.toml"
    path.write_text('drop = ["pkts"]\n[override.bytes]\nmutable = false\nupper = 1e9\n'
                    '[[add_relations]]\ntype = "zero_if_zero"\nwhen = "bytes"\n'
                    'features = ["bytes"]\n')
    s = FeatureSchema.from_file(path, base=BASE)
    assert s.names == ["proto", "bytes"] and not s["bytes"].mutable and s["bytes"].upper == 1e9
    assert len(s.relations) == 1 and s.label == "label" and s.benign_label == "normal"


@pytest.mark.parametrize("text, match", [
    ('colour = "red"\n', r"unknown key\(s\) \['colour'\]"),
    ('[override.bites]\nmutable = false\n', r"override names unknown feature\(s\) \['bites'\]"),
    ('drop = ["bites"]\n', r"'drop' names unknown feature\(s\) \['bites'\]"),
    ('[override.bytes]\nkind = "colour"\n', "kind must be one of"),
    ('[[add_relations]]\ntype = "order"\nfeatures = ["bytes", "bites"]\n', "unknown feature"),
    ("this is = not toml [", "not a valid TOML file"),
])
def test_errors_name_the_file(tmp_path, text, match):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(SchemaError, match=match) as exc:
        FeatureSchema.from_file(path, base=BASE)
    assert str(exc.value).startswith(str(path)) and "\n" not in str(exc.value)


def test_columns_must_exist_and_a_base_is_needed_for_changes(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(FULL)
    with pytest.raises(SchemaError, match=r"schema names column\(s\) \['pkts'\] that the table"):
        FeatureSchema.from_file(path, columns=["bytes"])
    partial = tmp_path / "p.toml"
    partial.write_text('drop = ["pkts"]\n')
    with pytest.raises(SchemaError, match="no 'features' list and no built-in schema"):
        FeatureSchema.from_file(partial)
    with pytest.raises(SchemaError, match="schema file not found"):
        FeatureSchema.from_file(tmp_path / "missing.toml")
    other = tmp_path / "s.json"
    other.write_text("{}")
    with pytest.raises(SchemaError, match=r"must end in \.toml, \.yaml or \.yml"):
        FeatureSchema.from_file(other)


def test_yaml(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("features:\n  - {name: bytes, kind: integer, lower: 0}\n")
    if importlib.util.find_spec("yaml") is None:
        with pytest.raises(SchemaError, match="reading YAML needs PyYAML"):
            FeatureSchema.from_file(path)
    else:
        assert FeatureSchema.from_file(path).names == ["bytes"]


def test_packaged_schemas_parse():
    from advsec.datasets._common import SCHEMA_DIR

    sizes = {p.stem: len(FeatureSchema.from_file(p)) for p in SCHEMA_DIR.glob("*.toml")
             if p.stem != "kdd_categories"}
    assert sizes == {"kdd": 41, "unsw-nb15": 42, "cicids2017": 77}
