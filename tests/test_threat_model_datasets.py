"""Done means of the own-data issue: a valid-record PGD-50 at eps 0.1 on 1,000 test records
produces no record that breaks a bound, a value set, a relation, a direction or an immutable
feature its original satisfies, checked by :mod:`record_audit` (independent of the attack code);
every training record validates. On the built-in schemas of UNSW-NB15, NSL-KDD and KDD'99, and on
the UNSW-NB15 testing CSV read as a user's own file (schema inferred, relations discovered)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from advsec.attacks import PGD
from advsec.datasets import load
from advsec.features.space import FeatureSpace
from advsec.models import Detector
from record_audit import audit, real_cases, training_failures

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets"
CASES = real_cases(DATA)


@pytest.mark.parametrize("case", list(CASES))
def test_pgd50_records_keep_every_constraint(case):
    name, options = CASES[case]
    if not Path(next(iter(v for k, v in options.items() if k in ("root", "path")))).exists():
        pytest.skip("shared dataset not present")
    ds = load(name, **options)
    rng = np.random.default_rng(0)
    train = ds.train.iloc[np.sort(rng.choice(len(ds.train), min(len(ds.train), 20_000),
                                             replace=False))]
    space = FeatureSpace(ds.schema).fit(ds.train)  # every training record validates (or raises)
    schema = ds.schema.to_dict()
    values = {k: list(v) for k, v in space.values_.items()}
    assert training_failures(schema, values, ds.train) == {}
    det = Detector(hidden=(64,), epochs=3, batch_size=256, lr=3e-3, seed=0, device="cpu").fit(
        space.encode(train), train[ds.label].astype(str).to_numpy())
    test = ds.test.iloc[np.sort(rng.choice(len(ds.test), 1000, replace=False))]
    x = torch.as_tensor(space.encode(test))
    classes = [str(c) for c in det.classes_]
    y = torch.as_tensor([classes.index(v) for v in test[ds.label].astype(str)])
    x_adv = PGD(eps=0.1, steps=50, feature_space=space, seed=0)(det, x, y)
    moved = (x_adv != x).any(dim=1)
    assert int(moved.sum()) > 0  # the attack did something
    orig = test[ds.schema.names].reset_index(drop=True)
    adv = space.decode(x_adv, reference=orig)
    assert audit(schema, values, adv, orig) == {}

