"""Adversarial records of a run, in the original columns and units, for replay elsewhere.

The records are *decoded* from the detector's model inputs (integers rounded, flags
thresholded, categories resolved to their strongest slot, values clipped to their bounds), so
every row looks like a record. Only the rows whose ``valid`` column is True are what the
detector scored: a valid record re-encodes to its model input, while an unconstrained (box)
attack's input usually lies between real records, and its decoded row, re-scored, need not
reproduce ``pred_adversarial``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from safetensors.torch import load_file

from advsec.attacks.validity import valid_records
from advsec.errors import AdvsecError, ConfigError, DataError
from advsec.features.space import FeatureSpace
from advsec.reporting.combo_checks import read_json
from advsec.reporting.combos import finished_combos
from advsec.runio import atomic_file

__all__ = ["export_adversarial", "load_adversarial"]


def load_adversarial(run_dir: str | Path) -> pd.DataFrame:
    """One row per (combination, threat, attack, record) at the run's figure ε.

    Columns: ``record_id`` (row of the test table), ``seed``, ``detector``, ``defense``,
    ``threat``, ``attack``, ``eps``, ``true_label``, ``pred_clean``, ``pred_adversarial``,
    ``evaded`` (true malicious predicted benign after the attack), ``valid`` (the row is a
    valid record derived from its original: :func:`advsec.attacks.validity.valid_records`,
    as the sweep's ``valid_share`` counts it), then the feature columns in their original
    units as decoded by the run's FeatureSpace.

    Every row is decoded (rounded, clipped, categories resolved), so it reads like a record
    whatever the attack did; rows with ``valid`` False (most rows of box, unconstrained,
    attacks) are not the input the detector scored, and re-scoring them need not give
    ``pred_adversarial``. Filter on ``valid`` before replaying them as real traffic.
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


def _combo_records(run: Path, folder: Path) -> list[pd.DataFrame]:
    """The adversarial records of one finished combination folder."""
    meta = read_json(folder / "meta.json")
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
    space = FeatureSpace.from_dict(read_json(model_json)["feature_space"])
    classes = meta["classes"]
    benign = meta["benign"]
    frames = []
    for item in meta["adversarial"]:
        name = item["name"]
        x_adv = tensors[f"{name}__x_adv"]
        raw = space.decode(x_adv)
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
            "valid": valid_records(space, x_adv, tensors["x"]),
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
