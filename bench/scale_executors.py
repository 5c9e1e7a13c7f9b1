"""Serial against worker processes: ``advsec run`` of the NSL-KDD example with 4 seeds.

Issue 17's executor measurement. ``examples/nsl-kdd.toml`` (an MLP 128-64 with 15 epochs and a
hist-gradient-boosting baseline; FGSM, PGD-20 and APGD-20 at 6 eps under the box and the
valid-record threat) with ``seeds = [0, 1, 2, 3]`` (4 combinations) on ``../shared/datasets``,
run twice as the ``advsec`` command in a subprocess:

- ``serial``: the default executor, one combination after another on all usable cores;
- ``processes``: ``--executor processes --workers 2`` (2 spawned worker processes, each on
  ``cores // 2`` threads).

By default the example is reduced so that both runs take a few minutes on 2 cores:
``max_train_rows = 20000`` (of 125,973) and ``max_eval_rows = 1000`` (of 2,000), the rest as
shipped (``note`` in the JSON says what was changed); ``--full`` runs the example as shipped
(4 seeds), ``--quick`` also cuts the MLP to 3 epochs and the evaluation to 300 rows.

Reported: the wall seconds of each run, ``cpu_s`` (user + system seconds of the command and its
workers) and ``cores_used`` = cpu_s / wall_s, ``speedup`` = serial / processes and ``ratio`` =
processes / serial, the 1-minute load average before each run, and ``sweep_matches``: whether
both runs' ``sweep.csv`` and ``worst_case.csv`` are equal (``seconds`` aside). On a machine
shared with other jobs every number moves; the load average says how busy it was.

Usage::

    .venv/bin/python bench/scale_executors.py            # about 4 minutes on 2 idle cores
    .venv/bin/python bench/scale_executors.py --quick    # a smoke run
    .venv/bin/python bench/scale_executors.py --full     # the example as shipped, 4 seeds

JSON to stdout and to ``bench/results/scale_executors.json`` (``--out``); progress on stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "datasets"
ADVSEC = Path(sys.executable).parent / "advsec"
SEEDS = "seeds = [0, 1, 2, 3]"

log = logging.getLogger("bench.scale_executors")


def study(folder: Path, *, full: bool, quick: bool) -> tuple[Path, str]:
    """The example with 4 seeds (and the reductions): its path and a note on what changed."""
    text = (ROOT / "examples" / "nsl-kdd.toml").read_text()
    edits = [("seeds = [0, 1]", SEEDS)]
    note = ["seeds [0, 1, 2, 3] (was [0, 1])"]
    if not full:
        rows = 300 if quick else 1000
        edits.append(("max_eval_rows = 2000", f"max_eval_rows = {rows}\nmax_train_rows = 20000"))
        note.append(f"max_train_rows 20000 (was all 125,973), max_eval_rows {rows} (was 2000)")
    if quick:
        edits.append(("epochs = 15", "epochs = 3"))
        note.append("MLP epochs 3 (was 15)")
    for old, new in edits:
        if old not in text:
            raise RuntimeError(f"examples/nsl-kdd.toml changed: {old!r} not found")
        text = text.replace(old, new)
    path = folder / "nsl-kdd-4-seeds.toml"
    path.write_text(text)
    return path, "examples/nsl-kdd.toml with " + "; ".join(note) + "; the rest as shipped"


def timed(cmd: list[str]) -> dict[str, Any]:
    """Run ``cmd``; its wall seconds, CPU seconds (with its children) and the load before."""
    load = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"seconds": round(wall, 2), "cpu_s": round(cpu, 2),
            "cores_used": round(cpu / wall, 2), "load_1min_before": round(load, 2)}


def same_tables(a: Path, b: Path) -> bool:
    """Whether runs ``a`` and ``b`` have equal ``sweep.csv`` and ``worst_case.csv``
    (``seconds`` aside)."""
    for name in ("sweep.csv", "worst_case.csv"):
        x, y = (pd.read_csv(r / name) for r in (a, b))
        x, y = (d.drop(columns=[c for c in ("seconds",) if c in d]) for d in (x, y))
        try:
            pd.testing.assert_frame_equal(x, y, check_exact=True)
        except AssertionError as exc:
            log.warning("%s differs: %s", name, " ".join(str(exc).split())[:300])
            return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="the example as shipped, 4 seeds")
    parser.add_argument("--quick", action="store_true",
                        help="also 3 epochs and 300 evaluation rows: a smoke run")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--data-root", type=Path, default=DATA)
    parser.add_argument("--out", type=Path,
                        default=ROOT / "bench" / "results" / "scale_executors.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)
    from advsec.runtime import core_limits, usable_cores

    if not (args.data_root / "nsl-kdd").is_dir():
        raise SystemExit(f"{args.data_root / 'nsl-kdd'} not found (--data-root)")
    runs: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="advsec-scale-") as tmp:
        cfg, note = study(Path(tmp), full=args.full, quick=args.quick)
        base = [str(ADVSEC), "run", str(cfg), "--data-root", str(args.data_root)]
        cases = {"serial": [], "processes": ["--executor", "processes",
                                             "--workers", str(args.workers)]}
        for name, extra in cases.items():
            log.info("%s: running", name)
            runs[name] = {"command": " ".join(["advsec run CONFIG", *extra]),
                          **timed([*base, "--out", str(Path(tmp) / name), *extra])}
            log.info("%s: %s", name, runs[name])
        matches = same_tables(Path(tmp) / "serial", Path(tmp) / "processes")
    serial, procs = runs["serial"]["seconds"], runs["processes"]["seconds"]
    report = {
        "machine": {"cpus": os.cpu_count(), "usable_cores": usable_cores(),
                    "core_limits": core_limits(),
                    "load_average_after": [round(x, 2) for x in os.getloadavg()]},
        "study": note, "combinations": 4, "workers": args.workers,
        "runs": runs,
        "speedup": round(serial / procs, 2), "ratio": round(procs / serial, 2),
        "sweep_matches": matches,
    }
    text = json.dumps(report, indent=2)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
