"""Certified accuracy of an advsec MLP on NSL-KDD by IBP, CROWN and alpha-CROWN, beside PGD.

Issue 16's measured criterion. NSL-KDD binary (``KDDTrain+`` / ``KDDTest+``), the FeatureSpace of
the built-in schema fitted on the training split, an advsec ``Detector`` MLP 122-256-128-64-2
(ReLU, the Detector's default dropout, ``--epochs`` epochs, batch 256, lr 1e-3). On a seeded
sample of ``--rows`` test records (default 2,000), for every eps (L-inf, a fraction of each
feature's range; the valid region: immutables fixed, directions one way, bounds, whole-number
grids, value sets and relations relaxed to the box, so a superset of the valid records):

- ``ibp`` / ``crown`` / ``alpha-crown`` (20 iterations): certified accuracy (share of records
  whose every valid perturbation is proven to keep the true class) and wall seconds, float32;
- ``pgd``: PGD (``--pgd-steps`` steps, valid records) accuracy, valid share and seconds: an
  upper bound on the robust accuracy, so ``crown <= pgd`` and no certified record may be broken
  (``certified_broken_by_pgd``, 0 is the claim);
- ``worst_case``: per record the worst over FGSM, PGD and APGD-margin (``--pgd-steps`` steps,
  valid records), beside CROWN: ``verified_accuracy <= attacked_accuracy`` and
  ``verified_broken`` 0 (:func:`advsec.evaluation.verified.verified_vs_attacked`), and
  alpha-CROWN's certified accuracy (``alpha_verified_accuracy``, at least CROWN's).

``pgd_at``: the same for a PGD-AT version of the MLP (:func:`advsec.defenses.
pgd_adversarial_training` of the model above, valid-record PGD at ``--at-eps`` with
``--at-steps`` steps for ``--at-epochs`` epochs on ``--at-max-train-rows`` training records;
``--at-epochs 0`` skips it). ``table``: both models side by side per eps.

Usage::

    .venv/bin/python bench/verify_mlp.py            # a few minutes on an idle 2-core machine
    .venv/bin/python bench/verify_mlp.py --quick    # 500 rows, 20,000 training records

JSON to stdout and to ``bench/results/verify_mlp.json`` (``--out``); progress on stderr.
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

import advsec
from advsec.attacks import APGD, FGSM, PGD
from advsec.datasets import load
from advsec.defenses import pgd_adversarial_training
from advsec.evaluation.verified import verified_vs_attacked
from advsec.features.space import FeatureSpace
from advsec.models import Detector
from advsec.verification import CROWN, IBP, AlphaCROWN

ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("bench.verify_mlp")

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
    log.info("NSL-KDD binary: %d training records, %d inputs (%d mutable)", len(train),
             x_train.shape[1], int(space.mutable_mask.sum()))
    t0 = time.perf_counter()
    det = Detector(hidden=HIDDEN, epochs=args.epochs, batch_size=256, lr=1e-3, seed=args.seed,
                   device="cpu").fit(x_train, y_train)
    train_seconds = time.perf_counter() - t0
    log.info("MLP %s trained in %.1f s", HIDDEN, train_seconds)

    rng = np.random.default_rng(args.seed)
    pick = np.sort(rng.choice(len(ds.test), min(args.rows, len(ds.test)), replace=False))
    test = ds.test.iloc[pick]
    x = torch.as_tensor(space.encode(test))
    y = det.encode_labels(test[ds.label].astype(str).to_numpy())
    clean = float((det.logits(x).argmax(1) == y).float().mean())

    out: dict[str, Any] = {}
    verified: dict[str, torch.Tensor] = {}
    for verifier in (IBP(feature_space=space), CROWN(feature_space=space),
                     AlphaCROWN(feature_space=space)):
        res = verifier(det, x, y, eps=args.eps)
        verified[verifier.name] = res.verified
        out[verifier.name] = [
            {"eps": e, "certified_accuracy": round(a, 4), "seconds": round(s, 3)}
            for e, a, s in zip(res.eps, res.certified_accuracy, res.seconds, strict=True)]
        out[verifier.name + "_seconds_total"] = round(sum(res.seconds), 3)

    pgd = PGD(feature_space=space, steps=args.pgd_steps, seed=args.seed)
    result = pgd.run(det, x, y, eps=args.eps)
    table = result.table()
    pgd_rows = []
    for i, e in enumerate(args.eps):
        robust = result.adv_pred[i].cpu() == y
        broken = verified["crown"][i] & ~robust
        broken_ibp = verified["ibp"][i] & ~robust
        broken_alpha = verified["alpha-crown"][i] & ~robust
        pgd_rows.append({"eps": e, "accuracy": round(float(robust.float().mean()), 4),
                         "valid_share": table["valid_share"].iloc[i],
                         "seconds": round(float(table["seconds"].iloc[i]), 3),
                         "certified_broken_by_pgd": int(broken.sum() + broken_ibp.sum()
                                                        + broken_alpha.sum())})
    out["pgd"] = pgd_rows
    out["worst_case"] = _worst_case(det, x, y, space, args)
    table = _table("mlp", clean, out["worst_case"])
    if args.at_epochs > 0:
        at = _pgd_at(det, x_train, y_train, x, y, space, args)
        out["pgd_at"] = at
        table += _table("mlp + pgd-at", at["clean_accuracy"], at["worst_case"])
    out["table"] = table
    return {"dataset": "nsl-kdd binary (KDDTrain+ / KDDTest+)", "train_rows": len(train),
            "inputs": int(x.shape[1]), "mutable_inputs": int(space.mutable_mask.sum()),
            "model": {"hidden": list(HIDDEN), "epochs": args.epochs,
                      "train_seconds": round(train_seconds, 1)},
            "records": len(x), "clean_accuracy": round(clean, 4), "eps": args.eps,
            "pgd_steps": args.pgd_steps, **out}


def _worst_case(det: Detector, x: torch.Tensor, y: torch.Tensor, space: FeatureSpace,
                args: argparse.Namespace) -> list[dict[str, Any]]:
    """CROWN beside the per-record worst case over FGSM, PGD and APGD-margin (valid records)."""
    robust = torch.ones((len(args.eps), len(x)), dtype=torch.bool)
    attack_seconds = 0.0
    for attack in (FGSM(feature_space=space),
                   PGD(feature_space=space, steps=args.pgd_steps, seed=args.seed),
                   APGD(feature_space=space, steps=args.pgd_steps, loss="margin",
                        seed=args.seed)):
        result = attack.run(det, x, y, eps=args.eps)
        attack_seconds += result.seconds
        for i in range(len(args.eps)):
            robust[i] &= result.adv_pred[i].cpu() == y
    crown = CROWN(feature_space=space)(det, x, y, eps=args.eps)
    alpha = AlphaCROWN(feature_space=space)(det, x, y, eps=args.eps)
    t = verified_vs_attacked(crown, robust)
    rows = [{"eps": r.eps, "verified_accuracy": round(r.verified_accuracy, 4),
             "attacked_accuracy": round(r.attacked_accuracy, 4), "gap": round(r.gap, 4),
             "verified_broken": int(r.verified_broken),
             "crown_seconds": round(r.verify_seconds, 3),
             "alpha_verified_accuracy": round(a, 4), "alpha_seconds": round(s, 3),
             "alpha_verified_broken": int((v & ~robust[i]).sum())}
            for i, (r, a, s, v) in enumerate(zip(t.itertuples(), alpha.certified_accuracy,
                                                 alpha.seconds, alpha.verified, strict=True))]
    log.info("worst case over fgsm, pgd, apgd-margin in %.1f s: %s", attack_seconds, rows)
    return rows


def _pgd_at(det: Detector, x_train: np.ndarray, y_train: np.ndarray, x: torch.Tensor,
            y: torch.Tensor, space: FeatureSpace, args: argparse.Namespace) -> dict[str, Any]:
    """The PGD-AT version of ``det`` and its CROWN and worst-case numbers."""
    xs, ys = x_train, y_train
    if args.at_max_train_rows and len(xs) > args.at_max_train_rows:
        pick = np.sort(np.random.default_rng(args.seed).choice(
            len(xs), args.at_max_train_rows, replace=False))
        xs, ys = xs[pick], ys[pick]
    log.info("PGD-AT: eps %g, %d steps, %d epochs on %d records", args.at_eps, args.at_steps,
             args.at_epochs, len(xs))
    res = pgd_adversarial_training(det, xs, ys, eps=args.at_eps, steps=args.at_steps,
                                   epochs=args.at_epochs, feature_space=space, seed=args.seed)
    hard = res.detector
    log.info("PGD-AT trained in %.1f s", res.seconds)
    clean = float((hard.logits(x).argmax(1).cpu() == y).float().mean())
    rows = _worst_case(hard, x, y, space, args)
    return {"train": {"eps": args.at_eps, "steps": args.at_steps, "epochs": args.at_epochs,
                      "train_rows": len(xs), "seconds": round(res.seconds, 1),
                      "valid_records": True},
            "clean_accuracy": round(clean, 4), "worst_case": rows}


def _table(model: str, clean: float, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The summary rows of one model: per eps, CROWN certified beside the worst case."""
    return [{"model": model, "clean_accuracy": round(clean, 4), **r} for r in rows]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, default=ROOT.parent / "shared" / "datasets" / "nsl-kdd",
                   help="folder with the NSL-KDD files")
    p.add_argument("--rows", type=int, default=2000, help="test records verified")
    p.add_argument("--eps", default="0.01,0.02,0.05", help="comma-separated L-inf budgets")
    p.add_argument("--epochs", type=int, default=5, help="training epochs of the MLP")
    p.add_argument("--pgd-steps", type=int, default=50, help="PGD steps")
    p.add_argument("--max-train-rows", type=int, default=None, help="train on a seeded "
                   "sample of at most N training records (default: all)")
    p.add_argument("--at-epochs", type=int, default=5, help="PGD-AT epochs (0: no PGD-AT "
                   "model)")
    p.add_argument("--at-eps", type=float, default=0.05, help="PGD-AT budget (L-inf)")
    p.add_argument("--at-steps", type=int, default=7, help="PGD-AT steps per batch")
    p.add_argument("--at-max-train-rows", type=int, default=None, help="PGD-AT on a seeded "
                   "sample of at most N of the training records (default: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--quick", action="store_true", help="smoke run: 500 rows, PGD-10, "
                   "20,000 training records")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "verify_mlp.json")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)
    args.eps = [float(e) for e in args.eps.split(",")]
    if args.quick:
        args.rows, args.pgd_steps = 500, 10
        args.max_train_rows = args.max_train_rows or 20_000
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    result = {"benchmark": "verify_mlp", **run(args), "threads": torch.get_num_threads(),
              "versions": {"python": platform.python_version(), "advsec": advsec.__version__,
                           "torch": torch.__version__},
              "load_average_1min": {"before": round(load_before[0], 2),
                                    "after": round(os.getloadavg()[0], 2)}}
    text = json.dumps(result, indent=2)
    sys.stdout.write(text + "\n")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
