"""Optional experiment tracking (MLflow): parameters, metrics and the report as an artifact.

MLflow is an optional extra (``pip install mlflow``); ``[tracking] mlflow = true`` without it is a
configuration error reported before anything runs.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Any

import pandas as pd

from advsec.errors import ConfigError
from advsec.experiments.config import ExperimentConfig

__all__ = ["check_tracking", "log_to_mlflow", "track_run"]


def check_tracking(cfg: ExperimentConfig) -> None:
    """Fail early (one line) when a configured tracker is not installed."""
    if cfg.tracking.mlflow and importlib.util.find_spec("mlflow") is None:
        raise ConfigError("[tracking] mlflow = true, but mlflow is not installed "
                          "(pip install mlflow, or set mlflow = false)")


def track_run(cfg: ExperimentConfig, run_dir: Path) -> None:
    """Log the finished run ``run_dir`` to MLflow when ``[tracking] mlflow`` is on (else
    nothing)."""
    if cfg.tracking.mlflow:
        log_to_mlflow(cfg, run_dir)


def log_to_mlflow(cfg: ExperimentConfig, run_dir: Path) -> None:
    """Log the configuration, clean and robust metrics, and ``report.html`` to one MLflow run."""
    check_tracking(cfg)
    import mlflow

    if cfg.tracking.mlflow_uri:
        mlflow.set_tracking_uri(cfg.tracking.mlflow_uri)
    mlflow.set_experiment(cfg.experiment.name)
    with mlflow.start_run(run_name=run_dir.name):
        mlflow.log_params(_flat(cfg.model_dump(), max_len=250))
        sweep = pd.read_csv(run_dir / "sweep.csv")
        adaptive = sweep[sweep.evaluation == "adaptive"]
        for (det, dfn, threat, attack, eps), acc in adaptive.groupby(
                ["detector", "defense", "threat", "attack", "eps"])["accuracy"].mean().items():
            mlflow.log_metric(f"acc_{det}_{dfn}_{threat}_{attack}_eps{eps:g}", float(acc))
        worst = run_dir / "worst_case.csv"
        if worst.exists():
            w = pd.read_csv(worst)
            for (det, dfn, threat, eps), acc in w.groupby(
                    ["detector", "defense", "threat", "eps"])["worst_case_accuracy"].mean().items():
                mlflow.log_metric(f"worst_{det}_{dfn}_{threat}_eps{eps:g}", float(acc))
        mlflow.log_artifact(str(run_dir / "report.html"))
        mlflow.log_artifact(str(run_dir / "sweep.csv"))


def _flat(d: dict[str, Any], prefix: str = "", max_len: int = 250) -> dict[str, str]:
    """``d`` flattened to dotted keys, values as strings cut to ``max_len`` (MLflow parameters)."""
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat(v, f"{key}.", max_len))
        else:
            text = str(v)
            if isinstance(v, float) and math.isnan(v):
                text = "nan"
            out[key] = text[:max_len]
    return out
