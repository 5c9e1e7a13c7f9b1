"""``advsec run``: every combination of a configured study, resumable, in one run directory.

A *combination* is (seed, detector, defence). Each one trains (or loads) its detector, hardens it
when a defence is configured, re-attacks it white-box with every attack under every threat model,
and writes its tables into ``combos/<key>/`` of the persistent staging folder ``.NAME.partial``
beside the run directory (:func:`advsec.runio.atomic_run_dir`), which is renamed into place once
every combination and the report are complete. ``--resume`` reuses finished combinations from
the staging folder, so a killed run loses at most the ones in flight. Combinations run one
after another in this process (``[run] executor = "serial"``, the default) or as tasks of a
process pool or a Ray cluster (:mod:`advsec.experiments.executors`), writing the same staging
folder: ``--resume`` continues whichever executor ran the first part.

What can be known before the run starts is checked before the staging folder exists
(:func:`validate_run`; its log goes into ``run.log`` afterwards): the tracker, the data of every
seed (files exist and parse, labels present, two classes or more to train on, the benign label
among them, a test split), every attack under every threat model and, when resuming, the staging
folder's configuration, data files (their SHA-256, kept in ``data_digest.json``) and saved models.
Crash safety (``kill -9`` anywhere, then ``--resume``):
a combination's folder, each model (its ``.json`` last) and the configuration files appear in
one rename, the report is rebuilt, leftovers of a killed write are discarded, and every random
draw is seeded, so the resumed ``sweep.csv`` equals an uninterrupted run's (``seconds`` aside).
The scikit-learn baselines run on one BLAS thread (OpenBLAS results depend on the thread count).

The device (``[run] device`` / ``--device``: ``cpu``, the default, ``cuda`` or ``auto``) is
resolved before anything is created; the MLPs are trained, hardened, attacked and verified on
it, while the data, the tables and the saved models stay on the CPU (the weights are moved there
before they are written). On the CPU the numbers are the same bit for bit as without it.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from advsec.attacks import make_attack
from advsec.errors import AdvsecError, ConfigError
from advsec.evaluation import detection_metrics, evaluate_attack
from advsec.evaluation.evasion import WorstCase, add_evasion_columns
from advsec.evaluation.honesty import check_clean
from advsec.experiments import artifacts
from advsec.experiments.artifacts import CombinationResult, combo_dir, write_combo
from advsec.experiments.baselines import transfer_baselines
from advsec.experiments.config import DetectorConfig, ExperimentConfig
from advsec.experiments.dataload import load_dataset
from advsec.experiments.hardening import harden
from advsec.experiments.tracking import track_run
from advsec.experiments.transfer import transfer_from
from advsec.experiments.units import (
    Combination,
    Prepared,
    data_name,
    plan,
    prepare,
    write_data_facts,
)
from advsec.experiments.verify_stage import verify_threat
from advsec.models import Detector
from advsec.runio import (
    atomic_run_dir,
    check_new_run_dir,
    log_buffer,
    run_log,
    staging_dir,
    write_text,
)

__all__ = ["Combination", "RunResult", "load_dataset", "plan", "run_experiment", "run_one",
           "staging_dir", "validate_run"]

log = logging.getLogger(__name__)

ProgressFn = Callable[[str, int, int], None]


@dataclass
class RunResult:
    """Where the run went and how long it took (``nothing_to_do``: ``--resume`` found the run
    directory already complete and did nothing)."""

    out: Path
    combinations: int
    reused: int
    seconds: float
    nothing_to_do: bool = False


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

    Everything is validated (:func:`validate_run`) before the staging folder is created; a
    failure after that keeps the staging folder for ``resume`` and never leaves ``out``
    half-written.

    Args:
        config_text: the TOML source, copied to ``config.toml``.
        resume: reuse finished combinations of an interrupted run of the same configuration;
            when ``out`` is already a finished run of it, do nothing (``nothing_to_do``).
        force: replace an existing ``out``.
        progress: ``fn(stage, k, n)`` called as work advances (``k`` combinations of ``n``
            finished, over all workers).

    ``cfg.run`` says how combinations are executed (:mod:`advsec.experiments.executors`):
    one after another here (``serial``), or each as a task of a process pool or of Ray, and
    on which device (a one-line ConfigError, before anything is created, when it is not
    there).
    Returns where the run went, how many combinations it had and reused, and its seconds.
    """
    from advsec.experiments.executors import check_executor, combination_device, run_parallel

    t0 = time.perf_counter()
    out = Path(out).resolve()
    report = progress or (lambda s, k, n: None)
    combos = plan(cfg)
    check_executor(cfg.run)
    device = combination_device(cfg)
    if resume and not force and artifacts.finished_run(out, cfg):
        log.info("%s: already complete, nothing to do", out)
        return RunResult(out, len(combos), len(combos), 0.0, nothing_to_do=True)
    check_new_run_dir(out, force=force)
    with log_buffer() as checks:
        report("checking", 0, len(combos))
        digests = artifacts.data_digests(cfg)
        prepared = validate_run(cfg, out=out, resume=resume, digests=digests)
    with atomic_run_dir(out, force=force, persistent=True, resume=resume) as stage, \
            run_log(stage / "run.log", replay=checks):
        artifacts.discard_leftovers(stage)
        write_text(stage / "config.toml", config_text or "# configuration given programmatically\n")
        write_text(stage / "config.json", cfg.model_dump_json(indent=2))  # atomic: read on resume
        if digests:  # before any work: what --resume compares the data files with
            write_text(stage / artifacts.DATA_DIGEST, json.dumps(digests, indent=2))
        log.info("device: %s", device)
        if cfg.run.executor == "serial":
            reused = _run_combinations(cfg, combos, stage, report, prepared, device=device)
        else:  # the workers prepare their own data
            prepared.clear()
            reused = run_parallel(cfg, combos, stage, report, device=device)
        report("report", len(combos), len(combos))
        log.info("report: building")
        from advsec.reporting.run_report import build_run_report

        build_run_report(stage)
        track_run(cfg, stage)
    return RunResult(out, len(combos), reused, time.perf_counter() - t0)


def validate_run(cfg: ExperimentConfig, *, out: str | Path, resume: bool = False,
                 digests: dict[str, dict[str, str]] | None = None) -> dict[int, Prepared]:
    """Check everything a run of ``cfg`` into ``out`` needs, creating nothing; returns the
    prepared data by seed (kept for the run when it is small).

    Raises one-line :class:`~advsec.errors.AdvsecError` s: a tracker that is not installed,
    data that do not load (the loaders' errors, located at the ``[data] options`` key they
    name), a training split with fewer than two classes, the benign label missing from it, an
    empty test split, an attack that cannot be built for a threat model, and when resuming a
    staging folder of another configuration, of data files that changed since (``digests``:
    :func:`~advsec.experiments.artifacts.data_digests`, computed here when not given) or with
    saved models that do not fit the data.
    """
    from advsec.experiments.tracking import check_tracking

    check_tracking(cfg)
    stage = staging_dir(Path(out).resolve())
    resuming = resume and stage.is_dir()
    if resuming:
        artifacts.check_same_config(stage, cfg)
        artifacts.check_same_data(stage, artifacts.data_digests(cfg) if digests is None
                                  else digests)
    prepared: dict[int, Prepared] = {}
    size = 0
    for seed in cfg.experiment.seeds:
        log.info("checking the data of seed %d", seed)
        try:
            p = prepare(cfg, seed)
        except AdvsecError as exc:  # name the data when the loader's message does not
            raise _data_error(cfg, exc, seed) from None
        _check_attacks(cfg, p, seed)
        if resuming:
            _check_models(cfg, p, seed, stage)
        size += p.x_train.nbytes + p.x_test.nbytes
        if not prepared or size <= _KEEP_PREPARED_BYTES:
            prepared[seed] = p
    return prepared


def _data_error(cfg: ExperimentConfig, exc: AdvsecError, seed: int) -> AdvsecError:
    """``exc`` of the loader for ``seed``, naming the data when its message does not, located
    at the ``[data] options`` key it names (``FILE, line N: data.options.rows: ...``), and
    with ``advsec run``'s option for a data folder in place of the loader's ``--root``."""
    d, name = cfg.data, data_name(cfg)
    msg = str(exc).replace("pass --root PATH", "pass --data-root PATH, set [data] root")
    if not (msg.startswith(name) or any(str(v) in msg for v in (d.path, d.root) if v)):
        msg = f"[data] {name}, seed {seed}: {msg}"
    found = [(m.start(), key) for key in d.options
             if (m := re.search(rf"(?<![\w.]){re.escape(key)}(?!\w)", str(exc)))]
    at = cfg.where("data", "options", min(found)[1]) if found else ""
    return type(exc)(f"{at}: {msg}" if at else msg)


#: prepared data of later seeds are kept from the checks for the run up to this size
_KEEP_PREPARED_BYTES = 512 * 2**20


def _run_combinations(cfg: ExperimentConfig, combos: list[Combination], stage: Path,
                      report: ProgressFn, prepared: dict[int, Prepared] | None = None, *,
                      device: str = "cpu") -> int:
    """Run every combination not finished in ``stage`` yet on ``device``; returns how many
    were reused.

    ``prepared``: data already prepared by seed (a seed's entry is dropped after its last
    combination)."""
    reused = 0
    cache = prepared if prepared is not None else {}
    for k, combo in enumerate(combos):
        if (combo_dir(stage, combo.key) / "DONE").exists():
            reused += 1
            log.info("combination %d/%d %s: already complete, skipped", k + 1, len(combos),
                     combo.key)
            report(f"{combo.key} (reused)", k + 1, len(combos))
        else:
            report(combo.key, k, len(combos))
            log.info("combination %d/%d: %s", k + 1, len(combos), combo.key)
            run_one(cfg, combo, stage, cache, device=device)
            report(combo.key, k + 1, len(combos))
        if k + 1 == len(combos) or combos[k + 1].seed != combo.seed:
            cache.pop(combo.seed, None)
    return reused


def run_one(cfg: ExperimentConfig, combo: Combination, stage: Path,
            cache: dict[int, Prepared], *, device: str = "cpu") -> float:
    """Run ``combo`` on ``device`` (a resolved device: ``cpu``, ``cuda``, ``cuda:N``) and write
    it into ``combos/<key>/`` (and ``data/s<seed>.json``) of the staging folder ``stage``, the
    same in every executor; returns its seconds.

    ``cache``: prepared data by seed, filled with the seed's data when they are not there."""
    if combo.seed not in cache:
        cache[combo.seed] = prepare(cfg, combo.seed)
    write_data_facts(cfg, stage, combo.seed, cache[combo.seed])
    result = _run_combination(cfg, combo, cache[combo.seed], stage, device=device)
    write_combo(stage, combo.key, result)
    return result.seconds


def _check_attacks(cfg: ExperimentConfig, p: Prepared, seed: int) -> None:
    """Build every attack under every threat model once (nothing is run)."""
    classes = sorted(set(p.y_train))
    benign = classes.index(str(p.ds.benign_label))
    for threat in cfg.threat.constraints:
        for i, a in enumerate(cfg.attacks):
            try:
                make_attack(a.attack, eps=cfg.threat.eps, seed=seed,
                            feature_space=p.space if threat == "valid" else None,
                            evasion=cfg.threat.evasion(), benign_class=benign,
                            **a.options())
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"attacks[{i}] ({a.label}), {threat!r} threat: "
                                  f"{exc}") from None


def _model_paths(cfg: ExperimentConfig, seed: int) -> list[tuple[DetectorConfig, str]]:
    """The detector and file name (in ``models/``) of every model a run of ``seed`` saves."""
    out = []
    for d in (d for d in cfg.detectors if d.kind == "mlp"):
        out.append((d, f"{d.name}-s{seed}"))
        out.extend((d, f"{d.name}-{f.label}-s{seed}") for f in cfg.defenses)
    return out


def _check_models(cfg: ExperimentConfig, p: Prepared, seed: int, stage: Path) -> None:
    """The models an interrupted run saved must load and fit the data and the detector."""
    classes = sorted(set(p.y_train))
    for d, name in _model_paths(cfg, seed):
        artifacts.check_saved_model(stage / "models" / name, n_inputs=p.x_train.shape[1],
                                    classes=classes, hidden=d.hidden)


# ---------------------------------------------------------------------- one combination
def _train_mlp(d: DetectorConfig, seed: int, p: Prepared, stage: Path, device: str) -> Detector:
    """The MLP of detector ``d`` for ``seed`` on ``device``: loaded from ``stage/models`` or
    trained and saved."""
    path = stage / "models" / f"{d.name}-s{seed}"
    if path.with_suffix(".json").exists():
        return Detector.load(path, device=device)
    log.info("training %s, seed %d", d.name, seed)
    det = Detector(hidden=d.hidden, dropout=d.dropout, epochs=d.epochs, batch_size=d.batch_size,
                   lr=d.lr, weight_decay=d.weight_decay, validation_split=d.validation_split,
                   patience=d.patience, seed=seed, device=device)
    det.fit(p.x_train, p.y_train)
    return _save(det, path, p, device)


def _save(det: Detector, path: Path, p: Prepared, device: str) -> Detector:
    """Save ``det`` into ``path`` (its weights moved to the CPU: the same files whichever
    device) and load it back onto ``device``."""
    saved = artifacts.save_model(det, path, p.space, data=p.data)  # loaded on the CPU
    return saved if device == "cpu" else Detector.load(path, device=device)


def _run_combination(
    cfg: ExperimentConfig, combo: Combination, p: Prepared, stage: Path, *, device: str = "cpu"
) -> CombinationResult:
    """Train or load, harden, attack and score one combination on ``device``; everything it
    measured (and its red flags: model, clean-detector and training-data checks).

    The data stay on the CPU: the detectors, attacks and verifiers move each batch to the
    network's device and return their results on the CPU."""
    t0 = time.perf_counter()
    base = _train_mlp(combo.detector, combo.seed, p, stage, device)
    det = base
    if combo.defense is not None:
        path = stage / "models" / f"{combo.detector.name}-{combo.defense.label}-s{combo.seed}"
        if path.with_suffix(".json").exists():
            det = Detector.load(path, device=device)
        else:
            log.info("%s: hardening with %s", combo.key, combo.defense.label)
            det = harden(base, combo.defense, p.x_train, p.y_train, space=p.space,
                         seed=combo.seed)
            det = _save(det, path, p, device)
    classes = [str(c) for c in det.classes_]
    if p.ds.benign_label not in classes:
        raise ConfigError(f"benign label {p.ds.benign_label!r} is not among the classes {classes}")
    benign = classes.index(p.ds.benign_label)
    x_eval = torch.from_numpy(p.x_test[p.eval_idx])
    y_eval = det.encode_labels(p.y_test[p.eval_idx])
    res = CombinationResult(key=combo.key, classes=classes, benign=benign,
                            mode=cfg.threat.resolved_mode(has_benign=True))
    meta = {"seed": combo.seed, "detector": combo.detector.name,
            "defense": combo.defense.label if combo.defense else "none"}
    # clean metrics on the whole test set
    proba = det.predict_proba(p.x_test)
    y_all = det.encode_labels(p.y_test).numpy()
    res.clean.append({**meta, "n": len(y_all), **detection_metrics(
        y_all, proba.argmax(1), proba=proba, benign_class=benign)})
    from advsec.evaluation.checks import check_model

    probe = slice(0, min(256, len(x_eval)))
    for scope, flags in (("model", check_model(det.as_module(), x_eval[probe], y_eval[probe])),
                         ("data", p.flags), ("clean", check_clean(
                             y_all, proba.argmax(1), proba=proba, benign_class=benign,
                             classes=classes))):
        res.checks += [{**meta, "scope": scope, "check": f.name, "ok": f.ok, "detail": f.detail}
                       for f in flags]
    fe = cfg.threat.chosen_eps()
    y_np = y_eval.numpy()
    for threat in cfg.threat.constraints:
        worst = WorstCase(y_np, benign)
        for a in cfg.attacks:
            log.info("%s: attack %s, %s threat", combo.key, a.label, threat)
            attack = make_attack(
                a.attack, eps=cfg.threat.eps, seed=combo.seed,
                feature_space=p.space if threat == "valid" else None,
                evasion=cfg.threat.evasion(), benign_class=benign, **a.options())
            sweep = evaluate_attack(det, attack, x_eval, y_eval, eps=cfg.threat.eps,
                                    name=a.label, space=p.space, benign_class=benign)
            table = add_evasion_columns(sweep.table, y_np, sweep.pred_clean, sweep.pred_adv,
                                        benign).assign(**meta, threat=threat,
                                                       evaluation="adaptive")
            res.sweep.append(table)
            for e, pred in sweep.pred_adv.items():
                worst.add(e, sweep.pred_clean, pred)
            res.add_figure_eps(meta, threat, a.label, fe, y_np, sweep, p.space, x_eval,
                               p.eval_idx)
            if combo.defense is not None:
                res.sweep.append(transfer_from(base, det, attack, x_eval, y_eval, cfg, a.label,
                                               p.space, benign, meta, threat))
        verify_threat(cfg, threat, det, p.space, x_eval, y_np, benign, worst, meta, res)
        res.worst.append(pd.DataFrame(
            [{**meta, "threat": threat, **row, "attacks": len(cfg.attacks)}
             for row in worst.rows()]))
    if combo.defense is None:
        transfer_baselines(cfg, combo, p, det, x_eval, y_eval, benign, meta, res)
    res.seconds = time.perf_counter() - t0
    return res
