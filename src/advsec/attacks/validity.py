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

    A row is valid when (1) its immutable columns equal the original row's, (2) it encodes a
    real record: re-encoding its decoded record gives back the same model input within ``tol``
    (integers whole, one-hot blocks exactly one-hot, bounds held), and (3) the decoded record
    passes ``space.valid_mask`` (relations, ...) when the space has one.

    Args:
        space: the fitted FeatureSpace the inputs came from.
        x_adv, x: adversarial and original model inputs, ``(N, D)``.
        tol: tolerance of the re-encoding check in model-input units.
        clean_valid: optional ``(N,)`` bool, :func:`clean_validity` of ``x``: a row whose clean
            record already fails ``valid_mask`` (a test value clipped to the training range) is
            not held to check (3), which the attack did not break.
    """
    xa = _numpy(x_adv)
    xo = _numpy(x)
    if xa.shape != xo.shape:
        raise ValueError(f"x_adv {xa.shape} and x {xo.shape} differ in shape")
    if len(xa) == 0:
        return np.zeros(0, dtype=bool)
    fixed = ~np.asarray(space.mutable_mask, dtype=bool)
    ok = np.all(xa[:, fixed] == xo[:, fixed], axis=1)
    raw = space.decode(xa)
    again = np.asarray(space.encode(raw), dtype=np.float64)
    ok &= np.max(np.abs(again - xa), axis=1) <= tol
    if hasattr(space, "valid_mask"):
        passes = np.asarray(space.valid_mask(raw), dtype=bool)
        ok &= passes if clean_valid is None else passes | ~np.asarray(clean_valid, dtype=bool)
    return ok


def clean_validity(space: FeatureSpace, x: torch.Tensor | np.ndarray) -> np.ndarray | None:
    """``(N,)`` bool: rows of ``x`` ``(N, D)`` whose decoded record passes ``space.valid_mask``
    (``None`` when the space has no ``valid_mask``)."""
    if not hasattr(space, "valid_mask"):
        return None
    return np.asarray(space.valid_mask(space.decode(_numpy(x))), dtype=bool)


def _numpy(x: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy().astype(np.float64)
    return np.asarray(x, dtype=np.float64)
