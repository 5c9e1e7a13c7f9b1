"""Relations between features that every real record satisfies, each with a violation and a repair.

A relation is configured by one entry of a schema's ``relations`` list (a dictionary, e.g. read from
a TOML schema file). Five types cover the relations that flow features obey:

``sum``
    ``sum(features) <op> target``. Keys: ``features`` (list of names), ``target`` (a feature name
    or a number), ``op`` (``"=="``, the default, or ``"<="``), ``tol`` (absolute, default 0),
    ``rtol`` (relative to ``|target|``, default 0). Example: ``tcprtt == synack + ackdat``, or
    ``serror_rate + rerror_rate <= 1``.
``ratio``
    ``target == scale * numerator / denominator`` (the ratio counts as 0 when the denominator is 0).
    Keys: ``target``, ``numerator``, ``denominator``, ``scale`` (default 1), ``tol``, ``rtol``.
    Example: mean packet size ``smean == sbytes / spkts`` within 1 byte.
``order``
    ``features[0] <= features[1] <= ...`` within ``tol``. Example: ``min <= mean <= max``.
``zero_if_zero``
    When ``when`` is zero (``|when| <= tol``), every feature in ``features`` is zero. Example: no
    compromise counters without a login.
``formula``
    ``target == expr`` within ``tol + rtol * |target|``, ``expr`` an arithmetic expression of
    features (:mod:`advsec.features.formula`). Example: ``rate == (spkts + dpkts - 1) / dur``.

Every relation may carry a ``name`` (default: built from its type and features), a
``description`` and ``holds_on``, the share of training rows it holds on (written by constraint
discovery, :mod:`advsec.features.discovery`). A relation without ``holds_on`` must hold on every
training record; one with ``holds_on`` on at least that share of them
(``FeatureSpace.check_training``). Either way an adversarial record may not break a relation its
original record satisfies (``advsec.attacks.validity.valid_records``).

All of them act on a *raw* tensor: a float ``(N, K)`` tensor whose column ``index[name]`` holds
the raw value (physical units, before any scaling) of feature ``name``. :meth:`Relation.bind`
fixes that mapping; a :class:`~advsec.features.space.FeatureSpace` binds its relations to its
numeric features in order, the layout of ``FeatureSpace.to_raw(x)``.

- :meth:`Relation.violation` returns ``(N,)`` non-negative values in raw units, zero exactly when
  the relation holds; it is differentiable in torch (almost everywhere: the ``zero_if_zero`` gate
  is piecewise constant in ``when``), so an attack may add it to its loss.
- :meth:`Relation.repair` returns a corrected copy of ``raw`` that changes only mutable columns;
  a record it cannot fix without touching an immutable column is left as it is (the caller then
  falls back to the original record).
"""

from __future__ import annotations

import itertools
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from advsec.errors import SchemaError
from advsec.features.schema import FeatureSchema

__all__ = [
    "RELATION_TYPES",
    "VIOLATION_EPS",
    "FormulaRelation",
    "OrderRelation",
    "RatioRelation",
    "Relation",
    "SumRelation",
    "ZeroIfZeroRelation",
    "parse_relation",
    "relations_from_schema",
]

#: A violation above this (raw units) counts as "the relation fails" in checks (float round-off).
VIOLATION_EPS = 1e-9


@dataclass
class Relation(ABC):
    """Base class: a named relation over raw feature values (see the module docstring)."""

    name: str
    description: str = ""
    holds_on: float | None = None
    _index: dict[str, int] = field(default_factory=dict, init=False, repr=False)

    type_name: ClassVar[str] = ""
    keys: ClassVar[tuple[str, ...]] = ()

    @property
    @abstractmethod
    def features(self) -> tuple[str, ...]:
        """Every feature the relation reads, in a fixed order."""

    def bind(self, index: Mapping[str, int]) -> Relation:
        """Fix the raw-tensor column of each feature (``index[name]``); returns ``self``."""
        missing = [f for f in self.features if f not in index]
        if missing:
            raise SchemaError(f"relation {self.name!r}: no column for feature(s) {missing}")
        self._index = {f: int(index[f]) for f in self.features}
        return self

    def columns(self) -> list[int]:
        """The raw-tensor columns the relation reads (after :meth:`bind`)."""
        self._check_bound()
        return [self._index[f] for f in self.features]

    @abstractmethod
    def violation(self, raw: torch.Tensor) -> torch.Tensor:
        """``(N,)`` non-negative violation of each record of ``raw`` ``(N, K)``, in raw units."""

    @abstractmethod
    def repair(self, raw: torch.Tensor, mutable: torch.Tensor) -> torch.Tensor:
        """A copy of ``raw`` ``(N, K)`` where the relation holds, changing only ``mutable`` ``(K,)``
        columns; records that need an immutable change are returned unchanged."""

    def to_dict(self) -> dict[str, Any]:
        """The configuration dictionary (inverse of :func:`parse_relation`)."""
        out: dict[str, Any] = {"type": self.type_name, "name": self.name}
        for key in self.keys:
            out[key] = _plain(getattr(self, key))
        if self.description:
            out["description"] = self.description
        if self.holds_on is not None:
            out["holds_on"] = self.holds_on
        return out

    # -- helpers
    def _check_bound(self) -> None:
        if not self._index:
            raise RuntimeError(f"relation {self.name!r} is not bound to columns: call bind() first")

    def _col(self, raw: torch.Tensor, name: str) -> torch.Tensor:
        return raw[:, self._index[name]]

    def _set(self, raw: torch.Tensor, name: str, value: torch.Tensor,
             rows: torch.Tensor, mutable: torch.Tensor) -> torch.Tensor:
        j = self._index[name]
        if not bool(mutable[j]):
            return raw
        out = raw.clone()
        out[:, j] = torch.where(rows, value.to(raw.dtype), raw[:, j])
        return out

    def _mutable(self, name: str, mutable: torch.Tensor) -> bool:
        return bool(mutable[self._index[name]])


@dataclass
class SumRelation(Relation):
    """``sum(features) <op> target`` with ``op`` in ``{"==", "<="}``."""

    addends: tuple[str, ...] = ()
    target: str | float = 0.0
    op: str = "=="
    tol: float = 0.0
    rtol: float = 0.0

    type_name: ClassVar[str] = "sum"
    keys: ClassVar[tuple[str, ...]] = ("features", "target", "op", "tol", "rtol")

    @property
    def features(self) -> tuple[str, ...]:
        extra = (self.target,) if isinstance(self.target, str) else ()
        return (*self.addends, *extra)

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["features"] = list(self.addends)
        return out

    def _target(self, raw: torch.Tensor) -> torch.Tensor:
        if isinstance(self.target, str):
            return self._col(raw, self.target)
        return torch.full((raw.shape[0],), float(self.target), dtype=raw.dtype, device=raw.device)

    def violation(self, raw: torch.Tensor) -> torch.Tensor:
        self._check_bound()
        total = raw[:, [self._index[f] for f in self.addends]].sum(dim=1)
        target = self._target(raw)
        slack = self.tol + self.rtol * target.abs()
        gap = total - target if self.op == "<=" else (total - target).abs()
        return torch.relu(gap - slack)

    def repair(self, raw: torch.Tensor, mutable: torch.Tensor) -> torch.Tensor:
        self._check_bound()
        bad = self.violation(raw) > VIOLATION_EPS
        if not bool(bad.any()):
            return raw
        cols = [self._index[f] for f in self.addends]
        total = raw[:, cols].sum(dim=1)
        if isinstance(self.target, str) and self._mutable(self.target, mutable):
            # move the target: exact for "==", and the smallest change for "<="
            return self._set(raw, self.target, total, bad, mutable)
        target = self._target(raw)
        mut_cols = [j for j in cols if bool(mutable[j])]
        if not mut_cols:
            return raw
        mut_sum = raw[:, mut_cols].sum(dim=1)
        required = target - (total - mut_sum)
        ok = bad & (required >= 0)
        share = torch.where(
            mut_sum.abs() > 0,
            required / torch.where(mut_sum.abs() > 0, mut_sum, torch.ones_like(mut_sum)),
            torch.zeros_like(mut_sum),
        )
        out = raw.clone()
        for j in mut_cols:
            scaled = torch.where(mut_sum.abs() > 0, raw[:, j] * share, required / len(mut_cols))
            out[:, j] = torch.where(ok, scaled, raw[:, j])
        return out


@dataclass
class RatioRelation(Relation):
    """``target == scale * numerator / denominator`` (0 when the denominator is 0)."""

    target: str = ""
    numerator: str = ""
    denominator: str = ""
    scale: float = 1.0
    tol: float = 0.0
    rtol: float = 0.0

    type_name: ClassVar[str] = "ratio"
    keys: ClassVar[tuple[str, ...]] = ("target", "numerator", "denominator", "scale", "tol", "rtol")

    @property
    def features(self) -> tuple[str, ...]:
        return (self.target, self.numerator, self.denominator)

    def expected(self, raw: torch.Tensor) -> torch.Tensor:
        """``(N,)`` the target value implied by numerator and denominator."""
        num, den = self._col(raw, self.numerator), self._col(raw, self.denominator)
        nonzero = den != 0
        safe = torch.where(nonzero, den, torch.ones_like(den))
        return torch.where(nonzero, self.scale * num / safe, torch.zeros_like(num))

    def violation(self, raw: torch.Tensor) -> torch.Tensor:
        self._check_bound()
        target = self._col(raw, self.target)
        slack = self.tol + self.rtol * target.abs()
        return torch.relu((target - self.expected(raw)).abs() - slack)

    def repair(self, raw: torch.Tensor, mutable: torch.Tensor) -> torch.Tensor:
        self._check_bound()
        bad = self.violation(raw) > VIOLATION_EPS
        if not bool(bad.any()):
            return raw
        if self._mutable(self.target, mutable):
            return self._set(raw, self.target, self.expected(raw), bad, mutable)
        den = self._col(raw, self.denominator)
        if self._mutable(self.numerator, mutable):
            value = self._col(raw, self.target) * den / self.scale
            return self._set(raw, self.numerator, value, bad & (den != 0), mutable)
        return raw


@dataclass
class OrderRelation(Relation):
    """``features[0] <= features[1] <= ...`` within ``tol`` (e.g. min <= mean <= max)."""

    chain: tuple[str, ...] = ()
    tol: float = 0.0

    type_name: ClassVar[str] = "order"
    keys: ClassVar[tuple[str, ...]] = ("features", "tol")

    @property
    def features(self) -> tuple[str, ...]:
        return self.chain

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["features"] = list(self.chain)
        return out

    def violation(self, raw: torch.Tensor) -> torch.Tensor:
        self._check_bound()
        vals = raw[:, [self._index[f] for f in self.chain]]
        return torch.relu(vals[:, :-1] - vals[:, 1:] - self.tol).sum(dim=1)

    def repair(self, raw: torch.Tensor, mutable: torch.Tensor) -> torch.Tensor:
        self._check_bound()
        cols = [self._index[f] for f in self.chain]
        out = raw.clone()
        for a, b in itertools.pairwise(cols):  # raise mutable values to their predecessor
            if bool(mutable[b]):
                out[:, b] = torch.maximum(out[:, b], out[:, a])
        for b, a in itertools.pairwise(reversed(cols)):  # lower mutable values to their successor
            if bool(mutable[a]):
                out[:, a] = torch.minimum(out[:, a], out[:, b])
        return out


@dataclass
class ZeroIfZeroRelation(Relation):
    """When ``when`` is zero, every feature in ``zeroed`` is zero."""

    when: str = ""
    zeroed: tuple[str, ...] = ()
    tol: float = 0.0

    type_name: ClassVar[str] = "zero_if_zero"
    keys: ClassVar[tuple[str, ...]] = ("when", "features", "tol")

    @property
    def features(self) -> tuple[str, ...]:
        return (self.when, *self.zeroed)

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["features"] = list(self.zeroed)
        return out

    def _gate(self, raw: torch.Tensor) -> torch.Tensor:
        return self._col(raw, self.when).abs() <= self.tol

    def violation(self, raw: torch.Tensor) -> torch.Tensor:
        self._check_bound()
        vals = raw[:, [self._index[f] for f in self.zeroed]]
        excess = torch.relu(vals.abs() - self.tol).sum(dim=1)
        return torch.where(self._gate(raw), excess, torch.zeros_like(excess))

    def repair(self, raw: torch.Tensor, mutable: torch.Tensor) -> torch.Tensor:
        self._check_bound()
        gate = self._gate(raw)
        out = raw.clone()
        for f in self.zeroed:
            j = self._index[f]
            if bool(mutable[j]):
                out[:, j] = torch.where(gate, torch.zeros_like(raw[:, j]), raw[:, j])
        return out


from advsec.features.formula import FormulaRelation, parse_formula  # noqa: E402  (needs Relation)

RELATION_TYPES: dict[str, type[Relation]] = {
    cls.type_name: cls for cls in (SumRelation, RatioRelation, OrderRelation, ZeroIfZeroRelation,
                                   FormulaRelation)
}


def parse_relation(config: Mapping[str, Any], schema: FeatureSchema | None = None) -> Relation:
    """Build a :class:`Relation` from its configuration dictionary.

    Raises :class:`SchemaError` (one line, naming the relation) for an unknown type, a missing or
    unknown key, a bad number, or, when ``schema`` is given, a feature that is not a numeric
    feature of the schema.
    """
    if not isinstance(config, Mapping):
        raise SchemaError(f"a relation must be a table/dictionary, got {type(config).__name__}")
    kind = config.get("type")
    label = str(config.get("name") or kind or "?")
    if kind not in RELATION_TYPES:
        raise SchemaError(
            f"relation {label!r}: type must be one of {sorted(RELATION_TYPES)}, got {kind!r}"
        )
    cls = RELATION_TYPES[str(kind)]
    allowed = {"type", "name", "description", "holds_on", *cls.keys}
    unknown = sorted(set(config) - allowed)
    if unknown:
        raise SchemaError(f"relation {label!r} ({kind}): unknown key(s) {unknown}")

    def names(key: str, *, at_least: int) -> tuple[str, ...]:
        value = config.get(key)
        if isinstance(value, str) or not isinstance(value, Sequence) or len(value) < at_least:
            raise SchemaError(
                f"relation {label!r} ({kind}): {key!r} must list at least {at_least} feature names"
            )
        return tuple(str(v) for v in value)

    def name(key: str) -> str:
        value = config.get(key)
        if not isinstance(value, str) or not value:
            raise SchemaError(f"relation {label!r} ({kind}): {key!r} must be a feature name")
        return value

    def number(key: str, default: float) -> float:
        value = config.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(
            value
        ):
            raise SchemaError(f"relation {label!r} ({kind}): {key!r} must be a finite number")
        if key in ("tol", "rtol") and value < 0:
            raise SchemaError(f"relation {label!r} ({kind}): {key!r} must be >= 0")
        return float(value)

    desc = str(config.get("description", ""))
    holds_on = config.get("holds_on")
    if holds_on is not None and (isinstance(holds_on, bool) or not isinstance(
            holds_on, (int, float)) or not 0.0 <= holds_on <= 1.0):
        raise SchemaError(f"relation {label!r} ({kind}): 'holds_on' must be a share in [0, 1], "
                          f"got {holds_on!r}")
    rel: Relation
    if cls is SumRelation:
        addends = names("features", at_least=1)
        target = config.get("target")
        if not isinstance(target, str):
            target = number("target", 0.0) if "target" in config else None
        if target is None:
            raise SchemaError(
                f"relation {label!r} (sum): 'target' must be a feature name or a number")
        op = str(config.get("op", "=="))
        if op not in ("==", "<="):
            raise SchemaError(f"relation {label!r} (sum): 'op' must be '==' or '<=', got {op!r}")
        default = f"sum({'+'.join(addends)}){op}{target}"
        rel = SumRelation(str(config.get("name") or default), desc, addends=addends,
                          target=target, op=op, tol=number("tol", 0.0), rtol=number("rtol", 0.0))
    elif cls is RatioRelation:
        t, n, d = name("target"), name("numerator"), name("denominator")
        rel = RatioRelation(str(config.get("name") or f"ratio({t}={n}/{d})"), desc, target=t,
                            numerator=n, denominator=d, scale=number("scale", 1.0),
                            tol=number("tol", 0.0), rtol=number("rtol", 0.0))
    elif cls is FormulaRelation:
        rel = parse_formula(config, label, desc, number)
    elif cls is OrderRelation:
        chain = names("features", at_least=2)
        rel = OrderRelation(str(config.get("name") or f"order({'<='.join(chain)})"), desc,
                            chain=chain, tol=number("tol", 0.0))
    else:
        when, zeroed = name("when"), names("features", at_least=1)
        rel = ZeroIfZeroRelation(str(config.get("name") or f"zero_if_zero({when})"), desc,
                                 when=when, zeroed=zeroed, tol=number("tol", 0.0))
    if holds_on is not None:
        rel.holds_on = float(holds_on)
    if schema is not None:
        _check_features(rel, schema)
    return rel


def relations_from_schema(schema: FeatureSchema) -> list[Relation]:
    """Every relation of ``schema`` (validated against its features; names must be unique)."""
    rels = [parse_relation(cfg, schema) for cfg in schema.relations]
    seen: set[str] = set()
    for rel in rels:
        if rel.name in seen:
            raise SchemaError(f"relation name {rel.name!r} is used twice")
        seen.add(rel.name)
    return rels


def _check_features(rel: Relation, schema: FeatureSchema) -> None:
    known = {f.name: f for f in schema.features}
    unknown = [f for f in rel.features if f not in known]
    if unknown:
        raise SchemaError(f"relation {rel.name!r} names unknown feature(s) {unknown}")
    categorical = [f for f in rel.features if not known[f].is_numeric]
    if categorical:
        raise SchemaError(f"relation {rel.name!r}: feature(s) {categorical} are categorical; "
                          "relations take numeric features only")


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value
