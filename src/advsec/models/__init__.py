"""Detectors: scikit-learn-style wrappers around PyTorch networks, saved as safetensors + JSON."""

from __future__ import annotations

from advsec.models.detector import Detector, resolve_device
from advsec.models.io import load_detector, save_detector
from advsec.models.mlp import MLP

__all__ = ["MLP", "Detector", "load_detector", "resolve_device", "save_detector"]
