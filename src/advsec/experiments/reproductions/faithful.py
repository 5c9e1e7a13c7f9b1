"""The original study's model, training loop and attack settings, reproduced as they were.

- :func:`keras_mlp`: Dense layers with Keras' default initialisation (Glorot-uniform weights,
  zero biases), ReLU, logits out (the softmax is applied by the loss or by :func:`softmax_model`).
- :func:`keras_fit`: Keras ``model.fit`` semantics: Adam (beta 0.9/0.999, epsilon 1e-7), a new
  shuffle every epoch, mean cross-entropy per batch, no validation. A large batch (the original
  used 50,000 rows) is computed in chunks with gradient accumulation: the same gradient up to
  float rounding, at a fraction of the memory. The chunk size is part of the float result (the
  weight gradients sum over its rows): keep it to keep a run's numbers.
- :class:`OwnPredictionAttack`: the original's attack calls: the model's own predictions as
  labels, the loss computed on the softmax output (the probability model passed where logits
  were expected), and for BIM/MIM "targeted" with no target given, so the target is the model's
  own prediction: the attack makes the model *more* confident.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from advsec.attacks.base import as_module
from advsec.attacks.gradient import GradientAttack
from advsec.attacks.result import AttackResult
from advsec.models.inference import batched_logits
from advsec.models.mlp import MLP

__all__ = ["OwnPredictionAttack", "keras_fit", "keras_mlp", "predict", "softmax_model"]

log = logging.getLogger(__name__)


def keras_mlp(n_inputs: int, n_outputs: int, *, hidden: Sequence[int], seed: int) -> MLP:
    """An :class:`~advsec.models.mlp.MLP` (ReLU, no dropout) with Keras' Dense initialisation.

    The ReLUs work in place (on the Linear layer's fresh output: the same values and gradients,
    bit for bit, without a second activation buffer per layer).

    Shapes: input ``(N, n_inputs)`` -> logits ``(N, n_outputs)``.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = MLP(n_inputs, n_outputs, hidden=hidden, dropout=0.0, activation="relu")
        for m in net.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.ReLU):
                m.inplace = True
    return net


def keras_fit(
    module: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    lr: float = 1e-3,
    seed: int = 0,
    chunk: int = 8192,
    progress: Callable[[int, float], None] | None = None,
) -> list[dict[str, float]]:
    """Train ``module`` (logits) on ``x`` ``(N, D)``, ``y`` ``(N,)`` class indices, Keras-style.

    Runs on the module's device (``x`` and ``y`` are moved there; the shuffles are drawn on the
    CPU, so they are the same on every device). Returns the per-epoch history (``epoch``,
    ``loss``: mean training cross-entropy). The module is left in eval mode.
    """
    param = next(module.parameters(), None)
    dev = param.device if param is not None else x.device
    x, y = x.to(dev), y.to(dev)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(module.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-7)
    history: list[dict[str, float]] = []
    module.train()
    n = len(x)
    for epoch in range(epochs):
        perm = torch.randperm(n, generator=gen)
        total = torch.zeros((), dtype=torch.float64, device=dev)  # read once per epoch
        for start in range(0, n, batch_size):
            idx = perm[start : start + batch_size]
            opt.zero_grad(set_to_none=True)
            for part in idx.to(dev).split(chunk):
                loss = F.cross_entropy(module(x[part]), y[part], reduction="sum") / len(idx)
                loss.backward()
                total += loss.detach().to(torch.float64) * len(idx)
            opt.step()
        entry = {"epoch": float(epoch + 1), "loss": float(total) / max(n, 1)}
        history.append(entry)
        if progress is not None:
            progress(epoch + 1, entry["loss"])
    module.eval()
    return history


def softmax_model(module: nn.Module) -> nn.Module:
    """``module`` followed by a softmax: the probability model the original attacked."""
    return nn.Sequential(module, nn.Softmax(dim=1))


def predict(module: nn.Module, x: torch.Tensor, *, chunk: int = 8192) -> torch.Tensor:
    """Predicted class indices ``(N,)`` (eval mode, no gradient, CPU)."""
    return batched_logits(module, x, batch_size=chunk).argmax(dim=1)


class OwnPredictionAttack:
    """An attack called as the original study called it.

    The wrapped attack is run against ``softmax(model)`` (its cross-entropy is computed on
    probabilities), with the model's own predictions as labels, and, when ``targeted``, with
    those predictions as the target. ``run(model, x, y, eps=...)`` ignores ``y`` (the true
    labels are only used to score the result), so it plugs into
    :func:`advsec.evaluation.evaluate_attack` and :func:`advsec.evaluation.worst_case`.

    Args:
        attack: a configured gradient attack (``bounds=None`` for no clipping).
        name: the name in result tables (e.g. ``"bim (faithful)"``).
    """

    evasion = False

    def __init__(self, attack: GradientAttack, *, name: str) -> None:
        self.attack = attack
        self.name = name
        self.targeted = attack.targeted

    @property
    def seed(self) -> int:
        """The wrapped attack's seed."""
        return self.attack.seed

    def run(self, model: Any, x: torch.Tensor, y: torch.Tensor | None = None, *,
            eps: float | Sequence[float] | None = None, **_: Any) -> AttackResult:
        """Attack ``x`` ``(N, D)``; returns the wrapped attack's result (``x_adv`` per eps)."""
        module = as_module(model)
        prob = softmax_model(module)
        x = torch.as_tensor(x).float()
        pred = predict(module, x)
        if self.targeted:
            return self.attack.run(prob, x, pred, eps=eps, target=pred, evaluate=False)
        return self.attack.run(prob, x, pred, eps=eps, evaluate=False)

    def craft(self, model: Any, x: torch.Tensor, y: torch.Tensor | None = None, *,
              eps: float | Sequence[float] | None = None) -> AttackResult:
        """The :class:`~advsec.attacks.protocol.Crafter` contract: :meth:`run`'s unscored
        result, labelled with the true classes ``y`` (when given) and untargeted (its targets
        are the model's own predictions, the original's flaw, not an attacker's goal)."""
        result = self.run(model, x, y, eps=eps)
        if y is not None:
            result.y = torch.as_tensor(y).long().to(result.y.device)
        result.target = None
        return result

    def __call__(self, model: Any, x: torch.Tensor, y: torch.Tensor | None = None, *,
                 eps: float | None = None) -> torch.Tensor:
        """Adversarial inputs ``(N, D)`` for one eps."""
        return self.run(model, x, y, eps=eps).x_adv[0]

    def __repr__(self) -> str:
        return f"OwnPredictionAttack({self.attack!r}, name={self.name!r})"
