"""The interface shared by advsec's black-box models (tree ensembles, boosters): scores as
attacks call them, labels to class indices and predicted labels, from ``predict_proba``.

Shapes: ``N`` records, ``D`` encoded input columns, ``C`` classes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["ProbaModel", "as_array"]


def as_array(x: Any, *, dtype: type, width: int) -> np.ndarray:
    """``x`` ``(N, D)`` (a tensor or an array) as a C-contiguous NumPy array of ``dtype``;
    a one-line :class:`~advsec.errors.DataError` for another width or a non-finite value."""
    from advsec.errors import DataError

    arr: np.ndarray = np.ascontiguousarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x,
                               dtype=dtype)
    if arr.ndim != 2 or arr.shape[1] != width:
        raise DataError(f"expected inputs of shape (N, {width}), got {arr.shape}")
    if not np.isfinite(arr).all():
        raise DataError("inputs hold NaN or infinite values; expected encoded records")
    return arr


class ProbaModel:
    """A model with ``classes_`` ``(C,)`` and ``predict_proba(x) -> (N, C)``; subclasses define
    both (and ``n_features_in_``, ``feature_space_``, ``data_``)."""

    classes_: np.ndarray

    def predict_proba(self, x: Any) -> np.ndarray:  # pragma: no cover - abstract
        """``(N, C)`` class probabilities of ``x`` ``(N, D)``."""
        raise NotImplementedError

    def __call__(self, x: Any) -> Any:
        """Scores as attacks and scoring call them: ``(N, D)`` tensor -> ``(N, C)``
        probabilities (float32 tensor on ``x``'s device)."""
        import torch

        proba = self.predict_proba(x)
        return torch.as_tensor(proba, dtype=torch.float32, device=getattr(x, "device", None))

    def encode_labels(self, labels: Any) -> Any:
        """``(N,)`` class indices (a long tensor) of the labels ``labels`` (one-line
        :class:`DataError` for a label that is not a class)."""
        from advsec.models.labels import class_indices

        return class_indices(self.classes_, labels)

    def predict(self, x: Any) -> np.ndarray:
        """``(N,)`` the most probable class label of each row of ``x`` ``(N, D)``."""
        return np.asarray(self.classes_[self.predict_proba(x).argmax(axis=1)])
