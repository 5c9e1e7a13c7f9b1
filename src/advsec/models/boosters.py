"""XGBoost and LightGBM detectors, saved in the libraries' own formats: no pickle.

:class:`BoostedTrees` trains an ``XGBClassifier`` (``tree_method="hist"``) or an
``LGBMClassifier`` (``deterministic=True``) on encoded inputs and keeps its booster. Saved as
two files: ``PATH.json`` (advsec's metadata: format, kind, classes, input width, the
FeatureSpace, how the training table was read, the native file's name) and the booster in the
library's own format beside it, ``PATH.xgboost.json`` (XGBoost's JSON model) or
``PATH.lightgbm.txt`` (LightGBM's text model). Reloading reads both with the libraries' JSON /
text parsers and predicts exactly what the fitted model predicted.

Both libraries are the optional extra ``advsec[trees]``; without them, training or loading such
a model is a one-line :class:`~advsec.errors.ConfigError` naming the extra.

Shapes: ``N`` records, ``D`` encoded input columns, ``C`` classes.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from advsec.errors import ConfigError, DataError
from advsec.models.proba import ProbaModel, as_array

__all__ = ["EXTRA", "FORMAT", "KINDS", "BoostedTrees", "require"]

FORMAT = "advsec-booster-1"
EXTRA = "advsec[trees]"
#: kind -> (module, suffix of the native file)
KINDS = {"xgboost": ("xgboost", ".xgboost.json"), "lightgbm": ("lightgbm", ".lightgbm.txt")}


def require(kind: str) -> Any:
    """The library module of ``kind``; a one-line ConfigError naming the extra when missing."""
    module = KINDS[kind][0]
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(f"{kind} models need the optional extra: pip install '{EXTRA}' "
                          f"({module} is not installed)") from None


class BoostedTrees(ProbaModel):
    """An XGBoost or LightGBM booster over ``D`` encoded inputs (module docstring).

    Attributes:
        booster: the library's ``Booster``; kind: ``"xgboost"`` or ``"lightgbm"``;
        classes_: ``(C,)`` labels (the booster's class ``i`` is ``classes_[i]``);
        n_features_in_: ``D``; feature_space_, data_: as for the other advsec models.
    """

    def __init__(self, booster: Any, *, kind: str, classes: Any, n_features: int) -> None:
        if kind not in KINDS:
            raise ConfigError(f"booster kind: expected one of {', '.join(KINDS)}, got {kind!r}")
        self.booster = booster
        self.kind = kind
        self.classes_ = np.asarray(classes)
        self.n_features_in_ = int(n_features)
        self.feature_space_: Any = None
        self.data_: dict[str, Any] | None = None

    @classmethod
    def fit(cls, x: np.ndarray, y: Any, *, kind: str, n_estimators: int = 100,
            max_depth: int | None = None, learning_rate: float = 0.1, seed: int = 0,
            threads: int = 1) -> BoostedTrees:
        """Train on ``x`` ``(N, D)`` and labels ``y`` ``(N,)`` (compared as text; the classes
        are their sorted distinct values). ``max_depth=None``: the library's default
        (XGBoost 6, LightGBM unlimited with 31 leaves)."""
        lib = require(kind)
        labels = np.asarray(y).astype(str)
        classes = np.unique(labels)
        if len(classes) < 2:
            raise DataError(f"the training labels hold one class ({classes[0]!r}); a detector "
                            "needs at least two")
        target = np.searchsorted(classes, labels)
        arr = np.ascontiguousarray(x, dtype=np.float32)
        if kind == "xgboost":
            model = lib.XGBClassifier(
                n_estimators=n_estimators, max_depth=max_depth, learning_rate=learning_rate,
                random_state=seed, n_jobs=threads, tree_method="hist")
            booster = model.fit(arr, target).get_booster()
        else:
            model = lib.LGBMClassifier(
                n_estimators=n_estimators, max_depth=-1 if max_depth is None else max_depth,
                learning_rate=learning_rate, random_state=seed, n_jobs=threads,
                deterministic=True, force_row_wise=True, verbose=-1)
            booster = model.fit(arr, target).booster_
        return cls(booster, kind=kind, classes=classes, n_features=arr.shape[1])

    # ------------------------------------------------------------------ prediction
    def predict_proba(self, x: Any) -> np.ndarray:
        """``(N, C)`` class probabilities of ``x`` ``(N, D)``, as the library predicts them
        (float32 inputs; probabilities in float64)."""
        arr = as_array(x, dtype=np.float32, width=self.n_features_in_)
        if len(arr) == 0:
            return np.zeros((0, len(self.classes_)))
        if self.kind == "xgboost":
            out = np.asarray(self.booster.inplace_predict(arr), dtype=np.float64)
        else:
            out = np.asarray(self.booster.predict(arr), dtype=np.float64)
        if out.ndim == 1:
            out = np.stack([1.0 - out, out], axis=1)
        return out

    # ------------------------------------------------------------------ files
    def save(self, path: str | Path) -> tuple[Path, Path]:
        """Write ``PATH.json`` and the native file beside it (``PATH`` may end in ``.json``);
        returns both paths."""
        meta_path, native = _paths(Path(path), self.kind)
        self.booster.save_model(str(native))
        meta_path.write_text(json.dumps({
            "format": FORMAT, "kind": self.kind, "n_features": self.n_features_in_,
            "classes": [c.item() if hasattr(c, "item") else c for c in self.classes_],
            "booster": native.name,
            "library_version": getattr(require(self.kind), "__version__", None),
            "feature_space": (self.feature_space_.to_dict()
                              if self.feature_space_ is not None else None),
            "data": self.data_,
        }))
        return meta_path, native

    @classmethod
    def load(cls, path: str | Path) -> BoostedTrees:
        """Read a :meth:`save` pair; a one-line DataError naming the file and key for anything
        malformed, a ConfigError naming the extra when the library is missing."""
        from advsec.models.io import check_classes, read_attachments, read_json_model

        meta_path, _ = _paths(Path(path), "xgboost")
        meta = read_json_model(meta_path, FORMAT, what="an advsec booster file")
        kind, d = meta.get("kind"), meta.get("n_features")
        if not isinstance(kind, str) or kind not in KINDS:
            raise DataError(f"{meta_path}, key 'kind': expected one of {', '.join(KINDS)}, "
                            f"got {kind!r}")
        if not isinstance(d, int) or isinstance(d, bool) or d < 1:
            raise DataError(f"{meta_path}, key 'n_features': expected an integer >= 1")
        classes = check_classes(meta.get("classes"), meta_path)
        name = meta.get("booster")
        if not isinstance(name, str) or Path(name).name != name or not name.endswith(
                KINDS[kind][1]):
            raise DataError(f"{meta_path}, key 'booster': expected the file name of the "
                            f"{kind} model beside it (ending in {KINDS[kind][1]})")
        native = meta_path.with_name(name)
        if not native.is_file():
            raise DataError(f"{native}: the {kind} model file named by {meta_path} is missing")
        lib = require(kind)
        # the libraries' parsers trust their files: a truncated one can crash the process
        (_check_xgboost_json if kind == "xgboost" else _check_lightgbm_text)(native)
        try:
            booster = lib.Booster(model_file=str(native))
        except Exception as exc:  # the libraries raise their own error types
            raise DataError(f"{native}: not a readable {kind} model ({_native_line(exc)})"
                            ) from None
        width = booster.num_features() if kind == "xgboost" else booster.num_feature()
        if width != d:
            raise DataError(f"{native}: the {kind} model takes {width} inputs, but "
                            f"{meta_path} says n_features {d}")
        out = cls(booster, kind=kind, classes=classes, n_features=d)
        columns = out.predict_proba(np.zeros((1, d), dtype=np.float32)).shape[1]
        if columns != len(classes):
            raise DataError(f"{native}: the {kind} model scores {columns} classes, but "
                            f"{meta_path} names {len(classes)}")
        out.feature_space_, out.data_ = read_attachments(meta, meta_path, width=d)
        return out


def _paths(path: Path, kind: str) -> tuple[Path, Path]:
    """``(PATH.json, PATH<native suffix>)`` of a model path prefix (``.json`` dropped)."""
    stem = path.name[:-5] if path.name.endswith(".json") else path.name
    return path.with_name(stem + ".json"), path.with_name(stem + KINDS[kind][1])


def _read_native(native: Path) -> bytes:
    try:
        return native.read_bytes()
    except OSError as exc:
        raise DataError(f"{native}: cannot read the model file ({exc.strerror or exc})") from None


def _check_xgboost_json(native: Path) -> None:
    """A one-line DataError unless ``native`` holds a complete JSON object with XGBoost's
    ``learner`` object (a truncated file is refused before XGBoost parses it)."""
    try:
        model = json.loads(_read_native(native).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise DataError(f"{native}: not a readable xgboost model (not complete JSON: {first}; "
                        f"truncated?)") from None
    if not isinstance(model, dict) or not isinstance(model.get("learner"), dict):
        raise DataError(f"{native}: not a readable xgboost model (expected XGBoost's JSON, "
                        f"an object with a 'learner' object)")


def _check_lightgbm_text(native: Path) -> None:
    """A one-line DataError unless ``native`` is a complete LightGBM text model: a header, the
    trees (each ``Tree=i`` block at the byte offset its ``tree_sizes`` says), ``end of trees``
    and, when there is a ``parameters:`` section, ``end of parameters``. LightGBM's parser
    reads a truncated file out of bounds (a segfault), so it only gets complete ones."""
    text = _read_native(native)

    def bad(why: str) -> DataError:
        return DataError(f"{native}: not a readable lightgbm model ({why}: truncated or "
                         f"edited?)")

    first_tree = text.find(b"\nTree=")
    if first_tree < 0:
        raise bad("no 'Tree=' block")
    start = first_tree + 1
    header = text[:start].splitlines()
    sizes_line = next((line for line in header if line.startswith(b"tree_sizes=")), None)
    if sizes_line is not None:
        try:
            sizes = [int(v) for v in sizes_line[len(b"tree_sizes="):].split()]
        except ValueError:
            raise bad("its 'tree_sizes' are not integers") from None
        at = start
        for i, size in enumerate(sizes):
            tag = b"Tree=%d" % i
            if (size <= 0 or at + size > len(text) or not text.startswith(tag, at)
                    or text[at + len(tag):at + len(tag) + 1] not in (b"\n", b"\r")):
                raise bad(f"tree {i} of the {len(sizes)} its 'tree_sizes' declare is missing "
                          f"or cut short")
            at += size
        end = at if text.startswith(b"end of trees", at) else -1
    else:
        found = text.find(b"\nend of trees", start)
        end = found + 1 if found >= 0 else -1
    if end < 0:
        raise bad("no 'end of trees' after the trees")
    params = text.find(b"\nparameters:", end)
    if params >= 0 and text.find(b"\nend of parameters", params) < 0:
        raise bad("no 'end of parameters' after its parameters")


def _native_line(exc: BaseException) -> str:
    """The first line of a library's error message, without its native stack trace."""
    lines = [line.strip() for line in str(exc).strip().splitlines()]
    lines = [line for line in lines if line and not line.startswith(("[bt]", "Stack trace"))]
    return lines[0] if lines else type(exc).__name__
