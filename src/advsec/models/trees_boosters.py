"""The trees of a native XGBoost / LightGBM booster as a :class:`~advsec.models.trees.TreeEnsemble`.

:func:`ensemble_from_booster` reads a :class:`~advsec.models.boosters.BoostedTrees` (no pickle:
the libraries' own JSON dumps) into plain arrays that predict the library's raw margins on
float32 inputs (to float round-off of the leaf sums), so white-box tree attacks and verifiers
(:mod:`advsec.verification`) can reason about every split:

- XGBoost (``booster.save_raw("json")``, ``gbtree`` only): a split sends ``x < t`` left, ``t``
  a float32 and the input cast to float32, which is the test ``x <= t'`` with ``t'`` the float32
  just below ``t`` (stored so); leaf values are the ``split_conditions`` of leaves; the base
  margin is ``base_score`` (a probability for ``binary:logistic``, so its logit; a margin per
  class for ``multi:softprob`` / ``multi:softmax``); ``tree_info`` names the class of each
  tree. Categorical splits and the ``dart`` booster are refused with one line.
- LightGBM (``booster.dump_model()``): ``decision_type`` ``<=`` on doubles (float32 inputs
  converted exactly), leaf values include the shrinkage, the raw score starts at 0;
  ``sigmoid:k`` objectives are folded into the leaf values (``k * leaf``), so the raw score is
  the logit. Missing values: inputs are checked finite, so ``missing_type`` ``NaN`` never
  applies; ``Zero`` (zero read as missing) and categorical (``==``) splits are refused, as is
  ``average_output`` (random-forest mode).

Missing-value routing (``default_left``) is not stored: advsec's inputs are finite by check.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from advsec.errors import DataError
from advsec.models.trees import Tree, TreeEnsemble

__all__ = ["as_tree_ensemble", "ensemble_from_booster"]


def as_tree_ensemble(model: Any) -> TreeEnsemble:
    """``model`` as a :class:`TreeEnsemble`: itself, the trees of a ``BoostedTrees``, or of a
    fitted scikit-learn forest / histogram gradient-boosting classifier."""
    if isinstance(model, TreeEnsemble):
        return model
    from advsec.models.boosters import BoostedTrees

    if isinstance(model, BoostedTrees):
        return ensemble_from_booster(model)
    return TreeEnsemble.from_sklearn(model)


def ensemble_from_booster(model: Any) -> TreeEnsemble:
    """The trees of a :class:`~advsec.models.boosters.BoostedTrees` (module docstring)."""
    if model.kind == "xgboost":
        trees, base = _xgboost(model.booster, len(model.classes_))
    elif model.kind == "lightgbm":
        trees, base = _lightgbm(model.booster, len(model.classes_))
    else:  # pragma: no cover - BoostedTrees checks its kind
        raise DataError(f"unknown booster kind {model.kind!r}")
    out = TreeEnsemble(trees, model.classes_, model.n_features_in_, kind=model.kind,
                       base_score=base)
    out.feature_space_, out.data_ = model.feature_space_, model.data_
    return out


# ---------------------------------------------------------------------------------- XGBoost
def _numbers(text: str) -> list[float]:
    return [float(v) for v in str(text).strip("[]").split(",") if v.strip()]


def _xgboost(booster: Any, n_classes: int) -> tuple[list[Tree], np.ndarray]:
    learner = json.loads(bytes(booster.save_raw("json")))["learner"]
    gb = learner["gradient_booster"]
    if gb.get("name", "gbtree") != "gbtree":
        raise DataError(f"XGBoost booster {gb.get('name')!r}: only gbtree models can be read")
    objective = learner["objective"]["name"]
    k = 1 if n_classes == 2 else n_classes
    base = np.asarray(_numbers(learner["learner_model_param"]["base_score"]), dtype=np.float64)
    if objective in ("binary:logistic", "binary:logitraw") and k == 1:
        if objective == "binary:logistic":
            p = float(base[0])
            base = np.asarray([math.log(p / (1.0 - p))])
    elif objective.startswith("multi:soft") and k == n_classes:
        base = np.broadcast_to(base, (k,)).astype(np.float64)
    else:
        raise DataError(f"XGBoost objective {objective!r} with {n_classes} classes: expected "
                        "binary:logistic or multi:softprob")
    model = gb["model"]
    info = model["tree_info"]
    trees = []
    for entry, cls in zip(model["trees"], info, strict=True):
        if entry.get("categories_nodes"):
            raise DataError("XGBoost model with categorical splits: only numeric splits can "
                            "be read (encode categoricals as advsec does)")
        left = np.asarray(entry["left_children"], dtype=np.int64)
        right = np.asarray(entry["right_children"], dtype=np.int64)
        cond = np.asarray(entry["split_conditions"], dtype=np.float32)
        leaf = left < 0
        below = np.nextafter(cond, np.float32(-np.inf))  # x < t  <=>  x <= float32 below t
        trees.append(Tree(
            feature=np.where(leaf, -2, np.asarray(entry["split_indices"], dtype=np.int64)),
            threshold=np.where(leaf, 0.0, below.astype(np.float64)),
            left=np.where(leaf, -1, left), right=np.where(leaf, -1, right),
            value=np.where(leaf, cond.astype(np.float64), 0.0)[:, None],
            output=int(cls) if k > 1 else 0))
    return _forward(trees), base


# ---------------------------------------------------------------------------------- LightGBM
def _lightgbm(booster: Any, n_classes: int) -> tuple[list[Tree], np.ndarray]:
    dump = booster.dump_model()
    if dump.get("average_output"):
        raise DataError("LightGBM random-forest mode (average_output) cannot be read")
    k = 1 if n_classes == 2 else n_classes
    per_iter = int(dump.get("num_tree_per_iteration", 1))
    if per_iter != k:
        raise DataError(f"LightGBM model with {per_iter} trees per iteration for "
                        f"{n_classes} classes")
    objective = str(dump.get("objective", ""))
    scale = 1.0
    for part in objective.split():
        if part.startswith("sigmoid:"):
            scale = float(part.partition(":")[2])
    trees = [_lgb_tree(info["tree_structure"], scale, i % k)
             for i, info in enumerate(dump["tree_info"])]
    return trees, np.zeros(k, dtype=np.float64)


def _lgb_tree(root: dict[str, Any], scale: float, output: int) -> Tree:
    feature: list[int] = []
    threshold: list[float] = []
    left: list[int] = []
    right: list[int] = []
    value: list[float] = []
    stack: list[tuple[dict[str, Any], int, str]] = [(root, -1, "")]
    while stack:  # preorder: a node's children come after it
        node, parent, side = stack.pop()
        i = len(feature)
        if parent >= 0:
            (left if side == "l" else right)[parent] = i
        if "leaf_value" in node:
            feature.append(-2)
            threshold.append(0.0)
            left.append(-1)
            right.append(-1)
            value.append(scale * float(node["leaf_value"]))
            continue
        if node.get("decision_type", "<=") != "<=":
            raise DataError("LightGBM model with categorical splits: only numeric splits can "
                            "be read (encode categoricals as advsec does)")
        if node.get("missing_type", "None") == "Zero":
            raise DataError("LightGBM model reading zeros as missing (zero_as_missing): not "
                            "supported")
        feature.append(int(node["split_feature"]))
        threshold.append(float(node["threshold"]))
        left.append(-1)
        right.append(-1)
        value.append(0.0)
        stack.append((node["right_child"], i, "r"))
        stack.append((node["left_child"], i, "l"))
    return Tree(feature=np.asarray(feature, dtype=np.int64),
                threshold=np.asarray(threshold, dtype=np.float64),
                left=np.asarray(left, dtype=np.int64), right=np.asarray(right, dtype=np.int64),
                value=np.asarray(value, dtype=np.float64)[:, None], output=output)


def _forward(trees: list[Tree]) -> list[Tree]:
    """Trees renumbered in preorder (children after their parent, as TreeEnsemble files
    require); XGBoost numbers nodes breadth-first, which already is, so this only checks."""
    for t in trees:
        inner = t.left >= 0
        idx = np.flatnonzero(inner)
        if (t.left[inner] <= idx).any() or (t.right[inner] <= idx).any():
            raise DataError("XGBoost tree whose children do not follow their parent")
    return trees
