"""``[data]`` of an experiment file: a registered dataset (name, root, scheme) or a CSV/Parquet
table (path, label column, benign label, schema file), checked against what its loader takes
(options, their types, its label schemes)."""

from __future__ import annotations

import sys
import typing
from typing import Any

from pydantic import (
    Field,
    PydanticSchemaGenerationError,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from advsec.experiments.config_rules import Strict, as_written, located

__all__ = ["FILE_DATASETS", "DataConfig"]


#: ``[data] dataset`` values that read one labelled table (``path``, ``label_column``)
FILE_DATASETS = ("csv", "parquet", "tabular")
#: loader options the runner sets itself (from [data] keys and [experiment] seeds)
_MANAGED_DATA_OPTIONS = frozenset({"seed", "root", "path", "test_path", "label_column",
                                   "benign_label", "scheme", "schema_file"})


def _loader_params(dataset: str) -> set[str]:
    """Every keyword parameter of ``dataset``'s loader (a loader ignores other keywords)."""
    import inspect

    from advsec.datasets import get_loader

    name = "tabular" if dataset in FILE_DATASETS else dataset
    params = inspect.signature(get_loader(name).loader).parameters.values()
    return {p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}


def _loader_options(dataset: str) -> set[str]:
    """The keyword options of ``dataset``'s loader an experiment file may set in ``options``."""
    return _loader_params(dataset) - _MANAGED_DATA_OPTIONS


def _loader_hints(dataset: str) -> dict[str, Any]:
    """The type annotations of ``dataset``'s loader, resolved (empty when they cannot be)."""
    from advsec.datasets import get_loader

    name = "tabular" if dataset in FILE_DATASETS else dataset
    try:
        return typing.get_type_hints(get_loader(name).loader)
    except Exception:  # an annotation not resolvable at runtime: the loader checks its options
        return {}


def _loader_schemes(dataset: str) -> tuple[str, ...] | None:
    """The label schemes ``dataset``'s loader accepts: its module's ``SCHEMES`` (or the KDD
    loaders' ``KDD_SCHEMES``); ``("binary",)`` for a loader without a ``scheme`` option;
    ``None`` when unknown (the loader checks it)."""
    from advsec.datasets import get_loader

    if "scheme" not in _loader_params(dataset):
        return ("binary",)
    name = "tabular" if dataset in FILE_DATASETS else dataset
    module = sys.modules.get(get_loader(name).loader.__module__)
    for attr in ("SCHEMES", "KDD_SCHEMES"):
        schemes = getattr(module, attr, None)
        if isinstance(schemes, tuple) and schemes and all(isinstance(s, str) for s in schemes):
            return schemes
    return None


class DataConfig(Strict):
    """``[data]``: a registered dataset (name + root) or a CSV/Parquet file (path + label)."""

    dataset: str = "synthetic"
    root: str | None = None
    path: str | None = None
    test_path: str | None = None
    label_column: str | None = None
    benign_label: str | None = None
    scheme: str = "binary"
    schema_file: str | None = None
    schema_overrides: dict[str, dict[str, Any]] = Field(default_factory=dict)
    options: dict[str, Any] = Field(default_factory=dict)
    max_train_rows: int | None = Field(None, ge=10)
    max_eval_rows: int | None = Field(2000, ge=10)

    @field_validator("dataset")
    @classmethod
    def _known_dataset(cls, v: str) -> str:
        from advsec.datasets import registered

        known = sorted({*registered(), *FILE_DATASETS})
        if v not in known:
            raise ValueError(f"unknown dataset {v!r}; known: {', '.join(known)}")
        return v

    @model_validator(mode="after")
    def _file_needs_label(self, info: ValidationInfo) -> DataConfig:
        if self.dataset in FILE_DATASETS and not (self.path and self.label_column):
            raise ValueError("a CSV/Parquet dataset needs 'path' and 'label_column'")
        if self.dataset not in FILE_DATASETS:
            for key in ("path", "test_path", "label_column", "benign_label"):
                if getattr(self, key) is not None:
                    why = ("has its own benign class" if key == "benign_label" else
                           "reads its own files from 'root'")
                    raise located((key,), f"only for dataset = \"csv\" or \"parquet\" (dataset "
                              f"{self.dataset!r} {why})")
        elif self.root is not None:
            raise located(("root",), "not used with a CSV/Parquet dataset (set 'path')")
        self._check_loader_keys(info)
        allowed = _loader_options(self.dataset)
        hints = _loader_hints(self.dataset)
        for key, value in self.options.items():
            if key not in allowed:
                what = ("set seeds in [experiment]" if key == "seed" else
                        f"allowed: {', '.join(sorted(allowed))}" if allowed else "none allowed")
                raise located(("options", key),
                              f"unknown option of dataset {self.dataset!r} ({what})")
            if key in hints:
                try:
                    TypeAdapter(hints[key]).validate_python(value, strict=True)
                except ValidationError as exc:
                    raise located(("options", key), str(exc.errors()[0]["msg"])) from None
                except PydanticSchemaGenerationError:  # an annotation pydantic cannot check
                    pass
        test_size = self.options.get("test_size")
        if isinstance(test_size, int | float) and not 0 < test_size < 1:
            raise located(("options", "test_size"), f"the held-out share must be in (0, 1), got "
                      f"{test_size!r}")
        return self

    def _check_loader_keys(self, info: ValidationInfo) -> None:
        """``root``, ``schema_file`` and ``scheme`` only where the loader takes them (it would
        ignore them), ``scheme`` one of the loader's label schemes."""
        params = _loader_params(self.dataset)
        if self.schema_file is not None and "schema_file" not in params:
            raise located(("schema_file",), f"not used by dataset {self.dataset!r} (its schema is "
                      "built in; change features with schema_overrides)")
        if self.root is not None and "root" not in params and as_written(info):
            raise located(("root",), f"not used by dataset {self.dataset!r} (it reads no files)")
        schemes = _loader_schemes(self.dataset)
        if schemes is not None and self.scheme not in schemes:
            raise located(("scheme",), f"dataset {self.dataset!r} has the label scheme(s) "
                      f"{', '.join(schemes)}; got {self.scheme!r}")
