"""Shared fixtures: the real datasets beside the repository and small deterministic settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def _shared_datasets() -> Path | None:
    env = os.environ.get("ADVSEC_SHARED_DATASETS")
    for candidate in ([Path(env)] if env else []) + [REPO.parent / "shared" / "datasets"]:
        if candidate.is_dir():
            return candidate
    return None


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """The read-only real datasets (../shared/datasets); tests using it skip if it is absent."""
    root = _shared_datasets()
    if root is None:
        pytest.skip("../shared/datasets not found (set ADVSEC_SHARED_DATASETS)")
    return root


@pytest.fixture(autouse=True)
def _single_thread_determinism():
    torch.manual_seed(0)
    yield
