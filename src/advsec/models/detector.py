"""Detector: a PyTorch MLP with scikit-learn conventions."""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from advsec.errors import ConfigError, DataError
from advsec.models.inference import batched_logits
from advsec.models.mlp import MLP
from advsec.models.streamed import STREAM_ROWS, Batches, FileBatches, MemoryBatches
from advsec.rowstore import RowFile, is_memmap

if TYPE_CHECKING:
    from advsec.features.space import FeatureSpace

__all__ = ["Detector", "as_labels", "resolve_device"]

log = logging.getLogger(__name__)

ArrayLike = np.ndarray | torch.Tensor


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else is passed to ``torch.device``.

    Raises:
        ConfigError: for a device name torch does not know, or CUDA when this torch build or
            machine has none.
    """
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"device {device!r}: {exc}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r}: CUDA is not available (this torch build or "
                          f"machine has no GPU); use cpu or auto")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s)")
    return dev


class Detector:
    """A feed-forward neural-network classifier for model-space records.

    Parameters are set in the constructor (keyword-only); learned state ends with ``_``.

    Args:
        hidden: hidden-layer widths.
        dropout: dropout probability after each hidden layer.
        activation: ``"relu"``, ``"tanh"`` or ``"gelu"``.
        epochs: maximum number of passes over the training data.
        batch_size: mini-batch size.
        lr: Adam learning rate.
        weight_decay: Adam weight decay (L2).
        validation_split: fraction of the training data held out for early stopping (0 disables
            the split and early stopping; the last epoch is kept).
        patience: epochs without validation-loss improvement before stopping.
        seed: seed for weight initialisation, shuffling, the validation split and dropout.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``...
        warm_start: if True, :meth:`fit` continues training the existing network.

    Learned attributes:
        module_: the :class:`~advsec.models.mlp.MLP` (returns logits).
        classes_: class labels, shape ``(C,)`` (order of the logits).
        n_features_in_: ``D``.
        history_: per-epoch dicts with ``epoch``, ``loss``, ``val_loss``, ``val_accuracy``.
        feature_space_: the :class:`~advsec.features.FeatureSpace` the inputs came from, when known.
        data_: how the training table was read (``{"dataset": ..., "options": {...}}``), when
            the detector was saved with it.

    Shapes: ``X`` is ``(N, D)`` float32 (NumPy or torch); ``y`` is ``(N,)`` labels of any
    hashable type (strings or integers).

    Data larger than memory: pass ``X`` as a file-backed memmap (``np.load(path,
    mmap_mode="r")``, e.g. ``EncodedStore.x``); :meth:`fit` then reads its shuffled
    mini-batches from the file by window (:mod:`advsec.models.streamed`: the same batches, so
    the same weights, as the in-memory path with the same seed) and :meth:`logits` /
    :meth:`predict` read it in chunks; ``y`` is held in memory (8 bytes per row).

    Example:
        >>> det = Detector(hidden=(64, 32), epochs=20, seed=0).fit(x_train, y_train)
        >>> det.score(x_test, y_test)
        0.98...
    """

    # learned state (set by fit, or by load)
    classes_: np.ndarray
    n_features_in_: int
    module_: MLP
    history_: list[dict[str, float]]
    device_: torch.device
    feature_space_: FeatureSpace | None
    data_: dict[str, Any] | None

    def __init__(
        self,
        *,
        hidden: Sequence[int] = (64, 32),
        dropout: float = 0.1,
        activation: str = "relu",
        epochs: int = 30,
        batch_size: int = 256,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        validation_split: float = 0.1,
        patience: int = 5,
        seed: int = 0,
        device: str = "auto",
        warm_start: bool = False,
    ) -> None:
        self.hidden = tuple(int(h) for h in hidden)
        self.dropout = dropout
        self.activation = activation
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.validation_split = validation_split
        self.patience = patience
        self.seed = seed
        self.device = device
        self.warm_start = warm_start

    # ------------------------------------------------------------------ sklearn-style API
    def get_params(self) -> dict[str, Any]:
        """The constructor parameters."""
        return {
            "hidden": list(self.hidden),
            "dropout": self.dropout,
            "activation": self.activation,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "weight_decay": self.weight_decay,
            "validation_split": self.validation_split,
            "patience": self.patience,
            "seed": self.seed,
            "device": self.device,
            "warm_start": self.warm_start,
        }

    def fit(
        self,
        X: ArrayLike,
        y: ArrayLike,
        *,
        batch_transform: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
        | None = None,
        callback: Callable[[dict[str, float]], None] | None = None,
    ) -> Detector:
        """Train on ``X`` ``(N, D)`` and labels ``y`` ``(N,)``.

        Args:
            batch_transform: optional ``fn(module, xb, yb) -> xb'`` applied to every training
                batch (labels as class indices); used by adversarial training to craft examples
                against the current network.
            callback: called after each epoch with that epoch's history entry.
        """
        self._check_params()
        x: torch.Tensor | np.memmap = (X if isinstance(X, np.memmap) and is_memmap(X)
                                       else self._as_tensor(X))
        if x.ndim != 2:
            raise DataError(f"X must have shape (N, D), got {tuple(x.shape)}")
        y_arr = as_labels(y)
        if y_arr.ndim != 1 or len(y_arr) != len(x):
            raise DataError(f"y must have shape ({len(x)},), got {y_arr.shape}")
        if self.warm_start and hasattr(self, "module_"):
            if x.shape[1] != self.n_features_in_:
                raise DataError(f"X has {x.shape[1]} columns, the detector expects "
                                f"{self.n_features_in_}")
            y_idx = self._encode_labels(y_arr)
        else:
            self.classes_ = np.unique(y_arr)
            if len(self.classes_) < 2:
                raise DataError(f"y must contain at least 2 classes, got {list(self.classes_)}")
            self.n_features_in_ = int(x.shape[1])
            y_idx = self._encode_labels(y_arr)
            self.history_: list[dict[str, float]] = []
        device = resolve_device(self.device)
        self.device_ = device
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            gen = torch.Generator().manual_seed(self.seed)
            if not (self.warm_start and hasattr(self, "module_")):
                self.module_ = MLP(
                    self.n_features_in_, len(self.classes_), hidden=self.hidden,
                    dropout=self.dropout, activation=self.activation,
                )
            self.module_.to(device)
            self._train(x, torch.as_tensor(y_idx), gen, batch_transform, callback)
        self.module_.eval()
        return self

    def _train(
        self,
        x: torch.Tensor | np.memmap,
        y: torch.Tensor,
        gen: torch.Generator,
        batch_transform: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor] | None,
        callback: Callable[[dict[str, float]], None] | None,
    ) -> None:
        device = self.device_
        n = len(x)
        n_val = math.floor(n * self.validation_split) if self.validation_split > 0 else 0
        perm = torch.randperm(n, generator=gen)
        val_idx, tr_idx = perm[:n_val], perm[n_val:]
        data: Batches = (MemoryBatches(x, y, tr_idx, val_idx, device)
                         if isinstance(x, torch.Tensor)
                         else FileBatches(x, y, tr_idx, val_idx, device))
        opt = torch.optim.Adam(self.module_.parameters(), lr=self.lr,
                               weight_decay=self.weight_decay)
        loss_fn = nn.CrossEntropyLoss()
        best_loss, best_state, stale = math.inf, None, 0
        start_epoch = len(self.history_)
        for epoch in range(self.epochs):
            self.module_.train()
            order = torch.randperm(data.n_train, generator=gen)
            # the epoch's loss summed on the device, read once (no host sync per batch); in
            # float64, term by term as the Python float it replaces
            total = torch.zeros((), dtype=torch.float64, device=device)
            seen = 0
            for xb, yb in data.batches(order, self.batch_size):
                if batch_transform is not None:
                    xb = batch_transform(self.module_, xb, yb)
                    self.module_.train()
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(self.module_(xb), yb)
                loss.backward()
                opt.step()
                total += loss.detach().to(torch.float64) * len(yb)
                seen += len(yb)
            entry = {"epoch": float(start_epoch + epoch + 1),
                     "loss": float(total) / max(seen, 1)}
            if n_val:
                self.module_.eval()
                with torch.no_grad():
                    logits, y_val = data.validation(self.module_)
                    val_loss = float(loss_fn(logits, y_val))
                    entry["val_loss"] = val_loss
                    entry["val_accuracy"] = float((logits.argmax(1) == y_val).float().mean())
                if val_loss < best_loss - 1e-6:
                    best_loss, stale = val_loss, 0
                    best_state = copy.deepcopy(self.module_.state_dict())
                else:
                    stale += 1
            self.history_.append(entry)
            log.debug("epoch %d: %s", epoch + 1, entry)
            if callback is not None:
                callback(entry)
            if n_val and stale >= self.patience:
                log.info("early stopping after epoch %d (best val loss %.4f)", epoch + 1, best_loss)
                break
        if best_state is not None:
            self.module_.load_state_dict(best_state)

    def logits(self, X: ArrayLike, *, batch_size: int = 8192) -> torch.Tensor:
        """Logits ``(N, C)`` as a CPU float32 tensor (no gradient); a memmap ``X`` is read
        :data:`~advsec.models.streamed.STREAM_ROWS` rows at a time."""
        self._check_fitted()
        if is_memmap(X):
            rows = RowFile(X)
            parts = [self.logits(chunk, batch_size=batch_size)
                     for _, chunk in rows.windows(STREAM_ROWS)]
            if parts:
                return torch.cat(parts)
            return torch.zeros((0, len(self.classes_)))
        x = self._as_tensor(X)
        return batched_logits(self.module_, x, batch_size=batch_size)

    def predict_proba(self, X: ArrayLike) -> np.ndarray:
        """Class probabilities ``(N, C)`` (softmax of the logits), columns in ``classes_`` order."""
        return torch.softmax(self.logits(X), dim=1).numpy()

    def predict(self, X: ArrayLike) -> np.ndarray:
        """Predicted labels ``(N,)`` from ``classes_``."""
        return self.classes_[self.logits(X).argmax(dim=1).numpy()]

    def score(self, X: ArrayLike, y: ArrayLike) -> float:
        """Accuracy of :meth:`predict` against ``y``."""
        return float(np.mean(self.predict(X) == as_labels(y)))

    def encode_labels(self, y: ArrayLike) -> torch.Tensor:
        """Labels ``(N,)`` -> class indices ``(N,)`` (int64 tensor) in ``classes_`` order."""
        self._check_fitted()
        return torch.as_tensor(self._encode_labels(as_labels(y)))

    def as_module(self) -> nn.Module:
        """The underlying logits network (for attacks)."""
        self._check_fitted()
        return self.module_

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path, *, feature_space: Any = None,
             data: dict[str, Any] | None = None) -> tuple[Path, Path]:
        """Write ``<path>.safetensors`` (weights) and ``<path>.json`` (metadata); no pickle.
        ``data``: how the training table was read (``{"dataset": ..., "options": {...}}``),
        restored as ``data_`` by :meth:`load`."""
        from advsec.models.io import save_detector

        return save_detector(self, path, feature_space=feature_space, data=data)

    @classmethod
    def load(cls, path: str | Path, *, device: str = "cpu") -> Detector:
        """Inverse of :meth:`save`; ``feature_space_`` is restored when it was saved."""
        from advsec.models.io import load_detector

        return load_detector(path, device=device)

    # ------------------------------------------------------------------ helpers
    def _check_params(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise DataError("epochs and batch_size must be >= 1")
        if not 0 <= self.validation_split < 1:
            raise DataError(f"validation_split must be in [0, 1), got {self.validation_split}")
        if not 0 <= self.dropout < 1:
            raise DataError(f"dropout must be in [0, 1), got {self.dropout}")

    def _check_fitted(self) -> None:
        if not hasattr(self, "module_"):
            raise RuntimeError("this Detector is not fitted yet: call fit(X, y) first")

    def _as_tensor(self, X: ArrayLike) -> torch.Tensor:
        x = X.detach().cpu() if isinstance(X, torch.Tensor) else torch.as_tensor(np.asarray(X))
        if x.ndim != 2:
            raise DataError(f"X must have shape (N, D), got {tuple(x.shape)}")
        if hasattr(self, "n_features_in_") and x.shape[1] != self.n_features_in_:
            raise DataError(f"X has {x.shape[1]} columns, the detector expects "
                            f"{self.n_features_in_}")
        x = x.to(torch.float32)
        if not bool(torch.isfinite(x).all()):
            raise DataError("X contains NaN or infinite values")
        return x

    def _encode_labels(self, y: np.ndarray) -> np.ndarray:
        idx = np.searchsorted(self.classes_, y)
        idx = np.clip(idx, 0, len(self.classes_) - 1)
        bad = self.classes_[idx] != y
        if bad.any():
            first = y[np.flatnonzero(bad)[0]]
            raise DataError(f"label {first!r} was not seen in training; known: "
                            f"{list(self.classes_)}")
        return idx.astype(np.int64)

    def __repr__(self) -> str:
        return f"Detector(hidden={self.hidden}, epochs={self.epochs}, seed={self.seed})"


def as_labels(y: ArrayLike) -> np.ndarray:
    """Labels ``(N,)`` as a NumPy array (strings stay strings, as ``str``)."""
    if isinstance(y, torch.Tensor):
        return y.detach().cpu().numpy()
    arr = np.asarray(y)
    if arr.dtype.kind in "OUS" or str(arr.dtype).startswith("string"):
        arr = arr.astype(str)
    return arr
