"""Exact robustness of tree ensembles on NSL-KDD (MILP), beside the fast tree search and transfer.

Issue 16's measured criterion for trees. NSL-KDD binary (``KDDTrain+`` / ``KDDTest+``), the
FeatureSpace of the built-in schema fitted on the training split; a random forest (``--rf-trees``
50 trees, depth ``--rf-depth`` 8) and a histogram gradient-boosting model (``--hgb-trees`` 100
iterations) from scikit-learn, one thread each. On a seeded sample of ``--rows`` test records
(default 500), every record attacked away from its true class, valid records only, for every
eps (L-inf, a fraction of each feature's range):

- ``exact``: :class:`advsec.verification.TreeMILP` (HiGHS, one thread, ``--time-limit`` s per
  record): the robust accuracy bounds (verified share, a lower bound; share not broken by the
  checked adversarial records, an upper bound: equal when no record is unknown) and seconds;
- ``search``: the ``tree-search`` attack (:class:`advsec.attacks.TreeSearch`): accuracy and
  seconds, and its gap to the exact answer;
- ``transfer``: PGD (valid records, ``--pgd-steps`` steps) crafted on an advsec MLP
  122-256-128-64-2 (``--epochs`` epochs) and scored on the forest: accuracy;
- ``square``: the score-based Square attack (``--queries`` queries) on the forest: accuracy;
- ``exact_is_strongest``: the exact accuracy is <= every attack's, and no verified record is
  broken by any of them (``verified_broken`` 0 is the claim).

Every attack's accuracy is a robust accuracy: the share of records the model gets right both
clean and under that attack, so none exceeds the clean accuracy.

Usage::

    .venv/bin/python bench/verify_trees.py            # a few minutes on an idle 2-core machine
    .venv/bin/python bench/verify_trees.py --quick    # 100 rows, 20,000 training records

JSON to stdout and to ``bench/results/verify_trees.json`` (``--out``); progress on stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier

import advsec
from advsec.attacks import PGD, Square, TreeSearch
from advsec.datasets import load
from advsec.features.space import FeatureSpace
from advsec.models import Detector
from advsec.verification import TreeMILP

ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("bench.verify_trees")

HIDDEN = (256, 128, 64)


def run(args: argparse.Namespace) -> dict[str, Any]:
    ds = load("nsl-kdd", root=args.root, scheme="binary")
    train = ds.train
    if args.max_train_rows and len(train) > args.max_train_rows:
        rng = np.random.default_rng(args.seed)
        train = train.iloc[np.sort(rng.choice(len(train), args.max_train_rows, replace=False))]
    space = FeatureSpace(ds.schema).fit(train)
    x_train = space.encode(train)
    y_train = train[ds.label].astype(str).to_numpy()
    rng = np.random.default_rng(args.seed)
    pick = np.sort(rng.choice(len(ds.test), min(args.rows, len(ds.test)), replace=False))
    test = ds.test.iloc[pick]
    x = space.encode(test).astype(np.float32)
    labels = test[ds.label].astype(str).to_numpy()
    log.info("NSL-KDD binary: %d training records, %d inputs (%d mutable), %d test records",
             len(train), x.shape[1], int(space.mutable_mask.sum()), len(x))

    t0 = time.perf_counter()
    mlp = Detector(hidden=HIDDEN, epochs=args.epochs, batch_size=256, lr=1e-3, seed=args.seed,
                   device="cpu").fit(x_train, y_train)
    mlp_seconds = time.perf_counter() - t0
    xt = torch.as_tensor(x)
    pgd = PGD(feature_space=space, steps=args.pgd_steps, seed=args.seed)
    crafted = pgd(mlp, xt, mlp.encode_labels(labels), eps=args.eps)
    log.info("MLP %s trained in %.1f s; PGD-%d crafted", HIDDEN, mlp_seconds, args.pgd_steps)

    models = {
        "random_forest": RandomForestClassifier(n_estimators=args.rf_trees,
                                                max_depth=args.rf_depth,
                                                random_state=args.seed, n_jobs=1),
        "hist_gradient_boosting": HistGradientBoostingClassifier(max_iter=args.hgb_trees,
                                                                 random_state=args.seed),
    }
    out: dict[str, Any] = {}
    table: list[dict[str, Any]] = []
    for name, model in models.items():
        t0 = time.perf_counter()
        model.fit(x_train, y_train)
        fit_seconds = time.perf_counter() - t0
        y = np.searchsorted(model.classes_, labels)
        clean_right = model.predict(x) == labels
        clean = float(clean_right.mean())
        log.info("%s fitted in %.1f s, clean accuracy %.3f", name, fit_seconds, clean)
        entry = _model_rows(model, x, y, labels, clean_right, crafted, space, args)
        out[name] = {"fit_seconds": round(fit_seconds, 1), "clean_accuracy": round(clean, 4),
                     **entry}
        table += [{"model": name, "clean_accuracy": round(clean, 4), **r}
                  for r in entry["rows"]]
    return {"dataset": "nsl-kdd binary (KDDTrain+ / KDDTest+)", "train_rows": len(train),
            "inputs": int(x.shape[1]), "mutable_inputs": int(space.mutable_mask.sum()),
            "records": len(x), "eps": args.eps, "time_limit": args.time_limit,
            "mlp": {"hidden": list(HIDDEN), "epochs": args.epochs,
                    "train_seconds": round(mlp_seconds, 1), "pgd_steps": args.pgd_steps},
            "models": {"random_forest": {"trees": args.rf_trees, "max_depth": args.rf_depth},
                       "hist_gradient_boosting": {"trees": args.hgb_trees}},
            **out, "table": table,
            "exact_is_strongest": all(r["exact_is_strongest"] for r in table),
            "verified_broken": sum(r["verified_broken"] for r in table)}


def _model_rows(model: Any, x: np.ndarray, y: np.ndarray, labels: np.ndarray,
                clean_right: np.ndarray, crafted: list[torch.Tensor], space: FeatureSpace,
                args: argparse.Namespace) -> dict[str, Any]:
    """Exact, search, square and transfer at every eps on one ensemble (``clean_right``:
    ``(N,)`` bool, the model right on the clean records)."""
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    exact = TreeMILP(feature_space=space, time_limit=args.time_limit)(model, x, y, eps=args.eps)
    exact_seconds = exact.seconds[0]
    log.info("exact: %s in %.1f s (%s)", exact.robust_accuracy_bounds, exact_seconds,
             exact.info["statuses"])
    search = TreeSearch(feature_space=space, seed=args.seed).run(model, xt, yt, eps=args.eps)
    square = Square(feature_space=space, queries=args.queries, seed=args.seed).run(
        model, xt, yt, eps=args.eps)
    rows = []
    for k, e in enumerate(args.eps):
        lo, hi = exact.robust_accuracy_bounds[k]
        # robust: right on the clean record and on the attack's (an attacker may always
        # send the clean one), so no column can claim more than the clean accuracy
        robust = {"search": clean_right & (search.adv_pred[k].numpy() == y),
                  "square": clean_right & (square.adv_pred[k].numpy() == y),
                  "transfer": clean_right & (model.predict(crafted[k].numpy()) == labels)}
        accs = {n: float(r.mean()) for n, r in robust.items()}
        verified = exact.verified[k].numpy()
        rows.append({
            "eps": e, "exact_verified": round(lo, 4), "exact_not_broken": round(hi, 4),
            "exact_unknown": exact.unknown[k],
            "search_accuracy": round(accs["search"], 4),
            "search_gap": round(accs["search"] - hi, 4),
            "square_accuracy": round(accs["square"], 4),
            "transfer_accuracy": round(accs["transfer"], 4),
            "exact_is_strongest": all(a >= hi - 1e-12 for a in accs.values()),
            "verified_broken": int(sum((verified & ~r).sum() for r in robust.values())),
            "search_seconds": round(float(search.seconds) / len(args.eps), 2),
            "square_seconds": round(float(square.seconds) / len(args.eps), 2)})
        log.info("eps %g: %s", e, rows[-1])
    return {"exact_seconds": round(exact_seconds, 1),
            "exact_seconds_per_record": round(exact_seconds / max(len(x), 1), 3),
            "exact_statuses": exact.info["statuses"],
            "search_seconds": round(float(search.seconds), 1), "rows": rows}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, default=ROOT.parent / "shared" / "datasets" / "nsl-kdd",
                   help="folder with the NSL-KDD files")
    p.add_argument("--rows", type=int, default=500, help="test records verified")
    p.add_argument("--eps", default="0.02,0.05", help="comma-separated L-inf budgets")
    p.add_argument("--rf-trees", type=int, default=50)
    p.add_argument("--rf-depth", type=int, default=8)
    p.add_argument("--hgb-trees", type=int, default=100)
    p.add_argument("--time-limit", type=float, default=30.0, help="MILP seconds per record")
    p.add_argument("--epochs", type=int, default=5, help="training epochs of the MLP")
    p.add_argument("--pgd-steps", type=int, default=20, help="PGD steps on the MLP")
    p.add_argument("--queries", type=int, default=300, help="Square queries")
    p.add_argument("--max-train-rows", type=int, default=None, help="train on a seeded "
                   "sample of at most N training records (default: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--quick", action="store_true", help="smoke run: 100 rows, 20,000 "
                   "training records")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "verify_trees.json")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)
    args.eps = [float(e) for e in args.eps.split(",")]
    if args.quick:
        args.rows = 100
        args.max_train_rows = args.max_train_rows or 20_000
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    result = {"bench": "verify_trees", "advsec": advsec.__version__,
              "python": platform.python_version(), "torch": torch.__version__,
              "cpus": os.cpu_count(), "threads": args.threads, **run(args)}
    result["wall_seconds"] = round(time.perf_counter() - t0, 1)
    text = json.dumps(result, indent=2)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
