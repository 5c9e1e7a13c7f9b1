"""The model types attacks and evaluations accept."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeAlias, runtime_checkable

import numpy as np
import torch
from torch import nn

__all__ = ["AnyModel", "LogitsModel", "Model", "ProbaModel"]


@runtime_checkable
class LogitsModel(Protocol):
    """An object whose ``as_module()`` is a network ``(N, D) -> logits (N, C)`` (an advsec
    Detector, or a wrapper of a user's own network)."""

    def as_module(self) -> nn.Module: ...


#: a white-box model: a network returning logits, or a :class:`LogitsModel`
Model: TypeAlias = nn.Module | LogitsModel


@runtime_checkable
class ProbaModel(Protocol):
    """A scikit-learn style model: ``predict_proba(X (N, D) NumPy) -> (N, C)``."""

    def predict_proba(self, X: np.ndarray) -> np.ndarray: ...


#: what an attack may be pointed at: a white-box :data:`Model`, or, for attacks that need no
#: gradient, a :class:`ProbaModel` or a callable ``(N, D) tensor -> (N, C) scores``
AnyModel: TypeAlias = nn.Module | LogitsModel | ProbaModel | Callable[[torch.Tensor], torch.Tensor]
