"""What one combination of a run writes, and how the run's tables are gathered back.

``combos/<key>/`` holds ``clean.csv``, ``sweep.csv``, ``worst.csv``, ``per_class.csv``,
``features.csv``, ``checks.csv`` (model red-flag checks), ``verify.csv`` (verified against
attacked accuracy, :mod:`advsec.experiments.verify_stage`; empty without ``[[verifiers]]``),
``confusion.json``, ``adversarial.safetensors``, ``meta.json`` and a ``DONE`` marker; the folder
is staged and renamed into place only when complete (:func:`advsec.runio.atomic_run_dir`).
Reading them back is :mod:`advsec.reporting.combos` (re-exported here).

Also the rest of what a run keeps in its staging folder, safe against ``kill -9``: models saved
in one rename each (:func:`save_model`, checked on resume by :func:`check_saved_model`), the
leftovers of a killed write discarded (:func:`discard_leftovers`), and the configuration a
staging folder or a finished run directory was made with (:func:`check_same_config`,
:func:`finished_run`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from safetensors.torch import save_file

from advsec.datasets.fetch import file_sha256
from advsec.errors import AdvsecError, ConfigError
from advsec.evaluation import Sweep, confusion
from advsec.experiments.config import FILE_DATASETS, ExperimentConfig
from advsec.features.space import FeatureSpace
from advsec.models import Detector
from advsec.reporting.combos import TABLES, combo_dir, concat_frames, gather, read_combo
from advsec.runio import atomic_run_dir

__all__ = ["DATA_DIGEST", "TABLES", "CombinationResult", "check_same_config", "check_same_data",
           "check_saved_model", "combo_dir", "data_digests", "discard_leftovers",
           "finished_run", "gather", "read_combo", "save_model", "write_combo"]


@dataclass
class CombinationResult:
    """Everything one combination measured."""

    key: str
    classes: list[str]
    benign: int
    #: the threat mode in effect (``[threat] mode`` resolved): "evasion" or "all"
    mode: str = "all"
    clean: list[dict[str, Any]] = field(default_factory=list)
    sweep: list[pd.DataFrame] = field(default_factory=list)
    worst: list[pd.DataFrame] = field(default_factory=list)
    per_class: list[dict[str, Any]] = field(default_factory=list)
    features: list[dict[str, Any]] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)
    verify: list[pd.DataFrame] = field(default_factory=list)
    confusion: list[dict[str, Any]] = field(default_factory=list)
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    tensor_index: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def add_figure_eps(
        self,
        meta: dict[str, Any],
        threat: str,
        attack: str,
        eps: float,
        y: np.ndarray,
        sweep: Sweep,
        space: Any,
        x: torch.Tensor,
        record_ids: np.ndarray,
    ) -> None:
        """Record per-class recall, feature changes, confusion and the inputs at ``eps``."""
        pred_adv, pred_clean = sweep.pred_adv[eps], sweep.pred_clean
        if pred_clean is None:
            raise ValueError("the sweep kept no clean predictions (evaluate_attack scores them)")
        tags = {**meta, "threat": threat, "attack": attack, "eps": eps}
        for c, name in enumerate(self.classes):
            sel = y == c
            if sel.any():
                self.per_class.append({**tags, "class": name, "n": int(sel.sum()),
                                       "recall_clean": float(np.mean(pred_clean[sel] == c)),
                                       "recall_attacked": float(np.mean(pred_adv[sel] == c))})
        x_adv = sweep.x_adv[eps]
        raw, raw_adv = space.decode(x), space.decode(x_adv)
        for f in space.schema:
            a, b = raw[f.name], raw_adv[f.name]
            if f.is_numeric:
                diff = np.abs(b.to_numpy(dtype=np.float64) - a.to_numpy(dtype=np.float64))
                self.features.append({**tags, "feature": f.name, "kind": f.kind.value,
                                      "mutable": f.mutable, "mean_abs_change": float(diff.mean()),
                                      "share_changed": float(np.mean(diff > 0))})
            else:
                changed = a.astype(str).to_numpy() != b.astype(str).to_numpy()
                self.features.append({**tags, "feature": f.name, "kind": f.kind.value,
                                      "mutable": f.mutable, "mean_abs_change": float("nan"),
                                      "share_changed": float(changed.mean())})
        n = len(self.classes)
        self.confusion.append({**tags, "classes": self.classes,
                               "clean": confusion(y, pred_clean, n).tolist(),
                               "attacked": confusion(y, pred_adv, n).tolist()})
        name = f"{threat}__{attack}"
        if "x" not in self.tensors:
            self.tensors["x"] = x.detach().cpu().float()
            self.tensors["y"] = torch.as_tensor(y, dtype=torch.int64)
            self.tensors["record_id"] = torch.as_tensor(record_ids, dtype=torch.int64)
            self.tensors["pred_clean"] = torch.as_tensor(pred_clean, dtype=torch.int64)
        self.tensors[f"{name}__x_adv"] = x_adv.detach().cpu().float()
        self.tensors[f"{name}__pred_adv"] = torch.as_tensor(pred_adv, dtype=torch.int64)
        self.tensor_index.append({**tags, "name": name})


def write_combo(stage: Path, key: str, res: CombinationResult) -> Path:
    """Write ``res`` into ``combos/<key>/`` of ``stage`` atomically, replacing an older one.

    The folder is staged in ``combos/.<key>.partial`` (a leftover of a killed write is
    discarded) and renamed into place with its ``DONE`` marker.
    """
    final = combo_dir(stage, key)
    with atomic_run_dir(final, force=True, persistent=True) as tmp:
        pd.DataFrame(res.clean).to_csv(tmp / "clean.csv", index=False)
        concat_frames(res.sweep).to_csv(tmp / "sweep.csv", index=False)
        concat_frames(res.worst).to_csv(tmp / "worst.csv", index=False)
        pd.DataFrame(res.per_class).to_csv(tmp / "per_class.csv", index=False)
        pd.DataFrame(res.features).to_csv(tmp / "features.csv", index=False)
        pd.DataFrame(res.checks).to_csv(tmp / "checks.csv", index=False)
        concat_frames(res.verify).to_csv(tmp / "verify.csv", index=False)
        (tmp / "confusion.json").write_text(json.dumps(res.confusion))
        if res.tensors:
            save_file({k: v.contiguous() for k, v in res.tensors.items()},
                      str(tmp / "adversarial.safetensors"))
        meta = {"key": key, "classes": res.classes, "benign": res.benign, "mode": res.mode,
                "seconds": res.seconds, "adversarial": res.tensor_index}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
        (tmp / "DONE").write_text("complete\n")
    return final


# ---------------------------------------------------------------------- models and leftovers
def save_model(det: Detector, path: Path, space: FeatureSpace, *,
               data: dict[str, Any] | None = None) -> Detector:
    """Save ``det`` as ``path.safetensors`` + ``path.json`` atomically (written under a
    temporary name and renamed, the JSON last: a JSON present means a complete model), and
    load it back: predictions are the same whether trained now or loaded on resume. ``data``:
    how its training table was read (:func:`advsec.experiments.dataload.data_record`)."""
    tmp = path.with_name(f".{path.name}.tmp")
    weights, meta = det.save(tmp, feature_space=space, data=data)
    os.replace(weights, path.with_name(path.name + weights.suffix))
    os.replace(meta, path.with_name(path.name + meta.suffix))
    return Detector.load(path)


def check_saved_model(path: Path, *, n_inputs: int, classes: list[str],
                      hidden: list[int]) -> None:
    """A ConfigError when the model saved at ``path`` (if any) does not load or does not fit
    ``n_inputs`` encoded columns, the sorted training ``classes`` and the ``hidden`` sizes."""
    if not path.with_suffix(".json").exists():
        return
    try:
        det = Detector.load(path)
    except AdvsecError as exc:
        raise ConfigError(f"{exc}; run without --resume to start over") from None
    got = sorted(str(c) for c in det.classes_)
    problem = (f"{det.n_features_in_} inputs, the data encode to {n_inputs}"
               if det.n_features_in_ != n_inputs else
               f"classes {got}, the data have {classes}" if got != classes else
               f"hidden {list(det.hidden)}, the configuration says {hidden}"
               if list(det.hidden) != list(hidden) else None)
    if problem:
        raise ConfigError(f"{path.with_suffix('.json')}: the saved model does not fit this "
                          f"run ({problem}); run without --resume to start over")


def discard_leftovers(stage: Path) -> None:
    """Remove what a killed write left in ``stage``: temporary model files, the temporary
    files of :func:`advsec.runio.atomic_file` (report, tables, figures) and of the data facts
    (``data/``), and hidden staging or replaced folders in ``combos/``."""
    for pattern in ("models/.*.tmp.*", ".*.tmp", "figures/.*.tmp", "data/.*.tmp"):
        for tmp in stage.glob(pattern):
            tmp.unlink(missing_ok=True)
    for old in (stage / "combos").glob(".*"):
        shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------------- configurations

def finished_run(out: str | Path, cfg: ExperimentConfig) -> bool:
    """Whether ``out`` is a finished run directory of ``cfg`` (a ConfigError when it is one of
    another configuration; False when it does not exist or is no run directory)."""
    out = Path(out)
    try:
        previous = json.loads((out / "config.json").read_text())
    except (OSError, ValueError):
        return False
    if previous != json.loads(cfg.model_dump_json()):
        raise ConfigError(f"{out}: holds a finished run of a different configuration (use "
                          "--force to replace it, or another --out)")
    return True


def check_same_config(stage: Path, cfg: ExperimentConfig) -> None:
    """Refuse to resume a staging folder whose finished work (combinations or saved models)
    used another configuration."""
    previous = stage / "config.json"
    if not previous.exists() or not (any((stage / "combos").glob("*/DONE"))
                                     or any((stage / "models").glob("*.json"))):
        return
    try:
        same = json.loads(previous.read_text()) == json.loads(cfg.model_dump_json())
    except ValueError:
        same = False
    if not same:
        raise ConfigError(f"{stage}: the interrupted run used a different configuration; "
                          "run without --resume to start over")


#: the file of a staging folder (and run directory) with the SHA-256 of the data files read
DATA_DIGEST = "data_digest.json"


def _sha256(path: Path) -> str:
    """The SHA-256 of ``path``'s bytes, read in chunks; of a folder, of its files' relative
    names and digests in sorted order (a partitioned Parquet dataset)."""
    if not path.is_dir():
        return file_sha256(path)
    h = hashlib.sha256()
    for f in sorted(q for q in path.rglob("*") if q.is_file()):
        h.update(f"{f.relative_to(path).as_posix()}\0{file_sha256(f)}\n".encode())
    return h.hexdigest()


def data_digests(cfg: ExperimentConfig) -> dict[str, dict[str, str]]:
    """``{"data.path": {"file": ..., "sha256": ...}, ...}``: the digest of every data file
    ``cfg`` reads that exists (a CSV/Parquet dataset's ``path`` and ``test_path``, any
    dataset's ``schema_file``); empty for a registered dataset without a schema file."""
    d = cfg.data
    keys = ("path", "test_path", "schema_file") if d.dataset in FILE_DATASETS else (
        "schema_file",)
    out = {}
    for key in keys:
        value = getattr(d, key)
        if value and Path(value).exists():
            out[f"data.{key}"] = {"file": str(value), "sha256": _sha256(Path(value))}
    return out


def check_same_data(stage: Path, digests: dict[str, dict[str, str]]) -> None:
    """Refuse to resume a staging folder whose finished work (combinations or saved models)
    read data files whose bytes have changed since (``digests``: :func:`data_digests` now)."""
    previous = stage / DATA_DIGEST
    if not previous.exists() or not (any((stage / "combos").glob("*/DONE"))
                                     or any((stage / "models").glob("*.json"))):
        return
    try:
        before = json.loads(previous.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        before = None
    if not isinstance(before, dict):
        raise ConfigError(f"{previous}: unreadable; run without --resume to start over")
    for key in sorted(set(before) | set(digests)):
        old, new = before.get(key) or {}, digests.get(key) or {}
        if old.get("sha256") != new.get("sha256"):
            file = new.get("file") or old.get("file") or key
            raise ConfigError(f"{file} ({key}): changed since the interrupted run started (its "
                              "SHA-256 differs), so resuming would mix results of two "
                              "datasets; run without --resume to start over")
