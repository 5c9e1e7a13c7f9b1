"""``advsec run``: every combination of a configured study, resumable, in one run directory.

A *combination* is (seed, detector, defence). Each one trains (or loads) its detector, hardens it
when a defence is configured, re-attacks it white-box with every attack under every threat model,
and writes its tables into ``combos/<key>/`` of the persistent staging folder ``.NAME.partial``
beside the run directory (:func:`advsec.runio.atomic_run_dir`), which is renamed into place once
every combination and the report are complete. ``--resume`` reuses finished combinations from
the staging folder, so a killed run loses at most the one in flight.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from advsec.attacks import FixedInputs, make_attack
from advsec.datasets import Dataset, load
from advsec.errors import ConfigError
from advsec.evaluation import attack_success_rate, detection_metrics, evaluate_attack
from advsec.experiments.artifacts import CombinationResult, combo_dir, write_combo
from advsec.experiments.baselines import fit_baseline
from advsec.experiments.config import DefenseConfig, DetectorConfig, ExperimentConfig
from advsec.experiments.hardening import harden
from advsec.features.space import FeatureSpace
from advsec.models import Detector
from advsec.runio import atomic_run_dir, check_new_run_dir, run_log, staging_dir

__all__ = ["Combination", "RunResult", "load_dataset", "plan", "run_experiment", "staging_dir"]

log = logging.getLogger(__name__)

ProgressFn = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Combination:
    """One unit of work: a seed, an MLP detector and a defence (``None``: undefended)."""

    seed: int
    detector: DetectorConfig
    defense: DefenseConfig | None

    @property
    def key(self) -> str:
        """Folder name: ``s<seed>__<detector>__<defence or none>``."""
        d = self.defense.label if self.defense else "none"
        return f"s{self.seed}__{self.detector.name}__{d}"


@dataclass
class RunResult:
    """Where the run went and how long it took."""

    out: Path
    combinations: int
    reused: int
    seconds: float


def plan(cfg: ExperimentConfig) -> list[Combination]:
    """All combinations in execution order."""
    mlps = [d for d in cfg.detectors if d.kind == "mlp"]
    defenses: list[DefenseConfig | None] = [None, *cfg.defenses]
    return [Combination(s, d, f) for s in cfg.experiment.seeds for d in mlps for f in defenses]


def run_experiment(
    cfg: ExperimentConfig,
    *,
    out: str | Path,
    config_text: str = "",
    resume: bool = False,
    force: bool = False,
    progress: ProgressFn | None = None,
) -> RunResult:
    """Run every combination of ``cfg`` and write the run directory ``out``.

    Args:
        config_text: the TOML source, copied to ``config.toml``.
        resume: reuse finished combinations of an interrupted run of the same configuration.
        force: replace an existing ``out``.
        progress: ``fn(stage, k, n)`` called as work advances.
    """
    t0 = time.perf_counter()
    out = Path(out).resolve()
    report = progress or (lambda s, k, n: None)
    check_new_run_dir(out, force=force)
    from advsec.experiments.tracking import check_tracking

    check_tracking(cfg)
    combos = plan(cfg)
    with atomic_run_dir(out, force=force, persistent=True, resume=resume) as stage:
        _check_same_config(stage, cfg)
        (stage / "config.toml").write_text(
            config_text or "# configuration given programmatically\n")
        (stage / "config.json").write_text(cfg.model_dump_json(indent=2))
        with run_log(stage / "run.log"):
            reused = _run_combinations(cfg, combos, stage, report)
            report("report", len(combos), len(combos))
            from advsec.reporting.run_report import build_run_report

            build_run_report(stage)
            _track(cfg, stage)
    return RunResult(out, len(combos), reused, time.perf_counter() - t0)


def _run_combinations(cfg: ExperimentConfig, combos: list[Combination], stage: Path,
                      report: ProgressFn) -> int:
    """Run every combination not finished in ``stage`` yet; returns how many were reused."""
    reused = 0
    cache: dict[int, _Prepared] = {}
    for k, combo in enumerate(combos):
        if (combo_dir(stage, combo.key) / "DONE").exists():
            reused += 1
            log.info("combination %d/%d %s: already complete, skipped", k + 1, len(combos),
                     combo.key)
            report(f"{combo.key} (reused)", k + 1, len(combos))
            continue
        report(combo.key, k, len(combos))
        log.info("combination %d/%d: %s", k + 1, len(combos), combo.key)
        if combo.seed not in cache:
            cache.clear()
            cache[combo.seed] = _prepare(cfg, combo.seed)
        result = _run_combination(cfg, combo, cache[combo.seed], stage)
        write_combo(stage, combo.key, result)
        report(combo.key, k + 1, len(combos))
    return reused


# ---------------------------------------------------------------------- data
@dataclass
class _Prepared:
    """One seed's data: the dataset, its fitted FeatureSpace, encoded splits, evaluation rows."""
    ds: Dataset
    space: FeatureSpace
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    eval_idx: np.ndarray


def load_dataset(cfg: ExperimentConfig, seed: int) -> Dataset:
    """The configured dataset with schema overrides applied (``seed`` for splits/generation)."""
    d = cfg.data
    opts: dict[str, Any] = {**d.options, "seed": seed}
    if d.dataset in ("csv", "parquet", "tabular"):
        opts.update(path=d.path, label_column=d.label_column, test_path=d.test_path)
        if d.benign_label is not None:
            opts["benign_label"] = d.benign_label
        name = "tabular"
    else:
        name = d.dataset
        if d.root is not None:
            opts["root"] = d.root
        if d.scheme != "binary" or name != "synthetic":
            opts["scheme"] = d.scheme
    if d.schema_file is not None:
        opts["schema_file"] = d.schema_file
    ds = load(name, **opts)
    if d.schema_overrides:
        ds.schema = ds.schema.with_overrides(d.schema_overrides)
    return ds


def _prepare(cfg: ExperimentConfig, seed: int) -> _Prepared:
    """Load and encode the data of ``seed`` (training rows and evaluation subset sampled)."""
    ds = load_dataset(cfg, seed)
    rng = np.random.default_rng(seed)
    train = ds.train
    if cfg.data.max_train_rows and len(train) > cfg.data.max_train_rows:
        train = train.iloc[np.sort(rng.choice(len(train), cfg.data.max_train_rows,
                                              replace=False))]
    space = FeatureSpace(ds.schema).fit(train)
    x_train = space.encode(train)
    x_test = space.encode(ds.test)
    y_train = train[ds.label].astype(str).to_numpy()
    y_test = ds.test[ds.label].astype(str).to_numpy()
    n_eval = cfg.data.max_eval_rows
    eval_idx = (np.sort(rng.choice(len(x_test), n_eval, replace=False))
                if n_eval and len(x_test) > n_eval else np.arange(len(x_test)))
    return _Prepared(ds, space, x_train, y_train, x_test, y_test, eval_idx)


# ---------------------------------------------------------------------- one combination
def _train_mlp(d: DetectorConfig, seed: int, p: _Prepared, stage: Path) -> Detector:
    """The MLP of detector ``d`` for ``seed``: loaded from ``stage/models`` or trained and saved."""
    path = stage / "models" / f"{d.name}-s{seed}"
    if path.with_suffix(".json").exists():
        return Detector.load(path)
    det = Detector(hidden=d.hidden, dropout=d.dropout, epochs=d.epochs, batch_size=d.batch_size,
                   lr=d.lr, weight_decay=d.weight_decay, validation_split=d.validation_split,
                   patience=d.patience, seed=seed, device="cpu")
    det.fit(p.x_train, p.y_train)
    det.save(path, feature_space=p.space)
    return Detector.load(path)  # identical predictions whether trained now or on resume


def _run_combination(
    cfg: ExperimentConfig, combo: Combination, p: _Prepared, stage: Path
) -> CombinationResult:
    """Train or load, harden, attack and score one combination; everything it measured."""
    t0 = time.perf_counter()
    base = _train_mlp(combo.detector, combo.seed, p, stage)
    det = base
    if combo.defense is not None:
        path = stage / "models" / f"{combo.detector.name}-{combo.defense.label}-s{combo.seed}"
        if path.with_suffix(".json").exists():
            det = Detector.load(path)
        else:
            det = harden(base, combo.defense, p.x_train, p.y_train, space=p.space,
                         seed=combo.seed)
            det.save(path, feature_space=p.space)
            det = Detector.load(path)
    classes = [str(c) for c in det.classes_]
    if p.ds.benign_label not in classes:
        raise ConfigError(f"benign label {p.ds.benign_label!r} is not among the classes {classes}")
    benign = classes.index(p.ds.benign_label)
    x_eval = torch.from_numpy(p.x_test[p.eval_idx])
    y_eval = det.encode_labels(p.y_test[p.eval_idx])
    res = CombinationResult(key=combo.key, classes=classes, benign=benign)
    meta = {"seed": combo.seed, "detector": combo.detector.name,
            "defense": combo.defense.label if combo.defense else "none"}
    # clean metrics on the whole test set
    proba = det.predict_proba(p.x_test)
    y_all = det.encode_labels(p.y_test).numpy()
    res.clean.append({**meta, "n": len(y_all), **detection_metrics(
        y_all, proba.argmax(1), proba=proba, benign_class=benign)})
    from advsec.evaluation.checks import check_model

    probe = slice(0, min(256, len(x_eval)))
    for flag in check_model(det.as_module(), x_eval[probe], y_eval[probe]):
        res.checks.append({**meta, "check": flag.name, "ok": flag.ok, "detail": flag.detail})
    fe = cfg.threat.chosen_eps()
    y_np = y_eval.numpy()
    for threat in cfg.threat.constraints:
        correct_all: dict[float, np.ndarray] = {}
        for a in cfg.attacks:
            attack = make_attack(
                a.attack, eps=cfg.threat.eps, seed=combo.seed,
                feature_space=p.space if threat == "valid" else None,
                evasion=cfg.threat.mode == "evasion", benign_class=benign, **a.options())
            sweep = evaluate_attack(det, attack, x_eval, y_eval, eps=cfg.threat.eps,
                                    name=a.label, space=p.space, benign_class=benign)
            table = sweep.table.assign(**meta, threat=threat, evaluation="adaptive")
            res.sweep.append(table)
            for e, pred in sweep.pred_adv.items():
                ok = pred == y_np
                correct_all[e] = correct_all.get(e, np.ones_like(ok)) & ok
            res.add_figure_eps(meta, threat, a.label, fe, y_np, sweep, p.space, x_eval,
                               p.eval_idx)
            if combo.defense is not None:
                res.sweep.append(_transfer_from(base, det, attack, x_eval, y_eval, cfg, a.label,
                                                p.space, benign, meta, threat))
        res.worst.append(pd.DataFrame(
            [{**meta, "threat": threat, "eps": e, "worst_case_accuracy": float(c.mean()),
              "attacks": len(cfg.attacks)} for e, c in sorted(correct_all.items())]))
    if combo.defense is None:
        res.sweep.extend(_baselines(cfg, combo, p, det, x_eval, y_eval, benign, meta))
    res.seconds = time.perf_counter() - t0
    return res


def _transfer_from(
    base: Detector, defended: Detector, attack: Any, x: torch.Tensor, y: torch.Tensor,
    cfg: ExperimentConfig, label: str, space: FeatureSpace, benign: int,
    meta: dict[str, Any], threat: str,
) -> pd.DataFrame:
    """Score ``defended`` on examples crafted against the undefended ``base`` (labelled)."""
    crafted = attack.run(base, x, y, eps=cfg.threat.eps)
    rows = []
    for e, xa in zip(crafted.eps, crafted.x_adv, strict=True):
        s = evaluate_attack(defended, FixedInputs(xa), x, y, eps=[e], name=label, space=space,
                            benign_class=benign, keep_inputs=False)
        rows.append(s.table)
    return pd.concat(rows).assign(**meta, threat=threat, evaluation="transfer-from-undefended")


def _baselines(
    cfg: ExperimentConfig, combo: Combination, p: _Prepared, surrogate: Detector,
    x_eval: torch.Tensor, y_eval: torch.Tensor, benign: int, meta: dict[str, Any],
) -> list[pd.DataFrame]:
    """Train scikit-learn baselines and score them on examples crafted against this MLP.

    Each (threat, attack) is crafted once against the surrogate and scored on every baseline.
    """
    out: list[pd.DataFrame] = []
    crafted: dict[tuple[str, str], Any] = {}
    evasion = cfg.threat.mode == "evasion"
    x_np = x_eval.numpy()
    for b in cfg.detectors:
        if b.kind == "mlp" or (b.surrogate or combo.detector.name) != combo.detector.name:
            continue
        model = fit_baseline(b, p.x_train, p.y_train, seed=combo.seed)
        classes = [str(c) for c in model.classes_]
        benign_b = classes.index(str(p.ds.benign_label))
        yb = np.array([classes.index(c) for c in p.y_test[p.eval_idx]])
        clean_pred = np.array([classes.index(str(c)) for c in model.predict(x_np)])
        for threat in cfg.threat.constraints:
            for a in cfg.attacks:
                key = (threat, a.label)
                if key not in crafted:
                    attack = make_attack(
                        a.attack, eps=cfg.threat.eps, seed=combo.seed,
                        feature_space=p.space if threat == "valid" else None,
                        evasion=evasion, benign_class=benign, **a.options())
                    crafted[key] = attack.run(surrogate, x_eval, y_eval, eps=cfg.threat.eps,
                                              evaluate=False)
                res = crafted[key]
                rows = []
                for e, xa in zip(res.eps, res.x_adv, strict=True):
                    xa_np = xa.numpy()
                    pred = np.array([classes.index(str(c)) for c in model.predict(xa_np)])
                    rows.append({
                        "attack": a.label, "eps": e,
                        **detection_metrics(yb, pred, proba=model.predict_proba(xa_np),
                                            benign_class=benign_b),
                        "attack_success_rate": attack_success_rate(
                            yb, clean_pred, pred, evasion=evasion, benign_class=benign_b),
                        "mean_linf": float((xa - x_eval).abs().amax(1).mean()),
                        "n": len(yb), "seconds": res.seconds / len(res.eps)})
                out.append(pd.DataFrame(rows).assign(
                    **{**meta, "detector": b.name}, threat=threat,
                    evaluation=f"transfer-from-{combo.detector.name}"))
    return out


# ---------------------------------------------------------------------- housekeeping
def _check_same_config(stage: Path, cfg: ExperimentConfig) -> None:
    """Refuse to resume a staging folder whose finished combinations used another configuration."""
    previous = stage / "config.json"
    if (previous.exists() and any((stage / "combos").glob("*/DONE"))
            and json.loads(previous.read_text()) != json.loads(cfg.model_dump_json())):
        raise ConfigError(f"{stage}: the interrupted run used a different configuration; "
                          "run without --resume to start over")


def _track(cfg: ExperimentConfig, stage: Path) -> None:
    """Log the finished run to MLflow when ``[tracking] mlflow`` is on."""
    if not cfg.tracking.mlflow:
        return
    from advsec.experiments.tracking import log_to_mlflow

    log_to_mlflow(cfg, stage)

