"""Detector persistence: safetensors weights + JSON metadata. Nothing is ever unpickled."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from advsec.errors import DataError

__all__ = ["FORMAT", "load_detector", "save_detector", "split_model_path"]

FORMAT = "advsec.detector/1"


def split_model_path(path: str | Path) -> tuple[Path, Path]:
    """``run/model`` (or ``run/model.safetensors`` / ``.json``) -> the two file paths."""
    p = Path(path)
    if p.suffix in (".safetensors", ".json"):
        p = p.with_suffix("")
    return p.with_name(p.name + ".safetensors"), p.with_name(p.name + ".json")


def save_detector(det: Any, path: str | Path, *, feature_space: Any = None) -> tuple[Path, Path]:
    """Write ``det``'s weights and metadata; returns ``(weights_path, json_path)``."""
    det._check_fitted()
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
    meta_path.write_text(json.dumps(meta, indent=2))
    return weights, meta_path


def load_detector(path: str | Path, *, device: str = "cpu") -> Any:
    """Rebuild a fitted :class:`~advsec.models.Detector` from :func:`save_detector` files."""
    from advsec.features.space import FeatureSpace
    from advsec.models.detector import Detector
    from advsec.models.mlp import MLP

    weights, meta_path = split_model_path(path)
    for p in (weights, meta_path):
        if not p.is_file():
            raise DataError(
                f"{p}: model file not found (expected {weights.name} + {meta_path.name})"
            )
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{meta_path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
    if meta.get("format") != FORMAT:
        raise DataError(f"{meta_path}: not an advsec detector (format {meta.get('format')!r})")
    arch = meta["architecture"]
    params = {**meta["params"], "device": device}
    det = Detector(**params)
    det.module_ = MLP(arch["n_inputs"], arch["n_outputs"], hidden=arch["hidden"],
                      dropout=arch["dropout"], activation=arch["activation"])
    try:
        state = load_file(str(weights), device="cpu")
        det.module_.load_state_dict(state)
    except Exception as exc:  # safetensors raises several types for a corrupt file
        raise DataError(f"{weights}: cannot read weights ({exc})") from None
    det.module_.to(device).eval()
    dtype = meta.get("classes_dtype", "str")
    det.classes_ = np.asarray(meta["classes"], dtype=str if dtype == "str" else dtype)
    det.n_features_in_ = int(arch["n_inputs"])
    det.history_ = list(meta.get("history", []))
    det.device_ = torch.device(device)
    fs = meta.get("feature_space")
    det.feature_space_ = FeatureSpace.from_dict(fs) if fs else None
    return det
