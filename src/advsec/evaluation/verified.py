"""Verified against attacked: certified accuracy (a lower bound on the robust accuracy) beside
the worst-case accuracy under an attack ensemble (an upper bound), on the same records.

A verifier (:mod:`advsec.verification`) proves that every record of a record's valid region at
ε keeps its class; an attack that breaks a record at ε shows that the record is not robust. The
two must never meet: a record both verified and broken at the same ε is a soundness bug (in the
verifier, or an attack that left the region the verifier certified, e.g. a repair outside the
ε-ball). :func:`check_verified_unbroken` raises that red flag, and :func:`verified_vs_attacked`
gives the table: one row per ε with both accuracies, their gap and that count.

Shapes: ``E`` epsilons, ``N`` records (the records verified: the attacked ones, so in evasion
mode only the malicious records).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from advsec.evaluation.checks import Flag
from advsec.verification.result import VerifyResult

__all__ = ["VERIFY_COLUMNS", "check_verified_unbroken", "soundness_check_name",
           "verified_vs_attacked"]

#: the columns of :func:`verified_vs_attacked`
VERIFY_COLUMNS: tuple[str, ...] = (
    "verifier", "eps", "records", "verified", "verified_accuracy", "attacked_accuracy", "gap",
    "verified_broken", "boxes", "verify_seconds", "note")


def _bool_matrix(a: torch.Tensor | np.ndarray, what: str) -> np.ndarray:
    """``a`` as a 2-D bool NumPy array (a ValueError naming ``what`` otherwise)."""
    out = a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    if out.ndim != 2:
        raise ValueError(f"{what} must be (E, N), got shape {out.shape}")
    return out.astype(bool)


def soundness_check_name(verifier: str, threat: str = "") -> str:
    """The check's name in tables: ``verified records unbroken by attacks (crown, valid)``."""
    what = ", ".join(s for s in (verifier, threat) if s)
    return f"verified records unbroken by attacks ({what})" if what else \
        "verified records unbroken by attacks"


def check_verified_unbroken(
    verified: torch.Tensor | np.ndarray,
    robust: torch.Tensor | np.ndarray,
    eps: Sequence[float],
    *,
    detector: str = "",
    verifier: str = "",
    threat: str = "",
) -> Flag:
    """Raised when a record is verified at some ε and broken by an attack at the same ε.

    Args:
        verified: ``(E, N)`` bool, the verifier's certified mask (``VerifyResult.verified``).
        robust: ``(E, N)`` bool, the records classified correctly under every attack at each ε
            (the same records, in the same order).
        eps: the ``E`` epsilons (L-inf, a fraction of each feature's range).
        detector, verifier, threat: what the detail names.
    """
    name = soundness_check_name(verifier, threat)
    v, r = _bool_matrix(verified, "verified"), _bool_matrix(robust, "robust")
    if v.shape != r.shape or v.shape[0] != len(eps):
        raise ValueError(f"verified {v.shape}, robust {r.shape} and {len(eps)} eps disagree")
    if v.size == 0:
        return Flag(name, True, "n/a: no records verified")
    broken = (v & ~r).sum(1)
    who = f"{detector}: " if detector else ""
    if broken.any():
        items = [f"{int(n)} of {int(c)} verified record(s) broken at eps={e:g}"
                 for e, n, c in zip(eps, broken, v.sum(1), strict=True) if n]
        return Flag(name, False, f"{who}soundness bug: " + "; ".join(items[:4])
                    + (f"; +{len(items) - 4} more eps" if len(items) > 4 else "")
                    + " (the verifier or an attack that left the certified region is wrong)")
    return Flag(name, True, f"{who}{int(v.sum())} (record, eps) pair(s) verified over "
                f"{len(eps)} eps, none broken by any attack")


def verified_vs_attacked(result: VerifyResult, robust: torch.Tensor | np.ndarray, *,
                         name: str | None = None) -> pd.DataFrame:
    """One row per ε of ``result``: the columns of :data:`VERIFY_COLUMNS`.

    ``verified_accuracy``: share of the records certified (a lower bound on the robust
    accuracy); ``attacked_accuracy``: share classified correctly under every attack
    (``robust`` ``(E, N)`` bool, an upper bound); ``gap``: attacked minus verified (what
    neither side settles); ``verified_broken``: records both verified and broken (0 unless
    something is unsound); ``verify_seconds``: the verifier's wall time at that ε.
    """
    v = _bool_matrix(result.verified, "verified")
    r = _bool_matrix(robust, "robust")
    if v.shape != r.shape:
        raise ValueError(f"verified {v.shape} and robust {r.shape} disagree")
    n = v.shape[1]
    ver = v.mean(1) if n else np.full(len(result.eps), math.nan)
    att = r.mean(1) if n else np.full(len(result.eps), math.nan)
    return pd.DataFrame({
        "verifier": name or result.verifier, "eps": result.eps, "records": n,
        "verified": v.sum(1).astype(int), "verified_accuracy": ver, "attacked_accuracy": att,
        "gap": att - ver, "verified_broken": (v & ~r).sum(1).astype(int),
        "boxes": result.boxes, "verify_seconds": result.seconds, "note": "",
    }, columns=list(VERIFY_COLUMNS))
