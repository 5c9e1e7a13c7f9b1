"""Fitted scikit-learn tree ensembles as :class:`~advsec.models.trees.TreeEnsemble` arrays.

- ``RandomForestClassifier`` / ``ExtraTreesClassifier``: each estimator's ``tree_`` (node class
  distributions normalised to sum to 1, as scikit-learn's ``predict_proba`` averages them);
- ``HistGradientBoostingClassifier``: each iteration's predictors (one per raw-score column),
  their numeric thresholds (``x <= num_threshold`` goes left) and leaf values, which include the
  learning rate, and ``_baseline_prediction`` as the base score. Categorical splits (a bitset
  per node) are refused with one line. The routing of missing values is not stored: inputs are
  checked finite before any prediction, so it never applies.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from advsec.errors import DataError
from advsec.models.trees import Tree, TreeEnsemble

__all__ = ["ensemble_from_sklearn"]

_FORESTS = {"RandomForestClassifier": "random_forest", "ExtraTreesClassifier": "extra_trees"}
_BOOSTING = {"HistGradientBoostingClassifier": "hist_gradient_boosting"}


def ensemble_from_sklearn(model: Any) -> TreeEnsemble:
    """The trees of a fitted forest or histogram gradient-boosting classifier."""
    name = type(model).__name__
    if name in _FORESTS and hasattr(model, "estimators_"):
        return _forest(model, _FORESTS[name])
    if name in _BOOSTING and hasattr(model, "_predictors"):
        return _hist_boosting(model)
    raise DataError(f"expected a fitted RandomForestClassifier, ExtraTreesClassifier or "
                    f"HistGradientBoostingClassifier, got {name}")


def _forest(model: Any, kind: str) -> TreeEnsemble:
    trees = []
    for est in model.estimators_:
        t = est.tree_
        value = np.asarray(t.value[:, 0, :], dtype=np.float64)
        value = value / np.maximum(value.sum(axis=1, keepdims=True), 1e-300)
        trees.append(Tree(feature=np.asarray(t.feature, dtype=np.int64),
                          threshold=np.asarray(t.threshold, dtype=np.float64),
                          left=np.asarray(t.children_left, dtype=np.int64),
                          right=np.asarray(t.children_right, dtype=np.int64), value=value))
    return TreeEnsemble(trees, model.classes_, model.n_features_in_, kind=kind)


def _hist_boosting(model: Any) -> TreeEnsemble:
    if getattr(model, "is_categorical_", None) is not None and np.any(model.is_categorical_):
        raise DataError("HistGradientBoostingClassifier with categorical features: only "
                        "numeric splits can be stored (encode categoricals as advsec does)")
    trees = []
    for iteration in model._predictors:
        for k, predictor in enumerate(iteration):
            nodes = predictor.nodes
            if np.any(nodes["is_categorical"]):
                raise DataError("HistGradientBoostingClassifier: a categorical split cannot be "
                                "stored")
            leaf = nodes["is_leaf"].astype(bool)
            trees.append(Tree(
                feature=np.where(leaf, -2, nodes["feature_idx"].astype(np.int64)),
                threshold=np.where(leaf, 0.0, nodes["num_threshold"]).astype(np.float64),
                left=np.where(leaf, -1, nodes["left"].astype(np.int64)),
                right=np.where(leaf, -1, nodes["right"].astype(np.int64)),
                value=np.where(leaf, nodes["value"], 0.0).astype(np.float64)[:, None],
                output=k))
    base = np.asarray(model._baseline_prediction, dtype=np.float64).reshape(-1)
    return TreeEnsemble(trees, model.classes_, model.n_features_in_,
                        kind="hist_gradient_boosting", base_score=base)

