"""The feed-forward network behind :class:`advsec.models.Detector`."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["MLP"]

_ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}


class MLP(nn.Module):
    """Dense layers with an activation (and optional dropout) between them; returns logits.

    Args:
        n_inputs: ``D``, width of the input.
        n_outputs: ``C``, number of classes (2 for a binary detector: two logits).
        hidden: widths of the hidden layers, e.g. ``(64, 32)``.
        dropout: dropout probability after each hidden activation (0 disables it).
        activation: ``"relu"``, ``"tanh"`` or ``"gelu"``.

    Shapes: input ``(N, D)`` float32 -> logits ``(N, C)``.
    """

    def __init__(
        self,
        n_inputs: int,
        n_outputs: int,
        *,
        hidden: Sequence[int] = (64, 32),
        dropout: float = 0.0,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}"
            )
        layers: list[nn.Module] = []
        width = n_inputs
        for h in hidden:
            layers.append(nn.Linear(width, int(h)))
            layers.append(_ACTIVATIONS[activation]())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = int(h)
        layers.append(nn.Linear(width, n_outputs))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, C)`` for inputs ``(N, D)``."""
        return self.net(x)
