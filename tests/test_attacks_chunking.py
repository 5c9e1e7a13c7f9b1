"""Chunk sizes chosen for the device: the CPU keeps 4,096 rows (same results as before), a GPU
chunk grows with its free memory and shrinks with the model and the stacked epsilons."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from advsec.attacks import PGD
from advsec.attacks.chunking import CPU_ROWS, MAX_ROWS, chunk_rows, row_bytes
from advsec.models.mlp import MLP

CUDA = torch.device("cuda")
CPU = torch.device("cpu")


def test_requested_size_wins_and_cpu_keeps_its_chunk():
    mlp = MLP(122, 2, hidden=(256, 128, 64))
    assert chunk_rows(777, device=CUDA, n_inputs=122, module=mlp, free_bytes=10**12) == 777
    assert chunk_rows(None, device=CPU, n_inputs=122, module=mlp, stack=5) == CPU_ROWS


def test_gpu_chunk_follows_free_memory_model_and_stack():
    mlp = MLP(122, 2, hidden=(256, 128, 64))
    per_row = row_bytes(122, mlp)
    assert per_row == 4 * (12 * 122 + 6 * (256 + 128 + 64 + 2))
    free = 64 * 2**30
    rows = chunk_rows(None, device=CUDA, n_inputs=122, module=mlp, free_bytes=free)
    assert rows % 1024 == 0 and CPU_ROWS < rows <= MAX_ROWS
    assert rows * per_row <= 0.25 * free < (rows + 1024) * per_row  # the share, used fully
    half = chunk_rows(None, device=CUDA, n_inputs=122, module=mlp, free_bytes=free // 2)
    assert abs(half - rows / 2) <= 1024
    stacked = chunk_rows(None, device=CUDA, n_inputs=122, module=mlp, stack=4, free_bytes=free)
    assert abs(stacked - rows / 4) <= 1024
    wide = MLP(122, 2, hidden=(4096, 4096))
    assert chunk_rows(None, device=CUDA, n_inputs=122, module=wide, free_bytes=free) < rows
    # a small card never goes below the CPU chunk, a huge one never above the cap
    assert chunk_rows(None, device=CUDA, n_inputs=122, module=mlp, free_bytes=2**20) == CPU_ROWS
    assert chunk_rows(None, device=CUDA, n_inputs=122, module=mlp, free_bytes=2**50) == MAX_ROWS
    # black-box models: inputs only, doubled
    assert row_bytes(122, None) == 2 * 4 * 12 * 122


def test_default_chunk_gives_the_results_of_4096_on_cpu():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 2))
    x = torch.rand(9000, 6)
    y = net(x).argmax(1)
    auto = PGD(steps=3, seed=1)(net, x, y, eps=[0.05, 0.1])
    fixed = PGD(steps=3, seed=1, batch_size=4096)(net, x, y, eps=[0.05, 0.1])
    assert all(torch.equal(a, b) for a, b in zip(auto, fixed, strict=True))
    with pytest.raises(ValueError, match="batch_size"):
        PGD(batch_size=0)
