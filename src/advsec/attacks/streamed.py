"""An attack over more records than memory holds: windows of a ``.npy`` file, one at a time.

:func:`attack_rows` reads ``rows`` records at a time from a file-backed memmap (e.g.
``EncodedStore.x``; an in-memory array works too), runs the attack on them (``Attack.run``, which
chunks further for the device), scores the window and adds its counts to running totals; with
``out``, it also writes the adversarial inputs (``x_adv_<i>.npy``, float32 ``(N, D)``, one per
epsilon), the predictions (``clean_pred.npy``, ``adv_pred_<i>.npy``, int64 ``(N,)``), one JSON
line of running totals per window (``windows.jsonl``) and the final metrics (``metrics.json``),
each file written as the windows go. Nothing of size ``N x D`` is held in memory.

The metrics equal those of one in-memory ``attack.run`` on all the records (accuracy, success
rate, norms and validity are sums over rows); the adversarial rows are the same bit for bit when
``rows`` is a multiple of the attack's own chunk (``batch_size``, 4,096 on the CPU by default),
since the attack then sees the same chunks.

Shapes: ``x`` ``(N, D)`` float32 in ``[0, 1]``; ``y`` ``(N,)`` int64 class indices.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from advsec.attacks.base import Attack
from advsec.attacks.scoring import score_result
from advsec.attacks.targets import eps_values
from advsec.models.types import AnyModel
from advsec.rowstore import RowFile, create_rows, is_memmap

if TYPE_CHECKING:
    from advsec.features.space import FeatureSpace

__all__ = ["WINDOW_ROWS", "StreamedAttack", "attack_rows"]

#: records per window (a multiple of the CPU attack chunk, 4,096)
WINDOW_ROWS = 65536


@dataclass
class StreamedAttack:
    """Totals of an attack over all windows (one entry per epsilon in the lists).

    Attributes:
        attack, eps: the attack's name and epsilons.
        n, n_attacked: records, and records the attack could change.
        clean_accuracy: accuracy on the clean records.
        accuracy: accuracy on the (repaired) adversarial records.
        success_rate: successes among eligible records (NaN when none is eligible).
        mean_linf: mean L-inf perturbation over attacked records.
        valid_share: share of attacked records that decode to valid records (None unchecked).
        seconds: attack time (the attack calls, not scoring or I/O), summed over windows.
        windows: windows read.
        counts: the raw counts the rates come from.
    """

    attack: str
    eps: list[float]
    n: int = 0
    n_attacked: int = 0
    clean_accuracy: float = math.nan
    accuracy: list[float] = field(default_factory=list)
    success_rate: list[float] = field(default_factory=list)
    mean_linf: list[float] = field(default_factory=list)
    valid_share: list[float | None] = field(default_factory=list)
    seconds: float = 0.0
    windows: int = 0
    counts: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly dictionary (NaN as None)."""
        return _plain(asdict(self))


def attack_rows(
    attack: Attack,
    model: AnyModel,
    x: np.ndarray,
    y: np.ndarray,
    *,
    rows: int = WINDOW_ROWS,
    eps: float | list[float] | None = None,
    target: int | str | None = None,
    validity: bool = True,
    space: FeatureSpace | None = None,
    out: str | Path | None = None,
    progress: Callable[[StreamedAttack], None] | None = None,
) -> StreamedAttack:
    """Run ``attack`` on ``x`` ``(N, D)`` (labels ``y`` ``(N,)``) window by window.

    Args:
        attack, model: as for ``attack.run(model, ...)``.
        x: a file-backed memmap (read by window) or an array.
        y: class indices ``(N,)`` (a memmap or an array).
        rows: records per window.
        eps: as for ``Attack.run``.
        target: one class index or label for every record, ``"benign"`` (evasion), or None
            (untargeted; per-record targets are not supported here).
        validity: check that adversarial records decode to valid ones (needs a FeatureSpace:
            ``space``, the attack's or the model's ``feature_space_``).
        space: the FeatureSpace for the validity check.
        out: folder for the outputs listed in the module docstring (None: metrics only).
        progress: called with the running totals after each window.
    """
    if rows < 1:
        raise ValueError(f"rows must be >= 1, got {rows}")
    n, d = int(x.shape[0]), int(x.shape[1])
    if len(y) != n:
        raise ValueError(f"y has {len(y)} rows, x has {n}")
    space = space if space is not None else attack.feature_space if (
        attack.feature_space is not None) else getattr(model, "feature_space_", None)
    eps_list = eps_values(attack.eps if eps is None else eps)
    k = len(eps_list)
    total = StreamedAttack(attack=attack.name, eps=eps_list)
    c: dict[str, Any] = {"clean_correct": 0, "adv_correct": [0] * k, "eligible": [0] * k,
                         "succeeded": [0] * k, "linf_sum": [0.0] * k, "valid": [0] * k,
                         "checked": [0] * k}
    folder = Path(out) if out is not None else None
    files: dict[str, RowFile] = {}
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "windows.jsonl").write_text("", encoding="utf-8")
        files["clean_pred"] = create_rows(folder / "clean_pred.npy", (n,), np.int64)
        for i in range(k):
            files[f"x_adv_{i}"] = create_rows(folder / f"x_adv_{i}.npy", (n, d), np.float32)
            files[f"adv_pred_{i}"] = create_rows(folder / f"adv_pred_{i}.npy", (n,), np.int64)
    for start, xw, yw in _windows(x, y, rows):
        xt, yt = torch.from_numpy(xw), torch.from_numpy(yw.astype(np.int64))
        result = attack.run(model, xt, yt, eps=eps_list, target=target, evaluate=False)
        score_result(result, model, space=space if validity else None)
        assert result.clean_pred is not None and result.x is not None
        total.seconds += result.seconds
        att = result.attacked.cpu()
        y_cpu = result.y.cpu()
        c["clean_correct"] += int((result.clean_pred == y_cpu).sum())
        elig = result.eligible()
        x_clean = result.x.detach().cpu()
        for i in range(k):
            xa = result.x_adv[i].detach().cpu()
            c["adv_correct"][i] += int((result.adv_pred[i] == y_cpu).sum())
            c["eligible"][i] += int(elig.sum())
            c["succeeded"][i] += int((result.success(i) & elig).sum())
            c["linf_sum"][i] += float((xa - x_clean)[att].abs().amax(dim=1).sum()) if bool(
                att.any()) else 0.0
            valid = result.valid[i] if result.valid else None
            if valid is not None:
                c["valid"][i] += int(np.asarray(valid)[att.numpy()].sum())
                c["checked"][i] += int(att.sum())
            if folder is not None:
                files[f"x_adv_{i}"].write(start, xa.numpy())
                files[f"adv_pred_{i}"].write(start, result.adv_pred[i].numpy())
        if folder is not None:
            files["clean_pred"].write(start, result.clean_pred.numpy())
        total.n += len(yw)
        total.n_attacked += int(att.sum())
        total.windows += 1
        _rates(total, c)
        if folder is not None:
            with (folder / "windows.jsonl").open("a", encoding="utf-8") as fh:
                fh.write(json.dumps({"start": start, "stop": start + len(yw),
                                     **total.as_dict()}) + "\n")
        if progress is not None:
            progress(total)
    _rates(total, c)
    if folder is not None:
        (folder / "metrics.json").write_text(json.dumps(total.as_dict(), indent=1),
                                             encoding="utf-8")
    return total


def _windows(x: np.ndarray, y: np.ndarray, rows: int
             ) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """``(start, x rows, y rows)`` copies, ``rows`` records at a time."""
    xs = RowFile(x) if is_memmap(x) else None
    ys = RowFile(y) if is_memmap(y) else None
    for start in range(0, int(x.shape[0]), rows):
        stop = start + rows
        xw = xs.read(start, stop) if xs is not None else np.asarray(x[start:stop])
        yw = ys.read(start, stop) if ys is not None else np.asarray(y[start:stop])
        yield start, np.ascontiguousarray(xw, dtype=np.float32), yw


def _rates(total: StreamedAttack, c: dict[str, Any]) -> None:
    k = len(total.eps)
    total.counts = {key: (list(v) if isinstance(v, list) else v) for key, v in c.items()}
    total.clean_accuracy = c["clean_correct"] / total.n if total.n else math.nan
    total.accuracy = [c["adv_correct"][i] / total.n if total.n else math.nan for i in range(k)]
    total.success_rate = [c["succeeded"][i] / c["eligible"][i] if c["eligible"][i] else math.nan
                          for i in range(k)]
    total.mean_linf = [c["linf_sum"][i] / total.n_attacked if total.n_attacked else 0.0
                       for i in range(k)]
    total.valid_share = [c["valid"][i] / c["checked"][i] if c["checked"][i] else None
                         for i in range(k)]


def _plain(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
