"""The iterative loop makes no host sync per step: the calls that read a tensor's value on the
host (``bool``, ``int``, ``float``, ``item``, ``tolist``, ``numpy``) are as many for 20 steps
as for 5 (a random start's seed, the step size, the final repair's check), so a GPU is never stalled
inside the loop. Counted on the CPU by wrapping those methods."""

from __future__ import annotations

import collections
import sys
from pathlib import Path

import pytest
import torch

import advsec
from advsec.attacks import make_attack
from advsec.datasets.synthetic import make_flows
from advsec.features.space import FeatureSpace
from advsec.models.mlp import MLP

READS = ("__bool__", "__int__", "__float__", "item", "tolist", "numpy")
#: advsec's own source files (wherever it is installed)
PACKAGE = str(Path(advsec.__file__).parent)


def _count_reads(monkeypatch: pytest.MonkeyPatch) -> collections.Counter[str]:
    """Count, from now on, the host reads made by advsec's own code (torch's internals, such as
    Adam's CPU step counter, are left out)."""
    counts: collections.Counter[str] = collections.Counter()
    for method in READS:
        original = getattr(torch.Tensor, method)

        def counted(self, *a, __f=original, __n=method, **k):
            if sys._getframe(1).f_code.co_filename.startswith(PACKAGE):
                counts[__n] += 1
            return __f(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, method, counted)
    return counts


@pytest.fixture(scope="module")
def setup():
    table, schema = make_flows(600, seed=0)
    space = FeatureSpace(schema).fit(table)
    x = torch.as_tensor(space.encode(table))
    y = torch.randint(0, 2, (len(x),), generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    return space, x, y, MLP(x.shape[1], 2, hidden=(32,)).eval()


@pytest.mark.parametrize("name", ["bim", "pgd", "mim", "apgd"])
@pytest.mark.parametrize("valid", [False, True])
def test_host_reads_do_not_grow_with_the_steps(setup, monkeypatch, name, valid):
    space, x, y, model = setup
    # warm: the space's per-device views and repair plan are built (and read) once
    make_attack(name, eps=0.1, steps=2, feature_space=space if valid else None)(model, x, y)
    counts = _count_reads(monkeypatch)
    per_steps = []
    for steps in (5, 20):
        attack = make_attack(name, eps=0.1, steps=steps,
                             feature_space=space if valid else None, seed=0)
        counts.clear()
        attack(model, x, y)
        per_steps.append(dict(counts))
    assert per_steps[0] == per_steps[1]
    # per call: the input checks (labels, targets, the box: one read), a random start's seed,
    # the step size as a float, the final repair's check
    assert sum(per_steps[1].values()) <= 4
    if valid:  # the final repair's one check is seen: the counting works
        assert per_steps[1].get("__bool__", 0) >= 1


def test_training_reads_no_value_per_batch(monkeypatch):
    """Detector.fit reads the loss once per epoch, not once per mini-batch: the host reads are
    as many with twice the batches (and the recorded loss is the same sum, term by term)."""
    from advsec.models import Detector

    g = torch.Generator().manual_seed(0)
    x = torch.rand((800, 12), generator=g)
    y = (x[:, 0] > 0.5).long()
    counts = _count_reads(monkeypatch)
    per_size = []
    for batch_size in (100, 25):  # 8 and 32 batches per epoch
        det = Detector(hidden=(8,), epochs=2, batch_size=batch_size, seed=0)
        det.fit(x[:40], y[:40])  # warm (first-call caches)
        counts.clear()
        det = Detector(hidden=(8,), epochs=2, batch_size=batch_size, seed=0).fit(x, y)
        per_size.append(sum(counts.values()))
        assert len(det.history_) == 2 and all(h["loss"] > 0 for h in det.history_)
    assert per_size[0] == per_size[1] > 0  # the per-epoch reads are seen
