"""Detectors: scikit-learn-style wrappers around PyTorch networks, saved as safetensors + JSON."""

from __future__ import annotations

from advsec.models.detector import Detector, resolve_device
from advsec.models.foreign import ForeignModel, ForeignNetwork
from advsec.models.io import load_detector, save_detector
from advsec.models.mlp import MLP
from advsec.models.wrappers import wrap

__all__ = [
    "MLP",
    "Detector",
    "ForeignModel",
    "ForeignNetwork",
    "load_detector",
    "resolve_device",
    "save_detector",
    "wrap",
]
