"""What every defence shares: the result record, clean metrics and preparing a trainable copy."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from advsec.errors import ConfigError
from advsec.models.detector import Detector, as_labels
from advsec.models.metrics import detection_metrics
from advsec.models.mlp import MLP

__all__ = ["DefenseResult", "EpochLosses", "as_labels", "benign_index", "clean_metrics"]

ArrayLike = np.ndarray | torch.Tensor


@dataclass
class DefenseResult:
    """A hardened detector and how it does on clean data.

    A defence is judged on clean data too: a detector that flags everything as malicious has a
    perfect detection rate under any attack and is useless, so every defence reports clean
    accuracy, detection rate and false-positive rate after hardening.

    Attributes:
        name: the defence (``"data-enhancement"``, ``"pgd-at"``, ``"fast-at"``, ``"trades"``).
        detector: the hardened copy (the input detector is left unchanged).
        clean: metrics of the hardened detector on ``eval_data`` (``accuracy``, ``precision``,
            ``detection_rate``, ``f1``, ``fpr``, ``roc_auc``); empty when no data was given.
        seconds: wall time of the hardening (crafting and training).
        info: the defence's settings and counters (adversarial rows, epochs, ...).
    """

    name: str
    detector: Detector
    clean: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        """A flat dict for a results table: ``defense``, ``seconds`` and the clean metrics."""
        return {"defense": self.name, **{f"clean_{k}": v for k, v in self.clean.items()},
                "seconds": self.seconds}


def benign_index(detector: Detector, benign_class: int | str | None = None) -> int:
    """Index of the benign class in ``detector.classes_``.

    ``None``: the feature space's benign label when the detector knows its space, else
    ``"benign"`` or ``"normal"`` when present, else 0. A label or an index is taken as given.
    """
    names = [str(c) for c in detector.classes_]
    if isinstance(benign_class, (int, np.integer)):
        if not 0 <= int(benign_class) < len(names):
            raise ConfigError(f"benign class index {benign_class} is out of range for "
                              f"{len(names)} classes")
        return int(benign_class)
    if benign_class is not None:
        if str(benign_class) not in names:
            raise ConfigError(f"benign class {benign_class!r} is not one of {names}")
        return names.index(str(benign_class))
    space = getattr(detector, "feature_space_", None)
    candidates = [space.schema.benign_label] if space is not None else []
    for cand in [*candidates, "benign", "normal"]:
        if str(cand) in names:
            return names.index(str(cand))
    return 0


def clean_metrics(
    detector: Detector,
    x: ArrayLike,
    y: ArrayLike,
    *,
    benign_class: int | str | None = None,
) -> dict[str, float]:
    """Clean metrics of ``detector`` on ``x`` ``(N, D)`` and labels ``y`` ``(N,)``.

    ``y`` holds the detector's labels (as passed to ``fit``). Returns ``accuracy``,
    ``precision``, ``detection_rate``, ``f1``, ``fpr`` and ``roc_auc`` (malicious = any class
    other than the benign one).
    """
    y_idx = detector.encode_labels(y).numpy()
    logits = detector.logits(x)
    pred = logits.argmax(dim=1).numpy()
    proba = torch.softmax(logits, dim=1).numpy()
    return detection_metrics(y_idx, pred, proba=proba,
                             benign_class=benign_index(detector, benign_class))


def prepare_copy(detector: Detector, *, epochs: int | None) -> tuple[Detector, bool]:
    """A trainable deep copy of ``detector`` and whether it was already fitted.

    A fitted detector continues training (``warm_start``); an unfitted one trains from scratch.
    Early stopping on a clean validation split is switched off (``validation_split = 0``): it
    would keep the epoch with the best *clean* loss, i.e. the least robust one.
    """
    if not isinstance(detector, Detector):
        raise TypeError(f"defences harden an advsec Detector, got {type(detector).__name__}")
    fitted = hasattr(detector, "module_")
    det = copy.deepcopy(detector)
    det.warm_start = fitted
    det.validation_split = 0.0
    if epochs is not None:
        if epochs < 1:
            raise ConfigError(f"epochs must be >= 1, got {epochs}")
        det.epochs = int(epochs)
    return det, fitted


class EpochLosses:
    """One epoch's mean total, natural and robust losses, summed on the device in float64 and
    read once at the end: no host sync per mini-batch (TRADES and certified training)."""

    def __init__(self, device: torch.device) -> None:
        self.acc = torch.zeros(3, dtype=torch.float64, device=device)

    def add(self, rows: int, total: torch.Tensor, natural: torch.Tensor,
            robust: torch.Tensor) -> None:
        """Add one mini-batch of ``rows`` records (its three mean losses, 0-d tensors)."""
        self.acc += torch.stack([total.detach(), natural.detach(),
                                 robust.detach()]).to(torch.float64) * rows

    def entry(self, epoch: int, rows: int) -> dict[str, float]:
        """The history entry of epoch ``epoch`` (1-based) over ``rows`` records (one sync)."""
        sums = self.acc.cpu().numpy() / max(rows, 1)
        return {"epoch": float(epoch), "loss": sums[0], "natural_loss": sums[1],
                "robust_loss": sums[2]}


def init_network(det: Detector, x: torch.Tensor, y: np.ndarray) -> None:
    """Initialise an unfitted detector's network as ``Detector.fit`` would (seeded)."""
    det.classes_ = np.unique(y)
    if len(det.classes_) < 2:
        raise ConfigError(f"y must contain at least 2 classes, got {list(det.classes_)}")
    det.n_features_in_ = int(x.shape[1])
    det.history_ = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(det.seed)
        det.module_ = MLP(det.n_features_in_, len(det.classes_), hidden=det.hidden,
                          dropout=det.dropout, activation=det.activation)


def as_tensor(x: ArrayLike) -> torch.Tensor:
    """``(N, D)`` float32 CPU tensor."""
    t = x.detach().cpu() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    return t.to(torch.float32)


def finish(
    name: str,
    det: Detector,
    seconds: float,
    info: dict[str, Any],
    eval_data: tuple[ArrayLike, ArrayLike] | None,
    benign_class: int | str | None,
) -> DefenseResult:
    """Put the detector in eval mode, score it on ``eval_data`` and wrap it up."""
    det.module_.eval()
    clean = ({} if eval_data is None else
             clean_metrics(det, eval_data[0], eval_data[1], benign_class=benign_class))
    if clean and not math.isnan(clean.get("fpr", math.nan)) and clean["fpr"] > 0.5:
        info = {**info, "warning": "more than half of the benign records are flagged"}
    return DefenseResult(name=name, detector=det, clean=clean, seconds=seconds, info=info)
