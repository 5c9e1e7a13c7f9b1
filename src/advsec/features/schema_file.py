"""Schema files: read a TOML or YAML file into a :class:`~advsec.features.schema.FeatureSchema`
(the format is described in :mod:`advsec.features.schema`)."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from advsec.errors import SchemaError
from advsec.features.schema import (
    BOUND_POLICIES,
    FeatureSchema,
    label_pair,
    relation_list,
    type_name,
)

__all__ = ["read_schema_file", "schema_from_file"]

_BOM = b"\xef\xbb\xbf"


def schema_from_file(
    path: str | Path,
    *,
    base: FeatureSchema | None = None,
    columns: Sequence[str] | None = None,
    replaces: bool = False,
) -> FeatureSchema:
    """Read a TOML (``.toml``) or YAML (``.yaml``/``.yml``, needs PyYAML) schema file.

    The file is either a complete schema or a set of changes to ``base``:

    - ``features``: the complete, ordered feature list (tables with the keys of
      :meth:`Feature.from_dict`); replaces the features of ``base``.
    - ``override``: a table per feature name with the fields to change, e.g.
      ``[override.src_bytes]`` / ``mutable = false``.
    - ``drop``: feature names to remove.
    - ``relations``: replaces the relations; ``add_relations``: appended to them.
    - ``label``, ``benign_label``: the label column and the benign label.

    ``columns`` (the raw table's columns), when given, must contain every feature named by the
    result. A ``features`` list needs ``replace = true`` when there is a schema it replaces
    (``base``, or ``replaces``: the caller would otherwise infer one). Every problem raises
    :class:`SchemaError` naming the file and the key or column.
    """
    path = Path(path)
    data = read_schema_file(path)
    allowed = {"features", "override", "drop", "relations", "add_relations", "label",
               "benign_label", "description", "on_bound_violation", "replace"}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise SchemaError(f"{path}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")
    if "replace" in data and not isinstance(data["replace"], bool):
        raise SchemaError(f"{path}: 'replace' must be true or false, got "
                          f"{type_name(data['replace'])}")
    try:
        schema = _from_file_data(data, base)
    except SchemaError as exc:
        raise SchemaError(f"{path}: {exc}") from None
    replacing = base is not None or replaces
    if "features" in data and replacing and data.get("replace") is not True:
        raise SchemaError(
            f"{path}: a 'features' list replaces the whole schema; say so with "
            f"'replace = true' at the top of the file, or change features with "
            f"[override.NAME] / drop = [...]")
    if columns is not None:
        cols = set(columns)
        unknown_cols = [n for n in schema.names if n not in cols]
        if unknown_cols:
            raise SchemaError(
                f"{path}: schema names column(s) {unknown_cols} that the table does not have"
            )
    return schema


def _from_file_data(data: Mapping[str, Any], base: FeatureSchema | None) -> FeatureSchema:
    policy = data.get("on_bound_violation")
    if policy is not None and policy not in BOUND_POLICIES:
        raise SchemaError(f"on_bound_violation must be one of {BOUND_POLICIES}, got "
                          f"{type_name(policy)}")
    if "description" in data and not isinstance(data["description"], str):
        raise SchemaError(f"'description' must be a string, got "
                          f"{type_name(data['description'])}")
    label, benign = label_pair(
        data.get("label", base.label if base else "label"),
        data.get("benign_label", base.benign_label if base else "benign"))
    if "features" in data:
        entries = data["features"]
        if policy is not None and isinstance(entries, list):
            entries = [{"on_bound_violation": policy, **e} if isinstance(e, Mapping) else e
                       for e in entries]
        schema = FeatureSchema.from_dict({
            "features": entries, "label": label, "benign_label": benign,
            "relations": list(base.relations) if base else []})
    elif base is not None:
        schema = replace(base, label=label, benign_label=benign)
        if policy is not None:
            schema = replace(schema, features=tuple(
                replace(f, on_bound_violation=policy) for f in schema.features))
    else:
        raise SchemaError("no 'features' list and no built-in schema to change")
    drop = data.get("drop", [])
    if not isinstance(drop, list) or not all(isinstance(n, str) for n in drop):
        bad = next((n for n in drop if not isinstance(n, str)), drop) if isinstance(
            drop, list) else drop
        raise SchemaError(f"'drop' must be a list of feature names, got {type_name(bad)}")
    missing = [n for n in drop if n not in schema.names]
    if missing:
        raise SchemaError(f"'drop' names unknown feature(s) {missing}")
    if drop:
        schema = schema.select([n for n in schema.names if n not in set(drop)])
    overrides = data.get("override", {})
    if not isinstance(overrides, Mapping):
        raise SchemaError(f"'override' must be a table of per-feature tables, got "
                          f"{type_name(overrides)}")
    for name, fields in overrides.items():
        if not isinstance(fields, Mapping):
            raise SchemaError(f"override.{name} must be a table of fields to change, got "
                              f"{type_name(fields)}")
    schema = schema.with_overrides(overrides)
    relations = list(relation_list(data["relations"], "relations")
                     if "relations" in data else schema.relations)
    relations += relation_list(data.get("add_relations", []), "add_relations")
    schema = replace(schema, relations=tuple(relations))
    from advsec.features.constraints import relations_from_schema

    try:
        relations_from_schema(schema)
    except SchemaError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError, IndexError) as exc:
        raise SchemaError(f"relations: invalid relation ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    return schema



def read_schema_file(path: str | Path) -> dict[str, Any]:
    """The dictionary stored in a TOML or YAML schema file (one-line :class:`SchemaError`); a
    leading UTF-8 byte-order mark is skipped."""
    path = Path(path)
    if path.is_dir():
        raise SchemaError(f"{path}: is a directory, expected a schema file (.toml, .yaml)")
    if not path.is_file():
        raise SchemaError(f"{path}: schema file not found")
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            if sys.version_info >= (3, 11):
                import tomllib
            else:  # pragma: no cover - Python 3.10
                import tomli as tomllib
            raw = path.read_bytes()
            # a UTF-8 byte-order mark (some editors write one) is not part of the TOML text
            data = tomllib.loads(raw.removeprefix(_BOM).decode("utf-8"))
        elif suffix in (".yaml", ".yml"):
            try:
                import yaml  # type: ignore[import-untyped]
            except ImportError:
                raise SchemaError(
                    f"{path}: reading YAML needs PyYAML (pip install pyyaml); or write TOML"
                ) from None
            with path.open("r", encoding="utf-8-sig") as fh:
                data = yaml.safe_load(fh)
        else:
            raise SchemaError(f"{path}: schema files must end in .toml, .yaml or .yml")
    except SchemaError:
        raise
    except OSError as exc:
        raise SchemaError(f"{path}: cannot read the schema file ({exc.strerror or exc})") from None
    except Exception as exc:  # parse errors of either format
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SchemaError(f"{path}: not a valid {suffix[1:].upper()} file: {first}") from None
    if not isinstance(data, dict):
        raise SchemaError(f"{path}: expected a table/mapping at the top level")
    return data


