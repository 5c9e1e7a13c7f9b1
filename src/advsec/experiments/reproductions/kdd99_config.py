"""Settings, reference numbers and result of the KDD Cup 99 adversarial-training reproduction."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator

from advsec.experiments.reproductions.kdd99_data import BENIGN, CLASSES

__all__ = [
    "BENIGN_INDEX",
    "ORIGINAL_PROTOCOL",
    "REFERENCE",
    "REFERENCE_R2L",
    "SANITY",
    "STAGES",
    "STUDY",
    "KDD99Config",
    "KDD99Result",
]

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
#: Name of the unbounded sanity attack of the corrected protocol.
SANITY = "pgd-margin (sanity)"
#: The stages of a run, in order (progress and ``metrics.json``'s ``seconds``).
STAGES = ("load data", "train the original model", "faithful attacks",
          "faithful adversarial training", "corrected attacks and eps sweep",
          "adaptive re-attack of the hardened models", "defences compared",
          "min-max space with valid records", "red-flag checks", "report and files")


class KDD99Config(BaseModel):
    """Settings of the study (written to ``config.toml``). Defaults are the full run."""

    model_config = ConfigDict(extra="forbid")

    seed: int = Field(0, ge=0, description="torch seed: initialisation, shuffling, attacks, "
                      "subsets (the split always uses the original's np.random.seed(10))")
    # where the networks train and are attacked; how the study runs, not what it is: left out
    # of config.toml and metrics.json (the CPU's numbers are the same with or without it)
    device: str = Field("cpu", exclude=True, description="a resolved torch device: cpu, "
                        "cuda or cuda:N (advsec reproduce --device)")
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

    @field_validator("device")
    @classmethod
    def _check_device(cls, v: str) -> str:
        try:
            torch.device(v)
        except (RuntimeError, TypeError):
            raise ValueError(f"device: expected cpu, cuda or cuda:N, got {v!r}") from None
        return v

    @field_validator("sweep_eps", "minmax_eps", "defence_sweep_eps")
    @classmethod
    def _check_eps(cls, v: list[float]) -> list[float]:
        if not v or any(not math.isfinite(e) or e <= 0 for e in v):
            raise ValueError(f"eps values must be finite and > 0, got {v}")
        return sorted(set(float(e) for e in v))

    @classmethod
    def quick_config(cls, *, seed: int = 0, device: str = "cpu") -> KDD99Config:
        """A run of seconds: a smaller network (64-128-64), small subsets, few epochs and
        steps. It exercises every stage; its numbers are not the study's."""
        return cls(seed=seed, quick=True, hidden=[64, 128, 64], epochs=4, batch_size=500,
                   at_epochs=2, bim_steps=3, mim_steps=5, train_rows=2000, test_rows=800,
                   sweep_eps=[0.1, 1.0], defence_sweep_eps=[0.1, 1.0], sweep_rows=300,
                   iterative_steps=3, pgd_steps=4,
                   sanity_rows=100, square_queries=20, defence_train_rows=1000, defence_epochs=1,
                   defence_batch_size=256, defence_steps=2, minmax_eps=[0.05, 0.2],
                   minmax_epochs=1, minmax_at_epochs=1, device=device)

    def defence_reference_eps(self) -> float:
        """The value of the hardened models' eps grid closest to the defences' training eps."""
        return min(self.defence_sweep_eps, key=lambda v: abs(v - self.defence_eps))


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
