"""``[[detectors]]`` and ``[[defenses]]`` of an experiment file: the detectors to train or load
(an MLP, a scikit-learn baseline, an ONNX file) with the keys each kind uses, and the hardening
methods applied to each MLP."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from advsec.experiments.config_rules import Strict, check_name, located

__all__ = ["DefenseConfig", "DetectorConfig"]


class DetectorConfig(Strict):
    """``[[detectors]]``: an advsec MLP (attacked white-box), a scikit-learn baseline, or a
    detector the user already has as an ONNX file (``kind = "onnx"``, ``path``, ``inputs`` raw
    or encoded, optional ``classes``); baselines and ONNX detectors are scored on examples
    crafted against their surrogate MLP (transfer)."""

    name: str
    kind: Literal["mlp", "random_forest", "hist_gradient_boosting", "logistic_regression",
                  "onnx"] = "mlp"
    path: str | None = None
    inputs: Literal["raw", "encoded"] = "raw"
    classes: list[str] | None = None
    hidden: list[int] = Field(default_factory=lambda: [64, 32], min_length=1)
    dropout: float = Field(0.1, ge=0, lt=1)
    epochs: int = Field(30, ge=1)
    batch_size: int = Field(256, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    validation_split: float = Field(0.1, ge=0, lt=1)
    patience: int = Field(5, ge=1)
    n_estimators: int = Field(100, ge=1)
    max_depth: int | None = Field(None, ge=1)
    surrogate: str | None = None

    @field_validator("hidden")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        if any(h < 1 for h in v):
            raise ValueError(f"hidden sizes must be positive, got {v}")
        return v

    _name = field_validator("name")(check_name)

    @model_validator(mode="after")
    def _onnx_path(self) -> DetectorConfig:
        if self.kind == "onnx" and not self.path:
            raise located(("path",), "an ONNX detector needs path, its .onnx file")
        if self.kind != "onnx" and (self.path is not None or self.classes is not None):
            raise located(("path" if self.path is not None else "classes",),
                      f"only for kind = \"onnx\" (this detector is {self.kind!r})")
        return self

    def used_keys(self) -> list[str]:
        """The keys this detector's kind uses, sorted."""
        return sorted(_KIND_KEYS[self.kind] | {"name", "kind"})

    def unused_keys(self) -> list[str]:
        """The keys set (in the file) that this detector's kind does not use."""
        uses = set(self.used_keys())
        return [k for k in type(self).model_fields if k in self.model_fields_set - uses]


_MLP_KEYS = frozenset({"hidden", "dropout", "epochs", "batch_size", "lr", "weight_decay",
                       "validation_split", "patience"})
#: the keys of ``[[detectors]]`` each kind uses (besides name and kind); others are refused
_KIND_KEYS: dict[str, frozenset[str]] = {
    "mlp": _MLP_KEYS,
    "random_forest": frozenset({"n_estimators", "max_depth", "surrogate"}),
    "hist_gradient_boosting": frozenset({"n_estimators", "max_depth", "surrogate"}),
    "logistic_regression": frozenset({"surrogate"}),
    "onnx": frozenset({"path", "inputs", "classes", "surrogate"}),
}


class DefenseConfig(Strict):
    """``[[defenses]]``: a hardening method applied to each MLP detector."""

    method: str
    name: str | None = None
    attack: str = "fgsm"
    eps: float = Field(0.1, gt=0, le=1)
    steps: int = Field(7, ge=1)
    epochs: int = Field(10, ge=1)
    ratio: float = Field(1.0, gt=0)
    beta: float = Field(6.0, gt=0)

    _name = field_validator("name")(check_name)

    @field_validator("method")
    @classmethod
    def _method(cls, v: str) -> str:
        from advsec.defenses import METHODS

        key = v.lower().replace("-", "_")
        if key not in METHODS:
            raise ValueError(f"unknown defence {v!r}; known: {', '.join(METHODS)}")
        return key

    @field_validator("attack")
    @classmethod
    def _attack(cls, v: str) -> str:
        from advsec.attacks.registry import attack_spec

        return attack_spec(v).name

    @property
    def label(self) -> str:
        """The name used in tables."""
        return self.name or self.method

    def used_keys(self) -> list[str]:
        """The keys this defence's method uses, sorted (``steps`` for data augmentation only
        with an iterative attack)."""
        uses = set(_METHOD_KEYS[self.method]) | {"method", "name"}
        if self.method == "data_augmentation":
            from advsec.attacks.registry import attack_spec

            if attack_spec(self.attack).budget == "steps":
                uses.add("steps")
        return sorted(uses)

    def unused_keys(self) -> list[str]:
        """The keys set (in the file) that this defence's method does not use."""
        uses = set(self.used_keys())
        return [k for k in type(self).model_fields if k in self.model_fields_set - uses]


#: the keys of ``[[defenses]]`` each method uses (besides method and name); others are refused
_METHOD_KEYS: dict[str, frozenset[str]] = {
    "data_augmentation": frozenset({"attack", "eps", "epochs", "ratio"}),
    "pgd_at": frozenset({"eps", "steps", "epochs"}),
    "fast_at": frozenset({"eps", "epochs"}),
    "trades": frozenset({"eps", "steps", "epochs", "beta"}),
    "crown_ibp": frozenset({"eps", "epochs"}),
}
