"""What one combination of a run writes, and how the run's tables are gathered back.

``combos/<key>/`` holds ``clean.csv``, ``sweep.csv``, ``worst.csv``, ``per_class.csv``,
``features.csv``, ``checks.csv`` (model red-flag checks), ``confusion.json``,
``adversarial.safetensors``, ``meta.json`` and a ``DONE`` marker; the folder is staged and
renamed into place only when complete (:func:`advsec.runio.atomic_run_dir`). Reading them back
is :mod:`advsec.reporting.combos` (re-exported here).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from safetensors.torch import save_file

from advsec.evaluation import Sweep, confusion
from advsec.reporting.combos import TABLES, combo_dir, concat_frames, gather, read_combo
from advsec.runio import atomic_run_dir

__all__ = ["TABLES", "CombinationResult", "combo_dir", "gather", "read_combo", "write_combo"]


@dataclass
class CombinationResult:
    """Everything one combination measured."""

    key: str
    classes: list[str]
    benign: int
    clean: list[dict[str, Any]] = field(default_factory=list)
    sweep: list[pd.DataFrame] = field(default_factory=list)
    worst: list[pd.DataFrame] = field(default_factory=list)
    per_class: list[dict[str, Any]] = field(default_factory=list)
    features: list[dict[str, Any]] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)
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
        (tmp / "confusion.json").write_text(json.dumps(res.confusion))
        if res.tensors:
            save_file({k: v.contiguous() for k, v in res.tensors.items()},
                      str(tmp / "adversarial.safetensors"))
        meta = {"key": key, "classes": res.classes, "benign": res.benign,
                "seconds": res.seconds, "adversarial": res.tensor_index}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
        (tmp / "DONE").write_text("complete\n")
    return final
