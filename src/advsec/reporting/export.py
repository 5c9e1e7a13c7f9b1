"""Adversarial records of a run, in the original columns and units, for replay elsewhere."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
from safetensors.torch import load_file

from advsec.errors import AdvsecError, ConfigError, DataError
from advsec.features.space import FeatureSpace
from advsec.reporting.combos import finished_combos
from advsec.runio import atomic_file

__all__ = ["export_adversarial", "load_adversarial"]


def load_adversarial(run_dir: str | Path) -> pd.DataFrame:
    """One row per (combination, threat, attack, record) at the run's figure ε.

    Columns: ``record_id`` (row of the test table), ``seed``, ``detector``, ``defense``,
    ``threat``, ``attack``, ``eps``, ``true_label``, ``pred_clean``, ``pred_adversarial``,
    ``evaded`` (true malicious predicted benign after the attack), then the feature columns
    in their original units as decoded by the run's FeatureSpace.
    """
    run = Path(run_dir)
    folders = finished_combos(run)
    if not folders:
        raise DataError(f"{run}: not an advsec run directory with finished combinations")
    frames = []
    for folder in folders:
        try:
            frames.extend(_combo_records(run, folder))
        except AdvsecError:
            raise
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            raise DataError(f"{folder}: malformed combination files ({type(exc).__name__}: "
                            f"{exc}); rerun it with `advsec run --resume` after deleting it"
                            ) from None
    if not frames:
        raise DataError(f"{run}: the run stored no adversarial records")
    return pd.concat(frames, ignore_index=True)


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``, or a one-line DataError naming the file."""
    if not path.is_file():
        raise DataError(f"{path}: missing; the run directory is incomplete")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def _combo_records(run: Path, folder: Path) -> list[pd.DataFrame]:
    """The adversarial records of one finished combination folder."""
    meta = _read_json(folder / "meta.json")
    if not meta.get("adversarial"):
        return []
    weights = folder / "adversarial.safetensors"
    if not weights.is_file():
        raise DataError(f"{weights}: missing; the run directory is incomplete")
    try:
        tensors = load_file(str(weights))
    except Exception as exc:  # safetensors raises its own error types
        raise DataError(f"{weights}: not a readable safetensors file ({exc})") from None
    seed, det, _ = str(meta["key"]).split("__")
    model_json = run / "models" / f"{det}-s{seed[1:]}.json"
    space = FeatureSpace.from_dict(_read_json(model_json)["feature_space"])
    classes = meta["classes"]
    benign = meta["benign"]
    frames = []
    for item in meta["adversarial"]:
        name = item["name"]
        raw = space.decode(tensors[f"{name}__x_adv"])
        y = tensors["y"].numpy()
        pred_adv = tensors[f"{name}__pred_adv"].numpy()
        head = pd.DataFrame({
            "record_id": tensors["record_id"].numpy(),
            "seed": item["seed"], "detector": item["detector"], "defense": item["defense"],
            "threat": item["threat"], "attack": item["attack"], "eps": item["eps"],
            "true_label": [classes[i] for i in y],
            "pred_clean": [classes[i] for i in tensors["pred_clean"].numpy()],
            "pred_adversarial": [classes[i] for i in pred_adv],
            "evaded": (y != benign) & (pred_adv == benign),
        })
        frames.append(pd.concat([head, raw], axis=1))
    return frames


def export_adversarial(run_dir: str | Path, *, fmt: str = "csv",
                       out: str | Path | None = None) -> Path:
    """Write :func:`load_adversarial` as CSV or Parquet (atomically); returns the file path."""
    if fmt not in ("csv", "parquet"):
        raise ConfigError(f"--format: expected csv or parquet, got {fmt!r}")
    table = load_adversarial(run_dir)
    path = Path(out) if out else Path(run_dir) / f"adversarial.{fmt}"
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp:
        if fmt == "csv":
            table.to_csv(tmp, index=False)
        else:
            table.to_parquet(tmp, index=False)
    return path
