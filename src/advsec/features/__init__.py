"""What a record is, and what an attacker may change in it.

- :mod:`~advsec.features.schema`: typed features with physical bounds and mutability.
- :mod:`~advsec.features.space`: :class:`FeatureSpace`, raw records <-> model inputs in [0, 1].
- :mod:`~advsec.features.constraints`: relations between features (violation and repair).
- :mod:`~advsec.features.repair`: the compiled repair of a space (and its guard hooks).
"""

from __future__ import annotations

from advsec.features.constraints import Relation, parse_relation, relations_from_schema
from advsec.features.schema import Feature, FeatureKind, FeatureSchema, read_schema_file
from advsec.features.space import OTHER, FeatureSpace
from advsec.features.torch_view import TorchView

__all__ = [
    "OTHER",
    "Feature",
    "FeatureKind",
    "FeatureSchema",
    "FeatureSpace",
    "Relation",
    "TorchView",
    "parse_relation",
    "read_schema_file",
    "relations_from_schema",
]
