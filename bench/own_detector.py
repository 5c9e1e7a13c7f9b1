"""Attacking a detector advsec did not train: decision-based HopSkipJump on a RandomForest.

Issue 13's measured criterion. NSL-KDD binary (``KDDTrain+`` / ``KDDTest+``), the FeatureSpace
of the built-in schema fitted on the training split (valid records: bounds, whole numbers,
value sets, relations, directions, immutables). On the training split: a scikit-learn
``RandomForestClassifier(n_estimators=100, random_state=seed, n_jobs=1)``, wrapped as an
advsec :class:`~advsec.models.trees.TreeEnsemble`, and an advsec MLP ``Detector`` with the
settings of ``advsec train`` (hidden 128-64, 10 epochs, batch 256, lr 1e-3).

On a seeded sample of ``--rows`` test records (default 500), the RF's clean accuracy, then for
every eps (L-inf, a fraction of each feature's range; valid records, i.e. the attacks are given
the FeatureSpace), untargeted:

- ``hopskipjump``: HopSkipJump against the RF directly (labels only): robust accuracy of the
  RF, valid share, label queries per record (median / mean / max over all records, over the
  records the RF got right, and over the records it turned), checked against the rows the
  model wrapper actually saw, and wall seconds;
- ``transfer``: PGD against the MLP (white box), the adversarial records evaluated on the RF:
  robust accuracy of the RF (and of the MLP) on them, valid share, seconds;
- ``square``: Square (score-based, the RF's probabilities) against the RF, for context;
- ``worst_case``: per record over the three: a record counts as robust only if the RF is
  right on it clean and under every attack.

Every adversarial record is decoded and audited with ``tests/record_audit.py`` (independent of
the attack code; ``FeatureSpace.validate`` when it cannot be imported): ``audit_breaks`` counts
the checks adversarial records break that their original passes (0 is the claim).

Usage::

    .venv/bin/python bench/own_detector.py            # about 6 minutes on an idle 2-core machine
    .venv/bin/python bench/own_detector.py --quick    # 100 rows, 200 queries, 20k train rows

JSON to stdout and to ``bench/results/own_detector.json`` (``--out``); progress on stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

import advsec
from advsec.attacks import PGD, HopSkipJump, Square, result_table, score_result, transfer_attack
from advsec.attacks.batch import AttackBatch
from advsec.attacks.hopskipjump import _Search
from advsec.datasets import load
from advsec.features.space import FeatureSpace
from advsec.models import Detector
from advsec.models.trees import TreeEnsemble

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
try:
    from record_audit import audit  # independent of the attack code
except ImportError:  # pragma: no cover - the tests folder is part of the checkout
    audit = None

log = logging.getLogger("bench.own_detector")

#: the MLP settings of ``advsec train`` (src/advsec/cli/train.py)
MLP = {"hidden": (128, 64), "epochs": 10, "batch_size": 256, "lr": 1e-3}


class CountingModel:
    """The RF as the attacks call it (``x (N, D) -> probabilities``), counting rows and calls."""

    def __init__(self, model: TreeEnsemble) -> None:
        self.model = model
        self.rows = 0
        self.calls = 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.rows += len(x)
        self.calls += 1
        return self.model(x)


class CountingHopSkipJump(HopSkipJump):
    """HopSkipJump that keeps each record's label queries (``per_record``, in row order).

    The same search as :class:`HopSkipJump` (its ``_Search``); only the per-record counter,
    which the attack sums into ``info["label_queries"]``, is kept. Valid for untargeted runs
    (every row attacked, chunks in row order)."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.per_record: list[torch.Tensor] = []

    def perturb(self, batch: AttackBatch) -> torch.Tensor:
        positive = [e for e in batch.eps_values if e > 0]
        if not positive or (batch.mutable is not None and not bool(batch.mutable.any())):
            self.per_record.append(torch.zeros(batch.rows, dtype=torch.long))
            return batch.x0.clone()
        search = _Search(self, batch)
        out = search.run(min(positive))
        self.per_record.append(search.used.cpu())
        return out


def stats(values: np.ndarray) -> dict[str, float | int | None]:
    if not len(values):
        return {"n": 0, "median": None, "mean": None, "max": None}
    return {"n": len(values), "median": float(np.median(values)),
            "mean": round(float(values.mean()), 1), "max": int(values.max())}


class Records:
    """Decoding and auditing adversarial inputs against the original records."""

    def __init__(self, space: FeatureSpace, orig: pd.DataFrame) -> None:
        self.space, self.orig = space, orig
        self.x = space.encode(orig)
        self.schema = space.schema.to_dict()
        self.values = {k: list(v) for k, v in space.values_.items()}
        self.orig_checks = space.validate(orig, reference=orig).to_numpy(dtype=bool)

    def check(self, x_adv: np.ndarray) -> dict[str, Any]:
        """``audit_breaks`` (record_audit: checks broken that the original passes, per check),
        ``validate_invalid`` (records with a ``FeatureSpace.validate`` failure the original does
        not have) and ``records_changed``."""
        adv = self.space.decode(x_adv, reference=self.orig)
        checks = self.space.validate(adv, reference=self.orig).to_numpy(dtype=bool)
        out: dict[str, Any] = {
            "records_changed": int((np.asarray(x_adv) != self.x).any(1).sum()),
            "validate_invalid": int((checks & ~self.orig_checks).any(1).sum()),
        }
        if audit is not None:
            broken = audit(self.schema, self.values, adv, self.orig)
            out["audit_breaks"] = int(sum(broken.values()))
            out["audit_by_check"] = broken
        return out


def black_box(attack: Any, rf: TreeEnsemble, x: torch.Tensor, y: torch.Tensor,
              space: FeatureSpace, eps: float) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """Run ``attack`` on the RF at ``eps``: (numbers, adversarial inputs, RF right per record)."""
    counter = CountingModel(rf)
    t0 = time.perf_counter()
    result = attack.craft(counter, x, y, eps=[eps])
    seconds = time.perf_counter() - t0
    rows, calls = counter.rows, counter.calls
    score_result(result, rf, space=space)  # scored outside the count
    row = result_table(result).iloc[0]
    correct = (result.adv_pred[0] == y).numpy()
    out = {
        "robust_accuracy": round(float(correct.mean()), 4),
        "attack_success_rate": round(float(row["attack_success_rate"]), 4),
        "detection_rate": round(float(row["detection_rate"]), 4),
        "valid_share": round(float(row["valid_share"]), 4),
        "mean_linf": round(float(row["mean_linf"]), 4),
        "seconds": round(seconds, 1),
        "model_rows_queried": rows,
        "model_calls": calls,
        "queries_per_record_mean": round(rows / len(x), 1),
    }
    return out, result.x_adv[0].cpu().numpy(), correct


def run(args: argparse.Namespace) -> dict[str, Any]:
    from sklearn.ensemble import RandomForestClassifier

    t_all = time.perf_counter()
    ds = load("nsl-kdd", root=args.root, scheme="binary")
    train = ds.train
    if args.max_train_rows and len(train) > args.max_train_rows:
        rng = np.random.default_rng(args.seed)
        train = train.iloc[np.sort(rng.choice(len(train), args.max_train_rows, replace=False))]
    space = FeatureSpace(ds.schema).fit(train)
    x_train = space.encode(train)
    y_train = train[ds.label].astype(str).to_numpy()
    log.info("NSL-KDD binary: %d training records, %d inputs (%d mutable)", len(train),
             x_train.shape[1], int(space.mutable_mask.sum()))

    t0 = time.perf_counter()
    forest = RandomForestClassifier(n_estimators=100, random_state=args.seed, n_jobs=1)
    rf = TreeEnsemble.from_sklearn(forest.fit(x_train, y_train))
    rf_seconds = time.perf_counter() - t0
    log.info("RF-100 trained in %.1f s", rf_seconds)
    t0 = time.perf_counter()
    mlp = Detector(**MLP, seed=args.seed, device="cpu").fit(x_train, y_train)
    mlp_seconds = time.perf_counter() - t0
    log.info("MLP trained in %.1f s", mlp_seconds)

    rng = np.random.default_rng(args.seed)
    pick = np.sort(rng.choice(len(ds.test), args.rows, replace=False))
    test = ds.test.iloc[pick]
    orig = test[ds.schema.names].reset_index(drop=True)
    records = Records(space, orig)
    x_np = records.x
    x = torch.as_tensor(x_np)
    y_raw = test[ds.label].astype(str).to_numpy()
    y = rf.encode_labels(y_raw)
    rf_clean = (rf(x).argmax(1) == y).numpy()
    mlp_clean = mlp.predict(x_np).astype(str) == y_raw
    benign = str(ds.benign_label)
    malicious = y_raw != benign
    log.info("%d test records (%d malicious): RF clean accuracy %.4f, MLP %.4f", len(x),
             int(malicious.sum()), rf_clean.mean(), mlp_clean.mean())

    per_eps: dict[str, Any] = {}
    for eps in args.eps:
        out: dict[str, Any] = {}
        correct: dict[str, np.ndarray] = {}

        hsj = CountingHopSkipJump(eps=eps, queries=args.hsj_queries, feature_space=space,
                                  seed=args.seed)
        res, xa, correct["hopskipjump"] = black_box(hsj, rf, x, y, space, eps)
        used = torch.cat(hsj.per_record).numpy()
        turned = rf_clean & ~correct["hopskipjump"]
        res["label_queries_per_record"] = {
            "all": stats(used), "rf_correct": stats(used[rf_clean]),
            "turned": stats(used[turned])}
        res["counter_matches_model_rows"] = bool(int(used.sum()) == res["model_rows_queried"])
        res.update(records.check(xa))
        out["hopskipjump"] = res
        log.info("eps %.2f hopskipjump: %s", eps, {k: v for k, v in res.items()
                                                    if k != "label_queries_per_record"})

        pgd = PGD(eps=eps, steps=args.pgd_steps, feature_space=space, seed=args.seed)
        t0 = time.perf_counter()
        tr = transfer_attack(mlp, {"rf": rf}, x_np, y_raw, attack=pgd, eps=[eps])
        seconds = time.perf_counter() - t0
        xa = tr.x_adv[eps]
        correct["transfer"] = rf.predict(xa).astype(str) == y_raw
        row = tr.table.iloc[0]
        res = {
            "robust_accuracy": round(float(correct["transfer"].mean()), 4),
            "transfer_success_rate": round(float(row["transfer_success_rate"]), 4),
            "mlp_robust_accuracy": round(float((mlp.predict(xa).astype(str) == y_raw).mean()),
                                         4),
            "mlp_attack_success_rate": round(float(row["surrogate_success_rate"]), 4),
            "valid_share": round(float(row["valid_share"]), 4),
            "seconds": round(seconds, 1),
            **records.check(xa),
        }
        out["transfer"] = res
        log.info("eps %.2f transfer: %s", eps, res)

        if args.square_queries > 0:
            square = Square(eps=eps, queries=args.square_queries, feature_space=space,
                            seed=args.seed)
            res, xa, correct["square"] = black_box(square, rf, x, y, space, eps)
            res.update(records.check(xa))
            out["square"] = res
            log.info("eps %.2f square: %s", eps, res)

        robust = rf_clean.copy()
        for c in correct.values():
            robust &= c
        best = min(correct, key=lambda k: correct[k].mean())
        out["worst_case"] = {
            "robust_accuracy": round(float(robust.mean()), 4),
            "attacks": list(correct),
            "strongest_single": best,
            "only_this_attack_breaks": {
                k: int((rf_clean & ~c & np.all([v for j, v in correct.items() if j != k],
                                                axis=0)).sum()) for k, c in correct.items()},
        }
        log.info("eps %.2f worst case: %s", eps, out["worst_case"])
        per_eps[str(eps)] = out

    return {
        "dataset": "nsl-kdd binary (KDDTrain+ / KDDTest+)",
        "settings": {
            "rows": args.rows, "seed": args.seed, "eps": args.eps, "norm": "linf",
            "targeted": False, "valid_records": True,
            "hopskipjump": {"queries": args.hsj_queries, **{
                k: v for k, v in hsj.settings().items() if k != "queries"}},
            "transfer": {"attack": "pgd", "steps": args.pgd_steps, "surrogate": "mlp"},
            "square": {"queries": args.square_queries} if args.square_queries else None,
            "rf": {"n_estimators": 100, "random_state": args.seed, "n_jobs": 1,
                   "as": "advsec TreeEnsemble"},
            "mlp": {k: list(v) if isinstance(v, tuple) else v for k, v in MLP.items()},
            "train_rows": len(train), "quick": args.quick, "threads": torch.get_num_threads(),
            "auditor": "tests/record_audit.py" if audit is not None else "FeatureSpace.validate",
        },
        "test_records": {"n": len(x), "malicious": int(malicious.sum())},
        "clean": {"rf_accuracy": round(float(rf_clean.mean()), 4),
                  "rf_detection_rate": round(float((rf.predict(x_np).astype(str)[malicious]
                                                    != benign).mean()), 4),
                  "mlp_accuracy": round(float(mlp_clean.mean()), 4)},
        "train_seconds": {"rf": round(rf_seconds, 1), "mlp": round(mlp_seconds, 1)},
        "eps": per_eps,
        "seconds": round(time.perf_counter() - t_all, 1),
    }


def versions() -> dict[str, Any]:
    out: dict[str, Any] = {"python": platform.python_version(), "advsec": advsec.__version__,
                           "torch": torch.__version__, "numpy": np.__version__,
                           "pandas": pd.__version__}
    import sklearn

    out["sklearn"] = sklearn.__version__
    try:
        out["git_head"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, text=True,
                                         capture_output=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        out["git_head"] = None
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, default=ROOT.parent / "shared" / "datasets" / "nsl-kdd",
                   help="folder with the NSL-KDD files")
    p.add_argument("--rows", type=int, default=500, help="test records attacked")
    p.add_argument("--eps", default="0.05,0.1", help="comma-separated L-inf budgets")
    p.add_argument("--hsj-queries", type=int, default=1000, help="HopSkipJump label queries "
                   "per record")
    p.add_argument("--square-queries", type=int, default=1000, help="Square queries per "
                   "record (0: skip Square)")
    p.add_argument("--pgd-steps", type=int, default=50, help="PGD steps on the MLP")
    p.add_argument("--max-train-rows", type=int, default=None, help="train on a seeded "
                   "sample of at most N training records (default: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--quick", action="store_true", help="smoke run: 100 rows, 200 queries, "
                   "PGD-10, 20,000 training records")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "own_detector.json")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)
    warnings.filterwarnings("ignore")
    args.eps = [float(e) for e in args.eps.split(",")]
    if args.quick:
        args.rows, args.hsj_queries, args.pgd_steps = 100, 200, 10
        args.square_queries = min(args.square_queries, 200)
        args.max_train_rows = args.max_train_rows or 20_000
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    result = {"benchmark": "own_detector", **run(args), "versions": versions(),
              "load_average_1min": {"before": round(load_before[0], 2),
                                    "after": round(os.getloadavg()[0], 2),
                                    "cpus": os.cpu_count()}}
    text = json.dumps(result, indent=2, default=str)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
