"""Tree ensembles in a JSON format advsec owns: no pickle, identical predictions.

:class:`TreeEnsemble` holds the trees of a fitted scikit-learn forest
(``RandomForestClassifier``, ``ExtraTreesClassifier``) or histogram gradient-boosting model
(``HistGradientBoostingClassifier``) as plain arrays (per tree: ``feature``, ``threshold``,
``left``, ``right`` and every node's ``value``; :mod:`advsec.models.trees_sklearn` reads them)
and predicts as scikit-learn does: ``x[feature] <= threshold`` goes left, and

- forests (``aggregate = "mean"``): inputs cast to float32, each node's value is its class
  distribution, the probability is the mean of the trees' leaf distributions;
- boosting (``aggregate = "sum"``): each tree adds its leaf value to one output (``output``) of
  the raw score, which starts at ``base_score`` ``(K,)``; ``K = 1`` for two classes
  (probability of the second class = sigmoid of the raw score), ``K = C`` otherwise (softmax),
  the trees in their order. Inputs in float64 for ``hist_gradient_boosting`` (as scikit-learn);
  float32 for ``xgboost`` and ``lightgbm``, the trees of a native booster
  (:mod:`advsec.models.trees_boosters`, which predicts as the library on float32 inputs; an
  XGBoost ``x < t`` split is stored as ``x <= the float32 below t``, the same test on float32
  inputs).

:meth:`TreeEnsemble.save` writes one JSON file (float64 thresholds, which JSON numbers hold
exactly); :meth:`TreeEnsemble.load` checks every key and array before building anything.

Shapes: ``N`` records, ``D`` input columns, ``C`` classes; per tree ``M`` nodes and ``V``
values per node (``C`` for forests, 1 for boosting).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from advsec.errors import DataError
from advsec.models.proba import ProbaModel, as_array

__all__ = ["AGGREGATES", "FLOAT64_KINDS", "FORMAT", "KINDS", "Tree", "TreeEnsemble"]

FORMAT = "advsec-trees-1"
#: how the trees' leaf values make a probability, per kind of ensemble
KINDS = {"random_forest": "mean", "extra_trees": "mean", "hist_gradient_boosting": "sum",
         "xgboost": "sum", "lightgbm": "sum"}
AGGREGATES = ("mean", "sum")
#: the kinds whose inputs are compared in float64 (every other kind casts them to float32)
FLOAT64_KINDS = frozenset({"hist_gradient_boosting"})


@dataclass(frozen=True)
class Tree:
    """One tree: ``feature``, ``threshold`` (float64), ``left``, ``right`` ``(M,)`` (-1 at
    leaves), ``value`` ``(M, V)`` (forests: each node's class distribution, rows sum to 1;
    boosting: the leaf's additive value) and ``output``, the raw-score column a boosted tree
    adds to (0 for forests)."""

    feature: np.ndarray
    threshold: np.ndarray
    left: np.ndarray
    right: np.ndarray
    value: np.ndarray
    output: int = 0

    def leaves(self, x: np.ndarray) -> np.ndarray:
        """``(N,)`` the leaf each row of ``x`` ``(N, D)`` (float64) reaches."""
        node = np.zeros(len(x), dtype=np.int64)
        rows = np.arange(len(x))
        while True:
            inner = self.left[node] >= 0
            if not inner.any():
                return node
            go_left = x[rows, np.maximum(self.feature[node], 0)] <= self.threshold[node]
            nxt = np.where(go_left, self.left[node], self.right[node])
            node = np.where(inner, nxt, node)


class TreeEnsemble(ProbaModel):
    """An ensemble of :class:`Tree` over ``D`` inputs and ``classes_`` (module docstring).

    Attributes:
        trees: the trees; classes_: ``(C,)`` class labels; n_features_in_: ``D``;
        kind: a key of :data:`KINDS`; aggregate: ``"mean"`` or ``"sum"``; base_score: ``(K,)``
        the raw score before the first boosted tree (empty for forests); feature_space_: the
        FeatureSpace the inputs come from, when known; data_: how the training table was read,
        when known.
    """

    def __init__(self, trees: Sequence[Tree], classes: Sequence[Any], n_features: int, *,
                 kind: str, base_score: Sequence[float] | np.ndarray | None = None) -> None:
        if kind not in KINDS:
            raise DataError(f"tree ensemble kind: expected one of {', '.join(KINDS)}, "
                            f"got {kind!r}")
        self.trees = list(trees)
        self.classes_ = np.asarray(classes)
        self.n_features_in_ = int(n_features)
        self.kind = kind
        self.aggregate = KINDS[kind]
        self.base_score = np.asarray([] if base_score is None else base_score,
                                     dtype=np.float64)
        self.feature_space_: Any = None
        self.data_: dict[str, Any] | None = None

    @property
    def n_outputs(self) -> int:
        """``K``: raw-score columns of a boosted ensemble (1 for two classes, else ``C``)."""
        c = len(self.classes_)
        return 1 if c == 2 else c

    @classmethod
    def from_sklearn(cls, model: Any) -> TreeEnsemble:
        """The trees of a fitted ``RandomForestClassifier``, ``ExtraTreesClassifier`` or
        ``HistGradientBoostingClassifier`` (see :mod:`advsec.models.trees_sklearn`)."""
        from advsec.models.trees_sklearn import ensemble_from_sklearn

        return ensemble_from_sklearn(model)

    # ------------------------------------------------------------------ prediction
    def predict_proba(self, x: Any) -> np.ndarray:
        """``(N, C)`` class probabilities of ``x`` ``(N, D)`` (module docstring)."""
        arr = self.inputs(x)
        if self.aggregate == "mean":
            out = np.zeros((len(arr), len(self.classes_)), dtype=np.float64)
            for tree, leaf in zip(self.trees, self.leaves(arr), strict=True):
                out += tree.value[leaf]
            return out / len(self.trees)
        return _link(self.raw_scores(arr))

    def leaves(self, x: np.ndarray, *, chunk: int = 1 << 20) -> np.ndarray:
        """``(T, N)`` the leaf of every tree each row of ``x`` ``(N, D)`` (float64, as
        :meth:`inputs` gives it) reaches: all trees walked at once, one step per level
        (``chunk`` bounds the tree-row pairs walked together)."""
        feat, thr, left, right, start = self._packed()
        t, n = len(self.trees), len(x)
        out = np.empty((t, n), dtype=np.int64)
        step = max(1, chunk // max(t, 1))
        for s in range(0, n, step):
            xs = x[s:s + step]
            m = len(xs)
            node = np.repeat(start, m)
            rows = np.tile(np.arange(m), t)
            while True:
                inner = left[node] >= 0
                if not inner.any():
                    break
                go_left = xs[rows, feat[node]] <= thr[node]
                node = np.where(inner, np.where(go_left, left[node], right[node]), node)
            out[:, s:s + m] = (node - np.repeat(start, m)).reshape(t, m)
        return out

    def _packed(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Every tree's nodes in one array (children as global indices) and each root's index;
        computed once per ensemble."""
        cache = getattr(self, "_packed_cache", None)
        if cache is not None and cache[0] == len(self.trees):
            return cache[1]
        sizes = np.array([len(tr.feature) for tr in self.trees], dtype=np.int64)
        start = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)

        def glob(a: np.ndarray, off: int) -> np.ndarray:
            a = np.asarray(a, dtype=np.int64)
            return np.where(a >= 0, a + off, -1)

        feat = np.concatenate([np.maximum(np.asarray(tr.feature, dtype=np.int64), 0)
                               for tr in self.trees]) if self.trees else np.zeros(0, np.int64)
        thr = np.concatenate([np.asarray(tr.threshold, dtype=np.float64)
                              for tr in self.trees]) if self.trees else np.zeros(0)
        left = np.concatenate([glob(tr.left, int(o)) for tr, o in zip(self.trees, start,
                                                                        strict=True)])
        right = np.concatenate([glob(tr.right, int(o)) for tr, o in zip(self.trees, start,
                                                                          strict=True)])
        packed = (feat, thr, left, right, start)
        self._packed_cache = (len(self.trees), packed)
        return packed

    def inputs(self, x: Any) -> np.ndarray:
        """``x`` ``(N, D)`` as the trees compare it: float64 holding float32 values (cast
        first) for every kind but ``hist_gradient_boosting`` (float64 as given)."""
        dtype = np.float64 if self.kind in FLOAT64_KINDS else np.float32
        return as_array(x, dtype=dtype, width=self.n_features_in_).astype(np.float64,
                                                                            copy=False)

    def raw_scores(self, x: Any) -> np.ndarray:
        """``(N, K)`` raw scores (margins) of a boosted ensemble at ``x`` ``(N, D)``:
        ``base_score`` plus the leaf values, before the sigmoid / softmax."""
        if self.aggregate != "sum":
            raise DataError(f"raw scores: a {self.kind} ensemble averages probabilities")
        arr = self.inputs(x)
        raw = np.zeros((len(arr), self.n_outputs), dtype=np.float64)
        raw += self.base_score
        for tree, leaf in zip(self.trees, self.leaves(arr), strict=True):
            raw[:, tree.output] += tree.value[leaf, 0]
        return raw

    # ------------------------------------------------------------------ files
    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly (floats round-trip exactly through ``json``)."""
        return {
            "format": FORMAT, "kind": self.kind, "aggregate": self.aggregate,
            "n_features": self.n_features_in_,
            "classes": [c.item() if hasattr(c, "item") else c for c in self.classes_],
            "base_score": self.base_score.tolist(),
            "trees": [{"feature": t.feature.tolist(),
                       "threshold": t.threshold.tolist(),
                       "left": t.left.tolist(), "right": t.right.tolist(),
                       "value": t.value.tolist(), "output": t.output} for t in self.trees],
            "feature_space": (self.feature_space_.to_dict()
                              if self.feature_space_ is not None else None),
            "data": self.data_,
        }

    def save(self, path: str | Path) -> Path:
        """Write ``path`` (``.json`` added when missing); returns the file's path."""
        p = Path(path)
        p = p if p.suffix == ".json" else p.with_name(p.name + ".json")
        p.write_text(json.dumps(self.to_dict()))
        return p

    @classmethod
    def load(cls, path: str | Path) -> TreeEnsemble:
        """Read a :meth:`save` file; a one-line :class:`DataError` naming the file and key for
        anything malformed (no pickle: JSON only)."""
        from advsec.models.io import read_json_model

        p = Path(path)
        p = p if p.suffix == ".json" else p.with_name(p.name + ".json")
        meta = read_json_model(p, FORMAT, what="an advsec tree-ensemble file")
        return cls._from_meta(meta, p)

    @classmethod
    def _from_meta(cls, meta: dict[str, Any], p: Path) -> TreeEnsemble:
        from advsec.models.io import check_classes, read_attachments

        d = meta.get("n_features")
        if not isinstance(d, int) or isinstance(d, bool) or d < 1:
            raise DataError(f"{p}, key 'n_features': expected an integer >= 1")
        classes = check_classes(meta.get("classes"), p)
        kind = meta.get("kind", "random_forest")
        if not isinstance(kind, str) or kind not in KINDS:
            raise DataError(f"{p}, key 'kind': expected one of {', '.join(KINDS)}, got {kind!r}")
        if meta.get("aggregate", KINDS[kind]) != KINDS[kind]:
            raise DataError(f"{p}, key 'aggregate': a {kind} ensemble aggregates by "
                            f"{KINDS[kind]!r}")
        boosted = KINDS[kind] == "sum"
        k = (1 if len(classes) == 2 else len(classes)) if boosted else 0
        base = _floats(meta.get("base_score", []), f"{p}, key 'base_score'")
        if len(base) != k:
            raise DataError(f"{p}, key 'base_score': expected {k} number(s) for a {kind} "
                            f"ensemble of {len(classes)} classes, got {len(base)}")
        entries = meta.get("trees")
        if not isinstance(entries, list) or not entries:
            raise DataError(f"{p}, key 'trees': expected a non-empty list of trees")
        width = 1 if boosted else len(classes)
        trees = [_tree(e, p, i, d, width, max(k, 1)) for i, e in enumerate(entries)]
        out = cls(trees, classes, d, kind=kind, base_score=base if boosted else None)
        out.feature_space_, out.data_ = read_attachments(meta, p, width=d)
        return out


def _link(raw: np.ndarray) -> np.ndarray:
    """Probabilities ``(N, C)`` from boosted raw scores ``(N, K)``: sigmoid for ``K = 1``
    (scikit-learn's ``expit``, ``[1 - p, p]``), softmax otherwise."""
    from scipy.special import expit, softmax

    if raw.shape[1] == 1:
        p = expit(raw[:, 0])
        return np.stack([1.0 - p, p], axis=1)
    return np.asarray(softmax(raw, axis=1))


def _floats(value: object, where: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise DataError(f"{where}: expected a list of numbers") from None
    if arr.ndim != 1 or not np.isfinite(arr).all():
        raise DataError(f"{where}: expected a list of finite numbers")
    return arr


def _tree(entry: object, p: Path, i: int, d: int, v: int, k: int) -> Tree:
    where = f"{p}, key 'trees[{i}]'"
    if not isinstance(entry, dict):
        raise DataError(f"{where}: expected an object")
    try:
        feature = np.asarray(entry["feature"], dtype=np.int64)
        threshold = np.asarray(entry["threshold"], dtype=np.float64)
        left = np.asarray(entry["left"], dtype=np.int64)
        right = np.asarray(entry["right"], dtype=np.int64)
        value = np.asarray(entry["value"], dtype=np.float64)
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise DataError(f"{where}: missing or non-numeric arrays ({type(exc).__name__})") from None
    output = entry.get("output", 0)
    if not isinstance(output, int) or isinstance(output, bool) or not 0 <= output < k:
        raise DataError(f"{where}, key 'output': expected an integer in [0, {k})")
    m = len(feature)
    if m < 1 or any(a.shape != (m,) for a in (threshold, left, right)) or value.shape != (m, v):
        raise DataError(f"{where}: arrays of inconsistent shapes (feature, threshold, "
                        f"left, right: ({m},); value: ({m}, {v}))")
    inner = left >= 0
    if ((inner != (right >= 0)).any() or (left[inner] <= np.flatnonzero(inner)).any()
            or (right[inner] <= np.flatnonzero(inner)).any() or (left >= m).any()
            or (right >= m).any()):
        raise DataError(f"{where}: children must point forward to nodes of the tree")
    if ((feature[inner] < 0) | (feature[inner] >= d)).any():
        raise DataError(f"{where}: a split feature outside [0, {d})")
    if not (np.isfinite(threshold).all() and np.isfinite(value).all()):
        raise DataError(f"{where}: thresholds and values must be finite numbers")
    return Tree(feature=feature, threshold=threshold, left=left, right=right, value=value,
                output=output)
