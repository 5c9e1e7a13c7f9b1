"""Tree ensembles in a JSON format advsec owns: no pickle, identical predictions.

:class:`TreeEnsemble` holds the trees of a fitted scikit-learn ``RandomForestClassifier`` or
``ExtraTreesClassifier`` as plain arrays (per tree: ``feature``, ``threshold``, ``left``,
``right`` and the class distribution of every node) and predicts as scikit-learn does: inputs
cast to float32, ``x[feature] <= threshold`` goes left, the forest's probability is the mean of
the trees' leaf distributions. :meth:`TreeEnsemble.save` writes one JSON file (float64
thresholds, which JSON numbers hold exactly); :meth:`TreeEnsemble.load` checks every key and
array before building anything.

Shapes: ``N`` records, ``D`` input columns, ``C`` classes; per tree ``M`` nodes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from advsec.errors import DataError

__all__ = ["FORMAT", "Tree", "TreeEnsemble"]

FORMAT = "advsec-trees-1"


@dataclass(frozen=True)
class Tree:
    """One tree: ``feature``, ``threshold`` (float64, compared with float32 inputs as
    scikit-learn compares them), ``left``, ``right`` ``(M,)`` (-1 at
    leaves) and ``value`` ``(M, C)``, each node's class distribution (rows sum to 1)."""

    feature: np.ndarray
    threshold: np.ndarray
    left: np.ndarray
    right: np.ndarray
    value: np.ndarray

    def leaves(self, x: np.ndarray) -> np.ndarray:
        """``(N,)`` the leaf each float32 row of ``x`` ``(N, D)`` reaches."""
        node = np.zeros(len(x), dtype=np.int64)
        rows = np.arange(len(x))
        while True:
            inner = self.left[node] >= 0
            if not inner.any():
                return node
            go_left = (x[rows, np.maximum(self.feature[node], 0)].astype(np.float64)
                       <= self.threshold[node])
            nxt = np.where(go_left, self.left[node], self.right[node])
            node = np.where(inner, nxt, node)


class TreeEnsemble:
    """A forest of :class:`Tree` over ``D`` inputs and ``classes_`` (see the module docstring).

    Attributes:
        trees: the trees; classes_: ``(C,)`` class labels; n_features_in_: ``D``;
        kind: ``"random_forest"`` or ``"extra_trees"``; feature_space_: the FeatureSpace the
        inputs come from, when known; data_: how the training table was read, when known.
    """

    def __init__(self, trees: Sequence[Tree], classes: Sequence[Any], n_features: int, *,
                 kind: str) -> None:
        self.trees = list(trees)
        self.classes_ = np.asarray(classes)
        self.n_features_in_ = int(n_features)
        self.kind = kind
        self.feature_space_: Any = None
        self.data_: dict[str, Any] | None = None

    @classmethod
    def from_sklearn(cls, model: Any) -> TreeEnsemble:
        """The trees of a fitted ``RandomForestClassifier`` / ``ExtraTreesClassifier``."""
        name = type(model).__name__
        kinds = {"RandomForestClassifier": "random_forest", "ExtraTreesClassifier": "extra_trees"}
        if name not in kinds or not hasattr(model, "estimators_"):
            raise DataError(f"expected a fitted RandomForestClassifier or ExtraTreesClassifier, "
                            f"got {name}")
        trees = []
        for est in model.estimators_:
            t = est.tree_
            value = np.asarray(t.value[:, 0, :], dtype=np.float64)
            value = value / np.maximum(value.sum(axis=1, keepdims=True), 1e-300)
            trees.append(Tree(feature=np.asarray(t.feature, dtype=np.int64),
                              threshold=np.asarray(t.threshold, dtype=np.float64),
                              left=np.asarray(t.children_left, dtype=np.int64),
                              right=np.asarray(t.children_right, dtype=np.int64), value=value))
        return cls(trees, model.classes_, model.n_features_in_, kind=kinds[name])

    # ------------------------------------------------------------------ prediction
    def predict_proba(self, x: Any) -> np.ndarray:
        """``(N, C)`` class probabilities of ``x`` ``(N, D)`` (the mean over trees)."""
        arr = np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x,
                         dtype=np.float32)
        if arr.ndim != 2 or arr.shape[1] != self.n_features_in_:
            raise DataError(f"expected inputs of shape (N, {self.n_features_in_}), got "
                            f"{arr.shape}")
        out = np.zeros((len(arr), len(self.classes_)), dtype=np.float64)
        for tree in self.trees:
            out += tree.value[tree.leaves(arr)]
        return out / len(self.trees)

    def __call__(self, x: Any) -> Any:
        """Scores as attacks and scoring call them: ``(N, D)`` tensor -> ``(N, C)``
        probabilities (float32 tensor on ``x``'s device)."""
        import torch

        proba = self.predict_proba(x)
        return torch.as_tensor(proba, dtype=torch.float32, device=getattr(x, "device", None))

    def encode_labels(self, labels: Any) -> Any:
        """``(N,)`` class indices (a long tensor) of the labels ``labels`` (one-line
        :class:`DataError` for a label that is not a class)."""
        from advsec.models.labels import class_indices

        return class_indices(self.classes_, labels)

    def predict(self, x: Any) -> np.ndarray:
        """``(N,)`` the most probable class label of each row of ``x`` ``(N, D)``."""
        return np.asarray(self.classes_[self.predict_proba(x).argmax(axis=1)])

    # ------------------------------------------------------------------ files
    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly (floats round-trip exactly through ``json``)."""
        return {
            "format": FORMAT, "kind": self.kind, "n_features": self.n_features_in_,
            "classes": [c.item() if hasattr(c, "item") else c for c in self.classes_],
            "trees": [{"feature": t.feature.tolist(),
                       "threshold": t.threshold.tolist(),
                       "left": t.left.tolist(), "right": t.right.tolist(),
                       "value": t.value.tolist()} for t in self.trees],
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
        p = Path(path)
        p = p if p.suffix == ".json" else p.with_name(p.name + ".json")
        try:
            meta = json.loads(p.read_text(encoding="utf-8"))
        except OSError as exc:
            raise DataError(f"{p}: cannot read the model file ({exc.strerror or exc})") from None
        except ValueError as exc:
            raise DataError(f"{p}: not a JSON file ({str(exc).splitlines()[0]})") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise DataError(f"{p}: not an advsec tree-ensemble file (format {FORMAT!r})")
        return cls._from_meta(meta, p)

    @classmethod
    def _from_meta(cls, meta: dict[str, Any], p: Path) -> TreeEnsemble:
        d, classes = meta.get("n_features"), meta.get("classes")
        if not isinstance(d, int) or isinstance(d, bool) or d < 1:
            raise DataError(f"{p}, key 'n_features': expected an integer >= 1")
        if not isinstance(classes, list) or len(classes) < 2:
            raise DataError(f"{p}, key 'classes': expected a list of at least 2 labels")
        entries = meta.get("trees")
        if not isinstance(entries, list) or not entries:
            raise DataError(f"{p}, key 'trees': expected a non-empty list of trees")
        trees = [_tree(e, p, i, d, len(classes)) for i, e in enumerate(entries)]
        out = cls(trees, classes, d, kind=str(meta.get("kind", "random_forest")))
        if meta.get("feature_space") is not None:
            from advsec.features.space import FeatureSpace

            try:
                out.feature_space_ = FeatureSpace.from_dict(meta["feature_space"])
            except Exception as exc:  # any malformed space is the file's fault
                raise DataError(f"{p}, key 'feature_space': {type(exc).__name__}: "
                                f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
        if meta.get("data") is not None:
            from advsec.models.io import check_data_record

            check_data_record(meta["data"], where=f"{p}, key 'data'")
            out.data_ = meta["data"]
        return out


def _tree(entry: object, p: Path, i: int, d: int, c: int) -> Tree:
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
    m = len(feature)
    if m < 1 or any(a.shape != (m,) for a in (threshold, left, right)) or value.shape != (m, c):
        raise DataError(f"{where}: arrays of inconsistent shapes (feature, threshold, "
                        f"left, right: ({m},); value: ({m}, {c}))")
    inner = left >= 0
    if ((inner != (right >= 0)).any() or (left[inner] <= np.flatnonzero(inner)).any()
            or (right[inner] <= np.flatnonzero(inner)).any() or (left >= m).any()
            or (right >= m).any()):
        raise DataError(f"{where}: children must point forward to nodes of the tree")
    if ((feature[inner] < 0) | (feature[inner] >= d)).any():
        raise DataError(f"{where}: a split feature outside [0, {d})")
    if not (np.isfinite(threshold).all() and np.isfinite(value).all()):
        raise DataError(f"{where}: thresholds and values must be finite numbers")
    return Tree(feature=feature, threshold=threshold, left=left, right=right, value=value)
