"""What a record is: typed features with physical bounds and attacker mutability.

A :class:`FeatureSchema` describes the raw table (one row per record, one column per feature)
before any encoding. It is plain data: it round-trips through JSON/TOML dictionaries so that a
dataset's defaults can live in a schema file and a user can override them.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Any

from advsec.errors import SchemaError

__all__ = ["Feature", "FeatureKind", "FeatureSchema", "read_schema_file"]


class FeatureKind(str, Enum):
    """The type of a raw feature.

    - ``continuous``: real-valued (bytes, durations, rates).
    - ``integer``: whole numbers (packet counts, connection counts); decoded by rounding.
    - ``binary``: 0/1 flags; decoded by thresholding at 0.5.
    - ``categorical``: a finite set of labels (protocol, service); one-hot encoded.
    """

    CONTINUOUS = "continuous"
    INTEGER = "integer"
    BINARY = "binary"
    CATEGORICAL = "categorical"


_TRANSFORMS = ("none", "log1p")


@dataclass(frozen=True)
class Feature:
    """One raw feature.

    Args:
        name: column name in the raw table.
        kind: see :class:`FeatureKind`.
        lower: physical lower bound in raw units (``None``: unbounded below); e.g. 0 for counts.
        upper: physical upper bound in raw units (``None``: unbounded above); e.g. 1 for rates.
        mutable: whether an attacker controls this feature. Immutable features are never changed
            by an attack (e.g. the protocol of a connection, the target service).
        transform: ``"log1p"`` compresses heavy tails before min-max scaling; ``"none"`` otherwise.
        categories: for categorical features, the known labels (optional: learned at fit time).
        description: free text for reports.
    """

    name: str
    kind: FeatureKind
    lower: float | None = None
    upper: float | None = None
    mutable: bool = True
    transform: str = "none"
    categories: tuple[str, ...] | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise SchemaError(f"feature name must be a non-empty string, got {self.name!r}")
        try:
            kind = FeatureKind(self.kind)
        except ValueError:
            allowed = ", ".join(k.value for k in FeatureKind)
            raise SchemaError(
                f"feature {self.name!r}: kind must be one of {allowed}, got {self.kind!r}"
            ) from None
        object.__setattr__(self, "kind", kind)
        if self.transform not in _TRANSFORMS:
            raise SchemaError(
                f"feature {self.name!r}: transform must be one of {_TRANSFORMS}, "
                f"got {self.transform!r}"
            )
        for bound in ("lower", "upper"):
            value = getattr(self, bound)
            if value is not None:
                if not isinstance(value, (int, float)) or math.isnan(value):
                    raise SchemaError(f"feature {self.name!r}: {bound} must be a number")
                object.__setattr__(self, bound, float(value))
        if kind is FeatureKind.BINARY:
            object.__setattr__(self, "lower", 0.0)
            object.__setattr__(self, "upper", 1.0)
        if self.lower is not None and self.upper is not None and self.lower > self.upper:
            raise SchemaError(
                f"feature {self.name!r}: lower bound {self.lower} exceeds upper bound {self.upper}"
            )
        if self.transform == "log1p" and (self.lower is None or self.lower < 0):
            raise SchemaError(f"feature {self.name!r}: log1p needs a lower bound >= 0")
        if kind is FeatureKind.CATEGORICAL:
            if self.transform != "none":
                raise SchemaError(f"feature {self.name!r}: categorical features take no transform")
            if self.categories is not None:
                object.__setattr__(self, "categories", tuple(str(c) for c in self.categories))
        elif self.categories is not None:
            raise SchemaError(f"feature {self.name!r}: only categorical features have categories")

    @property
    def is_numeric(self) -> bool:
        """True for continuous, integer and binary features."""
        return self.kind is not FeatureKind.CATEGORICAL

    def to_dict(self) -> dict[str, Any]:
        """A JSON/TOML-friendly dictionary (``None`` values left out)."""
        out: dict[str, Any] = {"name": self.name, "kind": self.kind.value}
        if self.lower is not None:
            out["lower"] = self.lower
        if self.upper is not None:
            out["upper"] = self.upper
        out["mutable"] = self.mutable
        if self.transform != "none":
            out["transform"] = self.transform
        if self.categories is not None:
            out["categories"] = list(self.categories)
        if self.description:
            out["description"] = self.description
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Feature:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        known = {"name", "kind", "lower", "upper", "mutable", "transform", "categories",
                 "description"}
        unknown = set(data) - known
        name = data.get("name", "?")
        if unknown:
            raise SchemaError(f"feature {name!r}: unknown key(s) {sorted(unknown)}")
        if "name" not in data or "kind" not in data:
            raise SchemaError(f"feature {name!r}: 'name' and 'kind' are required")
        cats = data.get("categories")
        return cls(
            name=str(data["name"]),
            kind=data["kind"],
            lower=data.get("lower"),
            upper=data.get("upper"),
            mutable=bool(data.get("mutable", True)),
            transform=str(data.get("transform", "none")),
            categories=tuple(cats) if cats is not None else None,
            description=str(data.get("description", "")),
        )


@dataclass(frozen=True)
class FeatureSchema:
    """An ordered collection of :class:`Feature` plus the label's description.

    Args:
        features: the features, in model-input order.
        label: name of the label column in the raw table.
        benign_label: the label value meaning "benign" (e.g. ``"normal"``, ``0``); used by
            detection rate, false-positive rate and evasion attacks.
        relations: feature relations (see :mod:`advsec.features.constraints`), as dictionaries.
    """

    features: tuple[Feature, ...]
    label: str = "label"
    benign_label: str = "benign"
    relations: tuple[Mapping[str, Any], ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        feats = tuple(self.features)
        object.__setattr__(self, "features", feats)
        object.__setattr__(self, "relations", tuple(self.relations))
        if not feats:
            raise SchemaError("a feature schema needs at least one feature")
        seen: set[str] = set()
        for f in feats:
            if not isinstance(f, Feature):
                raise SchemaError(f"schema entries must be Feature objects, got {type(f).__name__}")
            if f.name in seen:
                raise SchemaError(f"feature {f.name!r} appears twice in the schema")
            seen.add(f.name)
        if self.label in seen:
            raise SchemaError(f"label column {self.label!r} is also listed as a feature")

    def __iter__(self) -> Iterator[Feature]:
        return iter(self.features)

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, name: str) -> Feature:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(name)

    @property
    def names(self) -> list[str]:
        """Feature names in order."""
        return [f.name for f in self.features]

    def select(self, names: Iterable[str]) -> FeatureSchema:
        """A schema restricted to ``names`` (in the given order)."""
        names = list(names)
        missing = [n for n in names if n not in self.names]
        if missing:
            raise SchemaError(f"schema has no feature(s) {missing}")
        by_name = {f.name: f for f in self.features}
        rels = tuple(r for r in self.relations if set(_relation_features(r)) <= set(names))
        return replace(self, features=tuple(by_name[n] for n in names), relations=rels)

    def with_overrides(self, overrides: Mapping[str, Mapping[str, Any]]) -> FeatureSchema:
        """A copy where ``overrides[name]`` replaces fields of feature ``name``.

        Raises :class:`SchemaError` naming any override for a feature that does not exist.
        """
        unknown = [n for n in overrides if n not in self.names]
        if unknown:
            raise SchemaError(f"schema override names unknown feature(s) {unknown}")
        feats = []
        for f in self.features:
            if f.name in overrides:
                data = {**f.to_dict(), **dict(overrides[f.name]), "name": f.name}
                feats.append(Feature.from_dict(data))
            else:
                feats.append(f)
        return replace(self, features=tuple(feats))

    def to_dict(self) -> dict[str, Any]:
        """A JSON/TOML-friendly dictionary."""
        return {
            "label": self.label,
            "benign_label": self.benign_label,
            "features": [f.to_dict() for f in self.features],
            "relations": [dict(r) for r in self.relations],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureSchema:
        """Inverse of :meth:`to_dict`."""
        if "features" not in data:
            raise SchemaError("schema has no 'features' list")
        return cls(
            features=tuple(Feature.from_dict(f) for f in data["features"]),
            label=str(data.get("label", "label")),
            benign_label=str(data.get("benign_label", "benign")),
            relations=tuple(data.get("relations", ())),
        )

    @classmethod
    def from_file(
        cls,
        path: str | Path,
        *,
        base: FeatureSchema | None = None,
        columns: Sequence[str] | None = None,
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
        result. Every problem raises :class:`SchemaError` naming the file and the key or column.
        """
        path = Path(path)
        data = read_schema_file(path)
        allowed = {"features", "override", "drop", "relations", "add_relations", "label",
                   "benign_label", "description"}
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise SchemaError(f"{path}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")
        try:
            if "features" in data:
                if not isinstance(data["features"], list):
                    raise SchemaError("'features' must be a list of feature tables")
                schema = cls.from_dict(
                    {"features": data["features"],
                     "label": data.get("label", base.label if base else "label"),
                     "benign_label": data.get("benign_label",
                                              base.benign_label if base else "benign"),
                     "relations": list(base.relations) if base else []}
                )
            elif base is not None:
                schema = base
            else:
                raise SchemaError("no 'features' list and no built-in schema to change")
            drop = data.get("drop", [])
            if not isinstance(drop, list):
                raise SchemaError("'drop' must be a list of feature names")
            missing = [str(n) for n in drop if str(n) not in schema.names]
            if missing:
                raise SchemaError(f"'drop' names unknown feature(s) {missing}")
            if drop:
                schema = schema.select([n for n in schema.names if n not in set(map(str, drop))])
            overrides = data.get("override", {})
            if not isinstance(overrides, Mapping):
                raise SchemaError("'override' must be a table of per-feature tables")
            schema = schema.with_overrides(overrides)
            relations = list(data.get("relations", schema.relations))
            relations += list(data.get("add_relations", []))
            schema = replace(
                schema,
                relations=tuple(relations),
                label=str(data.get("label", schema.label)),
                benign_label=str(data.get("benign_label", schema.benign_label)),
            )
            from advsec.features.constraints import relations_from_schema

            relations_from_schema(schema)
        except SchemaError as exc:
            raise SchemaError(f"{path}: {exc}") from None
        if columns is not None:
            cols = set(columns)
            unknown_cols = [n for n in schema.names if n not in cols]
            if unknown_cols:
                raise SchemaError(
                    f"{path}: schema names column(s) {unknown_cols} that the table does not have"
                )
        return schema


def read_schema_file(path: str | Path) -> dict[str, Any]:
    """The dictionary stored in a TOML or YAML schema file (one-line :class:`SchemaError`)."""
    path = Path(path)
    if not path.is_file():
        raise SchemaError(f"{path}: schema file not found")
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            if sys.version_info >= (3, 11):
                import tomllib
            else:  # pragma: no cover - Python 3.10
                import tomli as tomllib
            with path.open("rb") as fh:
                data = tomllib.load(fh)
        elif suffix in (".yaml", ".yml"):
            try:
                import yaml  # type: ignore[import-untyped]
            except ImportError:
                raise SchemaError(
                    f"{path}: reading YAML needs PyYAML (pip install pyyaml); or write TOML"
                ) from None
            with path.open("r", encoding="utf-8") as fh:
                data = yaml.safe_load(fh)
        else:
            raise SchemaError(f"{path}: schema files must end in .toml, .yaml or .yml")
    except SchemaError:
        raise
    except Exception as exc:  # parse errors of either format
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SchemaError(f"{path}: not a valid {suffix[1:].upper()} file: {first}") from None
    if not isinstance(data, dict):
        raise SchemaError(f"{path}: expected a table/mapping at the top level")
    return data


def _relation_features(rel: Mapping[str, Any]) -> list[str]:
    names: list[str] = []
    for key in ("features", "feature", "target", "when", "lhs", "rhs", "min", "mean", "max",
                "numerator", "denominator"):
        value = rel.get(key)
        if isinstance(value, str):
            names.append(value)
        elif isinstance(value, (list, tuple)):
            names.extend(str(v) for v in value)
    return names
