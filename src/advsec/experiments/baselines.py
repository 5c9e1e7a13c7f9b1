"""scikit-learn baselines: non-differentiable detectors evaluated by transfer."""

from __future__ import annotations

from typing import Any

import numpy as np

from advsec.experiments.config import DetectorConfig

__all__ = ["fit_baseline"]


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
