"""Valid-record robust accuracy before and after the stricter threat model (own-data issue).

For each dataset: a small MLP (hidden 64, 3 epochs, seed 0) on up to 20,000 training records,
then a valid-record PGD-50 at eps 0.1 on 1,000 test records (seed 0) under two schemas:

- ``before``: the schema without directions, value sets and formula relations (the threat model
  of the first version);
- ``after``: the schema as shipped (built-in) or inferred with discovered relations (tabular).

Reported per dataset: clean and robust accuracy, attack success, how many of the ``before``
records break the ``after`` schema's checks (counted by ``tests/record_audit.py``, independent of
the attack code), the relations in effect and the seconds of each attack.

Usage::

    .venv/bin/python bench/threat_model.py [--out bench/results/threat_model.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from advsec.attacks import PGD
from advsec.datasets import load
from advsec.features.schema import FeatureSchema
from advsec.features.space import FeatureSpace
from advsec.models import Detector

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from record_audit import audit, real_cases  # noqa: E402

DATA = ROOT.parent / "shared" / "datasets"
CASES = real_cases(DATA)


def loose(schema: FeatureSchema) -> FeatureSchema:
    """``schema`` without directions, value sets and formula relations."""
    feats = tuple(replace(f, direction="any", values=None) for f in schema.features)
    rels = tuple(r for r in schema.relations if r.get("type") != "formula")
    return replace(schema, features=feats, relations=rels)


def run(name: str, options: dict[str, Any]) -> dict[str, Any]:
    ds = load(name, **options)
    rng = np.random.default_rng(0)
    train = ds.train.iloc[np.sort(rng.choice(len(ds.train), min(len(ds.train), 20_000),
                                             replace=False))]
    test = ds.test.iloc[np.sort(rng.choice(len(ds.test), 1000, replace=False))]
    orig = test[ds.schema.names].reset_index(drop=True)
    strict = FeatureSpace(ds.schema).fit(ds.train)
    values = {k: list(v) for k, v in strict.values_.items()}
    out: dict[str, Any] = {"relations": [
        {k: r.get(k) for k in ("name", "type", "holds_on")} for r in ds.schema.relations],
        "value_sets": {k: len(v) for k, v in values.items()},
        "increase": [f.name for f in ds.schema if f.direction == "increase"]}
    for label, schema in (("before", loose(ds.schema)), ("after", ds.schema)):
        space = FeatureSpace(schema).fit(ds.train)
        det = Detector(hidden=(64,), epochs=3, batch_size=256, lr=3e-3, seed=0, device="cpu")
        det.fit(space.encode(train), train[ds.label].astype(str).to_numpy())
        classes = [str(c) for c in det.classes_]
        x = torch.as_tensor(space.encode(test))
        y = torch.as_tensor([classes.index(v) for v in test[ds.label].astype(str)])
        t0 = time.perf_counter()
        x_adv = PGD(eps=0.1, steps=50, feature_space=space, seed=0)(det, x, y)
        seconds = time.perf_counter() - t0
        with torch.no_grad():
            clean = (det.predict_proba(x.numpy()).argmax(1) == y.numpy()).mean()
            robust = (det.predict_proba(x_adv.numpy()).argmax(1) == y.numpy()).mean()
        adv = space.decode(x_adv, reference=orig)
        broken = audit(ds.schema.to_dict(), values, adv, orig)
        out[label] = {"clean_accuracy": round(float(clean), 4),
                      "robust_accuracy": round(float(robust), 4),
                      "records_changed": int((x_adv != x).any(1).sum()),
                      "breaks_strict_schema": broken, "seconds": round(seconds, 2)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" /
                        "threat_model.json")
    args = parser.parse_args()
    torch.set_num_threads(2)
    results = {case: run(*spec) for case, spec in CASES.items()
               if Path(str(spec[1].get("root", spec[1].get("path")))).exists()}
    text = json.dumps({"pgd": "PGD-50, eps 0.1, L-inf, 1,000 test records", **results},
                      indent=2, default=str)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
