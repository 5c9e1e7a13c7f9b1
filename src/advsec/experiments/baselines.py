"""Detectors scored by transfer in a run: scikit-learn baselines (fitted here) and detectors the
user already has as ONNX files (``kind = "onnx"``, loaded over the run's FeatureSpace), scored
on examples crafted against their surrogate MLP (:func:`transfer_baselines`) and verified by the
run's ``[[verifiers]]`` that can bound them (``tree-milp`` for tree ensembles)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from advsec.attacks import make_attack
from advsec.errors import ConfigError
from advsec.evaluation import attack_success_rate, detection_metrics
from advsec.evaluation.evasion import WorstCase, evasion_counts
from advsec.experiments.config import DetectorConfig, ExperimentConfig
from advsec.experiments.verify_stage import verify_transfer_scored
from advsec.models import Detector

if TYPE_CHECKING:
    from advsec.experiments.artifacts import CombinationResult
    from advsec.experiments.units import Combination, Prepared

__all__ = ["baseline_model", "fit_baseline", "transfer_baselines"]

log = logging.getLogger(__name__)


def fit_baseline(d: DetectorConfig, x: np.ndarray, y: np.ndarray, *, seed: int) -> Any:
    """Fit the scikit-learn model named by ``d.kind`` on inputs ``x`` ``(N, D)``, labels ``y``."""
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    if d.kind == "random_forest":
        model: Any = RandomForestClassifier(n_estimators=d.n_estimators, max_depth=d.max_depth,
                                            random_state=seed, n_jobs=1)
    elif d.kind == "hist_gradient_boosting":
        model = HistGradientBoostingClassifier(max_iter=d.n_estimators, max_depth=d.max_depth,
                                               random_state=seed)
    elif d.kind == "logistic_regression":
        model = LogisticRegression(max_iter=1000, random_state=seed)
    else:  # pragma: no cover - validated by the config
        raise ValueError(f"not a scikit-learn baseline: {d.kind!r}")
    return model.fit(x, y)


def baseline_model(d: DetectorConfig, x: np.ndarray, y: np.ndarray, *, seed: int, space: Any,
                   benign_label: str, check_on: np.ndarray) -> Any:
    """The model of a transfer-scored detector ``d``: a baseline fitted on ``x`` ``(N, D)``,
    labels ``y`` ``(N,)``, or ``d.path``'s ONNX graph over ``space`` (checked on the encoded
    rows ``check_on``), with ``predict``/``predict_proba`` over encoded inputs and
    ``classes_`` among the labels of ``y`` (a one-line ConfigError naming the detector when
    they do not match)."""
    if d.kind != "onnx":
        return fit_baseline(d, x, y, seed=seed)
    try:
        from advsec.models.onnx_model import load_onnx
    except ImportError as exc:
        raise ConfigError(f"detector {d.name!r}: reading ONNX files needs the onnx extra (pip "
                          f"install 'advsec[onnx]'): {exc}") from None
    labels = sorted({str(v) for v in y})
    model = load_onnx(str(d.path), space=space, inputs=d.inputs, benign_label=benign_label,
                      classes=d.classes, check_on=check_on)
    names = [str(c) for c in model.classes_]
    others = [v for v in labels if v != benign_label]
    if d.classes is None and len(names) == 2 and len(others) == 1 and "attack" in names:
        names = [others[0] if n == "attack" else n for n in names]  # the data's name for it
        model.classes_ = np.asarray(names, dtype=object).astype(str)
    missing = sorted(set(labels) - set(names))
    if missing:
        raise ConfigError(f"detector {d.name!r} ({d.path}): its classes {names} do not include "
                          f"the data's labels {missing}; set classes = [...] (one label per "
                          f"score column, in order)")
    return model


def transfer_baselines(
    cfg: ExperimentConfig, combo: Combination, p: Prepared, surrogate: Detector,
    x_eval: torch.Tensor, y_eval: torch.Tensor, benign: int, meta: dict[str, Any],
    res: CombinationResult,
) -> None:
    """Train the transfer-scored detectors of ``combo``'s MLP (scikit-learn baselines, ONNX
    files), score them on examples crafted against it and verify them: appends to
    ``res.sweep`` one table per (detector, threat, attack), rows per eps, and to ``res.verify``
    / ``res.checks`` the ``[[verifiers]]`` rows of each detector and threat
    (:func:`~advsec.experiments.verify_stage.verify_transfer_scored`).

    Each (threat, attack) is crafted once against the surrogate and scored on every baseline.
    numpy/scipy matrix products run on one BLAS thread here (OpenBLAS results depend on the
    thread count; torch's are not affected): the same seed gives the same numbers anywhere.
    """
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    with threadpool_limits(limits=1, user_api="blas"):
        _score(cfg, combo, p, surrogate, x_eval, y_eval, benign, meta, res)


def _score(
    cfg: ExperimentConfig, combo: Combination, p: Prepared, surrogate: Detector,
    x_eval: torch.Tensor, y_eval: torch.Tensor, benign: int, meta: dict[str, Any],
    res: CombinationResult,
) -> None:
    """:func:`transfer_baselines` without the thread limit."""
    crafted: dict[tuple[str, str], Any] = {}
    evasion = cfg.threat.evasion()  # the benign class is there: check_splits
    x_np = x_eval.numpy()
    for b in cfg.detectors:
        if b.kind == "mlp" or (b.surrogate or combo.detector.name) != combo.detector.name:
            continue
        log.info("%s: baseline %s", combo.key, b.name)
        model = baseline_model(b, p.x_train, p.y_train, seed=combo.seed, space=p.space,
                               benign_label=str(p.ds.benign_label), check_on=x_np[:1024])
        classes = [str(c) for c in model.classes_]
        benign_b = classes.index(str(p.ds.benign_label))
        yb = np.array([classes.index(c) for c in p.y_test[p.eval_idx]])
        clean_pred = np.array([classes.index(str(c)) for c in model.predict(x_np)])
        for threat in cfg.threat.constraints:
            worst = WorstCase(yb, benign_b)
            for a in cfg.attacks:
                key = (threat, a.label)
                if key not in crafted:
                    attack = make_attack(
                        a.attack, eps=cfg.threat.eps, seed=combo.seed,
                        feature_space=p.space if threat == "valid" else None,
                        evasion=evasion, benign_class=benign, **a.options())
                    crafted[key] = attack.run(surrogate, x_eval, y_eval, eps=cfg.threat.eps,
                                              evaluate=False)
                crafted_eps = crafted[key]
                rows = []
                for e, xa in zip(crafted_eps.eps, crafted_eps.x_adv, strict=True):
                    xa_np = xa.numpy()
                    pred = np.array([classes.index(str(c)) for c in model.predict(xa_np)])
                    worst.add(e, clean_pred, pred)
                    rows.append({
                        "attack": a.label, "eps": e,
                        **detection_metrics(yb, pred, proba=model.predict_proba(xa_np),
                                            benign_class=benign_b),
                        "attack_success_rate": attack_success_rate(
                            yb, clean_pred, pred, evasion=evasion, benign_class=benign_b),
                        **evasion_counts(yb, clean_pred, pred, benign_b),
                        "mean_linf": float((xa - x_eval).abs().amax(1).mean()),
                        "n": len(yb),
                        "seconds": crafted_eps.seconds / len(crafted_eps.eps)})
                res.sweep.append(pd.DataFrame(rows).assign(
                    **{**meta, "detector": b.name}, threat=threat,
                    evaluation=f"transfer-from-{combo.detector.name}"))
            # per eps: right on the clean record and on every transferred example
            robust = np.stack([worst.correct(e) for e in cfg.threat.eps])
            verify_transfer_scored(cfg, threat, model, p.space, x_eval, yb, benign_b, robust,
                                   {**meta, "detector": b.name}, res)

