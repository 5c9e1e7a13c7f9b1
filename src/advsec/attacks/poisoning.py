"""Training-set poisoning by label flipping, and a study of clean accuracy vs poison rate."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from advsec.models.metrics import detection_metrics

__all__ = ["flip_labels", "poisoning_study"]

log = logging.getLogger(__name__)

MODES = ("random", "targeted")


def flip_labels(
    y: np.ndarray | Sequence[Any],
    *,
    rate: float,
    mode: str = "random",
    benign_label: Any = "benign",
    classes: Sequence[Any] | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Flip the labels of a share ``rate`` of the training records.

    Paper: Biggio, Nelson, Laskov, "Support Vector Machines Under Adversarial Label Noise",
    ACML 2011 (random flips); targeted flips model an attacker who gets malicious samples
    labelled benign (e.g. by submitting them to a feedback channel).

    Norm: none (a poisoning budget: ``round(rate * N)`` training labels).

    Args:
        y: training labels ``(N,)``.
        rate: share of the ``N`` records whose label is flipped, in ``[0, 1]``.
        mode: ``"random"``: records drawn uniformly, each given a different class drawn
            uniformly; ``"targeted"``: malicious records (label != ``benign_label``) relabelled
            ``benign_label`` (capped at the number of malicious records, with a warning).
        benign_label: the benign label.
        classes: the label set for random flips (default: the labels present in ``y``).
        seed: random seed.

    Returns:
        ``(y_poisoned (N,), flipped (N,) bool)``.

    Shapes: ``y`` ``(N,)`` -> ``(N,)``, ``(N,)``.

    Example:
        >>> y_bad, flipped = flip_labels(y_train, rate=0.1, mode="targeted")
        >>> flipped.mean()
        0.1
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if not 0.0 <= rate <= 1.0 or not math.isfinite(rate):
        raise ValueError(f"rate must be in [0, 1], got {rate!r}")
    y = _labels(y)
    n = len(y)
    rng = np.random.default_rng(seed)
    out = y.copy()
    flipped = np.zeros(n, dtype=bool)
    n_flip = round(rate * n)
    if n_flip == 0:
        return out, flipped
    if mode == "targeted":
        benign = _like(benign_label, y)
        pool = np.flatnonzero(y != benign)
        if n_flip > len(pool):
            log.warning("targeted flipping: rate %.3g asks for %d flips but only %d records are "
                        "malicious; flipping all of them", rate, n_flip, len(pool))
            n_flip = len(pool)
        chosen = rng.choice(pool, size=n_flip, replace=False)
        out[chosen] = benign
        flipped[chosen] = True
        return out, flipped
    labels = np.unique(y) if classes is None else _labels(list(classes))
    if len(labels) < 2:
        raise ValueError("random label flipping needs at least 2 classes")
    chosen = rng.choice(n, size=n_flip, replace=False)
    # a different class for each chosen record: shift its class index by 1..C-1
    current = np.searchsorted(labels, y[chosen]) if classes is None else np.array(
        [list(labels).index(v) if v in labels else 0 for v in y[chosen]])
    shift = rng.integers(1, len(labels), size=n_flip)
    out[chosen] = labels[(current + shift) % len(labels)]
    flipped[chosen] = out[chosen] != y[chosen]
    return out, flipped


def poisoning_study(
    x_train: np.ndarray | torch.Tensor,
    y_train: np.ndarray | Sequence[Any],
    x_test: np.ndarray | torch.Tensor,
    y_test: np.ndarray | Sequence[Any],
    *,
    rates: Sequence[float] = (0.0, 0.05, 0.1, 0.2, 0.3),
    mode: str = "random",
    benign_label: Any = "benign",
    detector_params: Mapping[str, Any] | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Train one Detector per poison rate on flipped labels; clean test metrics vs rate.

    Paper: label-flipping poisoning (Biggio et al., ACML 2011; Xiao et al., "Adversarial Label
    Flips Attack on Support Vector Machines", ECAI 2012).

    Norm: none (poisoning budget = ``rate``).

    Args:
        x_train, y_train: training inputs ``(N, D)`` and labels ``(N,)``.
        x_test, y_test: clean test inputs ``(M, D)`` and labels ``(M,)``.
        rates: poison rates to study (share of training labels flipped).
        mode: ``"random"`` or ``"targeted"`` (see :func:`flip_labels`).
        benign_label: the benign label.
        detector_params: keyword arguments of :class:`~advsec.models.Detector` (the same
            seed for every rate, so the labels are the only difference).
        seed: seed of the flips.

    Returns:
        A DataFrame, one row per rate: ``mode, rate, n_flipped, accuracy, precision,
        detection_rate, f1, fpr, seconds`` (metrics on the clean test set; malicious is
        positive).

    Shapes: ``x_*`` ``(N, D)``, ``y_*`` ``(N,)``.

    Example:
        >>> table = poisoning_study(x_tr, y_tr, x_te, y_te, rates=[0, 0.1, 0.3], mode="targeted")
        >>> table[["rate", "detection_rate"]]
    """
    from advsec.models import Detector

    params = dict(detector_params or {})
    y_tr, y_te = _labels(y_train), _labels(y_test)
    rows = []
    for rate in rates:
        t0 = time.perf_counter()
        y_bad, flipped = flip_labels(y_tr, rate=float(rate), mode=mode,
                                     benign_label=benign_label, seed=seed)
        det = Detector(**params).fit(x_train, y_bad)
        pred = np.asarray(det.predict(x_test))
        if y_te.dtype.kind == "U":
            pred = pred.astype(str)
        rows.append({"mode": mode, "rate": float(rate), "n_flipped": int(flipped.sum()),
                     **detection_metrics(y_te, pred, benign_class=_like(benign_label, y_te)),
                     "seconds": time.perf_counter() - t0})
        log.info("poisoning %s rate %.3f: %s", mode, rate, rows[-1])
    return pd.DataFrame(rows)


def _labels(y: Any) -> np.ndarray:
    """Labels as a NumPy array: strings for text labels (object, pandas string), else as is."""
    arr = np.asarray(y.cpu() if isinstance(y, torch.Tensor) else y)
    if arr.dtype.kind in "OUS" or str(arr.dtype).startswith("string"):
        return arr.astype(str)
    return arr


def _like(value: Any, y: np.ndarray) -> Any:
    """``value`` converted to the type of the labels in ``y``."""
    if y.dtype.kind in "US" or y.dtype == object:
        return str(value)
    return y.dtype.type(value)
