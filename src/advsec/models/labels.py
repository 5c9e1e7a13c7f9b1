"""Labels to class indices, for the models that keep ``classes_`` as labels compared as text."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from advsec.errors import DataError

__all__ = ["class_indices"]


def class_indices(classes: Sequence[Any] | np.ndarray, labels: Any) -> torch.Tensor:
    """``(N,)`` long tensor: the position in ``classes`` ``(C,)`` of each of ``labels``
    ``(N,)``, both compared as ``str``; a label that is not a class is a one-line
    :class:`DataError` naming up to five of them and the classes."""
    names = [str(c) for c in classes]
    index = {c: i for i, c in enumerate(names)}
    values = [str(v) for v in np.asarray(labels)]
    unknown = sorted(set(values) - set(index))
    if unknown:
        raise DataError(f"label(s) {unknown[:5]} are not classes of the model {names}")
    return torch.tensor([index[v] for v in values], dtype=torch.long)
