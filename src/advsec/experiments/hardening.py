"""Apply a configured defence to a trained detector (adapter over :mod:`advsec.defenses`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from advsec.experiments.config import DefenseConfig
from advsec.models import Detector

__all__ = ["harden"]


def harden(
    det: Detector,
    cfg: DefenseConfig,
    x_train: np.ndarray,
    y_train: np.ndarray,
    *,
    space: Any = None,
    seed: int = 0,
) -> Detector:
    """A hardened copy of ``det`` (``det`` itself is left unchanged)."""
    from advsec import defenses

    return defenses.harden(det, method=cfg.method, x=x_train, y=y_train, eps=cfg.eps,
                           steps=cfg.steps, epochs=cfg.epochs, ratio=cfg.ratio, beta=cfg.beta,
                           attack=cfg.attack, feature_space=space, seed=seed)
