"""Detector persistence: safetensors weights + JSON metadata. Nothing is ever unpickled.

Loading validates both files before building anything (:func:`load_detector`): a malformed file
is a one-line :class:`~advsec.errors.DataError` naming the file and the key or tensor.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from advsec.errors import AdvsecError, DataError

__all__ = ["FORMAT", "check_data_record", "load_data_options", "load_detector",
           "load_feature_space", "load_model", "save_detector", "split_model_path"]

FORMAT = "advsec.detector/1"
_FLOAT_DTYPES = ("F16", "BF16", "F32", "F64", "float16", "bfloat16", "float32", "float64")


def split_model_path(path: str | Path) -> tuple[Path, Path]:
    """``run/model`` (or ``run/model.safetensors`` / ``.json``) -> the two file paths."""
    p = Path(path)
    if p.suffix in (".safetensors", ".json"):
        p = p.with_suffix("")
    if not p.name:
        p = p.resolve()
    if not p.name:
        raise DataError(f"{path}: not a model path; expected the prefix of PREFIX.safetensors + "
                        f"PREFIX.json")
    return p.with_name(p.name + ".safetensors"), p.with_name(p.name + ".json")


def save_detector(det: Any, path: str | Path, *, feature_space: Any = None,
                  data: Mapping[str, Any] | None = None) -> tuple[Path, Path]:
    """Write ``det``'s weights and metadata; returns ``(weights_path, json_path)``. ``data``
    (``{"dataset": name, "options": {...}}``, JSON values): how the training table was read,
    stored under the JSON's ``data`` key."""
    det._check_fitted()
    if data is None:
        data = getattr(det, "data_", None)
    if data is not None:
        check_data_record(data, where="save_detector: data")
    weights, meta_path = split_model_path(path)
    weights.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in det.module_.state_dict().items()}
    save_file(state, str(weights), metadata={"format": FORMAT})
    space = feature_space if feature_space is not None else getattr(det, "feature_space_", None)
    classes = det.classes_
    meta = {
        "format": FORMAT,
        "architecture": {
            "type": "mlp",
            "n_inputs": det.n_features_in_,
            "n_outputs": len(classes),
            "hidden": list(det.hidden),
            "dropout": det.dropout,
            "activation": det.activation,
        },
        "params": det.get_params(),
        "classes": [c.item() if hasattr(c, "item") else c for c in classes],
        "classes_dtype": "str" if classes.dtype.kind in "OUS" else str(classes.dtype),
        "history": det.history_,
        "feature_space": space.to_dict() if space is not None else None,
    }
    if data is not None:
        meta["data"] = {"dataset": data["dataset"], "options": dict(data["options"])}
    meta_path.write_text(json.dumps(meta, indent=2))
    return weights, meta_path


def load_detector(path: str | Path, *, device: str = "cpu") -> Any:
    """Rebuild a fitted :class:`~advsec.models.Detector` from :func:`save_detector` files.

    Everything is checked before a network is built, each problem a one-line
    :class:`~advsec.errors.DataError` naming the file and the key or tensor: the JSON must be an
    object with ``format``, ``architecture`` (``type`` "mlp", ``n_inputs`` >= 1, ``n_outputs``
    >= 2, ``hidden`` positive integers, ``dropout`` in [0, 1), ``activation``), ``params`` (the
    Detector's constructor parameters), ``classes`` (``n_outputs`` distinct sorted labels) and
    optionally ``classes_dtype``, ``history`` and ``feature_space`` (whose width must be
    ``n_inputs``); the safetensors file must hold exactly the architecture's tensors, with their
    shapes, as finite floating-point numbers.
    """
    from advsec.models.detector import Detector
    from advsec.models.mlp import MLP

    weights, meta_path = split_model_path(path)
    given = Path(path)
    if given.is_dir() and not weights.is_file():
        inner, _ = split_model_path(given / "model")
        tip = f" (pass {given / 'model'})" if inner.is_file() else ""
        raise DataError(f"{given}: is a directory; expected the model path prefix of "
                        f"PREFIX.safetensors + PREFIX.json{tip}")
    for p in (weights, meta_path):
        if p.is_dir():
            raise DataError(f"{p}: is a directory, expected a model file")
        if not p.is_file():
            raise DataError(
                f"{p}: model file not found (expected {weights.name} + {meta_path.name})"
            )
    meta = _read_meta(meta_path)
    arch = meta["architecture"]
    params = {**meta["params"], "device": device}
    try:
        with torch.device("meta"):
            skeleton = MLP(arch["n_inputs"], arch["n_outputs"], hidden=arch["hidden"],
                           dropout=arch["dropout"], activation=arch["activation"])
    except (ValueError, TypeError, RuntimeError, OverflowError) as exc:
        first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise DataError(f"{meta_path}, key 'architecture': {first}") from None
    expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    state = _read_weights(weights, meta_path, expected)
    det = Detector(**params)
    det.module_ = MLP(arch["n_inputs"], arch["n_outputs"], hidden=arch["hidden"],
                      dropout=arch["dropout"], activation=arch["activation"])
    det.module_.load_state_dict(state)
    det.module_.to(device).eval()
    dtype = meta.get("classes_dtype", "str")
    det.classes_ = _classes(meta, meta_path, dtype)
    det.n_features_in_ = int(arch["n_inputs"])
    det.history_ = list(meta.get("history") or [])
    det.device_ = torch.device(device)
    det.feature_space_ = _space(meta, meta_path)
    det.data_ = None
    if meta.get("data") is not None:
        check_data_record(meta["data"], where=f"{meta_path}, key 'data'")
        det.data_ = meta["data"]
    return det


def check_data_record(data: object, *, where: str) -> None:
    """A one-line :class:`DataError` (prefixed ``where``) unless ``data`` is ``{"dataset":
    name, "options": {key: JSON scalar or list of them}}``."""
    if not isinstance(data, Mapping) or set(data) != {"dataset", "options"}:
        raise DataError(f"{where}: expected an object with 'dataset' and 'options'")
    if not isinstance(data["dataset"], str) or not data["dataset"]:
        raise DataError(f"{where}.dataset: expected a dataset name")
    opts = data["options"]
    if not isinstance(opts, Mapping):
        raise DataError(f"{where}.options: expected an object of loader options")
    for key, value in opts.items():
        items = value if isinstance(value, list) else [value]
        if not isinstance(key, str) or not all(
                isinstance(v, (str, int, float, bool)) for v in items):
            raise DataError(f"{where}.options.{key}: expected a string, number, boolean or a "
                            f"list of them, got {type(value).__name__}")


def load_model(path: str | Path, *, device: str = "cpu") -> Any:
    """A saved detector of any kind advsec writes: an MLP (``PATH.safetensors`` +
    ``PATH.json``), a scikit-learn tree ensemble (``PATH.json`` in the
    :mod:`~advsec.models.trees` format) or an XGBoost / LightGBM booster (``PATH.json`` beside
    the library's own JSON / text file, :mod:`~advsec.models.boosters`). JSON, text and
    safetensors only, never pickle."""
    from advsec.models.boosters import FORMAT as BOOSTER
    from advsec.models.boosters import BoostedTrees
    from advsec.models.trees import FORMAT as TREES
    from advsec.models.trees import TreeEnsemble

    if Path(path).suffix.lower() == ".onnx":  # no FeatureSpace inside: it needs one given
        raise DataError(f"{path}: an ONNX model; load it with advsec.models.onnx_model."
                        f"load_onnx(path, space=...) or `advsec attack --model {path} --data ...`")
    weights, meta_path = split_model_path(path)
    given = Path(path)
    if given.is_file() and not weights.exists() and not meta_path.exists():
        raise DataError(_not_advsec(given, "advsec writes PREFIX.json, plus PREFIX.safetensors "
                                           "for an MLP"))
    if meta_path.is_file() and not weights.exists():
        try:
            head = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            head = None
        fmt = head.get("format") if isinstance(head, dict) else None
        if fmt == TREES:
            return TreeEnsemble.load(meta_path)
        if fmt == BOOSTER:
            return BoostedTrees.load(meta_path)
        if isinstance(head, dict) and fmt != FORMAT:
            native = isinstance(head.get("learner"), dict)
            raise DataError(_not_advsec(meta_path, "it looks like XGBoost's own JSON model"
                                        if native else f"its 'format' is {fmt!r}"))
    return load_detector(path, device=device)


def _not_advsec(path: Path, why: str) -> str:
    """The message for a model file advsec did not write (one line)."""
    return (f"{path}: not an advsec model file ({why}); attack a model trained elsewhere with "
            f"advsec.models.wrap(model, space=...) in Python, or export it to ONNX for "
            f"`advsec attack --model FILE.onnx` (README: Attack your own model)")


def read_json_model(path: Path, fmt: str, *, what: str) -> dict[str, Any]:
    """The JSON object in ``path`` whose ``format`` is ``fmt``; a one-line :class:`DataError`
    naming the file (unreadable, not JSON, another format: "not {what}")."""
    try:
        meta = json.loads(path.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise DataError(f"{path}: cannot read the model file ({exc.strerror or exc})") from None
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise DataError(f"{path}: not a JSON file ({str(exc).splitlines()[0]})") from None
    if not isinstance(meta, dict) or meta.get("format") != fmt:
        raise DataError(f"{path}: not {what} (format {fmt!r})")
    return meta


def read_attachments(meta: dict[str, Any], path: Path, *,
                     width: int) -> tuple[Any, dict[str, Any] | None]:
    """A saved model's ``feature_space`` (a FeatureSpace encoding records to ``width``
    columns, or None) and ``data`` record (checked by :func:`check_data_record`, or None) from
    its metadata ``meta`` read from ``path``; a one-line :class:`DataError` naming the file and
    the key when malformed."""
    space = None
    if meta.get("feature_space") is not None:
        from advsec.features.space import FeatureSpace

        _check_space(path, meta["feature_space"])
        try:
            space = FeatureSpace.from_dict(meta["feature_space"])
        except Exception as exc:  # any malformed space is the file's fault
            raise DataError(f"{path}, key 'feature_space': {type(exc).__name__}: "
                            f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
        if space.n_features_out != width:
            raise DataError(f"{path}, key 'feature_space': encodes records to "
                            f"{space.n_features_out} columns, but the model takes {width}")
    data = meta.get("data")
    if data is not None:
        check_data_record(data, where=f"{path}, key 'data'")
    return space, data


def check_classes(classes: object, path: Path) -> list[Any]:
    """``classes``, the ``classes`` key of the model file ``path``: a list of at least 2
    distinct labels (strings or numbers); a one-line :class:`DataError` naming the file and the
    key otherwise."""
    if not isinstance(classes, list) or len(classes) < 2 or not all(
            isinstance(c, (str, int, float)) for c in classes):
        raise _fail(path, "classes", "a list of at least 2 labels (strings or numbers)",
                    classes)
    if len({(type(c), c) for c in classes}) != len(classes):
        raise _fail(path, "classes", "distinct labels", classes)
    return classes


def load_data_options(path: str | Path) -> dict[str, Any] | None:
    """How the training table of the model saved at ``path`` (``PATH.json``, or ``PATH`` itself
    when it ends in ``.json``; an MLP or a tree ensemble) was read: its ``data`` record
    ``{"dataset": name, "options": {loader option: JSON value}}``, checked as
    :func:`load_detector` checks it (a one-line DataError naming the file and the key); None
    for a model saved without one."""
    _, meta_path = split_model_path(path)
    if not meta_path.is_file():
        raise DataError(f"{meta_path}: model file not found")
    try:
        meta = json.loads(meta_path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        raise DataError(f"{meta_path}: not a readable JSON file; expected the model's "
                        f"metadata") from None
    if not isinstance(meta, dict):
        raise DataError(f"{meta_path}: expected a JSON object with the model's metadata")
    data = meta.get("data")
    if data is None:
        return None
    check_data_record(data, where=f"{meta_path}, key 'data'")
    return {"dataset": data["dataset"], "options": dict(data["options"])}


def load_feature_space(path: str | Path) -> Any:
    """The :class:`~advsec.features.FeatureSpace` saved with a detector (``PATH.json``, or
    ``PATH`` itself when it ends in ``.json``), checked as :func:`load_detector` checks it;
    None when the detector was saved without one."""
    _, meta_path = split_model_path(path)
    if not meta_path.is_file():
        raise DataError(f"{meta_path}: model file not found")
    return _space(_read_meta(meta_path), meta_path)


def _space(meta: dict[str, Any], meta_path: Path) -> Any:
    from advsec.features.space import FeatureSpace

    fs = meta.get("feature_space")
    if not fs:
        return None
    try:
        space = FeatureSpace.from_dict(fs)
    except AdvsecError as exc:
        raise DataError(f"{meta_path}, key 'feature_space': {exc}") from None
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
        raise DataError(f"{meta_path}, key 'feature_space': invalid "
                        f"({type(exc).__name__}: {exc})") from None
    width, n_inputs = space.n_features_out, meta["architecture"]["n_inputs"]
    if width != n_inputs:
        raise DataError(f"{meta_path}, key 'feature_space': encodes records to {width} "
                        f"columns, but architecture.n_inputs is {n_inputs}")
    return space


def _fail(meta_path: Path, key: str, expected: str, value: object) -> DataError:
    got = "an object" if isinstance(value, dict) else repr(value)
    if len(got) > 60:
        got = got[:60] + "..."
    return DataError(f"{meta_path}, key {key!r}: expected {expected}, got {got}")


_MAX_INT = 2**31 - 1


def _is_int(value: object, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= _MAX_INT


def _is_number(value: object) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def _read_meta(meta_path: Path) -> dict[str, Any]:
    """The model JSON, every key the loader uses checked (see :func:`load_detector`)."""
    try:
        text = meta_path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{meta_path}: not UTF-8 text; expected the model's JSON "
                        f"metadata") from None
    except OSError as exc:
        raise DataError(f"{meta_path}: cannot read the file ({exc.strerror or exc})") from None
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{meta_path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
    except RecursionError:
        raise DataError(f"{meta_path}: not valid JSON (nested too deeply)") from None
    if not isinstance(meta, dict):
        raise DataError(f"{meta_path}: expected a JSON object with the detector's metadata, "
                        f"got a JSON {type(meta).__name__}")
    if meta.get("format") != FORMAT:
        raise DataError(f"{meta_path}, key 'format': not an advsec detector (expected "
                        f"{FORMAT!r}, got {meta.get('format')!r})")
    for key in ("architecture", "params", "classes"):
        if key not in meta:
            raise DataError(f"{meta_path}: missing key {key!r}")
    arch = meta["architecture"]
    if not isinstance(arch, dict):
        raise _fail(meta_path, "architecture", "an object", arch)
    for key in ("type", "n_inputs", "n_outputs", "hidden", "dropout", "activation"):
        if key not in arch:
            raise DataError(f"{meta_path}: missing key 'architecture.{key}'")
    checks: list[tuple[str, bool, str]] = [
        ("type", arch["type"] == "mlp", "'mlp'"),
        ("n_inputs", _is_int(arch["n_inputs"], 1), "an integer in [1, 2**31)"),
        ("n_outputs", _is_int(arch["n_outputs"], 2), "an integer in [2, 2**31)"),
        ("hidden", isinstance(arch["hidden"], list)
         and all(_is_int(h, 1) for h in arch["hidden"]), "a list of integers in [1, 2**31)"),
        ("dropout", _is_number(arch["dropout"]) and 0 <= arch["dropout"] < 1,
         "a number in [0, 1)"),
        ("activation", isinstance(arch["activation"], str), "a string"),
    ]
    for key, ok, expected in checks:
        if not ok:
            raise _fail(meta_path, f"architecture.{key}", expected, arch[key])
    _check_params(meta_path, meta["params"])
    classes = meta["classes"]
    if not isinstance(classes, list) or not all(
            isinstance(c, (str, int)) and not isinstance(c, bool) for c in classes):
        raise _fail(meta_path, "classes", "a list of class labels", classes)
    if len(classes) != arch["n_outputs"]:
        raise DataError(f"{meta_path}, key 'classes': {len(classes)} labels, but "
                        f"architecture.n_outputs is {arch['n_outputs']}")
    if not isinstance(meta.get("classes_dtype", "str"), str):
        raise _fail(meta_path, "classes_dtype", "a string", meta["classes_dtype"])
    history = meta.get("history")
    if history is not None and not (isinstance(history, list)
                                    and all(isinstance(h, dict) for h in history)):
        raise _fail(meta_path, "history", "a list of objects", history)
    fs = meta.get("feature_space")
    if fs:
        _check_space(meta_path, fs)
    return meta


def _check_params(meta_path: Path, params: object) -> None:
    from advsec.models.detector import Detector

    if not isinstance(params, dict):
        raise _fail(meta_path, "params", "an object", params)
    defaults = Detector().get_params()
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        raise DataError(f"{meta_path}, key 'params': unknown parameter(s) {unknown}; known: "
                        f"{sorted(defaults)}")
    for key, value in params.items():
        default = defaults[key]
        if isinstance(default, bool):
            ok, expected = isinstance(value, bool), "true or false"
        elif isinstance(default, int):
            ok, expected = _is_int(value, 0), "an integer in [0, 2**31)"
        elif isinstance(default, float):
            ok, expected = _is_number(value), "a finite number"
        elif isinstance(default, str):
            ok, expected = isinstance(value, str), "a string"
        else:
            ok = isinstance(value, list) and all(_is_int(h, 1) for h in value)
            expected = "a list of integers in [1, 2**31)"
        if not ok:
            raise _fail(meta_path, f"params.{key}", expected, value)


def _check_space(meta_path: Path, fs: object) -> None:
    """A one-line DataError naming the key unless ``fs`` (a model file's ``feature_space``)
    has the keys :meth:`FeatureSpace.from_dict` reads: ``lo`` and ``span`` numbers for every
    numeric feature, ``categories`` lists for the categorical ones, ``decimals`` integers."""
    from advsec.features.codec import MAX_DECIMALS

    if not isinstance(fs, dict):
        raise _fail(meta_path, "feature_space", "an object or null", fs)
    for key in ("schema", "lo", "span", "categories"):
        if not isinstance(fs.get(key), dict):
            raise _fail(meta_path, f"feature_space.{key}", "an object", fs.get(key))
    decimals = fs.get("decimals", {})
    if not isinstance(decimals, dict):
        raise _fail(meta_path, "feature_space.decimals", "an object", decimals)
    for name, places in decimals.items():
        if not (_is_int(places, 0) and places <= MAX_DECIMALS):
            raise _fail(meta_path, f"feature_space.decimals.{name}",
                        f"an integer 0..{MAX_DECIMALS}", places)
    schema = fs["schema"]
    features = schema.get("features")
    if not isinstance(features, list) or not all(
            isinstance(f, dict) and isinstance(f.get("name"), str) for f in features):
        raise _fail(meta_path, "feature_space.schema.features", "a list of feature objects",
                    features)
    for f in features:
        name = f["name"]
        if f.get("kind") == "categorical":
            cats = fs["categories"].get(name)
            if not isinstance(cats, list):
                raise _fail(meta_path, f"feature_space.categories.{name}", "a list of labels",
                            cats)
            continue
        for key in ("lo", "span"):
            value = fs[key].get(name)
            if not _is_number(value) or (key == "span" and value <= 0):
                want = "a positive number" if key == "span" else "a finite number"
                raise _fail(meta_path, f"feature_space.{key}.{name}", want, value)


def _read_weights(
    weights: Path, meta_path: Path, expected: dict[str, tuple[int, ...]]
) -> dict[str, torch.Tensor]:
    """The tensors of ``weights``, checked against the names and shapes ``expected``."""
    try:
        with safe_open(str(weights), framework="pt", device="cpu") as fh:
            names = set(fh.keys())
            shapes = {k: tuple(fh.get_slice(k).get_shape()) for k in names}
            dtypes = {k: str(fh.get_slice(k).get_dtype()) for k in names}
    except Exception as exc:  # safetensors raises several types for a corrupt file
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{weights}: not a readable safetensors file ({first[:200]})") from None
    missing = sorted(set(expected) - names)
    if missing:
        raise DataError(f"{weights}: no tensor {missing[0]!r}, which the architecture in "
                        f"{meta_path.name} needs ({len(expected)} tensors expected)")
    extra = sorted(names - set(expected))
    if extra:
        raise DataError(f"{weights}: unexpected tensor {extra[0]!r} (the architecture in "
                        f"{meta_path.name} has {len(expected)} tensors)")
    for name, shape in expected.items():
        if shapes[name] != shape:
            raise DataError(f"{weights}, tensor {name!r}: shape {list(shapes[name])}, but the "
                            f"architecture in {meta_path.name} expects {list(shape)}")
        if dtypes[name] not in _FLOAT_DTYPES:
            raise DataError(f"{weights}, tensor {name!r}: dtype {dtypes[name]}; expected "
                            f"floating point")
    try:
        state = load_file(str(weights), device="cpu")
    except Exception as exc:  # as above
        raise DataError(f"{weights}: cannot read weights ({exc})") from None
    for name, tensor in state.items():
        if not bool(torch.isfinite(tensor).all()):
            raise DataError(f"{weights}, tensor {name!r}: contains NaN or infinite values")
    return {k: v.float() for k, v in state.items()}


def _classes(meta: dict[str, Any], meta_path: Path, dtype: str) -> np.ndarray:
    try:
        arr = np.asarray(meta["classes"], dtype=str if dtype == "str" else np.dtype(dtype))
    except (TypeError, ValueError, OverflowError):
        raise DataError(f"{meta_path}, key 'classes_dtype': cannot hold the classes as "
                        f"{dtype!r}") from None
    if len(np.unique(arr)) != len(arr) or not np.array_equal(np.sort(arr), arr):
        raise DataError(f"{meta_path}, key 'classes': expected distinct labels in sorted order, "
                        f"got {list(meta['classes'])[:6]}")
    return arr
