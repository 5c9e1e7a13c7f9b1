"""Detectors scored by transfer in a run: scikit-learn baselines (fitted here) and detectors the
user already has as ONNX files (``kind = "onnx"``, loaded over the run's FeatureSpace)."""

from __future__ import annotations

from typing import Any

import numpy as np

from advsec.errors import ConfigError
from advsec.experiments.config import DetectorConfig

__all__ = ["baseline_model", "fit_baseline"]


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
