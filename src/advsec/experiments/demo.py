"""The synthetic benign/malicious FGSM study, end to end (``advsec demo``).

Reproduces the published demo (synthetic data, a feed-forward detector, FGSM over a range of eps,
accuracy-vs-eps plots) and adds what it lacked: the same attack restricted to valid records, a
detection-rate curve, confusion matrices, a decision-region picture and a self-contained report.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator

from advsec.attacks import FGSM
from advsec.datasets import load
from advsec.errors import DataError
from advsec.evaluation import confusion, detection_metrics, evaluate_attack
from advsec.evaluation.evasion import add_evasion_columns
from advsec.evaluation.honesty import check_clean
from advsec.experiments.stages import ProgressFn, StageTimer
from advsec.experiments.tomlio import dumps_toml
from advsec.features.space import FeatureSpace
from advsec.models import Detector
from advsec.reporting import (
    plot_confusions,
    plot_projection,
    plot_robustness,
    save_figure,
)
from advsec.reporting.demo_report import build_demo_report
from advsec.reporting.html import json_records, json_text, versions
from advsec.runio import atomic_run_dir, check_new_run_dir, log_buffer, run_log

__all__ = ["DEFAULT_EPS", "DemoConfig", "DemoResult", "run_demo"]

log = logging.getLogger(__name__)

DEFAULT_EPS = (0.0, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3)


class DemoConfig(BaseModel):
    """Settings of the demo study (written to ``config.toml`` in the run directory)."""

    model_config = ConfigDict(extra="forbid")

    rows: int = Field(6000, ge=100, le=5_000_000, description="synthetic records")
    seed: int = Field(0, ge=0, description="seed for data, split, training and attacks")
    eps: list[float] = Field(default_factory=lambda: list(DEFAULT_EPS),
                             description="L-inf budgets, fraction of each feature's range")
    malicious_share: float = Field(0.3, gt=0, lt=1)
    separation: float = Field(1.0, ge=0)
    noise: float = Field(1.0, gt=0)
    test_size: float = Field(0.3, gt=0, lt=1)
    hidden: list[int] = Field(default_factory=lambda: [64, 32])
    epochs: int = Field(30, ge=1)
    batch_size: int = Field(256, ge=1)
    lr: float = Field(1e-3, gt=0)
    confusion_eps: float | None = Field(None, description="eps of the confusion/PCA figures "
                                        "(default: the grid value closest to 0.1)")
    device: str = "cpu"

    @field_validator("eps")
    @classmethod
    def _check_eps(cls, v: list[float]) -> list[float]:
        if not v:
            raise ValueError("eps needs at least one value")
        if any((not math.isfinite(e)) or e < 0 or e > 1 for e in v):
            raise ValueError(f"every eps must be in [0, 1], got {v}")
        out = sorted(set(float(e) for e in v))
        return out if out[0] == 0.0 else [0.0, *out]

    @field_validator("hidden")
    @classmethod
    def _check_hidden(cls, v: list[int]) -> list[int]:
        if not v or any(h < 1 for h in v):
            raise ValueError(f"hidden sizes must be positive integers, got {v}")
        return v

    def figure_eps(self) -> float:
        """The eps used for the confusion matrices and the projection figure."""
        target = 0.1 if self.confusion_eps is None else self.confusion_eps
        return min(self.eps[1:] or self.eps, key=lambda e: abs(e - target))


@dataclass
class DemoResult:
    """Where the demo wrote its files, and its headline numbers."""

    out: Path
    sweep: pd.DataFrame
    clean: dict[str, float]
    seconds: float

    @property
    def report(self) -> Path:
        """Path of ``report.html``."""
        return self.out / "report.html"


_STAGES = ("generate data", "fit feature space", "train detector", "FGSM sweep",
           "FGSM sweep (valid records)", "figures", "report and files")
#: The key of each stage in ``metrics.json``'s ``seconds`` (the last one is not timed).
_TIMING_KEYS = ("data", "features", "training", "fgsm", "fgsm_valid", "figures", None)


def run_demo(
    config: DemoConfig | None = None,
    *,
    out: str | Path = "runs/demo",
    force: bool = False,
    progress: ProgressFn | None = None,
) -> DemoResult:
    """Run the whole study and write the run directory ``out`` atomically.

    Writes ``metrics.json``, ``sweep.csv``, ``robustness.png``, ``confusion.png``,
    ``projection.png``, ``report.html``, ``model.safetensors``, ``model.json``, ``config.toml``
    and ``run.log``.
    """
    cfg = config or DemoConfig()
    t_start = time.perf_counter()
    clock = StageTimer(_STAGES, progress=progress, keys=_TIMING_KEYS, logger=log)
    timings = clock.seconds
    check_new_run_dir(out, force=force)

    # the data are made and checked before the run directory is: a bad setting creates nothing
    with log_buffer() as early:
        clock.start(0)
        ds = load("synthetic", rows=cfg.rows, seed=cfg.seed,
                  malicious_share=cfg.malicious_share, separation=cfg.separation,
                  noise=cfg.noise, test_size=cfg.test_size)
        _check_splits(ds)

        clock.start(1)
        space = FeatureSpace(ds.schema).fit(ds.train)
        x_train, x_test = space.encode(ds.train), space.encode(ds.test)

    with atomic_run_dir(out, force=force) as tmp, run_log(tmp / "run.log", replay=early):
        clock.start(2)
        det = Detector(hidden=cfg.hidden, epochs=cfg.epochs, batch_size=cfg.batch_size,
                       lr=cfg.lr, seed=cfg.seed, device=cfg.device)
        det.fit(x_train, ds.labels("train"))
        det.feature_space_ = space
        classes = [str(c) for c in det.classes_]
        benign = classes.index(ds.benign_label)
        y_test = det.encode_labels(ds.labels("test")).numpy()
        proba = det.predict_proba(x_test)
        pred_clean = proba.argmax(1)
        clean = detection_metrics(y_test, pred_clean, proba=proba, benign_class=benign)
        # a leaking or single-class detector makes every robustness number meaningless: warn
        flags = check_clean(y_test, pred_clean, proba=proba, benign_class=benign,
                            classes=classes)
        raised = [f"red flag: {f.name}: {f.detail}" for f in flags if not f.ok]

        clock.start(3)
        plain = evaluate_attack(det, FGSM(seed=cfg.seed), x_test, y_test, eps=cfg.eps,
                                name="fgsm", space=space, benign_class=benign)
        clock.start(4)
        valid = evaluate_attack(det, FGSM(feature_space=space, seed=cfg.seed), x_test, y_test,
                                eps=cfg.eps, name="fgsm-valid", space=space,
                                benign_class=benign)
        sweep = pd.concat([add_evasion_columns(s.table, y_test, s.pred_clean, s.pred_adv, benign)
                           for s in (plain, valid)], ignore_index=True)

        clock.start(5)
        fe = cfg.figure_eps()
        figures = _figures(tmp, det, sweep, plain, x_test, y_test, classes, fe, cfg.seed,
                           space, valid=valid)

        clock.start(6)
        sweep.to_csv(tmp / "sweep.csv", index=False)
        det.save(tmp / "model", feature_space=space)
        (tmp / "config.toml").write_text(
            "# advsec demo configuration\n" + dumps_toml(cfg.model_dump(exclude_none=True)))
        timings["total"] = time.perf_counter() - t_start
        metrics = {
            "study": "synthetic FGSM demo",
            "seed": cfg.seed,
            "classes": classes,
            "rows": {"train": len(ds.train), "test": len(ds.test)},
            "clean": clean,
            "red_flags": [{"check": f.name, "ok": f.ok, "detail": f.detail} for f in flags],
            "history": det.history_,
            "sweep": json_records(sweep),
            "figure_eps": fe,
            "seconds": timings,
            "versions": versions(),
            "config": cfg.model_dump(),
        }
        (tmp / "metrics.json").write_text(json_text(metrics))
        html = build_demo_report(
            cfg_toml=dumps_toml(cfg.model_dump(exclude_none=True)), seed=cfg.seed,
            notes=[*raised, *ds.notes], sweep=sweep, figures=figures, timings=timings,
            classes=classes, benign=ds.benign_label, fe=fe, n_train=len(ds.train),
            n_test=len(ds.test), space=space)
        (tmp / "report.html").write_text(html, encoding="utf-8")
    return DemoResult(Path(out).resolve(), sweep, clean, time.perf_counter() - t_start)


def _check_splits(ds: Any) -> None:
    """A one-line DataError when a split cannot be trained or scored on (too few records of a
    class for the settings)."""
    for split in ("train", "test"):
        classes = sorted(set(ds.labels(split)))
        if len(classes) < 2:
            found = f"only {classes[0]!r}" if classes else "no records"
            raise DataError(f"synthetic data: the {split} split has {found}; it needs benign and "
                            "malicious records (raise --rows or --malicious-share)")


def _figures(
    tmp: Path,
    det: Detector,
    sweep: pd.DataFrame,
    plain: Any,
    x_test: np.ndarray,
    y_test: np.ndarray,
    classes: list[str],
    fe: float,
    seed: int,
    space: FeatureSpace,
    *,
    valid: Any = None,
) -> dict[str, Path]:
    """Draw the robustness, confusion and projection figures into ``tmp``; their paths by name
    (``valid``: the valid-record sweep, a confusion panel of its own)."""
    rob = save_figure(plot_robustness(
        sweep, title="Synthetic flows: FGSM against the MLP detector"), tmp / "robustness.png")
    m_clean = confusion(y_test, plain.pred_clean, len(classes))
    m_adv = confusion(y_test, plain.pred_adv[fe], len(classes))
    mats, titles = [m_clean, m_adv], ["clean", f"FGSM (box), ε = {fe:g}"]
    if valid is not None:
        mats.append(confusion(y_test, valid.pred_adv[fe], len(classes)))
        titles.append(f"FGSM (valid records), ε = {fe:g}")
    conf = save_figure(plot_confusions(mats, titles, classes), tmp / "confusion.png")
    rng = np.random.default_rng(seed)
    sample = rng.choice(len(x_test), size=min(1500, len(x_test)), replace=False)
    x_adv = plain.x_adv[fe].numpy()
    numeric = space.torch_view("cpu").numeric.numpy()
    base = x_test.mean(axis=0)
    for _, a, b in (blk for blk in space.blocks_ if blk[2] - blk[1] > 1 or not numeric[blk[1]]):
        modal = np.zeros(b - a, dtype=np.float64)
        modal[int(x_test[:, a:b].sum(axis=0).argmax())] = 1.0
        base[a:b] = modal
    proj = save_figure(plot_projection(
        x_test[sample], x_adv[sample], plain.pred_clean[sample], plain.pred_adv[fe][sample],
        classes, lambda g: det.logits(g).argmax(1).numpy(), eps=fe, seed=seed,
        columns=numeric, base=base,
    ), tmp / "projection.png")
    return {"robustness": rob, "confusion": conf, "projection": proj}
