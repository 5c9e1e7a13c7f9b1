"""Good citizenship on a shared CPU: the thread policy of the ``advsec`` command.

OpenMP threads that spin while they wait (libgomp's default: about 300,000 spins, a few ms,
after every parallel region) fight each other and every other job once the machine is busy:
``advsec demo`` took 3.5 s idle and 63.8 s beside other work by default. The policy:

- passive waiting: ``OMP_WAIT_POLICY=PASSIVE`` unless the user set it. libgomp (the OpenMP
  runtime of torch's CPU build and of scikit-learn here, see ``torch.__config__.parallel_info()``)
  reads it, and ``GOMP_SPINCOUNT``, once, when the library is loaded, i.e. at ``import torch``,
  not when its thread pool first runs: setting it later has no effect on that process (measured:
  ``OMP_DISPLAY_ENV=verbose`` shows ``GOMP_SPINCOUNT = '300000'`` when it is set after
  ``import torch``, ``'0'`` when before). ``import advsec`` imports torch, so the ``advsec``
  command sets it in :func:`prepare_cli_environment`, called first thing by
  ``advsec/__init__.py``; later on it only reaches libraries loaded afterwards and child
  processes;
- a thread count from the cores the process may really use (:func:`usable_cores`: affinity
  and the cgroup v2/v1 CPU quota), for torch (intra-op and, while still allowed, inter-op) and
  through threadpoolctl for the BLAS and OpenMP pools of numpy, scipy and scikit-learn. The
  limit stays in force for the life of the process; a scoped ``threadpool_limits`` inside it
  (``advsec run`` scores baselines on one BLAS thread) restores it on exit.

Overrides, strongest first: ``advsec --threads N``, the ``ADVSEC_THREADS`` environment variable,
a positive ``OMP_NUM_THREADS`` (a thread choice already made), then the usable cores. ``0``
(``--threads 0`` or ``ADVSEC_THREADS=0``) is the opt-out: torch's and the libraries' defaults
and no passive waiting, as before this policy. Results on the CPU depend on the thread count
only: the same count gives bit-identical numbers with or without the policy.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import math
import os
import sys
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from advsec.errors import ConfigError

__all__ = [
    "ENV_THREADS",
    "ThreadPolicy",
    "apply_thread_policy",
    "cgroup_v1_cpus",
    "cgroup_v2_cpus",
    "core_limits",
    "prepare_cli_environment",
    "thread_policy",
    "usable_cores",
]

#: the environment variable that sets the thread count without ``--threads``
ENV_THREADS = "ADVSEC_THREADS"
#: where the cgroup file systems are mounted
CGROUP_ROOT = Path("/sys/fs/cgroup")
_WAIT = "OMP_WAIT_POLICY"

log = logging.getLogger(__name__)

# what this process did about the wait policy, and the policy and thread limits in force
_state: dict[str, Any] = {"wait": None, "applied": None, "limits": None}


@dataclass(frozen=True)
class ThreadPolicy:
    """How many threads to use and why. ``threads == 0``: leave the defaults alone (legacy)."""

    threads: int
    source: str

    @property
    def legacy(self) -> bool:
        """Whether this is the opt-out: torch's defaults, no passive waiting."""
        return self.threads == 0


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii").strip()
    except (OSError, ValueError):
        return None


def _ratio(quota_text: str | None, period_text: str | None) -> float | None:
    try:
        quota, period = int(quota_text or ""), int(period_text or "")
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def cgroup_v2_cpus(cpu_max: Path = CGROUP_ROOT / "cpu.max") -> float | None:
    """The CPUs allowed by a cgroup v2 ``cpu.max`` (``"<quota> <period>"``, quota ``max`` =
    no limit); ``None`` when the file is absent, unlimited or malformed."""
    parts = (_read(cpu_max) or "").split()
    if len(parts) != 2 or parts[0] == "max":
        return None
    return _ratio(parts[0], parts[1])


def cgroup_v1_cpus(quota: Path = CGROUP_ROOT / "cpu" / "cpu.cfs_quota_us",
                   period: Path = CGROUP_ROOT / "cpu" / "cpu.cfs_period_us") -> float | None:
    """The CPUs allowed by cgroup v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` (quota ``-1``
    = no limit); ``None`` when absent, unlimited or malformed."""
    return _ratio(_read(quota), _read(period))


def _own_cgroup_v2(proc_cgroup: Path) -> str | None:
    """This process's cgroup v2 path (the ``0::/path`` line of ``/proc/self/cgroup``)."""
    for line in (_read(proc_cgroup) or "").splitlines():
        if line.startswith("0::/"):
            return line[4:].strip("/") or None
    return None


def _affinity() -> int | None:
    getaffinity = getattr(os, "sched_getaffinity", None)
    if getaffinity is not None:
        try:
            return len(getaffinity(0)) or None
        except OSError:
            pass
    return os.cpu_count()


def core_limits(*, cgroup_root: Path = CGROUP_ROOT,
                proc_cgroup: Path = Path("/proc/self/cgroup"),
                affinity: Callable[[], int | None] = _affinity) -> dict[str, float | None]:
    """Each source's CPU limit (``None``: no limit or unreadable): ``affinity``, ``cgroup_v2``
    (the mount root's ``cpu.max`` and this process's own cgroup's, the smaller) and
    ``cgroup_v1`` (``cpu`` or ``cpu,cpuacct``)."""
    v2 = [cgroup_v2_cpus(cgroup_root / "cpu.max")]
    own = _own_cgroup_v2(proc_cgroup)
    if own:
        v2.append(cgroup_v2_cpus(cgroup_root / own / "cpu.max"))
    v1 = [cgroup_v1_cpus(cgroup_root / d / "cpu.cfs_quota_us",
                         cgroup_root / d / "cpu.cfs_period_us") for d in ("cpu", "cpu,cpuacct")]
    try:
        cpus = affinity()
    except OSError:
        cpus = None
    return {"affinity": float(cpus) if cpus else None,
            "cgroup_v2": min((c for c in v2 if c), default=None),
            "cgroup_v1": min((c for c in v1 if c), default=None)}


def usable_cores(*, cgroup_root: Path = CGROUP_ROOT,
                 proc_cgroup: Path = Path("/proc/self/cgroup"),
                 affinity: Callable[[], int | None] = _affinity) -> int:
    """The cores this process may really use: the smallest of the CPU affinity and the cgroup
    v2/v1 quotas (:func:`core_limits`), rounded down, at least 1."""
    limits = core_limits(cgroup_root=cgroup_root, proc_cgroup=proc_cgroup, affinity=affinity)
    known = [v for v in limits.values() if v]
    return max(1, math.floor(min(known) + 1e-9)) if known else 1


def _parse_threads(text: str) -> int:
    value = text.strip()
    if not value.isdigit():
        raise ConfigError(f"{ENV_THREADS}={text!r}: expected a positive integer (a thread "
                          "count) or 0 (torch's default threads, no passive OpenMP waiting)")
    return int(value)


def thread_policy(threads: int | None = None, *,
                  environ: Mapping[str, str] | None = None) -> ThreadPolicy:
    """The thread count: ``threads`` (``--threads``), else ``ADVSEC_THREADS``, else a positive
    ``OMP_NUM_THREADS`` the user set (anything else in it is left to OpenMP), else
    :func:`usable_cores`; ``0`` is the legacy opt-out. Raises :class:`ConfigError` (one line
    naming the option or variable) on a negative count or a malformed ``ADVSEC_THREADS``."""
    env = os.environ if environ is None else environ
    if threads is not None:
        if threads < 0:
            raise ConfigError(f"--threads {threads}: expected a positive integer or 0")
        return ThreadPolicy(threads, "--threads")
    text = env.get(ENV_THREADS)
    if text is not None and text.strip():
        return ThreadPolicy(_parse_threads(text), ENV_THREADS)
    omp = env.get("OMP_NUM_THREADS", "").split(",")[0].strip()  # "4,2": the outer level
    if omp.isdigit() and int(omp) > 0:
        return ThreadPolicy(int(omp), "OMP_NUM_THREADS")
    return ThreadPolicy(usable_cores(), "usable cores")


def _root_threads_option(argv: Sequence[str]) -> str | None:
    """The value of ``--threads`` among the root options (before the subcommand)."""
    args = iter(argv)
    for arg in args:
        if arg == "--threads":
            return next(args, None)
        if arg.startswith("--threads="):
            return arg.split("=", 1)[1]
        if not arg.startswith("-"):
            return None
    return None


def prepare_cli_environment(argv: Sequence[str] | None = None, *,
                            environ: MutableMapping[str, str] | None = None,
                            force: bool = False) -> None:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` before torch loads, in the ``advsec`` command only.

    Runs from ``advsec/__init__.py``; does nothing unless the program is ``advsec`` (or
    ``force``), the user set the variable, or the policy is the opt-out (``--threads 0``
    before the subcommand, or ``ADVSEC_THREADS=0``). Never raises: a malformed
    ``ADVSEC_THREADS`` is reported by the command's own :func:`thread_policy` call.
    """
    env = os.environ if environ is None else environ
    args = list(getattr(sys, "argv", []) if argv is None else argv)
    if not force and (not args or Path(args[0]).name not in ("advsec", "advsec.exe")):
        return
    if _WAIT in env:
        _state["wait"] = "user"
        return
    legacy = _root_threads_option(args[1:]) in ("0", "00")
    legacy |= env.get(ENV_THREADS, "").strip() == "0"
    if not legacy:
        env[_WAIT] = "PASSIVE"
        _state["wait"] = "early"


def _load_pools() -> None:
    """Load the libraries whose thread pools threadpoolctl should limit (it sees loaded ones)."""
    for name in ("numpy", "scipy.linalg", "sklearn.ensemble"):
        with contextlib.suppress(ImportError):  # all are dependencies
            importlib.import_module(name)


def _wait_note() -> str:
    if _state["wait"] == "user" or (_state["wait"] is None and _WAIT in os.environ):
        return f"{_WAIT}={os.environ.get(_WAIT)} (set by the user)"
    if _state["wait"] == "early":
        return f"{_WAIT}=PASSIVE (set before torch loaded)"
    late = "torch" in sys.modules
    os.environ[_WAIT] = "PASSIVE"
    _state["wait"] = "late"
    return (f"{_WAIT}=PASSIVE (set after torch loaded: only libraries loaded from now on and "
            "child processes wait passively)" if late else f"{_WAIT}=PASSIVE")


def apply_thread_policy(policy: ThreadPolicy) -> None:
    """Put ``policy`` in force for this process (module docstring) and log it at INFO.

    Sets passive OpenMP waiting when the user has not chosen (see :func:`_wait_note`),
    ``torch.set_num_threads`` and, while torch still allows it, ``set_num_interop_threads``,
    and a process-wide threadpoolctl limit on every BLAS/OpenMP pool. Applying the policy
    already in force again does nothing, so an in-process ``main()`` keeps thread settings the
    caller made since. The opt-out (``threads == 0``) lifts an earlier limit and changes
    nothing else.
    """
    if _state["applied"] == policy:
        return
    _state["applied"] = policy
    if _state["limits"] is not None:
        _state["limits"].restore_original_limits()
        _state["limits"] = None
    if policy.legacy:
        log.info("threads: torch's and the libraries' defaults (%s 0), %s=%s", policy.source,
                 _WAIT, os.environ.get(_WAIT, "unset"))
        return
    import torch
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    n = policy.threads
    wait = _wait_note()
    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(n)
    except RuntimeError:  # inter-op work started, or set before: torch refuses a change
        log.debug("torch inter-op threads stay %d", torch.get_num_interop_threads())
    _load_pools()
    _state["limits"] = threadpool_limits(limits=n)
    limits = {k: v for k, v in core_limits().items() if v}
    log.info("threads: %d from %s (core limits: %s), %s", n, policy.source,
             ", ".join(f"{k} {v:g}" for k, v in limits.items()) or "none readable", wait)
