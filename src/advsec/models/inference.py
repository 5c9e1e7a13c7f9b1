"""Running a network for inference: eval mode for a block, and batched no-gradient logits."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from advsec.errors import DataError

__all__ = ["batched_logits", "check_finite", "eval_mode"]


@contextlib.contextmanager
def eval_mode(module: nn.Module | None) -> Iterator[nn.Module | None]:
    """Put ``module`` in eval mode for the block and restore every submodule's mode after."""
    if module is None:
        yield None
        return
    modes = [(m, m.training) for m in module.modules()]
    if not any(training for _, training in modes):  # already in eval mode: nothing to do
        yield module
        return
    module.eval()
    try:
        yield module
    finally:
        for m, training in modes:
            m.training = training


def batched_logits(module: nn.Module, x: torch.Tensor, *, batch_size: int = 8192) -> torch.Tensor:
    """``module``'s outputs ``(N, C)`` on ``x`` ``(N, D)`` as a CPU tensor: in eval mode (the
    mode restored after), without gradient, ``batch_size`` rows at a time on the module's
    device. An empty ``x`` gives ``(0, C)``. NaN or infinite outputs are a one-line
    :class:`DataError` (:func:`check_finite`), not predictions."""
    param = next(module.parameters(), None)
    dev = param.device if param is not None else x.device
    with eval_mode(module), torch.no_grad():
        out = torch.cat([module(c.to(dev)).cpu() for c in x.split(batch_size)])
    check_finite(out)
    return out


def check_finite(scores: torch.Tensor) -> None:
    """A one-line :class:`DataError` when the model's outputs ``scores`` ``(N, C)`` (a CPU
    tensor: the check reads one value, no device sync) hold NaN or infinite values: their
    argmax and softmax would be meaningless predictions."""
    if not scores.is_floating_point() or scores.ndim == 0:
        return
    finite = torch.isfinite(scores.reshape(len(scores), -1)).all(dim=1)
    if bool(finite.all()):
        return
    bad = int((~finite).sum())
    first = int(torch.nonzero(~finite)[0, 0]) + 1
    raise DataError(f"the model returned NaN or infinite scores for {bad} of {len(scores)} "
                    f"records (first: record {first}); advsec needs finite scores to predict "
                    f"records")
