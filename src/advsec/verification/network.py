"""The feed-forward ReLU network a verifier bounds: affine layers with a ReLU between them.

:func:`relu_network` reads an advsec :class:`~advsec.models.Detector` (through ``as_module()``),
an :class:`~advsec.models.mlp.MLP` (its ``net``) or a plain ``nn.Sequential`` (nested ones
flattened) into a :class:`ReluNetwork`: ``z_k = W_k a_{k-1} + b_k``, ``a_k = relu(z_k)``,
``a_0 = x``, logits ``z_K``. Consecutive ``nn.Linear`` layers are merged into one affine map
(float64 products), ``nn.Dropout`` and ``nn.Identity`` are identities (the network as it
predicts, in eval mode), a ReLU right after a ReLU is idempotent, and a final ReLU gets an
identity layer after it. Any other layer is refused with a one-line
:class:`~advsec.errors.ConfigError` naming it.

Shapes: ``N`` rows, ``D = n_0`` inputs, ``n_k`` units of layer ``k``, ``C = n_K`` logits.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from advsec.attacks.base import as_module
from advsec.errors import ConfigError
from advsec.models.mlp import MLP
from advsec.models.types import Model

__all__ = ["ReluNetwork", "relu_network"]

_F64 = torch.float64


@dataclass(frozen=True)
class ReluNetwork:
    """Affine layers with a ReLU between consecutive ones (none after the last).

    Attributes:
        weights: ``W_k`` of shape ``(n_k, n_{k-1})``, ``k = 1..K``.
        biases: ``b_k`` of shape ``(n_k,)``; all on one device, in one float dtype.
    """

    weights: tuple[torch.Tensor, ...]
    biases: tuple[torch.Tensor, ...]

    @property
    def depth(self) -> int:
        """``K``, the number of affine layers (``K - 1`` ReLU layers)."""
        return len(self.weights)

    @property
    def n_inputs(self) -> int:
        """``D``."""
        return int(self.weights[0].shape[1])

    @property
    def n_outputs(self) -> int:
        """``C``, the number of logits."""
        return int(self.weights[-1].shape[0])

    @property
    def dtype(self) -> torch.dtype:
        return self.weights[0].dtype

    @property
    def device(self) -> torch.device:
        return self.weights[0].device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, C)`` of inputs ``(N, D)`` (in the network's dtype)."""
        a = x.to(self.dtype)
        for k, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            a = torch.addmm(b, a, w.T)
            if k < self.depth - 1:
                a = a.clamp_min(0)
        return a

    __call__ = forward

    def to(self, dtype: torch.dtype) -> ReluNetwork:
        """The network in float ``dtype``."""
        return ReluNetwork(tuple(w.to(dtype) for w in self.weights),
                           tuple(b.to(dtype) for b in self.biases))


def _layers(module: nn.Module) -> list[nn.Module]:
    """The layers of ``module`` in order (nested Sequentials and MLPs flattened)."""
    if isinstance(module, MLP):
        return _layers(module.net)
    if isinstance(module, nn.Sequential):
        return [leaf for child in module for leaf in _layers(child)]
    return [module]


def relu_network(model: Model | ReluNetwork, *, dtype: torch.dtype = torch.float32,
                 device: torch.device | str | None = None, detach: bool = True) -> ReluNetwork:
    """The :class:`ReluNetwork` of ``model`` in ``dtype`` on ``device`` (default: the model's).

    Args:
        model: an advsec Detector (anything with ``as_module()``), an ``MLP``, an
            ``nn.Sequential`` of ``nn.Linear`` / ``nn.ReLU`` (``nn.Dropout`` and ``nn.Identity``
            are skipped), or a :class:`ReluNetwork` (converted).
        dtype: float dtype of the bounds (float32 or float64).
        detach: ``False`` keeps the weights in the autograd graph of the module's parameters
            (certified training differentiates the bounds through them).

    Raises:
        ConfigError: for any other layer (naming it), a ReLU before the first ``nn.Linear``,
            or a network without an ``nn.Linear``.
    """
    if isinstance(model, ReluNetwork):
        net = model.to(dtype)
        dev = torch.device(device) if device is not None else net.device
        return ReluNetwork(tuple(w.to(dev) for w in net.weights),
                           tuple(b.to(dev) for b in net.biases))
    module = as_module(model)
    weights: list[torch.Tensor] = []
    biases: list[torch.Tensor] = []
    pending: tuple[torch.Tensor, torch.Tensor] | None = None  # affine map since the last ReLU
    after_relu = False
    for i, layer in enumerate(_layers(module)):
        if isinstance(layer, nn.Linear):
            w = (layer.weight.detach() if detach else layer.weight).to(_F64)
            b = ((layer.bias.detach() if detach else layer.bias).to(_F64)
                 if layer.bias is not None
                 else torch.zeros(w.shape[0], dtype=_F64, device=w.device))
            pending = (w, b) if pending is None else (w @ pending[0], w @ pending[1] + b)
            after_relu = False
        elif isinstance(layer, nn.ReLU):
            if pending is None and not after_relu:
                raise ConfigError(f"cannot verify {type(module).__name__}: layer {i} (ReLU) "
                                  f"comes before any nn.Linear")
            if pending is not None:
                weights.append(pending[0])
                biases.append(pending[1])
            pending, after_relu = None, True
        elif not isinstance(layer, (nn.Dropout, nn.Identity)):
            raise ConfigError(f"cannot verify {type(module).__name__}: layer {i} is "
                              f"{type(layer).__name__}; only nn.Linear and nn.ReLU are supported "
                              f"(nn.Dropout and nn.Identity are skipped)")
    if pending is None:
        if not weights:
            raise ConfigError(f"cannot verify {type(module).__name__}: it has no nn.Linear")
        n = weights[-1].shape[0]
        pending = (torch.eye(n, dtype=_F64, device=weights[-1].device),
                   torch.zeros(n, dtype=_F64, device=weights[-1].device))
    weights.append(pending[0])
    biases.append(pending[1])
    dev = torch.device(device) if device is not None else weights[0].device
    return ReluNetwork(tuple(w.to(dev, dtype) for w in weights),
                       tuple(b.to(dev, dtype) for b in biases))
