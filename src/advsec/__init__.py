"""advsec: adversarial machine learning for security detectors.

Data flow: datasets -> features -> models -> attacks -> defenses -> evaluation -> reporting ->
experiments. The most used names are re-exported here.
"""

from __future__ import annotations

__version__ = "0.1.0"

# ruff: noqa: E402 -- the `advsec` command sets passive OpenMP waiting before torch loads
from advsec.runtime import prepare_cli_environment as _prepare_cli_environment

_prepare_cli_environment()

from advsec.errors import AdvsecError, ConfigError, DataError, SchemaError
from advsec.features.schema import Feature, FeatureKind, FeatureSchema
from advsec.features.space import FeatureSpace

__all__ = [
    "AdvsecError",
    "ConfigError",
    "DataError",
    "Feature",
    "FeatureKind",
    "FeatureSchema",
    "FeatureSpace",
    "SchemaError",
    "__version__",
]
