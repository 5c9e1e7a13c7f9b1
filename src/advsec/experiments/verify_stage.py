"""The verification stage: certified accuracy beside the attacks, on the same records.

For every threat model of a combination (``advsec run``) and for ``advsec attack --verify``,
each configured verifier (:mod:`advsec.verification`: ``crown``, ``ibp``) bounds the detector
on the records the attacks were measured on (the evaluation subset; in evasion mode only its
malicious records, as the attacks attack only those), over the same ε list and the same region
(``valid``: the FeatureSpace's box; ``box``: the plain ``[0, 1]`` box). The result per ε is a
row of :func:`advsec.evaluation.verified.verified_vs_attacked` (verified accuracy, a lower
bound; worst-case accuracy under every attack, an upper bound; the gap) and one soundness check
(:func:`advsec.evaluation.verified.check_verified_unbroken`: a record verified and broken at the
same ε is a red flag). ``crown`` / ``ibp`` bound ReLU MLPs, ``tree-milp`` tree ensembles. The
run's transfer-scored detectors (scikit-learn baselines, ONNX files) are verified too
(:func:`verify_transfer_scored`), against the worst case of the examples transferred from their
surrogate MLP; a verifier that cannot bound a detector gives it one row marked "n/a" with the
reason (and a logged note). ``advsec attack`` refuses such a model with a one-line error before
anything is written.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from advsec.errors import ConfigError
from advsec.evaluation.checks import Flag
from advsec.evaluation.evasion import WorstCase
from advsec.evaluation.verified import (
    VERIFY_COLUMNS,
    check_verified_unbroken,
    verified_vs_attacked,
)
from advsec.experiments.artifacts import CombinationResult
from advsec.experiments.config import ExperimentConfig
from advsec.features.space import FeatureSpace
from advsec.verification import Verifier, make_verifier

__all__ = ["attacked_rows", "cli_verifiers", "not_run_rows", "unsupported", "verify_against",
           "verify_attack", "verify_threat", "verify_transfer_scored"]

log = logging.getLogger(__name__)


def unsupported(verifier: Verifier, model: Any) -> str | None:
    """Why ``verifier`` cannot bound ``model`` (one line), or None when it can
    (:meth:`~advsec.verification.Verifier.unsupported`: ReLU MLPs for ``crown`` / ``ibp``,
    tree ensembles for ``tree-milp``)."""
    return verifier.unsupported(model)


def attacked_rows(y: np.ndarray, benign: int, *, evasion: bool) -> np.ndarray:
    """The indices of the records the attacks attack (and the verifiers verify) among ``y``
    ``(N,)`` class indices: every record, or in evasion mode the malicious ones."""
    y = np.asarray(y)
    return np.flatnonzero(y != benign) if evasion else np.arange(len(y))


def not_run_rows(label: str, note: str) -> pd.DataFrame:
    """The row of :data:`~advsec.evaluation.verified.VERIFY_COLUMNS` for a verifier that did
    not run (every number NaN, ``eps`` included: shown as "n/a"; ``note`` says why)."""
    row = {c: math.nan for c in VERIFY_COLUMNS} | {"verifier": label, "note": note}
    return pd.DataFrame([row], columns=list(VERIFY_COLUMNS))


def verify_against(verifier: Verifier, model: Any, x: torch.Tensor, y: torch.Tensor,
                   robust: np.ndarray, eps: Sequence[float], *, label: str, detector: str,
                   threat: str = "") -> tuple[pd.DataFrame, Flag]:
    """Verify ``model`` on ``x`` ``(N, D)``, ``y`` ``(N,)`` class indices at every ``eps`` and
    compare with ``robust`` ``(E, N)`` bool (correct under every attack): the table of
    :func:`~advsec.evaluation.verified.verified_vs_attacked` and the soundness flag."""
    eps = [float(e) for e in eps]
    result = verifier(model, x, y, eps=eps)
    # an exact verifier (tree-milp) also finds checked adversarial records: they are attacks
    # too, so the attacked (upper) bound counts them, and the gap is only what neither settles
    broken = getattr(result, "broken", None)  # (E, N) bool, TreeVerifyResult only
    upper = robust
    if isinstance(broken, torch.Tensor) and tuple(broken.shape) == robust.shape:
        upper = robust & ~broken.cpu().numpy()
    table = verified_vs_attacked(result, upper, name=label)
    if upper is not robust:
        table = table.assign(note="attacked: also the verifier's own adversarial records")
    flag = check_verified_unbroken(result.verified, robust, eps, detector=detector,
                                   verifier=label, threat=threat)
    if not flag.ok:
        log.warning("RED FLAG %s: %s", flag.name, flag.detail)
    return table, flag


def verify_threat(cfg: ExperimentConfig, threat: str, det: Any, space: FeatureSpace,
                  x: torch.Tensor, y: np.ndarray, benign: int, worst: WorstCase,
                  meta: dict[str, Any], res: CombinationResult) -> None:
    """Run every ``[[verifiers]]`` entry of ``cfg`` on one combination's detector ``det`` under
    ``threat`` (``"valid"`` or ``"box"``) and append the tables to ``res.verify`` and the
    soundness checks to ``res.checks`` (nothing without verifiers).

    Args:
        x: ``(N, D)`` the evaluation records; y: ``(N,)`` their class indices.
        worst: the worst case over the attacks of this threat (every ε of ``[threat]``).
        meta: ``seed``, ``detector``, ``defense`` of the combination.
    """
    if cfg.verifiers:
        robust = np.stack([worst.correct(float(e)) for e in cfg.threat.eps])
        _verify_all(cfg, threat, det, space, x, y, benign, robust, meta, res)


def verify_transfer_scored(cfg: ExperimentConfig, threat: str, model: Any, space: FeatureSpace,
                           x: torch.Tensor, y: np.ndarray, benign: int, robust: np.ndarray,
                           meta: dict[str, Any], res: CombinationResult) -> None:
    """Every ``[[verifiers]]`` entry on a transfer-scored detector ``model`` (a scikit-learn
    baseline or an ONNX graph of the run; ``tree-milp`` bounds its tree ensembles), appending to
    ``res.verify`` and ``res.checks`` as :func:`verify_threat` does.

    Args:
        x: ``(N, D)`` the evaluation records; y: ``(N,)`` their indices among the model's
            ``classes_``; benign: the benign class's index there.
        robust: ``(E, N)`` bool, per ε of ``[threat]``: the model right on the clean record and
            on every example transferred from its surrogate (the upper bound compared with).
        meta: ``seed``, ``detector`` (this model's name), ``defense``.
    """
    if cfg.verifiers:
        _verify_all(cfg, threat, model, space, x, y, benign, robust, meta, res,
                    note="attacked accuracy: examples transferred from the surrogate MLP")


def _verify_all(cfg: ExperimentConfig, threat: str, model: Any, space: FeatureSpace,
                x: torch.Tensor, y: np.ndarray, benign: int, robust: np.ndarray,
                meta: dict[str, Any], res: CombinationResult, *, note: str = "") -> None:
    """Every ``[[verifiers]]`` entry on ``model`` over the attacked records of ``x`` ``(N, D)``
    (``y`` ``(N,)`` class indices), compared with ``robust`` ``(E, N)``; a verifier that cannot
    bound the model gives one "n/a" row with its reason. ``note``: the verified rows' note."""
    eps = [float(e) for e in cfg.threat.eps]
    rows = attacked_rows(y, benign, evasion=cfg.threat.evasion())
    xr, yr = x[torch.as_tensor(rows)], torch.as_tensor(np.asarray(y)[rows])
    for vc in cfg.verifiers:
        verifier = make_verifier(vc.name, eps=eps, **vc.options(),
                                 feature_space=space if threat == "valid" else None)
        why = unsupported(verifier, model)
        if why is not None:
            log.info("%s: verifier %s not run: %s", meta["detector"], vc.table_label, why)
            table = not_run_rows(vc.table_label, f"n/a: {why}")
        else:
            log.info("%s/%s: verifier %s, %s threat, %d records", meta["detector"],
                     meta["defense"], vc.table_label, threat, len(rows))
            table, flag = verify_against(verifier, model, xr, yr, robust[:, rows], eps,
                                         label=vc.table_label, detector=str(meta["detector"]),
                                         threat=threat)
            res.checks.append({**meta, "scope": "verification", "check": flag.name,
                               "ok": flag.ok, "detail": flag.detail})
            if note:
                table = table.assign(note=[f"{note}; {n}" if n else note for n in table.note])
        res.verify.append(table.assign(**meta, threat=threat))


# ---------------------------------------------------------------------- advsec attack --verify
def cli_verifiers(values: Sequence[str] | None, model: Any = None, *, where: str = "--verify"
                  ) -> list[str]:
    """The verifier names of ``--verify`` (repeatable, each a comma list; duplicates dropped),
    checked against the registry and, given ``model``, against the model (a one-line
    :class:`~advsec.errors.ConfigError` naming ``where`` for an unknown name or a model no
    verifier can bound)."""
    names: list[str] = []
    for value in values or []:
        for part in str(value).split(","):
            if not part.strip():
                raise ConfigError(f"{where}: empty verifier name in {value!r}")
            try:
                key = make_verifier(part).name
            except ConfigError as exc:
                raise ConfigError(f"{where}: {exc}") from None
            if key not in names:
                names.append(key)
    if model is not None:
        for key in names:
            why = unsupported(make_verifier(key), model)
            if why is not None:
                raise ConfigError(f"{where} {key}: this model cannot be verified ({why})")
    return names


def verify_attack(names: Sequence[str], model: Any, x: torch.Tensor, y: torch.Tensor,
                  pred_adv: dict[float, np.ndarray], *, space: FeatureSpace | None,
                  benign: int, evasion: bool, detector: str) -> tuple[pd.DataFrame, list[Flag]]:
    """``advsec attack --verify``: each verifier of ``names`` on the attacked records of ``x``
    ``(N, D)``, ``y`` ``(N,)`` class indices at every ε of ``pred_adv`` (ε -> the attack's
    predictions ``(N,)``; ε = 0: the clean ones), over the attack's region (``space``: the
    valid-record box; None: the plain box). Returns the rows of
    :data:`~advsec.evaluation.verified.VERIFY_COLUMNS` and one soundness flag per verifier."""
    eps = sorted(float(e) for e in pred_adv)
    y_np = y.detach().cpu().numpy()
    rows = attacked_rows(y_np, benign, evasion=evasion)
    robust = np.stack([(np.asarray(pred_adv[e]) == y_np)[rows] for e in eps])
    xr, yr = x[torch.as_tensor(rows)], y.detach().cpu()[torch.as_tensor(rows)]
    tables, flags = [], []
    for key in names:
        verifier = make_verifier(key, eps=eps, feature_space=space)
        log.info("verifier %s on %d records at %d eps", key, len(rows), len(eps))
        table, flag = verify_against(verifier, model, xr, yr, robust, eps, label=key,
                                     detector=detector, threat="valid" if space else "box")
        tables.append(table)
        flags.append(flag)
    out = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(
        columns=list(VERIFY_COLUMNS))
    return out, flags
