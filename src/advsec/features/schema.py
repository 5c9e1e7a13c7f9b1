"""What a record is: typed features with physical bounds and attacker mutability.

A :class:`FeatureSchema` describes the raw table (one row per record, one column per feature)
before any encoding. It is plain data: it round-trips through JSON/TOML dictionaries so that a
dataset's defaults can live in a schema file and a user can override them.

Schema-file reference (TOML; YAML with the same structure). Every key is type-checked and an
unknown key is an error; each problem is a one-line :class:`SchemaError` naming the file and the
key (``features[3]``, ``override.src_bytes.lower``, ...).

Top level:

- ``features``: list of feature tables (the complete, ordered schema), or absent to change the
  dataset's built-in schema with ``override`` / ``drop``.
- ``override``: ``{feature name: table}`` of fields to change (not its ``name``: an override
  cannot rename a feature); ``drop``: list of feature names.
- ``relations`` (replace) / ``add_relations`` (append): lists of relation tables
  (:mod:`advsec.features.constraints`).
- ``label``, ``benign_label``: strings (``benign_label`` may be an integer); ``description``.
- ``on_bound_violation``: ``"error"`` (the default) or ``"clip"``, for every feature that does
  not set its own in this file.

A feature table: ``name`` (string, required), ``kind`` (``continuous``, ``integer``, ``binary``,
``categorical``; required), ``lower`` / ``upper`` (finite numbers, ``lower <= upper``, and
``upper - lower`` finite in float64; binary features are always [0, 1]: other bounds are an
error), ``mutable`` (boolean), ``transform`` (``"none"``, ``"log1p"``, which needs
``lower >= 0``), ``categories`` (a non-empty list of distinct labels, categorical only; labels
are compared as text, so ``1`` and ``"1"`` are the same), ``description``
(string), ``on_bound_violation``, ``direction`` (``"any"``, ``"increase"``, ``"decrease"``:
the attacker action model, numeric features only) and ``values`` (the allowed values of a
numeric feature: a list of numbers, or ``"observed"`` for the training split's).

A file with a ``features`` list replaces a built-in or inferred schema only with
``replace = true`` at the top level (so that a one-feature list is never a silent replacement;
use ``override`` to change some features).

``on_bound_violation`` says what loading does with a value outside ``[lower, upper]``:
``"error"`` (default) stops with a :class:`~advsec.errors.DataError` naming the file, the row,
the column and the bound; ``"clip"`` replaces the value by the bound, and the loader logs a
warning and adds a note with how many values of each column were clipped. NaN and infinite values
in numeric features are always an error.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Any

from advsec.errors import SchemaError

__all__ = ["BOUND_POLICIES", "DIRECTIONS", "OBSERVED", "Feature", "FeatureKind", "FeatureSchema",
           "label_pair", "read_schema_file", "relation_list", "type_name"]


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
#: Values of ``on_bound_violation``: what loading does with a value outside a feature's bounds.
BOUND_POLICIES = ("error", "clip")
#: Values of ``direction``: how an attacker may move a mutable numeric feature.
DIRECTIONS = ("any", "increase", "decrease")
#: ``values = "observed"``: the allowed values are the training split's (learned at fit time).
OBSERVED = "observed"
_FEATURE_KEYS = ("name", "kind", "lower", "upper", "mutable", "transform", "categories",
                 "description", "on_bound_violation", "direction", "values")


def type_name(value: object) -> str:
    """How a wrong value is named in an error: ``a table``, ``a list`` or ``int 3``."""
    return "a table" if isinstance(value, Mapping) else (
        "a list" if isinstance(value, (list, tuple)) else f"{type(value).__name__} {value!r}")


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _first_repeat(items: Sequence[str]) -> str | None:
    """The first item of ``items`` that an earlier one equals, or None."""
    seen: set[str] = set()
    for item in items:
        if item in seen:
            return item
        seen.add(item)
    return None


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
        on_bound_violation: ``"error"`` (default) or ``"clip"``: what loading a value outside
            ``[lower, upper]`` does (see the module docstring).
        direction: the attacker's action model for a mutable numeric feature: ``"any"``
            (default), ``"increase"`` (an attacker can add packets, bytes or time to a flow but
            not remove them: an adversarial value is never below the original) or
            ``"decrease"``.
        values: the only values a numeric feature takes (e.g. the TTLs or TCP window sizes a
            stack sends): a list of numbers, or ``"observed"`` for the training split's values
            (learned by ``FeatureSpace.fit``); ``None`` (default): any value within the bounds.
    """

    name: str
    kind: FeatureKind
    lower: float | None = None
    upper: float | None = None
    mutable: bool = True
    transform: str = "none"
    categories: tuple[str, ...] | None = None
    description: str = ""
    on_bound_violation: str = "error"
    direction: str = "any"
    values: tuple[float, ...] | str | None = None

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
        if self.on_bound_violation not in BOUND_POLICIES:
            raise SchemaError(
                f"feature {self.name!r}: on_bound_violation must be one of {BOUND_POLICIES}, "
                f"got {self.on_bound_violation!r}"
            )
        if self.direction not in DIRECTIONS:
            raise SchemaError(f"feature {self.name!r}: direction must be one of {DIRECTIONS}, "
                              f"got {type_name(self.direction)}")
        if self.direction != "any" and kind is FeatureKind.CATEGORICAL:
            raise SchemaError(f"feature {self.name!r}: direction is for numeric features")
        self._check_values(kind)
        for bound in ("lower", "upper"):
            value = getattr(self, bound)
            if value is not None:
                if not _is_number(value) or not math.isfinite(value):
                    raise SchemaError(f"feature {self.name!r}: {bound} must be a finite number, "
                                      f"got {type_name(value)}")
                object.__setattr__(self, bound, float(value))
        if kind is FeatureKind.BINARY:
            object.__setattr__(self, "lower", 0.0)
            object.__setattr__(self, "upper", 1.0)
        if self.lower is not None and self.upper is not None and self.lower > self.upper:
            raise SchemaError(
                f"feature {self.name!r}: lower bound {self.lower} exceeds upper bound {self.upper}"
            )
        if (self.lower is not None and self.upper is not None
                and not math.isfinite(self.upper - self.lower)):
            raise SchemaError(
                f"feature {self.name!r}: its range {self.lower:.3g} .. {self.upper:.3g} "
                f"overflows float64 (upper - lower is not a finite number); expected bounds "
                f"whose difference float64 holds")
        if self.transform == "log1p" and (self.lower is None or self.lower < 0):
            raise SchemaError(f"feature {self.name!r}: log1p needs a lower bound >= 0")
        if kind is FeatureKind.CATEGORICAL:
            if self.transform != "none":
                raise SchemaError(f"feature {self.name!r}: categorical features take no transform")
            if self.categories is not None:
                cats = tuple(str(c) for c in self.categories)
                if not cats:
                    raise SchemaError(f"feature {self.name!r}: categories is empty; expected "
                                      f"the labels, or no categories key (the training split's "
                                      f"labels are used)")
                twice = _first_repeat(cats)
                if twice is not None:
                    raise SchemaError(f"feature {self.name!r}: category {twice!r} is listed "
                                      f"twice in categories; expected each label once")
                object.__setattr__(self, "categories", cats)
        elif self.categories is not None:
            raise SchemaError(f"feature {self.name!r}: only categorical features have categories")

    def _check_values(self, kind: FeatureKind) -> None:
        values = self.values
        if values is None:
            return
        if kind is FeatureKind.CATEGORICAL:
            raise SchemaError(f"feature {self.name!r}: 'values' is for numeric features "
                              "(categorical features list 'categories')")
        if isinstance(values, str):
            if values != OBSERVED:
                raise SchemaError(f"feature {self.name!r}: values must be a list of numbers or "
                                  f"{OBSERVED!r}, got {values!r}")
            return
        if not isinstance(values, (list, tuple)) or not values or not all(
                _is_number(v) and math.isfinite(v) for v in values):
            raise SchemaError(f"feature {self.name!r}: values must be a non-empty list of finite "
                              f"numbers or {OBSERVED!r}, got {type_name(values)}")
        object.__setattr__(self, "values", tuple(sorted({float(v) for v in values})))

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
        if self.on_bound_violation != "error":
            out["on_bound_violation"] = self.on_bound_violation
        if self.direction != "any":
            out["direction"] = self.direction
        if self.values is not None:
            out["values"] = self.values if isinstance(self.values, str) else [
                int(v) if float(v).is_integer() else v for v in self.values]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Feature:
        """Inverse of :meth:`to_dict`; unknown keys and values of the wrong type are an error."""
        if not isinstance(data, Mapping):
            raise SchemaError(f"a feature must be a table with 'name' and 'kind', got "
                              f"{type_name(data)}")
        unknown = set(data) - set(_FEATURE_KEYS)
        name = data.get("name", "?")
        if unknown:
            raise SchemaError(f"feature {name!r}: unknown key(s) {sorted(unknown)}; allowed: "
                              f"{list(_FEATURE_KEYS)}")
        if "name" not in data or "kind" not in data:
            raise SchemaError(f"feature {name!r}: 'name' and 'kind' are required")
        for key, types, what in (("name", str, "a string"), ("kind", str, "a string"),
                                 ("mutable", bool, "true or false"),
                                 ("transform", str, "a string"), ("description", str, "a string"),
                                 ("on_bound_violation", str, "a string"),
                                 ("direction", str, "a string")):
            if key in data and not isinstance(data[key], types):
                raise SchemaError(f"feature {name!r}: {key} must be {what}, got "
                                  f"{type_name(data[key])}")
        if data["kind"] == FeatureKind.BINARY.value:
            for bound, value in (("lower", 0), ("upper", 1)):
                given = data.get(bound)
                if given is not None and (not _is_number(given) or given != value):
                    raise SchemaError(f"feature {name!r}: {bound} = {given!r}, but a binary "
                                      f"feature's bounds are always [0, 1]; expected {bound} "
                                      f"= {value} or no {bound} key")
        cats = data.get("categories")
        if cats is not None and (not isinstance(cats, (list, tuple)) or not all(
                isinstance(c, (str, int)) and not isinstance(c, bool) for c in cats)):
            raise SchemaError(f"feature {name!r}: categories must be a list of labels (strings "
                              f"or integers), got {type_name(cats)}")
        return cls(
            name=data["name"],
            kind=data["kind"],
            lower=data.get("lower"),
            upper=data.get("upper"),
            mutable=data.get("mutable", True),
            transform=data.get("transform", "none"),
            categories=tuple(cats) if cats is not None else None,
            description=data.get("description", ""),
            on_bound_violation=data.get("on_bound_violation", "error"),
            direction=data.get("direction", "any"),
            values=data.get("values"),
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
                fields = dict(overrides[f.name])
                if "name" in fields and fields["name"] != f.name:
                    raise SchemaError(
                        f"override.{f.name}.name: an override cannot rename a feature (got "
                        f"{type_name(fields['name'])}); the feature is the column of its name: "
                        f"drop it and list the other column under features instead")
                base = f.to_dict()
                if fields.get("kind") == FeatureKind.BINARY.value:
                    base.pop("lower", None)  # a binary feature's bounds are [0, 1]
                    base.pop("upper", None)
                data = {**base, **fields, "name": f.name}
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
        """Inverse of :meth:`to_dict`; values of the wrong type are an error."""
        if not isinstance(data, Mapping):
            raise SchemaError(f"a schema must be a table, got {type_name(data)}")
        if "features" not in data:
            raise SchemaError("schema has no 'features' list")
        entries = data["features"]
        if not isinstance(entries, (list, tuple)):
            raise SchemaError(f"'features' must be a list of feature tables, got "
                              f"{type_name(entries)}")
        feats = []
        for i, entry in enumerate(entries, start=1):
            if not isinstance(entry, Mapping):
                raise SchemaError(f"features entry #{i} must be a table with 'name' and 'kind', "
                                  f"got {type_name(entry)}")
            if "name" not in entry:
                raise SchemaError(f"features entry #{i}: 'name' is required")
            feats.append(Feature.from_dict(entry))
        label, benign = label_pair(data.get("label", "label"), data.get("benign_label", "benign"))
        return cls(features=tuple(feats), label=label, benign_label=benign,
                   relations=relation_list(data.get("relations", []), "relations"))

    @classmethod
    def from_file(
        cls,
        path: str | Path,
        *,
        base: FeatureSchema | None = None,
        columns: Sequence[str] | None = None,
        replaces: bool = False,
    ) -> FeatureSchema:
        """Read a TOML or YAML schema file: :func:`advsec.features.schema_file.schema_from_file`
        (the file format is described in this module's docstring)."""
        from advsec.features.schema_file import schema_from_file

        return schema_from_file(path, base=base, columns=columns, replaces=replaces)

def label_pair(label: object, benign: object) -> tuple[str, str]:
    """``(label column, benign label)`` checked (:class:`SchemaError` otherwise)."""
    if not isinstance(label, str) or not label:
        raise SchemaError(f"'label' must be a column name (a string), got {type_name(label)}")
    if not isinstance(benign, (str, int)) or isinstance(benign, bool):
        raise SchemaError(f"'benign_label' must be a string or an integer, got "
                          f"{type_name(benign)}")
    return label, str(benign)


def relation_list(value: object, key: str) -> tuple[Mapping[str, Any], ...]:
    """The relation tables of the schema key ``key`` (a list of tables, else SchemaError)."""
    if not isinstance(value, (list, tuple)):
        raise SchemaError(f"'{key}' must be a list of relation tables, got {type_name(value)}")
    for i, rel in enumerate(value, start=1):
        if not isinstance(rel, Mapping):
            raise SchemaError(f"{key} entry #{i} must be a table with a 'type', got "
                              f"{type_name(rel)}")
    return tuple(value)


def _relation_features(rel: Mapping[str, Any]) -> list[str]:
    names: list[str] = []
    for key in ("features", "feature", "target", "when", "lhs", "rhs", "min", "mean", "max",
                "numerator", "denominator"):
        value = rel.get(key)
        if isinstance(value, str):
            names.append(value)
        elif isinstance(value, (list, tuple)):
            names.extend(str(v) for v in value)
    if isinstance(rel.get("expr"), str):
        from advsec.features.formula import parse_expression

        with contextlib.suppress(SchemaError):  # reported when the relation is parsed
            names.extend(parse_expression(rel["expr"]).names)
    return names


def read_schema_file(path: str | Path) -> dict[str, Any]:
    """The dictionary stored in a TOML or YAML schema file (see
    :func:`advsec.features.schema_file.read_schema_file`)."""
    from advsec.features.schema_file import read_schema_file as read

    return read(path)
