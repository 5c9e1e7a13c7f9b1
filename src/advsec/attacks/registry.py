"""Attacks by name, for configs and the CLI: a view of :data:`advsec.attacks.spec.REGISTRY`.

Importing this module imports every built-in attack, which registers it; an attack defined
anywhere else registers itself the same way when its class is defined.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from advsec.attacks import (  # noqa: F401  (registers)
    apgd,
    bim,
    fgsm,
    hopskipjump,
    mim,
    pgd,
    square,
    tree_search,
)
from advsec.attacks.base import Attack
from advsec.attacks.spec import REGISTRY, AttackSpec, attack_spec, spec_for_label

__all__ = ["ATTACKS", "AttackSpec", "attack_spec", "make_attack", "spec_for_label"]


class _Classes(Mapping[str, type[Attack]]):
    """name -> attack class of every registered attack (live: follows the registry)."""

    def __getitem__(self, name: str) -> type[Attack]:
        return REGISTRY[name].cls

    def __iter__(self) -> Iterator[str]:
        return iter(REGISTRY)

    def __len__(self) -> int:
        return len(REGISTRY)

    def __repr__(self) -> str:
        return f"ATTACKS({', '.join(REGISTRY)})"


#: name -> class of every registered attack
ATTACKS: Mapping[str, type[Attack]] = _Classes()


def make_attack(name: str, **options: Any) -> Attack:
    """Build the attack registered as ``name`` (case-insensitive, ``_`` or ``-``) with ``options``.

    Raises:
        ValueError: for an unknown name (listing the known ones) or an option the attack's
            constructor does not take (listing the ones it takes).

    Example:
        >>> make_attack("pgd", eps=[0.05, 0.1], steps=20, evasion=True)
    """
    spec = attack_spec(name)
    allowed = spec.options()
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"{spec.name}: unknown option(s) {unknown}; allowed: "
                         f"{', '.join(sorted(allowed))}")
    attack = spec.cls(**options)
    assert isinstance(attack, Attack)
    return attack
