"""Shared fixtures: the real datasets beside the repository and small deterministic settings."""

from __future__ import annotations

import os
from pathlib import Path

# `make test` runs under the CLI's thread policy (advsec.runtime): passive OpenMP waiting has
# to be in the environment before torch loads; the thread count is set once per session.
if os.environ.get("ADVSEC_THREADS", "").strip() != "0":
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest
import torch
from torch import nn

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


@pytest.fixture(scope="session", autouse=True)
def _thread_policy():
    from advsec.runtime import apply_thread_policy, thread_policy

    apply_thread_policy(thread_policy())


@pytest.fixture(autouse=True)
def _single_thread_determinism():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module: small networks run faster without OpenMP hand-offs,
    and the machine is shared; restored afterwards. Use with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _fit_small_net(x: torch.Tensor, y: torch.Tensor, *, n_classes: int, n_train: int,
                   lr: float, steps: int) -> nn.Module:
    """A ``D``-32-``n_classes`` ReLU network trained full-batch with Adam on the first
    ``n_train`` rows of ``x`` ``(N, D)``, ``y`` ``(N,)``; returned in eval mode."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(x.shape[1], 32), nn.ReLU(), nn.Linear(32, n_classes))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x[:n_train]), y[:n_train]).backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="session")
def fit_small_net():
    """The trainer of the small test networks (see :func:`_fit_small_net`)."""
    return _fit_small_net


@pytest.fixture(scope="session")
def small_synthetic_detector():
    """``(dataset, fitted FeatureSpace, Detector)``: 1,200 synthetic flows (seed 0) and a small
    MLP trained on them (hidden 16, 15 epochs, seed 0); tests slice their own records."""
    from advsec.datasets import load
    from advsec.features.space import FeatureSpace
    from advsec.models import Detector

    ds = load("synthetic", rows=1200, seed=0)
    space = FeatureSpace(ds.schema).fit(ds.train)
    det = Detector(hidden=(16,), epochs=15, batch_size=64, lr=3e-3, seed=0, device="cpu").fit(
        space.encode(ds.train), ds.labels("train"))
    return ds, space, det
