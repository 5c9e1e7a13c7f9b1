"""Whether adversarial model inputs are real records an attacker could send."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from advsec.features.space import FeatureSpace

__all__ = ["clean_validity", "valid_records"]


def valid_records(
    space: FeatureSpace, x_adv: torch.Tensor | np.ndarray, x: torch.Tensor | np.ndarray, *,
    tol: float = 1e-4, clean_valid: np.ndarray | None = None,
) -> np.ndarray:
    """``(N,)`` bool: rows of ``x_adv`` ``(N, D)`` that are valid records derived from ``x``.

    The one definition of "valid" (``valid`` column, ``valid_share``, exports, reports). A row
    is valid when (1) its immutable columns equal the original row's, (2) it encodes a real
    record: re-encoding its decoded record gives back the same model input within ``tol``
    (integers whole, one-hot blocks exactly one-hot, bounds held), and (3) the decoded record,
    checked by :meth:`FeatureSpace.validate` against the decoded original (bounds, value
    sets, relations with the schema's tolerances, directions, immutables), breaks no check
    that the decoded original passes: a check the clean record already fails (a test value
    outside the training range, a TTL never seen in training) is not the attack's doing.

    Args:
        space: the fitted FeatureSpace the inputs came from.
        x_adv, x: adversarial and original model inputs, ``(N, D)``.
        tol: tolerance of the re-encoding check in model-input units.
        clean_valid: :func:`clean_validity` of ``x`` when already known (computed otherwise):
            an ``(N, C)`` matrix, True = the clean record fails that check; a ``(N,)`` vector
            is read the older way, True = the clean record is valid (a row whose clean record
            is invalid is then not held to (3) at all).
    """
    xa = _numpy(x_adv)
    xo = _numpy(x)
    if xa.shape != xo.shape:
        raise ValueError(f"x_adv {xa.shape} and x {xo.shape} differ in shape")
    if len(xa) == 0:
        return np.zeros(0, dtype=bool)
    bad = ~np.isfinite(xa).all(axis=1)
    if bad.any():  # never the records' fault: decoding them would blame the user's data
        raise ValueError(f"adversarial inputs: row {int(np.argmax(bad))} (0-based) and "
                         f"{int(bad.sum()) - 1} more hold NaN or infinite values: the attack's "
                         f"gradients or the model's scores were not finite")
    fixed = ~np.asarray(space.mutable_mask, dtype=bool)
    ok = np.all(xa[:, fixed] == xo[:, fixed], axis=1)
    clean = space.decode(xo)
    raw = space.decode(xa, reference=clean)
    again = np.asarray(space.encode(raw), dtype=np.float64)
    ok &= np.max(np.abs(again - xa), axis=1) <= tol
    checks = space.validate(raw, reference=clean).to_numpy(dtype=bool)
    base = clean_validity(space, xo) if clean_valid is None else np.asarray(clean_valid,
                                                                             dtype=bool)
    if base.ndim == 1:  # a per-row verdict: rows whose clean record fails are not held to (3)
        return ok & (~checks.any(axis=1) | ~base)
    pad = np.zeros((len(xa), checks.shape[1] - base.shape[1]), dtype=bool)  # action checks
    return ok & ~(checks & ~np.concatenate([base, pad], axis=1)).any(axis=1)


def clean_validity(space: FeatureSpace, x: torch.Tensor | np.ndarray) -> np.ndarray:
    """``(N, C)`` bool: the checks of :meth:`FeatureSpace.validate` (bounds, value sets,
    relations) that the decoded records of ``x`` ``(N, D)`` fail; what :func:`valid_records`
    does not hold against an attack."""
    return space.validate(space.decode(_numpy(x))).to_numpy(dtype=bool)


def _numpy(x: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy().astype(np.float64)
    return np.asarray(x, dtype=np.float64)
