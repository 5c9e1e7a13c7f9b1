"""The Ray backend of ``advsec run --executor ray`` (:mod:`advsec.experiments.executors`).

Ray is an optional extra (``pip install 'advsec[ray]'``); nothing here imports it: the caller
passes the module in. With ``address`` the run joins that cluster (every node needs advsec
installed and must see the run directory's folder); without it, a local instance is started on
the usable cores (no dashboard) and shut down when the run ends. When this process has already
initialised Ray (``ray.init(...)`` by the caller), that instance is used and left running.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from advsec.experiments.run_config import RunConfig
from advsec.runtime import usable_cores

__all__ = ["RayBackend", "ray_resources"]

log = logging.getLogger(__name__)

#: seconds an interrupted run waits for its cancelled Ray tasks to end
_CANCEL_WAIT_S = 30.0


def ray_resources(*, cpus: float, workers: int, device: str) -> dict[str, float]:
    """The resources one Ray task requests: ``num_cpus`` (the cluster's ``cpus`` shared by
    ``workers`` tasks, a whole number, at least 1) and, on a CUDA ``device``, ``num_gpus``
    ``1 / workers``; returns them as keywords of a remote function's ``options``."""
    out = {"num_cpus": float(max(1, math.floor(cpus / max(1, workers))))}
    if device.startswith("cuda"):
        out["num_gpus"] = 1.0 / max(1, workers)
    return out


class RayBackend:
    """Combinations as Ray tasks, at most ``workers`` at a time."""

    def __init__(self, ray: ModuleType, task: Callable[..., float], config: dict[str, Any],
                 stage: Path, run: RunConfig, *, n_tasks: int, device: str) -> None:
        self.ray = ray
        self.started = not ray.is_initialized()
        if not self.started:
            if run.address:
                log.warning("Ray is already initialised in this process: address %s is not "
                            "used", run.address)
        elif run.address:
            ray.init(address=run.address, log_to_driver=False, logging_level=logging.WARNING)
        else:
            ray.init(num_cpus=usable_cores(), include_dashboard=False, log_to_driver=False,
                     logging_level=logging.WARNING)
        cpus = float(ray.cluster_resources().get("CPU", 1.0))
        self.workers = max(1, min(run.workers or int(cpus), n_tasks))
        resources = ray_resources(cpus=cpus, workers=self.workers, device=device)
        log.info("executor: ray (%s), %d task(s) at a time, each %s (cluster CPUs: %g)",
                 run.address or "local", self.workers,
                 ", ".join(f"{k} {v:g}" for k, v in resources.items()), cpus)
        self.remote = ray.remote(task).options(**resources)
        self.config = ray.put(config)
        self.stage = str(stage)
        self.in_flight: set[Any] = set()

    def submit(self, key: str) -> Any:
        """Start the task of combination ``key``; returns its object reference."""
        ref = self.remote.remote(self.config, key, self.stage, threads=None)
        self.in_flight.add(ref)
        return ref

    def wait(self, handles: list[Any], timeout: float) -> list[Any]:
        """The references among ``handles`` that finished within ``timeout`` seconds."""
        if not handles:
            return []
        ready, _ = self.ray.wait(handles, num_returns=1, timeout=timeout)
        return list(ready)

    def result(self, handle: Any, key: str) -> float:
        """The seconds of the finished task ``handle``; raises the task's own error (a
        RuntimeError naming combination ``key`` when Ray lost the task)."""
        self.in_flight.discard(handle)
        errors = self.ray.exceptions
        try:
            return float(self.ray.get(handle))
        except errors.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, BaseException):
                raise cause from None
            raise RuntimeError(f"combination {key}: {' '.join(str(exc).split())}") from None
        except errors.RayError as exc:
            raise RuntimeError(f"combination {key}: the Ray task failed ({type(exc).__name__}: "
                               f"{' '.join(str(exc).split())})") from None

    def close(self, *, abort: bool) -> None:
        """Stop the tasks in flight when ``abort``; shut down a Ray instance started here."""
        if abort:
            refs = list(self.in_flight)
            for ref in refs:
                try:
                    self.ray.cancel(ref, force=True)
                except Exception as exc:  # best effort: it may have finished
                    log.debug("cancel: %s", exc)
            # wait until every cancelled task has ended (killed, or finished just before):
            # once this returns no task writes into the staging folder any more
            try:
                self.ray.wait(refs, num_returns=len(refs), timeout=_CANCEL_WAIT_S)
            except Exception as exc:  # best effort, as the cancel
                log.debug("wait after cancel: %s", exc)
        self.in_flight.clear()
        if self.started:
            self.ray.shutdown()
