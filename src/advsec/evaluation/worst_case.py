"""Worst case over an ensemble of attacks, adaptive re-attack and labelled transfer scores.

A record is robust at a budget only if it survives *every* attack of the ensemble. As in
AutoAttack (Croce & Hein 2020, https://arxiv.org/abs/2003.01690) the attacks run in sequence;
with ``per_attack=False`` each attack only sees the records that survived the previous ones
(cheap), with ``per_attack=True`` (default) each also runs on every record so its own accuracy
is reported. Either way a record counts as robust only if no run broke it, so the worst-case
accuracy is never above any per-attack accuracy.

A defended model is evaluated by attacking it afresh (white-box, every attack): that is
:func:`adaptive_evaluation`. Scoring it on examples crafted against another (undefended) model
measures transfer, which overstates robustness; it is reported as its own, labelled rows
(:func:`transfer_table`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from advsec.attacks.base import as_module
from advsec.attacks.protocol import Crafter
from advsec.attacks.targets import benign_index, class_indices, eps_values
from advsec.evaluation.metrics import attack_success_rate, detection_metrics
from advsec.models.inference import batched_logits
from advsec.models.types import Model

__all__ = [
    "WORST_CASE_COLUMNS",
    "WorstCase",
    "adaptive_evaluation",
    "transfer_table",
    "worst_case",
]

log = logging.getLogger(__name__)

#: Columns of :attr:`WorstCase.table` (and of :func:`transfer_table`).
WORST_CASE_COLUMNS = [
    "evaluation", "attack", "eps", "accuracy", "detection_rate", "fpr", "attack_success_rate",
    "cumulative_accuracy", "n_broken", "max_linf", "n", "seconds",
]
WORST = "worst-case"


@dataclass
class WorstCase:
    """The result of :func:`worst_case`.

    Attributes:
        table: one row per (attack, eps) in run order, then one ``attack == "worst-case"`` row
            per eps; columns :data:`WORST_CASE_COLUMNS`. ``accuracy``, ``detection_rate``,
            ``fpr`` and ``attack_success_rate`` of an attack row are that attack's own
            (on every record; NaN when ``per_attack=False``); ``cumulative_accuracy`` is the
            share of records robust to it and every attack before it; ``n_broken`` counts the
            records this attack broke first; ``max_linf`` is the largest L-inf distance of its
            adversarial inputs from the clean ones (a value above ``eps`` means the attack left
            its budget, e.g. by a repair). The worst-case row's metrics are computed on each
            record's worst input (the first adversarial example that broke it).
        robust: eps -> ``(N,)`` bool, records classified correctly under every attack.
        x_worst: eps -> ``(N, D)`` CPU float32: the first successful adversarial example of
            each record, else its clean input.
        pred_worst: eps -> ``(N,)`` predicted class indices on ``x_worst``.
        pred_clean: ``(N,)`` predicted class indices on the clean inputs.
    """

    table: pd.DataFrame
    robust: dict[float, np.ndarray] = field(default_factory=dict)
    x_worst: dict[float, torch.Tensor] = field(default_factory=dict)
    pred_worst: dict[float, np.ndarray] = field(default_factory=dict)
    pred_clean: np.ndarray | None = None

    def accuracy(self, eps: float) -> float:
        """Worst-case accuracy at ``eps``."""
        return float(self.robust[_key(self.robust, eps)].mean())


def worst_case(
    model: Model,
    attacks: Sequence[Any] | Mapping[str, Any],
    x: torch.Tensor | np.ndarray,
    y: torch.Tensor | np.ndarray,
    *,
    eps: float | Sequence[float],
    benign_class: int | str | None = None,
    per_attack: bool = True,
    evaluation: str = "adaptive",
) -> WorstCase:
    """Attack ``model`` with every attack in ``attacks`` and keep, per record, the worst case.

    Args:
        model: an ``nn.Module`` returning logits or an advsec Detector (what is attacked and
            scored).
        attacks: attacks with ``run(model, x, y, eps=[...])`` returning ``x_adv`` per eps (every
            advsec attack), in the order to run them (cheap first); a mapping gives them names,
            else their ``name`` is used.
        x: inputs ``(N, D)``; y: true class indices ``(N,)``.
        eps: one budget or a list (model-input units).
        benign_class: the benign class (detection rate, false-positive rate): an index or one
            of the model's classes; default: the model's, as the attacks find it
            (:func:`advsec.attacks.targets.benign_index`: the schema's benign label, else a
            class named "benign" or "normal", else 0).
        per_attack: also run every attack on every record (its own accuracy); False runs each
            attack only on the survivors of the previous ones (AutoAttack's cost).
        evaluation: the ``evaluation`` column (e.g. ``"adaptive"``).

    Returns:
        A :class:`WorstCase`.

    Shapes: ``x`` ``(N, D)``, ``y`` ``(N,)``.
    """
    named = _named(attacks)
    if not named:
        raise ValueError("worst_case needs at least one attack")
    benign_class = _benign(model, benign_class, [a for _, a in named])
    module = as_module(model)
    xt = _tensor(x)
    yt = class_indices(model, y).cpu()  # raw labels of a Detector are encoded
    if yt.shape != (len(xt),):
        raise ValueError(f"y must have shape ({len(xt)},), one label per row of x, got "
                         f"{tuple(yt.shape)}")
    y_np = yt.numpy()
    eps_list = eps_values(eps)
    pred_clean = _predict(module, xt)
    n = len(xt)
    out = WorstCase(pd.DataFrame(columns=WORST_CASE_COLUMNS), pred_clean=pred_clean)
    for e in eps_list:
        out.robust[e] = pred_clean == y_np
        out.x_worst[e] = xt.clone()
        out.pred_worst[e] = pred_clean.copy()
    rows: list[dict[str, Any]] = []
    seconds = dict.fromkeys(eps_list, 0.0)
    if per_attack:
        for name, atk in named:
            t0 = time.perf_counter()
            advs = _run(atk, model, xt, yt, eps_list)
            dt = (time.perf_counter() - t0) / len(eps_list)
            for e, xa in zip(eps_list, advs, strict=True):
                pred = _predict(module, xa)
                broken = out.robust[e] & (pred != y_np)
                _record(out, e, broken, xa, pred)
                seconds[e] += dt
                rows.append(_row(evaluation, name, e, y_np, pred_clean, pred, benign_class,
                                 out.robust[e], int(broken.sum()), dt, _linf(xa, xt)))
    else:
        for e in eps_list:
            for name, atk in named:
                surv = np.flatnonzero(out.robust[e])
                t0 = time.perf_counter()
                n_broken, linf = 0, 0.0
                if len(surv):
                    xa = _run(atk, model, xt[surv], yt[surv], [e])[0]
                    pred = _predict(module, xa)
                    hit = pred != y_np[surv]
                    broken = np.zeros(n, dtype=bool)
                    broken[surv[hit]] = True
                    full_x = out.x_worst[e].clone()
                    full_x[surv] = xa
                    full_p = out.pred_worst[e].copy()
                    full_p[surv] = pred
                    _record(out, e, broken, full_x, full_p)
                    n_broken = int(hit.sum())
                    linf = _linf(xa, xt[surv])
                dt = time.perf_counter() - t0
                seconds[e] += dt
                rows.append({"evaluation": evaluation, "attack": name, "eps": e,
                             "accuracy": math.nan, "detection_rate": math.nan,
                             "fpr": math.nan, "attack_success_rate": math.nan,
                             "cumulative_accuracy": float(out.robust[e].mean()) if n else math.nan,
                             "n_broken": n_broken, "max_linf": linf, "n": n,
                             "seconds": dt})
    for e in eps_list:
        pred = out.pred_worst[e]
        row = _row(evaluation, WORST, e, y_np, pred_clean, pred, benign_class, out.robust[e],
                   int(((pred_clean == y_np) & ~out.robust[e]).sum()), seconds[e],
                   _linf(out.x_worst[e], xt))
        row["accuracy"] = float(out.robust[e].mean()) if n else math.nan
        rows.append(row)
    out.table = pd.DataFrame(rows, columns=WORST_CASE_COLUMNS)
    return out


def transfer_table(
    model: Model,
    crafted: Mapping[float, torch.Tensor | np.ndarray],
    y: torch.Tensor | np.ndarray,
    *,
    name: str,
    x: torch.Tensor | np.ndarray | None = None,
    benign_class: int | str | None = None,
    evaluation: str = "transfer-from-undefended",
) -> pd.DataFrame:
    """Score ``model`` on fixed adversarial inputs crafted against another model.

    Args:
        model: the model scored (module or Detector).
        crafted: eps -> adversarial inputs ``(N, D)`` crafted elsewhere.
        y: true class indices ``(N,)``.
        name: the ``attack`` column (e.g. ``"fgsm"``).
        x: the clean inputs ``(N, D)``, for the attack success rate (NaN without them).
        benign_class: the benign class (default: the model's, as in :func:`worst_case`).
        evaluation: the ``evaluation`` column; keep the word "transfer" in it.

    Returns:
        One row per eps, columns :data:`WORST_CASE_COLUMNS`.
    """
    benign_class = _benign(model, benign_class, ())
    module = as_module(model)
    y_np = class_indices(model, y).cpu().numpy()
    x_t = _tensor(x) if x is not None else None
    pred_clean = _predict(module, x_t) if x_t is not None else None
    rows = []
    for e, xa in crafted.items():
        xa_t = _tensor(xa)
        pred = _predict(module, xa_t)
        m = detection_metrics(y_np, pred, benign_class=benign_class)
        rows.append({
            "evaluation": evaluation, "attack": name, "eps": float(e),
            "accuracy": m["accuracy"], "detection_rate": m["detection_rate"], "fpr": m["fpr"],
            "attack_success_rate": math.nan if pred_clean is None else attack_success_rate(
                y_np, pred_clean, pred, benign_class=benign_class),
            "cumulative_accuracy": math.nan, "n_broken": math.nan,
            "max_linf": math.nan if x_t is None else _linf(xa_t, x_t), "n": len(y_np),
            "seconds": 0.0,
        })
    return pd.DataFrame(rows, columns=WORST_CASE_COLUMNS)


def adaptive_evaluation(
    model: Model,
    attacks: Sequence[Any] | Mapping[str, Any],
    x: torch.Tensor | np.ndarray,
    y: torch.Tensor | np.ndarray,
    *,
    eps: float | Sequence[float],
    transfer: Mapping[str, Mapping[float, torch.Tensor | np.ndarray]] | None = None,
    benign_class: int | str | None = None,
    per_attack: bool = True,
) -> tuple[pd.DataFrame, WorstCase]:
    """Evaluate a (defended) model honestly: attack it afresh, and label transfer separately.

    Every attack in ``attacks`` is run white-box against ``model`` itself
    (``evaluation == "adaptive"``, with the ``worst-case`` rows). Examples crafted against
    another model (``transfer``: name -> eps -> inputs) are scored as separate rows with
    ``evaluation == "transfer-from-undefended"``: that number is what a protocol that never
    re-attacks the defended model would report.

    Returns:
        ``(table, worst)``: the combined table (columns :data:`WORST_CASE_COLUMNS`) and the
        :class:`WorstCase` of the adaptive part.
    """
    benign_class = _benign(model, benign_class, [a for _, a in _named(attacks)])
    wc = worst_case(model, attacks, x, y, eps=eps, benign_class=benign_class,
                    per_attack=per_attack)
    parts = [wc.table]
    for name, crafted in (transfer or {}).items():
        parts.append(transfer_table(model, crafted, y, name=name, x=x,
                                    benign_class=benign_class))
    return pd.concat(parts, ignore_index=True), wc


# ---------------------------------------------------------------------------- helpers
def _named(attacks: Sequence[Any] | Mapping[str, Any]) -> list[tuple[str, Any]]:
    if isinstance(attacks, Mapping):
        return [(str(k), v) for k, v in attacks.items()]
    out, seen = [], set()
    for atk in attacks:
        name = str(getattr(atk, "name", type(atk).__name__.lower()))
        base, k = name, 2
        while name in seen:
            name, k = f"{base}-{k}", k + 1
        seen.add(name)
        out.append((name, atk))
    return out


def _run(atk: Crafter, model: Model, x: torch.Tensor, y: torch.Tensor,
         eps_list: list[float]) -> list[torch.Tensor]:
    res = atk.craft(model, x, y, eps=eps_list)
    return [a.detach().cpu().float() for a in res.x_adv]


def _record(out: WorstCase, e: float, broken: np.ndarray, xa: torch.Tensor,
            pred: np.ndarray) -> None:
    if broken.any():
        idx = torch.from_numpy(np.flatnonzero(broken))
        out.x_worst[e][idx] = xa[idx]
        out.pred_worst[e][broken] = pred[broken]
        out.robust[e] &= ~broken


def _row(evaluation: str, name: str, e: float, y: np.ndarray, pred_clean: np.ndarray,
         pred: np.ndarray, benign: int, robust: np.ndarray, n_broken: int,
         seconds: float, linf: float) -> dict[str, Any]:
    m = detection_metrics(y, pred, benign_class=benign)
    return {
        "evaluation": evaluation, "attack": name, "eps": e, "accuracy": m["accuracy"],
        "detection_rate": m["detection_rate"], "fpr": m["fpr"],
        "attack_success_rate": attack_success_rate(y, pred_clean, pred, benign_class=benign),
        "cumulative_accuracy": float(robust.mean()) if len(robust) else math.nan,
        "n_broken": n_broken, "max_linf": linf, "n": len(y), "seconds": seconds,
    }


def _linf(xa: torch.Tensor, x: torch.Tensor) -> float:
    return float((xa - x).abs().max()) if len(x) else 0.0


def _tensor(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    t = x.detach().cpu() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    return t.float()


def _predict(module: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
    return batched_logits(module, x).argmax(1).numpy()


def _key(d: Mapping[float, Any], eps: float) -> float:
    for k in d:
        if math.isclose(k, eps, rel_tol=1e-9, abs_tol=1e-12):
            return k
    raise KeyError(eps)


def _benign(model: Model, benign_class: int | str | None, attacks: Iterable[Any]) -> int:
    """The benign class index: ``benign_class``, else the model's as the attacks find it (with
    the first attack's FeatureSpace, if any)."""
    space = next((a.feature_space for a in attacks
                  if getattr(a, "feature_space", None) is not None), None)
    return benign_index(model, benign_class, space)
