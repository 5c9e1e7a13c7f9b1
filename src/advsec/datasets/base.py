"""The loaded-dataset container and the registry of dataset loaders."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from advsec.errors import ConfigError, DataError
from advsec.features.schema import FeatureSchema

__all__ = ["Dataset", "DatasetInfo", "get_loader", "register", "registered"]


@dataclass
class Dataset:
    """Train and test raw tables with everything needed to encode and score them.

    Attributes:
        name: registry name (e.g. ``"nsl-kdd"``).
        train, test: raw tables; the schema's feature columns plus the label column.
        schema: the feature schema (its ``label`` names the label column, its ``benign_label``
            the benign class under the chosen label scheme).
        scheme: the label scheme (``"binary"``, ``"category"``, ``"attack"``, ...).
        classes: the class labels, benign first, as strings.
        notes: human-readable facts about loading (rows dropped, labels remapped, ...).
    """

    name: str
    train: pd.DataFrame
    test: pd.DataFrame
    schema: FeatureSchema
    scheme: str
    classes: list[str]
    notes: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        """Name of the label column."""
        return self.schema.label

    @property
    def benign_label(self) -> str:
        """The benign class label."""
        return self.schema.benign_label

    def labels(self, split: str = "train") -> np.ndarray:
        """The label column of ``split`` (``"train"`` or ``"test"``) as an array of strings."""
        table = {"train": self.train, "test": self.test}[split]
        return table[self.label].astype(str).to_numpy()


@dataclass(frozen=True)
class DatasetInfo:
    """A registry entry: a loader and what it is."""

    name: str
    loader: Callable[..., Dataset]
    description: str
    files: tuple[str, ...] = ()
    url: str = ""


_REGISTRY: dict[str, DatasetInfo] = {}


def register(
    name: str, *, description: str, files: tuple[str, ...] = (), url: str = ""
) -> Callable[[Callable[..., Dataset]], Callable[..., Dataset]]:
    """Decorator adding a loader ``fn(**options) -> Dataset`` to the registry under ``name``."""

    def wrap(fn: Callable[..., Dataset]) -> Callable[..., Dataset]:
        _REGISTRY[name] = DatasetInfo(name, fn, description, tuple(files), url)
        return fn

    return wrap


def registered() -> dict[str, DatasetInfo]:
    """All registered datasets by name."""
    return dict(_REGISTRY)


def get_loader(name: str) -> DatasetInfo:
    """The registry entry for ``name``; a one-line error listing the known names otherwise."""
    if name not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY))
        raise DataError(f"unknown dataset {name!r}; known datasets: {known}")
    return _REGISTRY[name]


#: seeds are NumPy/torch seeds: integers in [0, 2**32 - 1]
MAX_SEED = 2**32 - 1


def check_seed(seed: Any, *, what: str = "seed") -> int:
    """``seed`` as an int in ``[0, MAX_SEED]``, or a one-line ConfigError."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not (
            0 <= int(seed) <= MAX_SEED):
        raise ConfigError(f"{what}: expected an integer in [0, {MAX_SEED}], got {seed!r}")
    return int(seed)


def load(name: str, **options: Any) -> Dataset:
    """Load the registered dataset ``name``; options go to its loader (``root``, ``seed``...).

    Raises:
        ConfigError: for an unknown name or a seed outside ``[0, 2**32 - 1]``.
    """
    if "seed" in options:
        options["seed"] = check_seed(options["seed"])
    return get_loader(name).loader(**options)
