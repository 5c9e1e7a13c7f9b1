"""``[[verifiers]]`` of an experiment file: a registered verifier and its options.

``name`` names the verifier (any key of :data:`advsec.verification.VERIFIERS`: ``crown``,
``ibp``); every other key except ``label`` is a keyword option of its constructor, checked
against the signature (the allowed keys are listed on a mistake) and its types, then by the
constructor itself. The budget and the region (``eps``, the FeatureSpace of the ``valid``
threat or the plain ``[0, 1]`` box of ``box``) come from ``[threat]``, as for the attacks::

    [[verifiers]]
    name = "crown"
    categorical = "relax"       # optional: any option of advsec.verification.CROWN
    dtype = "float64"           # "float32" (default) or "float64"
"""

from __future__ import annotations

import contextlib
import typing
from typing import Annotated, Any, Literal

import torch
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    PydanticSchemaGenerationError,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from advsec.errors import ConfigError
from advsec.features.space import FeatureSpace

__all__ = ["MANAGED_VERIFIER_OPTIONS", "VerifierConfig", "VerifierList", "verifier_options"]

#: constructor options the run sets itself (from ``[threat]``), not an experiment file
MANAGED_VERIFIER_OPTIONS = frozenset({"eps", "feature_space", "bounds", "device"})
#: ``dtype`` as a TOML file writes it
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def verifier_options(name: str) -> dict[str, Any]:
    """The options an experiment file may set for verifier ``name``: option -> type (the
    constructor's annotation; ``dtype`` as the strings of :data:`DTYPES`)."""
    from advsec.attacks.spec import constructor_options
    from advsec.verification import VERIFIERS

    cls = VERIFIERS[name]
    hints: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        init = klass.__dict__.get("__init__")
        if init is not None:
            # an annotation not resolvable at runtime is left to the class to check
            with contextlib.suppress(Exception):
                hints.update(typing.get_type_hints(init, localns={"FeatureSpace": FeatureSpace}))
    out = {k: hints.get(k, Any) for k in constructor_options(cls)
           if k not in MANAGED_VERIFIER_OPTIONS}
    if "dtype" in out:
        out["dtype"] = Literal["float32", "float64"]
    return out


class VerifierConfig(BaseModel):
    """``[[verifiers]]``: a registered verifier (``name``), an optional table ``label`` and
    the verifier's constructor options (module docstring)."""

    model_config = ConfigDict(extra="allow", strict=True)

    name: str
    label: str | None = None

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        from advsec.verification import VERIFIERS

        key = str(v).strip().lower()
        if key not in VERIFIERS:
            raise ValueError(f"unknown verifier {v!r}; known: {', '.join(sorted(VERIFIERS))}")
        return key

    @model_validator(mode="after")
    def _options(self) -> VerifierConfig:
        from advsec.verification import make_verifier

        allowed = verifier_options(self.name)
        extra = dict(self.model_extra or {})
        for key, value in extra.items():
            if key not in allowed:
                raise PydanticCustomError(
                    "unknown_option", "{key}: unknown key",
                    {"key": key, "allowed": ["name", "label", *sorted(allowed)]})
            try:
                extra[key] = TypeAdapter(allowed[key]).validate_python(value, strict=True)
            except ValidationError as exc:
                raise PydanticCustomError(
                    "bad_option", "{key}: {msg}",
                    {"key": key, "msg": exc.errors()[0]["msg"]}) from None
            except PydanticSchemaGenerationError:  # an annotation pydantic cannot check
                pass
        if self.model_extra is not None:
            self.model_extra.update(extra)
        try:
            make_verifier(self.name, **self.options())
        except (ConfigError, TypeError, ValueError) as exc:
            raise ValueError(str(exc)) from None
        return self

    @property
    def table_label(self) -> str:
        """The name used in tables (``label`` or the verifier's registry name)."""
        return self.label or self.name

    def options(self) -> dict[str, Any]:
        """Constructor options for :func:`advsec.verification.make_verifier` (``dtype`` as a
        torch dtype; unset ones left out)."""
        out = {k: v for k, v in (self.model_extra or {}).items() if v is not None}
        if isinstance(out.get("dtype"), str):
            out["dtype"] = DTYPES[out["dtype"]]
        return out


def _unique(v: list[VerifierConfig]) -> list[VerifierConfig]:
    labels = [c.table_label for c in v]
    if len(set(labels)) != len(labels):
        raise ValueError(f"verifier labels must be unique, got {labels} (set 'label')")
    return v


#: the ``verifiers`` field of an experiment configuration: labels unique
VerifierList = Annotated[list[VerifierConfig], AfterValidator(_unique)]
