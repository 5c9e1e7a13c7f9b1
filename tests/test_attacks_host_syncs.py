"""The iterative loop makes no host sync per step: the calls that read a tensor's value on the
host (``bool``, ``int``, ``float``, ``item``, ``tolist``, ``numpy``) are as many for 20 steps
as for 5 (a random start's seed, the step size, the final repair's check), so a GPU is never stalled
inside the loop. Counted on the CPU by wrapping those methods."""

from __future__ import annotations

import collections

import pytest
import torch

from advsec.attacks import make_attack
from advsec.datasets.synthetic import make_flows
from advsec.features.space import FeatureSpace
from advsec.models.mlp import MLP

READS = ("__bool__", "__int__", "__float__", "item", "tolist", "numpy")


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
    counts: collections.Counter[str] = collections.Counter()
    for method in READS:
        original = getattr(torch.Tensor, method)

        def counted(self, *a, __f=original, __n=method, **k):
            counts[__n] += 1
            return __f(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, method, counted)
    per_steps = []
    for steps in (5, 20):
        attack = make_attack(name, eps=0.1, steps=steps,
                             feature_space=space if valid else None, seed=0)
        counts.clear()
        attack(model, x, y)
        per_steps.append(dict(counts))
    assert per_steps[0] == per_steps[1]
    # per call: a random start's seed, the step size as a float, the final repair's check
    assert sum(per_steps[1].values()) <= 3
