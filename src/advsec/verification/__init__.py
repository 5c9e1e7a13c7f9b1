"""Certified robustness on the attacks' valid region: IBP, CROWN and alpha-CROWN for ReLU
MLPs, a MILP for trees.

The contract mirrors the attacks'::

    verifier(model, x, y, *, eps=[...]) -> VerifyResult     # verified (E, N), margin, seconds

- :mod:`~advsec.verification.network`: the model as affine layers and ReLUs;
- :mod:`~advsec.verification.ibp`, :mod:`~advsec.verification.crown`: the bounds, batched in
  torch on any device;
- :mod:`~advsec.verification.region`: the valid region of a record as boxes (the L-inf
  attacks' own box, a superset of the valid records);
- :mod:`~advsec.verification.base`, :mod:`~advsec.verification.verifiers`: the frame and the
  verifiers, registered by name below;
- :mod:`~advsec.verification.trees_milp` (``tree-milp``): the exact verifier and attack of tree
  ensembles, a MILP per record on HiGHS (:mod:`~advsec.verification.tree_program`,
  :mod:`~advsec.verification.tree_relations`); the fast tree attack is the ``tree-search``
  attack (:mod:`advsec.attacks.tree_search`).

Example:
    >>> from advsec.verification import make_verifier
    >>> res = make_verifier("crown", feature_space=space)(detector, x, y, eps=[0.01, 0.05])
    >>> res.certified_accuracy
"""

from __future__ import annotations

from typing import Any

from advsec.attacks.spec import constructor_options
from advsec.errors import ConfigError
from advsec.verification.base import Verifier
from advsec.verification.bounds import Bounds, margin_spec, other_classes
from advsec.verification.crown import (
    alpha_crown_margin,
    crown_bounds,
    crown_layers,
    crown_margin,
)
from advsec.verification.ibp import ibp_bounds, ibp_layers, ibp_margin
from advsec.verification.network import ReluNetwork, relu_network
from advsec.verification.region import Region, linf_region
from advsec.verification.result import TABLE_COLUMNS, VerifyResult
from advsec.verification.trees_milp import TreeMILP, TreeVerifyResult
from advsec.verification.verifiers import CROWN, IBP, AlphaCROWN

__all__ = [
    "CROWN",
    "IBP",
    "TABLE_COLUMNS",
    "VERIFIERS",
    "AlphaCROWN",
    "Bounds",
    "Region",
    "ReluNetwork",
    "TreeMILP",
    "TreeVerifyResult",
    "Verifier",
    "VerifyResult",
    "alpha_crown_margin",
    "crown_bounds",
    "crown_layers",
    "crown_margin",
    "ibp_bounds",
    "ibp_layers",
    "ibp_margin",
    "linf_region",
    "make_verifier",
    "margin_spec",
    "other_classes",
    "relu_network",
]

#: name -> class of every verifier
VERIFIERS: dict[str, type[Verifier]] = {cls.name: cls for cls in (IBP, CROWN, AlphaCROWN,
                                                                  TreeMILP)}


def make_verifier(name: str, **options: Any) -> Verifier:
    """Build the verifier registered as ``name`` (case-insensitive) with keyword ``options``.

    Raises:
        ConfigError: for an unknown name or an option its constructor does not take (listing
            the known ones).
    """
    key = str(name).strip().lower()
    if key not in VERIFIERS:
        raise ConfigError(f"unknown verifier {name!r}; known: {', '.join(sorted(VERIFIERS))}")
    cls = VERIFIERS[key]
    allowed = list(constructor_options(cls))
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(f"{key}: unknown option(s) {unknown}; allowed: {', '.join(allowed)}")
    return cls(**options)
