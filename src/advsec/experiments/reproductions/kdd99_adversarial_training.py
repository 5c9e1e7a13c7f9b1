"""``advsec reproduce kdd99-adversarial-training``: the KDD Cup 99 adversarial-training study,
reproduced faithfully, then corrected, in one run directory with one report.

The original study trains a DNN (Dense 200-500-200, ReLU, softmax) on KDD Cup 99, attacks it with
FGSM, BIM and MIM at eps 0.1 (standardised units), hardens it by adversarial training (training
data enhanced 1:1 with adversarial examples) and reports that the hardened model classifies
correctly again.

**Faithful part** (every setting as the original had it, flaws included): see
:mod:`.kdd99_data` for the data and split, :mod:`.faithful` for the model, training loop and
attack calls. The hardened models are scored on the adversarial test set crafted against the
*original* model, as the study did.

**Corrected part** (same data and model): BIM, MIM and PGD untargeted on logits with true labels
and ``step * iterations >= eps``; an eps sweep and a worst case over the attacks; every hardened
model attacked afresh (adaptive) and its clean accuracy reported; PGD-AT, fast AT and TRADES beside
the data-enhancement method; the same study in the [0, 1] min-max space with valid-record
constraints; red-flag checks on both protocols. To keep the run to minutes on a laptop CPU the
corrected part sub-samples (stated in the report): the sweeps use a stratified subset of the test
set, the defences fine-tune the trained model on a stratified subset of the training set.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator

from advsec.attacks import BIM, FGSM, MIM, PGD
from advsec.attacks.validity import valid_records
from advsec.defenses import (
    DefenseResult,
    clean_metrics,
    data_enhancement_training,
    enhance_training_set,
    fast_adversarial_training,
    pgd_adversarial_training,
    trades_training,
)
from advsec.evaluation import confusion, detection_metrics, evaluate_attack
from advsec.evaluation.checks import Flag, check_model, check_sweep, check_unbounded_success
from advsec.evaluation.worst_case import transfer_table, worst_case
from advsec.experiments.reproductions.faithful import (
    OwnPredictionAttack,
    keras_fit,
    keras_mlp,
    predict,
    softmax_model,
)
from advsec.experiments.reproductions.kdd99_data import (
    BENIGN,
    CLASSES,
    NUMERIC_FEATURES,
    FaithfulData,
    load_faithful_data,
    stratified_subset,
)
from advsec.experiments.rundir import atomic_run_dir, file_log
from advsec.experiments.tomlio import dumps_toml
from advsec.features.space import FeatureSpace
from advsec.models import Detector

__all__ = ["REFERENCE", "STUDY", "KDD99Config", "KDD99Result", "run_kdd99_adversarial_training"]

log = logging.getLogger(__name__)

STUDY = "kdd99-adversarial-training"
#: The original study's accuracies on its test set of 29,107 rows.
REFERENCE: dict[str, float] = {
    "clean": 0.9957,
    "fgsm": 0.9806,
    "fgsm after AT": 0.9971,
    "bim": 0.9959,
    "bim after AT": 0.9970,
    "mim": 0.9957,
    "mim after AT": 0.9970,
}
#: The original's r2l recall, clean and under FGSM.
REFERENCE_R2L = {"clean": 0.857, "fgsm": 0.526}
BENIGN_INDEX = CLASSES.index(BENIGN)
#: Column of the hardened-model table holding the original protocol's number.
ORIGINAL_PROTOCOL = "original protocol (transfer from the original model)"

ProgressFn = Callable[[str, int, int], None]
#: Name of the unbounded sanity attack of the corrected protocol.
SANITY = "pgd-margin (sanity)"

_STAGES = ("load data", "train the original model", "faithful attacks",
           "faithful adversarial training", "corrected attacks and eps sweep",
           "adaptive re-attack of the hardened models", "defences compared",
           "min-max space with valid records", "red-flag checks", "report and files")


class KDD99Config(BaseModel):
    """Settings of the study (written to ``config.toml``). Defaults are the full run."""

    model_config = ConfigDict(extra="forbid")

    seed: int = Field(0, ge=0, description="torch seed: initialisation, shuffling, attacks, "
                      "subsets (the split always uses the original's np.random.seed(10))")
    split_seed: int = Field(10, description="np.random.seed before train_test_split")
    quick: bool = Field(False, description="a much smaller run (tests, smoke checks)")
    # --- faithful protocol
    hidden: list[int] = Field(default_factory=lambda: [200, 500, 200])
    epochs: int = Field(50, ge=1)
    batch_size: int = Field(50_000, ge=1)
    lr: float = Field(1e-3, gt=0)
    eps: float = Field(0.1, gt=0, description="the study's budget (standardised units)")
    bim_steps: int = Field(10, ge=1)
    bim_step: float = Field(0.1, gt=0)
    mim_steps: int = Field(100, ge=1)
    mim_step: float = Field(0.1, gt=0)
    mim_decay: float = Field(1.0, ge=0)
    at_epochs: int = Field(50, ge=1)
    at_ratio: float = Field(1.0, gt=0)
    train_rows: int | None = Field(None, ge=100, description="sub-sample the training split "
                                   "(quick runs only; None: all)")
    test_rows: int | None = Field(None, ge=50, description="sub-sample the test split "
                                  "(quick runs only; None: all)")
    # --- corrected protocol
    sweep_eps: list[float] = Field(default_factory=lambda: [0.01, 0.03, 0.1, 0.3, 1.0])
    sweep_rows: int = Field(3000, ge=50, description="stratified test subset of the sweeps")
    defence_sweep_eps: list[float] = Field(default_factory=lambda: [0.03, 0.1, 0.3, 1.0],
                                           description="eps grid of the hardened models")
    iterative_steps: int = Field(10, ge=1, description="BIM/MIM steps (step 0.25 eps)")
    pgd_steps: int = Field(20, ge=1, description="PGD steps (step 0.125 eps, random start)")
    large_eps: float = Field(10.0, gt=0, description="unbounded sanity budget")
    sanity_rows: int = Field(1000, ge=20)
    square_queries: int = Field(300, ge=0, description="queries of the Square (black-box) "
                                "comparison of the red-flag checks; 0 skips it")
    defence_train_rows: int = Field(20_000, ge=100)
    defence_epochs: int = Field(10, ge=1)
    defence_batch_size: int = Field(512, ge=1)
    defence_eps: float = Field(0.1, gt=0)
    defence_steps: int = Field(7, ge=1)
    trades_beta: float = Field(6.0, ge=0)
    minmax_eps: list[float] = Field(default_factory=lambda: [0.02, 0.05, 0.1, 0.2])
    minmax_epochs: int = Field(5, ge=1)
    minmax_at_eps: float = Field(0.05, gt=0)
    minmax_at_epochs: int = Field(5, ge=1)

    @field_validator("sweep_eps", "minmax_eps", "defence_sweep_eps")
    @classmethod
    def _check_eps(cls, v: list[float]) -> list[float]:
        if not v or any(not math.isfinite(e) or e <= 0 for e in v):
            raise ValueError(f"eps values must be finite and > 0, got {v}")
        return sorted(set(float(e) for e in v))

    @classmethod
    def quick_config(cls, *, seed: int = 0) -> KDD99Config:
        """A run of seconds: a smaller network (64-128-64), small subsets, few epochs and
        steps. It exercises every stage; its numbers are not the study's."""
        return cls(seed=seed, quick=True, hidden=[64, 128, 64], epochs=4, batch_size=500,
                   at_epochs=2, bim_steps=3, mim_steps=5, train_rows=2000, test_rows=800,
                   sweep_eps=[0.1, 1.0], defence_sweep_eps=[0.1, 1.0], sweep_rows=300,
                   iterative_steps=3, pgd_steps=4,
                   sanity_rows=100, square_queries=20, defence_train_rows=1000, defence_epochs=1,
                   defence_batch_size=256, defence_steps=2, minmax_eps=[0.05, 0.2],
                   minmax_epochs=1, minmax_at_epochs=1)


@dataclass
class KDD99Result:
    """Where the study wrote its files, and its headline tables."""

    out: Path
    faithful: pd.DataFrame
    headline: dict[str, Any]
    seconds: float
    flags: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def report(self) -> Path:
        """Path of ``report.html``."""
        return self.out / "report.html"


# ================================================================================ the study
def run_kdd99_adversarial_training(
    config: KDD99Config | None = None,
    *,
    out: str | Path,
    root: str | Path | None = None,
    force: bool = False,
    progress: ProgressFn | None = None,
) -> KDD99Result:
    """Run the whole study and write the run directory ``out`` atomically.

    Writes ``report.html``, ``metrics.json``, ``faithful.csv``, ``corrected.csv``,
    ``hardened.csv``, ``defences.csv``, ``minmax.csv``, ``flags.csv``, PNG figures, the original
    model (``model.safetensors`` + ``model.json``), ``config.toml`` and ``run.log``.

    Args:
        config: the settings (default: the full run).
        out: run directory to create.
        root: folder with ``kddcup.data_10_percent.gz`` (default: ``$ADVSEC_DATA``, then
            ``../shared/datasets/kdd99``).
        force: replace ``out`` if it exists.
        progress: ``fn(stage, k, n)`` called at each stage.
    """
    cfg = config or KDD99Config()
    t_start = time.perf_counter()
    report = progress or (lambda stage, k, n: None)
    timings: dict[str, float] = {}
    clock = [time.perf_counter()]

    def stage(i: int) -> None:
        now = time.perf_counter()
        if i > 0:
            timings[_STAGES[i - 1]] = now - clock[0]
        clock[0] = now
        report(_STAGES[i], i, len(_STAGES))
        log.info("stage %d/%d: %s", i + 1, len(_STAGES), _STAGES[i])

    with atomic_run_dir(out, force=force) as tmp:
        handler = file_log(tmp / "run.log")
        try:
            torch.manual_seed(cfg.seed)
            # denormal floats flushed to zero (x86 FTZ/DAZ) for the run, restored after: the
            # 50-epoch trainings run 10-30% faster on CPU
            torch.set_flush_denormal(True)
            stage(0)
            data = load_faithful_data(root, split_seed=cfg.split_seed)
            s = _Study(cfg, data)
            stage(1)
            s.train_original()
            stage(2)
            s.faithful_attacks()
            stage(3)
            s.faithful_adversarial_training()
            stage(4)
            s.corrected_attacks()
            stage(5)
            s.reattack_hardened()
            stage(6)
            s.compare_defences()
            stage(7)
            s.minmax_study()
            stage(8)
            s.red_flags()
            stage(9)
            timings["total"] = time.perf_counter() - t_start
            result = s.write(tmp, timings)
        finally:
            torch.set_flush_denormal(False)
            logging.getLogger("advsec").removeHandler(handler)
            handler.close()
    result.out = Path(out).resolve()
    result.seconds = time.perf_counter() - t_start
    return result


class _Study:
    """The study's state between stages (one instance per run)."""

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
        self.out: dict[str, Any] = {}
        self.tables: dict[str, pd.DataFrame] = {}
        self.confusions: dict[str, np.ndarray] = {}
        self.flags: dict[str, list[Flag]] = {}

    # ---------------------------------------------------------------------- helpers
    def _metrics(self, module: torch.nn.Module, x: torch.Tensor,
                 y: np.ndarray | None = None) -> tuple[dict[str, float], np.ndarray]:
        y = self.y_test_np if y is None else y
        pred = predict(module, x).numpy()
        m = detection_metrics(y, pred, benign_class=BENIGN_INDEX)
        cm = confusion(y, pred, len(CLASSES))
        recall = np.diag(cm) / np.maximum(cm.sum(axis=1), 1)
        m.update({f"recall_{c}": float(r) for c, r in zip(CLASSES, recall, strict=True)})
        return m, cm

    def _detector(self, module: torch.nn.Module) -> Detector:
        """The Keras-style network as an advsec Detector (for the defences and saving)."""
        cfg = self.cfg
        det = Detector(hidden=cfg.hidden, dropout=0.0, epochs=cfg.defence_epochs,
                       batch_size=cfg.defence_batch_size, lr=cfg.lr, validation_split=0.0,
                       seed=cfg.seed, device="cpu")
        det.module_ = module
        det.classes_ = np.array(CLASSES)
        det.n_features_in_ = len(NUMERIC_FEATURES)
        det.history_ = []
        det.device_ = torch.device("cpu")
        return det

    def _faithful_attacks(self) -> dict[str, OwnPredictionAttack]:
        cfg = self.cfg
        return {
            "fgsm": OwnPredictionAttack(FGSM(eps=cfg.eps, bounds=None, seed=cfg.seed),
                                        name="fgsm (faithful)"),
            # step = eps pins most rows to a corner of the ball within a few steps: rows that
            # stopped moving reuse their gradient (the same examples, far fewer passes)
            "bim": OwnPredictionAttack(BIM(eps=cfg.eps, steps=cfg.bim_steps,
                                           step_size=cfg.bim_step, targeted=True, bounds=None,
                                           skip_stationary=True, seed=cfg.seed),
                                       name="bim (faithful)"),
            "mim": OwnPredictionAttack(MIM(eps=cfg.eps, steps=cfg.mim_steps,
                                           step_size=cfg.mim_step, decay=cfg.mim_decay,
                                           targeted=True, bounds=None, skip_stationary=True,
                                           seed=cfg.seed), name="mim (faithful)"),
        }

    def _corrected_attacks(self, *, feature_space: Any = None,
                           bounds: tuple[float, float] | None = None,
                           suffix: str = "") -> dict[str, Any]:
        cfg = self.cfg
        common: dict[str, Any] = {"bounds": bounds, "feature_space": feature_space,
                                  "seed": cfg.seed}
        k = cfg.iterative_steps
        return {
            f"fgsm{suffix}": FGSM(**common),
            f"bim{suffix}": BIM(steps=k, rel_step_size=max(0.25, 1.0 / k), **common),
            f"mim{suffix}": MIM(steps=k, rel_step_size=max(0.25, 1.0 / k), decay=1.0, **common),
            f"pgd{suffix}": PGD(steps=cfg.pgd_steps, rel_step_size=max(0.125, 2.0 / cfg.pgd_steps),
                                loss="margin", **common),
        }

    # ---------------------------------------------------------------------- faithful part
    def train_original(self) -> None:
        cfg = self.cfg
        t0 = time.perf_counter()
        self.net = keras_mlp(len(NUMERIC_FEATURES), len(CLASSES), hidden=cfg.hidden,
                             seed=cfg.seed)
        self.history = keras_fit(self.net, self.x_train, self.y_train, epochs=cfg.epochs,
                                 batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed,
                                 progress=lambda e, loss: log.info("epoch %d: loss %.5f", e, loss))
        self.out["train_seconds"] = time.perf_counter() - t0
        m, cm = self._metrics(self.net, self.x_test)
        self.out["clean"] = m
        self.confusions["clean"] = cm
        log.info("original model: clean accuracy %.4f", m["accuracy"])

    def faithful_attacks(self) -> None:
        cfg = self.cfg
        self.faithful_adv_test: dict[str, torch.Tensor] = {}
        self.faithful_adv_train: dict[str, torch.Tensor] = {}
        self.out["faithful"] = {}
        for key, atk in self._faithful_attacks().items():
            t0 = time.perf_counter()
            xa = atk.run(self.net, self.x_test, eps=cfg.eps).x_adv[0].detach()
            self.faithful_adv_test[key] = xa
            m, cm = self._metrics(self.net, xa)
            self.confusions[key] = cm
            self.out["faithful"][key] = {**m, "seconds_test": time.perf_counter() - t0}
            log.info("faithful %s: accuracy %.4f", key, m["accuracy"])

    def faithful_adversarial_training(self) -> None:
        cfg = self.cfg
        self.hardened: dict[str, torch.nn.Module] = {}
        for key, atk in self._faithful_attacks().items():
            t0 = time.perf_counter()
            # examples of the training set against the original model, as the original crafted
            # them (own predictions, softmax loss, target = prediction for BIM/MIM), true labels
            x_aug, y_aug, _ = enhance_training_set(
                softmax_model(self.net), self.x_train, self.y_train, attack=atk.attack,
                ratio=cfg.at_ratio, attack_labels="predicted",
                target="predicted" if atk.targeted else None, seed=cfg.seed)
            t_craft = time.perf_counter() - t0
            model = copy.deepcopy(self.net)
            keras_fit(model, x_aug, y_aug, epochs=cfg.at_epochs, batch_size=cfg.batch_size,
                      lr=cfg.lr, seed=cfg.seed + 1)
            self.hardened[key] = model
            m_adv, cm = self._metrics(model, self.faithful_adv_test[key])
            m_clean, _ = self._metrics(model, self.x_test)
            self.confusions[f"{key} after AT"] = cm
            self.out["faithful"][f"{key} after AT"] = {
                **m_adv, "clean_accuracy": m_clean["accuracy"],
                "clean_detection_rate": m_clean["detection_rate"], "clean_fpr": m_clean["fpr"],
                "seconds_craft_train": t_craft, "seconds": time.perf_counter() - t0}
            log.info("faithful %s after AT: accuracy %.4f on the adversarial test set crafted "
                     "against the original model", key, m_adv["accuracy"])
        rows = []
        for key in ("clean", "fgsm", "fgsm after AT", "bim", "bim after AT", "mim",
                    "mim after AT"):
            m = self.out["clean"] if key == "clean" else self.out["faithful"][key]
            rows.append({
                "setting": key, "reference_accuracy": REFERENCE[key],
                "accuracy": m["accuracy"], "difference": m["accuracy"] - REFERENCE[key],
                "detection_rate": m["detection_rate"], "fpr": m["fpr"],
                "recall_r2l": m["recall_r2l"],
                "reference_recall_r2l": REFERENCE_R2L.get(key, math.nan),
            })
        self.tables["faithful"] = pd.DataFrame(rows)

    # ---------------------------------------------------------------------- corrected part
    def corrected_attacks(self) -> None:
        """Correct attacks on the original model: eps 0.1 on the full test set, then a sweep."""
        cfg = self.cfg
        attacks = self._corrected_attacks()
        t0 = time.perf_counter()
        head = worst_case(self.net, attacks, self.x_test, self.y_test, eps=[cfg.eps],
                          benign_class=BENIGN_INDEX)
        self.out["corrected_at_eps"] = _records(head.table)
        self.confusions["worst case (corrected)"] = confusion(
            self.y_test_np, head.pred_worst[cfg.eps], len(CLASSES))
        self.worst_full_base = head
        log.info("corrected attacks at eps %g: worst case %.4f (%.1f s)", cfg.eps,
                 head.accuracy(cfg.eps), time.perf_counter() - t0)
        # the sweep: corrected attacks (worst case) and the faithful attacks, same rows
        xs, ys = self.x_test[self.sweep_pos], self.y_test[self.sweep_pos]
        sweep = worst_case(self.net, attacks, xs, ys, eps=cfg.sweep_eps,
                           benign_class=BENIGN_INDEX)
        faithful = [evaluate_attack(self.net, atk, xs, ys, eps=cfg.sweep_eps, name=atk.name,
                                    benign_class=BENIGN_INDEX, keep_inputs=False).table
                    for atk in self._faithful_attacks().values()]
        ftable = pd.concat(faithful, ignore_index=True)
        self.tables["sweep_base"] = sweep.table.assign(model="original", protocol="corrected")
        self.tables["sweep_faithful"] = ftable.assign(model="original", protocol="faithful")
        # how many of the unconstrained adversarial records are real records?
        self.space = self._fit_space()
        fgsm_x = self.faithful_adv_test["fgsm"]
        pgd_x = head.x_worst[cfg.eps]
        broken = ~head.robust[cfg.eps] & (head.pred_clean == self.y_test_np)
        self.out["invalid_share"] = {
            "fgsm (faithful)": self._invalid_share(fgsm_x, np.ones(len(fgsm_x), dtype=bool)),
            "corrected worst case (successful rows)": self._invalid_share(pgd_x, broken),
        }

    def reattack_hardened(self) -> None:
        """Each faithful hardened model attacked afresh; transfer reported beside it."""
        cfg = self.cfg
        attacks = self._corrected_attacks()
        rows = []
        sweeps = []
        xs, ys = self.x_test[self.sweep_pos], self.y_test[self.sweep_pos]
        for key, model in self.hardened.items():
            wc = worst_case(model, attacks, self.x_test, self.y_test, eps=[cfg.eps],
                            benign_class=BENIGN_INDEX)
            clean = self.out["faithful"][f"{key} after AT"]
            t = wc.table.set_index("attack")
            row = {
                "model": f"{key.upper()}-AT (faithful)",
                ORIGINAL_PROTOCOL: clean["accuracy"],
                "reference": REFERENCE[f"{key} after AT"],
                "clean_accuracy": clean["clean_accuracy"],
                "clean_detection_rate": clean["clean_detection_rate"],
                "clean_fpr": clean["clean_fpr"],
            }
            for a in attacks:
                row[f"{a} adaptive"] = float(t.loc[a, "accuracy"])
            row["worst case adaptive"] = wc.accuracy(cfg.eps)
            row["overstated by (points)"] = 100 * (clean["accuracy"] - wc.accuracy(cfg.eps))
            rows.append(row)
            sw = worst_case(model, attacks, xs, ys, eps=cfg.defence_sweep_eps,
                            benign_class=BENIGN_INDEX, per_attack=False)
            sweeps.append(sw.table.assign(model=f"{key.upper()}-AT (faithful)",
                                          protocol="corrected"))
        self.tables["hardened"] = pd.DataFrame(rows)
        self.tables["sweep_hardened"] = pd.concat(sweeps, ignore_index=True)

    def compare_defences(self) -> None:
        """PGD-AT, fast AT, TRADES and data enhancement, same budget, from the original model."""
        cfg = self.cfg
        base = self._detector(self.net)
        x_tr = self.x_train[self.defence_pos]
        y_tr = np.array(CLASSES)[self.y_train[self.defence_pos].numpy()]
        ev = (self.x_test, np.array(CLASSES)[self.y_test_np])
        common: dict[str, Any] = {"epochs": cfg.defence_epochs, "eval_data": ev,
                                  "benign_class": BENIGN, "seed": cfg.seed}
        e, k = cfg.defence_eps, cfg.defence_steps
        results: list[DefenseResult] = []
        t0 = time.perf_counter()
        control = copy.deepcopy(base)
        control.warm_start, control.epochs = True, cfg.defence_epochs
        control.fit(x_tr, y_tr)
        results.append(DefenseResult("clean fine-tuning (control)", control,
                                     clean_metrics(control, *ev, benign_class=BENIGN),
                                     time.perf_counter() - t0, {"epochs": cfg.defence_epochs}))
        results.append(data_enhancement_training(
            base, x_tr, y_tr, attack=FGSM(eps=e, bounds=None, seed=cfg.seed), ratio=1.0,
            **common))
        results[-1].name = "data enhancement (FGSM, corrected)"
        results.append(fast_adversarial_training(base, x_tr, y_tr, eps=e, bounds=None, **common))
        results.append(pgd_adversarial_training(base, x_tr, y_tr, eps=e, steps=k, bounds=None,
                                                **common))
        results.append(trades_training(base, x_tr, y_tr, eps=e, beta=cfg.trades_beta, steps=k,
                                       bounds=None, **common))
        attacks = self._corrected_attacks()
        xs, ys = self.x_test[self.sweep_pos], self.y_test[self.sweep_pos]
        pgd = attacks["pgd"]
        crafted = {e: x for e, x in zip(cfg.defence_sweep_eps, pgd.run(self.net, xs, ys,
                                                                 eps=cfg.defence_sweep_eps,
                                                                 evaluate=False).x_adv,
                                         strict=True)}
        rows, sweeps = [], []
        for res in [None, *results]:
            det = base if res is None else res.detector
            name = "none (original model)" if res is None else res.name
            clean = (clean_metrics(base, *ev, benign_class=BENIGN) if res is None else res.clean)
            wc = worst_case(det, attacks, xs, ys, eps=cfg.defence_sweep_eps,
                            benign_class=BENIGN_INDEX, per_attack=False)
            tr = transfer_table(det, crafted, ys, name="pgd", x=xs, benign_class=BENIGN_INDEX)
            row = {"defence": name, "clean_accuracy": clean["accuracy"],
                   "clean_detection_rate": clean["detection_rate"], "clean_fpr": clean["fpr"],
                   "seconds": 0.0 if res is None else res.seconds}
            for e2 in cfg.defence_sweep_eps:
                row[f"worst case eps={e2:g}"] = wc.accuracy(e2)
            trow = tr.set_index("eps")
            e_ref = min(cfg.defence_sweep_eps, key=lambda v: abs(v - cfg.defence_eps))
            row[f"transfer pgd eps={e_ref:g}"] = float(trow.loc[e_ref, "accuracy"])
            rows.append(row)
            sweeps.append(pd.concat([wc.table, tr], ignore_index=True).assign(model=name,
                                                                              protocol="corrected"))
        self.defence_results = results
        self.tables["defences"] = pd.DataFrame(rows)
        self.tables["sweep_defences"] = pd.concat(sweeps, ignore_index=True)

    def minmax_study(self) -> None:
        """The same study in the [0, 1] min-max space, with and without valid-record limits."""
        cfg = self.cfg
        space = self.space
        raw_tr = self.data.raw.iloc[self.train_idx]
        raw_te = self.data.raw.iloc[self.test_idx]
        x_tr = space.encode(raw_tr)
        x_te = torch.from_numpy(space.encode(raw_te))
        y_tr = np.array(CLASSES)[self.y_train.numpy()]
        det = Detector(hidden=cfg.hidden, dropout=0.0, epochs=cfg.minmax_epochs,
                       batch_size=cfg.defence_batch_size, lr=cfg.lr, validation_split=0.0,
                       seed=cfg.seed, device="cpu")
        det.fit(x_tr, y_tr)
        det.feature_space_ = space
        ev = (x_te, np.array(CLASSES)[self.y_test_np])
        at = pgd_adversarial_training(
            det, x_tr[self.defence_pos], y_tr[self.defence_pos], eps=cfg.minmax_at_eps,
            steps=cfg.defence_steps, feature_space=space, epochs=cfg.minmax_at_epochs,
            eval_data=ev, benign_class=BENIGN, seed=cfg.seed)
        at.detector.feature_space_ = space
        xs, ys = x_te[self.sweep_pos], self.y_test[self.sweep_pos]
        rows, sweeps, budget = [], [], []
        for name, model, clean in (
                ("min-max model", det, clean_metrics(det, *ev, benign_class=BENIGN)),
                ("min-max PGD-AT (valid records)", at.detector, at.clean)):
            row: dict[str, Any] = {"model": name, "clean_accuracy": clean["accuracy"],
                                   "clean_detection_rate": clean["detection_rate"],
                                   "clean_fpr": clean["fpr"]}
            within = {k: _WithinBudget(a) for k, a in self._corrected_attacks(
                feature_space=space, suffix="-valid").items()}
            for threat, attacks in (
                    ("unconstrained", self._corrected_attacks(bounds=(0.0, 1.0))),
                    ("valid records", within)):
                wc = worst_case(model, attacks, xs, ys, eps=cfg.minmax_eps,
                                benign_class=BENIGN_INDEX, per_attack=model is det)
                for e in cfg.minmax_eps:
                    row[f"{threat} eps={e:g}"] = wc.accuracy(e)
                if threat == "unconstrained":
                    pos = wc.robust[cfg.minmax_eps[-1]]
                    xw = wc.x_worst[cfg.minmax_eps[-1]]
                    moved = (xw != xs).any(dim=1).numpy() & ~pos
                    row["valid share of unconstrained successes"] = (
                        float(valid_records(space, xw[moved], xs[moved]).mean())
                        if moved.any() else math.nan)
                sweeps.append(wc.table.assign(model=name, threat=threat, protocol="min-max"))
            for e in cfg.minmax_eps:
                st = [w.stats.get(e, (0, 0, 0, 0.0)) for w in within.values()]
                n = sum(t[0] for t in st)
                budget.append({
                    "model": name, "eps": e, "attacked_rows": n,
                    "repaired_beyond_eps": sum(t[1] for t in st) / n if n else math.nan,
                    "of_which_fooling_the_model": sum(t[2] for t in st) / n if n else math.nan,
                    "max_linf_after_repair": max(t[3] for t in st)})
            rows.append(row)
        self.minmax_detector = det
        self.tables["minmax"] = pd.DataFrame(rows)
        self.tables["sweep_minmax"] = pd.concat(sweeps, ignore_index=True)
        self.tables["minmax_budget"] = pd.DataFrame(budget)

    def red_flags(self) -> None:
        cfg = self.cfg
        xs, ys = self.x_test[self.sanity_pos], self.y_test[self.sanity_pos]
        big = [cfg.large_eps]
        # faithful protocol: its attacks, at the study's sweep and at a huge budget
        f_big = pd.concat([evaluate_attack(self.net, atk, xs, ys, eps=big, name=atk.name,
                                           benign_class=BENIGN_INDEX, keep_inputs=False).table
                           for atk in self._faithful_attacks().values()], ignore_index=True)
        square = self._square_rows()
        f_table = pd.concat([self.tables["sweep_faithful"], square, f_big], ignore_index=True)
        self.flags["faithful protocol"] = [
            *check_sweep(f_table), check_unbounded_success(f_table, large_eps=cfg.large_eps),
            *check_model(softmax_model(self.net), xs, ys)]
        # the unbounded sanity attack: logit-margin PGD, many small steps (a cross-entropy
        # loss saturates far from the data and stalls; that is reported, not hidden)
        sanity = {**self._corrected_attacks(),
                  SANITY: PGD(steps=max(cfg.pgd_steps, 100), rel_step_size=0.05, loss="margin",
                              bounds=None, seed=cfg.seed)}
        c_big = worst_case(self.net, sanity, xs, ys, eps=big, benign_class=BENIGN_INDEX).table
        c_table = pd.concat([self.tables["sweep_base"], square, c_big], ignore_index=True)
        self.flags["corrected protocol"] = [
            *check_sweep(c_table),
            check_unbounded_success(c_table, large_eps=cfg.large_eps, attacks=[SANITY]),
            *check_model(self.net, xs, ys)]
        self.tables["sanity_large_eps"] = pd.concat(
            [f_big.assign(protocol="faithful"), c_big.assign(protocol="corrected")],
            ignore_index=True)
        self.tables["square"] = square
        mm = self.tables["sweep_minmax"]
        for threat, g in mm[mm.model == "min-max model"].groupby("threat", sort=False):
            self.flags[f"min-max space, {threat}"] = check_sweep(g)
        for name, flags in self.flags.items():
            for f in flags:
                (log.info if f.ok else log.warning)("%s: %s", name, f)

    def _square_rows(self) -> pd.DataFrame:
        """Square (score-based, black-box) on the sweep rows at the study's eps: the yardstick
        of the "black-box stronger than white-box" check. Empty if Square is unavailable."""
        cfg = self.cfg
        try:
            from advsec.attacks import Square
        except ImportError:  # pragma: no cover - Square is optional
            return pd.DataFrame()
        if cfg.square_queries == 0:
            return pd.DataFrame()
        xs, ys = self.x_test[self.sweep_pos], self.y_test[self.sweep_pos]
        atk = Square(eps=cfg.eps, queries=cfg.square_queries, bounds=None, seed=cfg.seed)
        return evaluate_attack(self.net, atk, xs, ys, eps=[cfg.eps], name="square",
                               benign_class=BENIGN_INDEX, keep_inputs=False).table

    # ---------------------------------------------------------------------- helpers
    def _fit_space(self) -> FeatureSpace:
        from advsec.datasets._common import builtin_schema

        schema = builtin_schema("kdd", benign_label=BENIGN).select(NUMERIC_FEATURES)
        return FeatureSpace(schema).fit(self.data.raw.iloc[self.train_idx])

    def _invalid_share(self, x_adv: torch.Tensor, rows: np.ndarray) -> float:
        """Share of ``rows`` whose standardised adversarial record is not a valid raw record
        (a count that is negative or not whole, a rate outside [0, 1], a broken relation)."""
        if not rows.any():
            return math.nan
        pos = np.flatnonzero(rows)
        raw = self.data.raw.iloc[self.test_idx[pos]].reset_index(drop=True)
        delta = (x_adv[pos] - self.x_test[pos]).double().numpy() * self.data.scale
        adv = raw + np.round(delta, 6)
        return float(self.space.validate(adv).to_numpy().any(axis=1).mean())

    # ---------------------------------------------------------------------- output
    def write(self, tmp: Path, timings: dict[str, float]) -> KDD99Result:
        from advsec.experiments.reproductions.kdd99_report import render_report_files

        cfg = self.cfg
        flags = pd.concat([pd.DataFrame([{"protocol": p, "check": f.name, "ok": f.ok,
                                          "detail": f.detail} for f in fl])
                           for p, fl in self.flags.items()], ignore_index=True)
        self.tables["flags"] = flags
        corrected = pd.concat([self.tables["sweep_faithful"], self.tables["sweep_base"]],
                              ignore_index=True)
        corrected.to_csv(tmp / "corrected.csv", index=False)
        self.tables["faithful"].to_csv(tmp / "faithful.csv", index=False)
        pd.concat([self.tables["hardened"]], ignore_index=True).to_csv(tmp / "hardened.csv",
                                                                       index=False)
        self.tables["defences"].to_csv(tmp / "defences.csv", index=False)
        self.tables["sweep_defences"].to_csv(tmp / "defences_sweep.csv", index=False)
        pd.concat([self.tables["minmax"]]).to_csv(tmp / "minmax.csv", index=False)
        flags.to_csv(tmp / "flags.csv", index=False)
        self._detector(self.net).save(tmp / "model")
        (tmp / "config.toml").write_text(
            f"# advsec reproduce {STUDY}\n" + dumps_toml(cfg.model_dump(exclude_none=True)))
        headline = self.headline()
        metrics = {
            "study": STUDY,
            "seed": cfg.seed,
            "quick": cfg.quick,
            "classes": list(CLASSES),
            "split": {"test_counts": self.data.test_counts(),
                      "train_counts": self.data.train_counts(),
                      "matches_original": self.data.split_matches,
                      "train_rows_used": len(self.train_idx), "test_rows_used": len(self.test_idx),
                      "sweep_rows": len(self.sweep_pos),
                      "defence_train_rows": len(self.defence_pos)},
            "reference": REFERENCE,
            "headline": headline,
            "faithful": _records(self.tables["faithful"]),
            "faithful_details": self.out["faithful"],
            "clean": self.out["clean"],
            "corrected_at_eps": self.out["corrected_at_eps"],
            "invalid_share": self.out["invalid_share"],
            "hardened": _records(self.tables["hardened"]),
            "defences": _records(self.tables["defences"]),
            "minmax": _records(self.tables["minmax"]),
            "flags": _records(flags),
            "history": self.history,
            "seconds": timings,
            "config": cfg.model_dump(),
            "notes": self.notes,
        }
        from advsec.reporting.html import versions

        metrics["versions"] = versions()
        render_report_files(self, tmp, timings, headline)
        (tmp / "metrics.json").write_text(json.dumps(_jsonable(metrics), indent=2))
        return KDD99Result(out=tmp, faithful=self.tables["faithful"], headline=headline,
                           seconds=timings.get("total", math.nan), flags=flags)

    def headline(self) -> dict[str, Any]:
        """The numbers the summary states."""
        cfg = self.cfg
        f = self.tables["faithful"].set_index("setting")
        c = pd.DataFrame(self.out["corrected_at_eps"]).set_index("attack")
        h = self.tables["hardened"].set_index("model")
        d = self.tables["defences"].set_index("defence")
        e_ref = min(cfg.defence_sweep_eps, key=lambda v: abs(v - cfg.defence_eps))
        key = f"worst case eps={e_ref:g}"
        out: dict[str, Any] = {
            "eps": cfg.eps,
            "faithful_clean": float(f.loc["clean", "accuracy"]),
            "faithful_fgsm": float(f.loc["fgsm", "accuracy"]),
            "faithful_bim": float(f.loc["bim", "accuracy"]),
            "faithful_mim": float(f.loc["mim", "accuracy"]),
            "max_abs_difference_to_reference": float(f["difference"].abs().max()),
            "corrected": {a: float(c.loc[a, "accuracy"]) for a in c.index},
            "hardened_original_protocol": {m: float(h.loc[m, ORIGINAL_PROTOCOL])
                                           for m in h.index},
            "hardened_adaptive_worst_case": {m: float(h.loc[m, "worst case adaptive"])
                                             for m in h.index},
            "defences_worst_case": {m: float(d.loc[m, key]) for m in d.index},
            "defences_clean_accuracy": {m: float(d.loc[m, "clean_accuracy"]) for m in d.index},
            "split_matches_original": self.data.split_matches,
        }
        return out


# ================================================================================ helpers
class _WithinBudget:
    """A valid-record attack whose repaired records must stay in the eps-ball.

    A FeatureSpace repair (whole counts, rates zeroed over an empty window) can move a
    feature farther than eps; such a row is not an eps-bounded adversarial example, so it is
    set back to its clean input (the attack failed there). ``stats[eps]`` accumulates
    ``(rows attacked, rows set back, set-back rows that fooled the model, max L-inf seen)``.
    """

    evasion = False

    def __init__(self, attack: Any) -> None:
        self.attack = attack
        self.name = attack.name
        self.stats: dict[float, tuple[int, int, int, float]] = {}

    def run(self, model: Any, x: torch.Tensor, y: torch.Tensor, *, eps: list[float],
            **_: Any) -> Any:
        res = self.attack.run(model, x, y, eps=eps, evaluate=False)
        module = model.as_module() if hasattr(model, "as_module") else model
        out = []
        for e, xa in zip(eps, res.x_adv, strict=True):
            dist = (xa - x).abs().amax(dim=1)
            over = dist > e * (1 + 1e-6) + 1e-6
            fooled = 0
            if bool(over.any()):
                fooled = int((predict(module, xa[over]) != y[over].cpu()).sum())
                xa = torch.where(over[:, None], x, xa)
            n0, o0, f0, m0 = self.stats.get(e, (0, 0, 0, 0.0))
            self.stats[e] = (n0 + len(x), o0 + int(over.sum()), f0 + fooled,
                             max(m0, float(dist.max()) if len(dist) else 0.0))
            out.append(xa)
        res.x_adv = out
        return res


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
            for r in df.to_dict(orient="records")]


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return None if math.isnan(v) or math.isinf(v) else v
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj
