"""What the stages of the KDD Cup 99 reproduction share: the data, its subsets, the results."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch

from advsec.evaluation import confusion, detection_metrics
from advsec.evaluation.checks import Flag
from advsec.experiments.reproductions.faithful import predict
from advsec.experiments.reproductions.kdd99_config import BENIGN_INDEX, KDD99Config
from advsec.experiments.reproductions.kdd99_data import (
    CLASSES,
    NUMERIC_FEATURES,
    FaithfulData,
    stratified_subset,
)
from advsec.features.space import FeatureSpace
from advsec.models import Detector
from advsec.models.mlp import MLP

__all__ = ["StudyState"]


class StudyState:
    """The study's state between stages (one instance per run).

    The faithful stages (:mod:`.kdd99_faithful`) and the corrected ones
    (:mod:`.kdd99_corrected`) read the data and write their results here; the report and the
    run directory's files are drawn from it.

    Attributes:
        cfg, data: the settings and the prepared data set.
        notes: what was done to the data, with row counts (for the report).
        train_idx, test_idx: rows of ``data`` used for training and testing (all of the
            split's rows, except in a quick run).
        x_train, y_train, x_test, y_test: ``(N, 34)`` float32 standardised inputs and ``(N,)``
            int64 class indices of those rows; ``y_test_np`` as NumPy.
        sweep_pos, sanity_pos: stratified positions in the test rows (eps sweeps, sanity checks);
            ``defence_pos``: stratified positions in the training rows (defences).
        net: the original model (logits), once trained; ``history``: its training history.
        faithful_adv_test: the faithful adversarial test sets, per attack key.
        hardened: the faithfully hardened models, per attack key.
        space: the FeatureSpace of the 34 numeric features (min-max study, validity).
        out: scalar results and details for ``metrics.json``; ``tables``: result tables;
        confusions: confusion matrices for the figures; ``flags``: red flags per protocol.
    """

    def __init__(self, cfg: KDD99Config, data: FaithfulData) -> None:
        self.cfg = cfg
        self.data = data
        self.notes = list(data.notes)
        tr, te = data.train_idx, data.test_idx
        if cfg.train_rows is not None and cfg.train_rows < len(tr):
            tr = tr[stratified_subset(data.y[tr], cfg.train_rows, seed=cfg.seed)]
            self.notes.append(f"quick run: training split sub-sampled to {len(tr):,} rows")
        if cfg.test_rows is not None and cfg.test_rows < len(te):
            te = te[stratified_subset(data.y[te], cfg.test_rows, seed=cfg.seed + 1)]
            self.notes.append(f"quick run: test split sub-sampled to {len(te):,} rows")
        self.train_idx, self.test_idx = tr, te
        self.x_train = torch.from_numpy(data.x[tr])
        self.y_train = torch.from_numpy(data.y[tr])
        self.x_test = torch.from_numpy(data.x[te])
        self.y_test = torch.from_numpy(data.y[te])
        self.y_test_np = data.y[te]
        # stratified subsets for the corrected part
        self.sweep_pos = stratified_subset(self.y_test_np, cfg.sweep_rows, seed=cfg.seed + 2)
        self.sanity_pos = stratified_subset(self.y_test_np, cfg.sanity_rows, seed=cfg.seed + 3)
        self.defence_pos = stratified_subset(data.y[tr], cfg.defence_train_rows,
                                             seed=cfg.seed + 4)
        self.net: MLP | None = None
        self.history: list[dict[str, float]] = []
        self.faithful_adv_test: dict[str, torch.Tensor] = {}
        self.hardened: dict[str, MLP] = {}
        self.space: FeatureSpace | None = None
        self.out: dict[str, Any] = {}
        self.tables: dict[str, pd.DataFrame] = {}
        self.confusions: dict[str, np.ndarray] = {}
        self.flags: dict[str, list[Flag]] = {}

    @property
    def original(self) -> MLP:
        """The original model (raises if it is not trained yet)."""
        if self.net is None:
            raise RuntimeError("the original model is not trained yet")
        return self.net

    @property
    def feature_space(self) -> FeatureSpace:
        """The FeatureSpace of the numeric features (raises if it is not fitted yet)."""
        if self.space is None:
            raise RuntimeError("the feature space is not fitted yet")
        return self.space

    def metrics(self, module: torch.nn.Module, x: torch.Tensor,
                y: np.ndarray | None = None) -> tuple[dict[str, float], np.ndarray]:
        """Detection metrics and per-class recall of ``module`` on ``x`` (labels ``y``, default
        the test labels), and the confusion matrix."""
        y = self.y_test_np if y is None else y
        pred = predict(module, x).numpy()
        m = detection_metrics(y, pred, benign_class=BENIGN_INDEX)
        cm = confusion(y, pred, len(CLASSES))
        recall = np.diag(cm) / np.maximum(cm.sum(axis=1), 1)
        m.update({f"recall_{c}": float(r) for c, r in zip(CLASSES, recall, strict=True)})
        return m, cm

    def detector(self, module: MLP) -> Detector:
        """The Keras-style network (on ``cfg.device``) as an advsec Detector (for the defences
        and saving)."""
        cfg = self.cfg
        det = Detector(hidden=cfg.hidden, dropout=0.0, epochs=cfg.defence_epochs,
                       batch_size=cfg.defence_batch_size, lr=cfg.lr, validation_split=0.0,
                       seed=cfg.seed, device=cfg.device)
        det.module_ = module
        det.classes_ = np.array(CLASSES)
        det.n_features_in_ = len(NUMERIC_FEATURES)
        det.history_ = []
        det.device_ = torch.device(cfg.device)
        return det

    def sweep_rows(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and labels of the stratified sweep subset of the test rows."""
        return self.x_test[self.sweep_pos], self.y_test[self.sweep_pos]
