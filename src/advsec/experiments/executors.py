"""Executors of ``advsec run``: combinations as tasks of a process pool or a Ray cluster.

``serial`` (the default) runs the combinations one after another in the run's process
(:mod:`advsec.experiments.runner`). ``processes`` and ``ray`` run each unfinished combination
as one task, :func:`run_task`: a top-level function given the configuration as a dict, the
combination's key and the staging folder, which prepares the seed's data itself and writes the
combination into ``combos/<key>/`` exactly as the serial run does (:func:`runner.run_one
<advsec.experiments.runner.run_one>`); nothing but the seconds comes back, the results are
read from the staging folder. So ``--resume`` continues a run whichever executor ran its first
part, and the numbers do not depend on the executor, the worker or the order (each
combination's draws are seeded by its seed alone: :mod:`advsec.experiments.units`).

- ``processes``: a :class:`concurrent.futures.ProcessPoolExecutor` with the ``spawn`` start
  method (torch is not fork-safe), ``workers`` processes (default: the usable cores,
  :func:`advsec.runtime.usable_cores`), each on ``cores // workers`` threads (at least 1);
- ``ray``: tasks of a Ray cluster (``address``) or of a local instance started on the usable
  cores (and shut down after; an instance this process already started is used as it is),
  ``workers`` at a time (default: the cluster's CPUs), each requesting ``CPUs // workers``
  CPUs and running on that many threads, and ``1 / workers`` of a GPU when the combinations
  run on CUDA. The run directory must be on a file system every node sees.

The device (``[run] device`` / ``--device``) is resolved once, in the run's process
(:func:`combination_device`), and travels to every task in its configuration (``config["run"]
["device"]``): ``auto`` means what it found there, and a task on a node without that device
fails with a one-line error.

A combination that hardens a detector waits until the undefended one of its seed has saved the
model it starts from. The first task that fails stops the run with its error: tasks not started
are dropped, those in flight are stopped (their half-written output is discarded on resume),
the finished ones stay in the staging folder for ``--resume``.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import multiprocessing
import signal
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

from advsec.errors import ConfigError
from advsec.experiments.artifacts import combo_dir
from advsec.experiments.config import ExperimentConfig
from advsec.experiments.ray_backend import RayBackend, ray_resources
from advsec.experiments.run_config import RunConfig
from advsec.experiments.units import Combination, Prepared, plan
from advsec.runio import run_log
from advsec.runtime import ThreadPolicy, apply_thread_policy, usable_cores

__all__ = ["RAY_MISSING", "check_executor", "combination_device", "ray_resources",
           "run_parallel", "run_task", "worker_threads"]

log = logging.getLogger(__name__)

#: the error when Ray is asked for and not installed
RAY_MISSING = ("--executor ray needs Ray, an optional extra of advsec: pip install "
               "'advsec[ray]'")
#: seconds between looks at finished tasks and at models a waiting combination needs
_POLL = 0.5

# a worker's prepared data: the configuration (JSON) they belong to, and the data by seed
_cache: dict[str, Any] = {"config": None, "data": {}}


def check_executor(run: RunConfig) -> None:
    """Raise a one-line ConfigError when ``run``'s executor cannot be used here (Ray not
    installed), before anything is created."""
    if run.executor == "ray":
        _import_ray()


def _import_ray() -> ModuleType:
    try:
        import ray
    except ImportError:
        raise ConfigError(RAY_MISSING) from None
    return ray


def worker_threads(*, workers: int, cores: int) -> int:
    """The threads of each of ``workers`` tasks sharing ``cores``: ``cores // workers``, at
    least 1 (so that workers × threads never exceeds the cores unless workers do)."""
    return max(1, cores // max(1, workers))


def combination_device(cfg: ExperimentConfig) -> str:
    """The device the combinations of ``cfg`` train, harden, attack and verify on:
    ``cfg.run.device`` resolved (``auto``: CUDA when present); a CUDA device here makes Ray
    tasks request GPU shares. A one-line ConfigError when it is not there."""
    return cfg.run.resolved_device()


def run_task(config: dict[str, Any], key: str, stage: str, *, threads: int | None = None) -> float:
    """Run the combination ``key`` of the configuration ``config`` (an ``ExperimentConfig``
    as a JSON-able dict) into the staging folder ``stage``; returns its seconds.

    ``threads``: torch and BLAS threads of this worker (``None``: the CPUs Ray granted the
    task). Its log records go into ``stage/run.log``. The seed's prepared data are kept for
    the worker's next task of the same seed. The device is ``config["run"]["device"]``
    (:func:`combination_device` of the run's process; the CPU when absent)."""
    from advsec.experiments.runner import run_one

    n = threads if threads is not None else _granted_cpus()
    apply_thread_policy(ThreadPolicy(n, "executor worker"))
    cfg = ExperimentConfig.model_validate(config, context={"dumped": True})
    combos = {c.key: c for c in plan(cfg)}
    if key not in combos:
        raise ValueError(f"no combination {key!r} in this configuration")
    text = cfg.model_dump_json()
    if _cache["config"] != text:
        _cache.update(config=text, data={})
    data: dict[int, Prepared] = _cache["data"]
    combo = combos[key]
    for seed in [s for s in data if s != combo.seed]:
        del data[seed]
    root = Path(stage)
    with run_log(root / "run.log"):
        device = cfg.run.resolved_device()
        log.info("%s: started in a worker (%d thread(s))", key, n)
        if device != "cpu":
            log.info("%s: on %s", key, device)
        return run_one(cfg, combo, root, data, device=device)


def _granted_cpus() -> int:
    """The CPUs Ray granted the running task (1 outside a task)."""
    try:
        import ray

        granted = ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0)
    except Exception:  # not in a Ray task: one thread
        granted = 1.0
    return max(1, int(granted))


class _Backend(Protocol):
    """Where tasks run: submit one, wait for some, read a result, close."""

    workers: int

    def submit(self, key: str) -> Any: ...

    def wait(self, handles: list[Any], timeout: float) -> list[Any]: ...

    def result(self, handle: Any, key: str) -> float: ...

    def close(self, *, abort: bool) -> None: ...


def run_parallel(cfg: ExperimentConfig, combos: list[Combination], stage: Path,
                 report: Callable[[str, int, int], None], *, device: str | None = None) -> int:
    """Run the combinations of ``combos`` not finished in ``stage`` yet as tasks of
    ``cfg.run``'s executor on ``device`` (default: :func:`combination_device`),
    ``report(what, finished, total)`` as each one finishes; returns how many were reused.
    Raises the error of the first task that failed."""
    todo = [c for c in combos if not (combo_dir(stage, c.key) / "DONE").exists()]
    reused = len(combos) - len(todo)
    for c in combos:
        if c not in todo:
            log.info("%s: already complete, skipped", c.key)
    report(f"{reused} reused" if reused else "starting", reused, len(combos))
    if not todo:
        return reused
    backend = _start(cfg, stage, n_tasks=len(todo),
                     device=combination_device(cfg) if device is None else device)
    try:
        _schedule(todo, stage, backend, report, done=reused, total=len(combos))
    except BaseException:
        backend.close(abort=True)
        raise
    backend.close(abort=False)
    return reused


def _start(cfg: ExperimentConfig, stage: Path, *, n_tasks: int, device: str) -> _Backend:
    """The backend of ``cfg.run.executor`` for ``n_tasks`` tasks on ``device``."""
    config = cfg.model_dump(mode="json")
    config["run"] = {"device": device}  # [run] is not dumped; the tasks need only the device
    if cfg.run.executor == "ray":
        return RayBackend(_import_ray(), run_task, config, stage, cfg.run, n_tasks=n_tasks,
                          device=device)
    cores = usable_cores()
    workers = min(cfg.run.workers or cores, n_tasks)
    threads = worker_threads(workers=workers, cores=cores)
    if workers > cores:
        log.warning("%d worker processes on %d usable cores: they will wait for each other",
                    workers, cores)
    log.info("executor: processes, %d worker(s) x %d thread(s) (%d usable cores)", workers,
             threads, cores)
    return _Pool(config, stage, workers=workers, threads=threads)


class _Pool:
    """Tasks in ``spawn``-started worker processes."""

    def __init__(self, config: dict[str, Any], stage: Path, *, workers: int,
                 threads: int) -> None:
        self.workers, self.threads = workers, threads
        self.config, self.stage = config, str(stage)
        self.pool = cf.ProcessPoolExecutor(max_workers=workers,
                                           mp_context=multiprocessing.get_context("spawn"),
                                           initializer=_ignore_interrupts)

    def submit(self, key: str) -> cf.Future[float]:
        return self.pool.submit(run_task, self.config, key, self.stage, threads=self.threads)

    def wait(self, handles: list[Any], timeout: float) -> list[Any]:
        done, _ = cf.wait(handles, timeout=timeout, return_when=cf.FIRST_COMPLETED)
        return list(done)

    def result(self, handle: Any, key: str) -> float:
        try:
            return float(handle.result())
        except cf.process.BrokenProcessPool as exc:
            raise RuntimeError(f"combination {key}: a worker process died ({exc}); the "
                               "finished combinations are kept for --resume") from None

    def close(self, *, abort: bool) -> None:
        if not abort:
            self.pool.shutdown(wait=True)
            return
        # stop the tasks in flight too: the pool has no public way, its processes are known
        workers = list(dict(getattr(self.pool, "_processes", None) or {}).values())
        self.pool.shutdown(wait=False, cancel_futures=True)
        for w in workers:
            if w.is_alive():
                w.terminate()
        for w in workers:
            w.join(timeout=10)


def _ignore_interrupts() -> None:
    """In a worker process: leave Ctrl-C to the run's process (it stops the workers)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _schedule(todo: list[Combination], stage: Path, backend: _Backend,
              report: Callable[[str, int, int], None], *, done: int, total: int) -> None:
    """Keep ``backend.workers`` tasks running until every combination of ``todo`` finished.

    A defended combination starts once its undefended MLP is saved (or once no unfinished
    combination will save it: it then trains it itself, as the serial run would)."""
    waiting = list(todo)
    running: dict[Any, Combination] = {}
    while waiting or running:
        undefended = {c.base_model for c in [*waiting, *running.values()] if c.defense is None}
        ready = [c for c in waiting if c.defense is None or c.base_model not in undefended
                 or (stage / "models" / f"{c.base_model}.json").exists()]
        for c in ready[:max(0, backend.workers - len(running))]:
            waiting.remove(c)
            running[backend.submit(c.key)] = c
            log.info("combination %s: submitted (%d running)", c.key, len(running))
            report(f"{len(running)} running", done, total)
        for handle in backend.wait(list(running), _POLL):
            c = running.pop(handle)
            seconds = backend.result(handle, c.key)
            done += 1
            log.info("combination %d/%d: %s finished in %.1f s", done, total, c.key, seconds)
            report(f"{c.key} done, {len(running)} running", done, total)
