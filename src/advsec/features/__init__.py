"""What a record is (FeatureSchema) and what an attacker may change in it (FeatureSpace)."""

from __future__ import annotations

from advsec.features.schema import Feature, FeatureKind, FeatureSchema
from advsec.features.space import OTHER, FeatureSpace

__all__ = ["OTHER", "Feature", "FeatureKind", "FeatureSchema", "FeatureSpace"]
