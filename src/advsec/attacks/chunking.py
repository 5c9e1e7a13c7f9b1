"""How many records an attack crafts at once when the user does not say (``batch_size=None``).

On the CPU the answer is :data:`CPU_ROWS` (4,096): bigger chunks do not run faster there and
every CPU result stays what it was. On a GPU a chunk of 4,096 rows leaves the card mostly idle
(a PGD step on a small MLP is launch-bound), so the chunk grows with the memory the card has
free: :func:`chunk_rows` estimates the bytes one stacked row needs during a gradient step
(the input-sized tensors the loop keeps, plus, per layer of the model, the activations
autograd saves and their gradients) and takes the rows that fit in :data:`GPU_MEMORY_SHARE`
of the free memory, between :data:`CPU_ROWS` and :data:`MAX_ROWS`.

Shapes: ``D`` model inputs; a chunk of ``b`` records is stacked once per epsilon (``k``), so
the attack holds ``b * k`` rows.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["CPU_ROWS", "GPU_MEMORY_SHARE", "MAX_ROWS", "chunk_rows", "row_bytes"]

#: rows per chunk on the CPU (and the least on any device)
CPU_ROWS = 4096
#: the most rows per chunk on any device
MAX_ROWS = 1 << 20
#: share of the free GPU memory a chunk may plan to use
GPU_MEMORY_SHARE = 0.25
#: input-sized tensors an iterative attack keeps per row (x0, x, grad, box, best, momentum...)
_INPUT_COPIES = 12
#: per hidden unit: pre-activation, activation and their gradients, with slack
_UNIT_COPIES = 6


def row_bytes(n_inputs: int, module: nn.Module | None, *, element: int = 4) -> int:
    """Estimated bytes one stacked row needs during a gradient step of ``module``.

    Args:
        n_inputs: ``D``.
        module: the model's network (its ``nn.Linear`` widths count), or ``None`` (black-box:
            inputs only, doubled).
        element: bytes per number (4 for float32).
    """
    units = 0
    if module is not None:
        units = sum(m.out_features for m in module.modules() if isinstance(m, nn.Linear))
    per_row = _INPUT_COPIES * n_inputs + _UNIT_COPIES * units
    if module is None or units == 0:
        per_row *= 2
    return int(per_row * element)


def chunk_rows(requested: int | None, *, device: torch.device, n_inputs: int,
               module: nn.Module | None, stack: int = 1,
               free_bytes: int | None = None) -> int:
    """Records per chunk: ``requested`` when given, else chosen for ``device``.

    Args:
        requested: the user's ``batch_size`` (used as is) or ``None``.
        device: where the attack runs; the CPU gets :data:`CPU_ROWS`.
        n_inputs, module: see :func:`row_bytes`.
        stack: epsilons stacked per record (``k``).
        free_bytes: free device memory (default: ``torch.cuda.mem_get_info`` on CUDA).

    Returns:
        Rows per chunk, a multiple of 1,024 between :data:`CPU_ROWS` and :data:`MAX_ROWS`
        (before stacking) when chosen.
    """
    if requested is not None:
        return int(requested)
    if device.type != "cuda" and free_bytes is None:
        return CPU_ROWS
    if free_bytes is None:
        free_bytes, _ = torch.cuda.mem_get_info(device)
    budget = GPU_MEMORY_SHARE * free_bytes
    rows = int(budget // (row_bytes(n_inputs, module) * max(stack, 1)))
    rows = rows // 1024 * 1024
    return max(CPU_ROWS, min(MAX_ROWS, rows))
