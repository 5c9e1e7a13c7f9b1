"""What an attack says about itself, and the registry built from it.

Every attack class declares its facts once, as class attributes, and registers itself by being
defined (:meth:`advsec.attacks.base.Attack.__init_subclass__`)::

    class MyPGD(GradientAttack):
        name = "my-pgd"          # registry name (lower case; '-' between words)
        family = "gradient"      # gradient | score | decision | transfer | tree
        budget = "steps"         # the constructor parameter that sets the work, or None
        norms = ("linf", "l2")   # norms it supports
        needs_gradients = True   # whether it differentiates the model

The registry (:data:`REGISTRY`), :func:`advsec.attacks.make_attack`, the CLI (``--attack``,
``--steps``, ``--norm``), the TOML validation of ``[[attacks]]``, the red-flag checks and the
defences all read these facts; nothing else lists attack names.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "FAMILIES",
    "MANAGED_OPTIONS",
    "NORMS",
    "REGISTRY",
    "AttackSpec",
    "Family",
    "attack_spec",
    "constructor_options",
    "normalise_name",
    "register",
    "spec_for_label",
    "unregister",
]

Family = Literal["gradient", "score", "decision", "transfer", "tree"]
#: the attack families: white-box gradient, score-based and decision-based black-box, transfer
#: (crafted on a surrogate) and tree-ensemble attacks
FAMILIES: tuple[str, ...] = ("gradient", "score", "decision", "transfer", "tree")
#: the norms an attack may support
NORMS: tuple[str, ...] = ("linf", "l2")
#: constructor options that a study sets itself (from its threat model and seed), never a
#: ``[[attacks]]`` entry
MANAGED_OPTIONS = frozenset({"eps", "feature_space", "bounds", "evasion", "benign_class",
                             "seed", "targeted"})


@dataclass(frozen=True)
class AttackSpec:
    """The declared facts of one registered attack class.

    Attributes:
        name: registry name.
        family: one of :data:`FAMILIES`.
        budget: the constructor parameter that sets the attack's work (``"steps"`` for
            iterative attacks, ``"queries"`` for query-based ones), ``None`` for one step.
        norms: the supported norms (a subset of :data:`NORMS`).
        needs_gradients: whether the attack differentiates the model (white box).
        cls: the attack class.
    """

    name: str
    family: str
    budget: str | None
    norms: tuple[str, ...]
    needs_gradients: bool
    cls: type

    @property
    def black_box(self) -> bool:
        """Score-based, decision-based and transfer attacks see no gradient of the target."""
        return self.family in ("score", "decision", "transfer")

    @property
    def single_step(self) -> bool:
        """A gradient attack with no iteration budget (FGSM-like)."""
        return self.family == "gradient" and self.budget is None

    def options(self) -> dict[str, inspect.Parameter]:
        """The keyword parameters the constructor accepts (:func:`constructor_options`)."""
        return dict(constructor_options(self.cls))

    def config_options(self) -> dict[str, Any]:
        """Options an experiment file may set, name -> resolved type annotation
        (:meth:`options` without :data:`MANAGED_OPTIONS`)."""
        hints: dict[str, Any] = {}
        for klass in reversed(self.cls.__mro__):
            init = klass.__dict__.get("__init__")
            if init is not None:
                hints.update(_hints(init))
        return {name: hints.get(name, Any) for name in self.options()
                if name not in MANAGED_OPTIONS}


#: name -> spec of every registered attack, in registration order
REGISTRY: dict[str, AttackSpec] = {}


def normalise_name(name: str) -> str:
    """Registry key of ``name``: lower case, ``_`` read as ``-``."""
    return str(name).strip().lower().replace("_", "-")


def register(cls: type) -> AttackSpec:
    """Register ``cls`` under its declared ``name`` (called when an attack class is defined).

    Raises:
        TypeError: when a declared fact is malformed or the name belongs to another class.
    """
    name = getattr(cls, "name", "")
    if not isinstance(name, str) or not name or normalise_name(name) != name:
        raise TypeError(f"{cls.__qualname__}.name must be a lower-case registry name "
                        f"(words joined by '-'), got {name!r}")
    family, budget = cls.family, cls.budget  # type: ignore[attr-defined]
    norms, grads = tuple(cls.norms), bool(cls.needs_gradients)  # type: ignore[attr-defined]
    if family not in FAMILIES:
        raise TypeError(f"{cls.__qualname__}.family must be one of {FAMILIES}, got {family!r}")
    if not norms or any(n not in NORMS for n in norms):
        raise TypeError(f"{cls.__qualname__}.norms must be a non-empty subset of {NORMS}, "
                        f"got {norms!r}")
    spec = AttackSpec(name, family, budget, norms, grads, cls)
    if budget is not None and budget not in spec.options():
        raise TypeError(f"{cls.__qualname__}.budget {budget!r} is not a constructor parameter")
    old = REGISTRY.get(name)
    if old is not None and (old.cls.__module__, old.cls.__qualname__) != (
            cls.__module__, cls.__qualname__):
        raise TypeError(f"attack name {name!r} is taken by {old.cls.__module__}."
                        f"{old.cls.__qualname__}")
    REGISTRY[name] = spec
    return spec


def unregister(name: str) -> None:
    """Remove the attack registered as ``name`` (a no-op when none is), e.g. after a test."""
    REGISTRY.pop(normalise_name(name), None)


def attack_spec(name: str) -> AttackSpec:
    """The spec registered as ``name`` (case-insensitive, ``_`` or ``-``).

    Raises:
        ValueError: for an unknown name, listing the known ones.
    """
    key = normalise_name(name)
    if key not in REGISTRY:
        raise ValueError(f"unknown attack {name!r}; known: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[key]


def spec_for_label(label: str, registry: Mapping[str, AttackSpec] | None = None
                   ) -> tuple[AttackSpec | None, str]:
    """``(spec, suffix)`` of a table label such as ``"pgd-valid"`` or ``"fgsm (faithful)"``:
    the registered attack whose name is the longest prefix of the label (ending at a
    non-alphanumeric character), and the rest of the label; ``(None, label)`` when none is."""
    low = str(label).strip().lower()
    reg = REGISTRY if registry is None else registry
    for name in sorted(reg, key=len, reverse=True):
        for form in {name, name.replace("-", "_")}:
            if low.startswith(form) and (len(low) == len(form) or not low[len(form)].isalnum()):
                return reg[name], low[len(form):]
    return None, low


def constructor_options(cls: type) -> dict[str, inspect.Parameter]:
    """The keyword parameters ``cls``'s constructor accepts, by name (``**options`` followed
    through the base classes' constructors); computed once per class."""
    if cls in _OPTIONS:
        return _OPTIONS[cls]
    out: dict[str, inspect.Parameter] = {}
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters.values()
        for p in params:
            if p.kind is p.KEYWORD_ONLY or (p.kind is p.POSITIONAL_OR_KEYWORD
                                            and p.name != "self"):
                out.setdefault(p.name, p)
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    _OPTIONS[cls] = out
    return out


_OPTIONS: dict[type, dict[str, inspect.Parameter]] = {}


def _hints(fn: Any) -> dict[str, Any]:
    """Resolved annotations of ``fn`` (``{}`` when they cannot be resolved)."""
    try:
        return typing.get_type_hints(fn)
    except Exception:  # an annotation naming something not importable at runtime
        return {}
