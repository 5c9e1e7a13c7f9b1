"""The KDD Cup 99 reproduction timed stage by stage, checked against a reference.

Runs the full study (or ``--quick``) through :func:`run_kdd99_adversarial_training`, recording
for every stage its wall seconds, the process's CPU seconds (all threads, user + system) and the
1-minute load average when it started; then the faithful table's numbers (accuracy, detection
rate, false-positive rate and r2l recall of the seven settings) against :data:`REFERENCE`, the
numbers of the run before the speed-up, as the largest absolute difference in points.

Usage::

    .venv/bin/python bench/reproduce.py                # JSON to stdout and
                                                       # bench/results/reproduce.json
    .venv/bin/python bench/reproduce.py --quick        # a smoke run (no reference check)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from advsec.experiments.reproductions.kdd99_adversarial_training import (
    KDD99Config,
    run_kdd99_adversarial_training,
)

log = logging.getLogger("bench.reproduce")

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "datasets" / "kdd99"
#: Largest accepted change of a faithful number (points) against the reference.
TOLERANCE_POINTS = 0.1
COLUMNS = ("accuracy", "detection_rate", "fpr", "recall_r2l")
#: The faithful table (``faithful.csv``) of the full run, seed 0, 2 threads, before the speed-up
#: of the faithful attacks and trainings (commit 7681abc: the examples crafted by the library
#: attacks one attack at a time, ``keras_fit`` with chunks of 8,192 rows). Per setting:
#: accuracy, detection rate, FPR, r2l recall.
REFERENCE: dict[str, tuple[float, float, float, float]] = {
    "clean": (0.9961521283540042, 0.9951468931449866, 0.0021061020036429873, 0.8421052631578947),
    "fgsm": (0.9817569656783591, 0.977207730305919, 0.013831967213114754, 0.6411483253588517),
    "fgsm after AT": (0.9975263682275741, 0.9963601698587399, 0.001366120218579235,
                      0.8899521531100478),
    "bim": (0.9961521283540042, 0.9951468931449866, 0.0021061020036429873, 0.8421052631578947),
    "bim after AT": (0.9973889442402172, 0.9964468324811508, 0.001650728597449909,
                     0.8995215311004785),
    "mim": (0.9961521283540042, 0.9951468931449866, 0.0021061020036429873, 0.8421052631578947),
    "mim after AT": (0.9974576562338956, 0.996273507236329, 0.0014230418943533697,
                     0.8995215311004785),
}


def _cpu() -> float:
    """CPU seconds of this process so far (every thread, user + system)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class Stages:
    """The progress callback of the run: wall and CPU seconds and load average per stage."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self._open: tuple[str, float, float, float] | None = None

    def __call__(self, stage: str, k: int, n: int) -> None:
        self.close()
        self._open = (stage, time.perf_counter(), _cpu(), os.getloadavg()[0])
        log.info("stage %d/%d: %s", k + 1, n, stage)

    def close(self) -> None:
        """End the stage in progress."""
        if self._open is None:
            return
        stage, t0, c0, load = self._open
        self.rows.append({"stage": stage, "seconds": round(time.perf_counter() - t0, 2),
                          "cpu_seconds": round(_cpu() - c0, 2),
                          "load_average_1min_at_start": round(load, 2)})
        self._open = None


def compare(faithful: Any) -> dict[str, Any]:
    """The faithful table against :data:`REFERENCE`: per column and overall the largest
    absolute difference (points), and each setting's numbers."""
    table = faithful.set_index("setting")
    worst = dict.fromkeys(COLUMNS, 0.0)
    rows = {}
    for setting, ref in REFERENCE.items():
        got = [float(table.loc[setting, c]) for c in COLUMNS]
        for c, g, r in zip(COLUMNS, got, ref, strict=True):
            worst[c] = max(worst[c], abs(g - r) * 100)
        rows[setting] = dict(zip(COLUMNS, got, strict=True))
    overall = max(worst.values())
    return {"max_abs_difference_points": round(overall, 4),
            "max_abs_difference_points_by_column": {c: round(v, 4) for c, v in worst.items()},
            "within_tolerance": overall <= TOLERANCE_POINTS, "tolerance_points":
            TOLERANCE_POINTS, "numbers": rows}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", default=str(DATA), help="folder with kddcup.data_10_percent.gz")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="the quick configuration (smoke run)")
    p.add_argument("--keep", default=None, help="run directory to keep (default: a temporary "
                   "one, removed)")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "reproduce.json"))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)
    torch.set_num_threads(args.threads)
    cfg = KDD99Config.quick_config(seed=args.seed) if args.quick else KDD99Config(
        seed=args.seed)
    stages = Stages()
    load_before = os.getloadavg()
    t0, c0 = time.perf_counter(), _cpu()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.keep) if args.keep else Path(tmp) / "run"
        result = run_kdd99_adversarial_training(cfg, out=out, root=args.root, force=True,
                                                progress=stages)
        stages.close()
        metrics = json.loads((out / "metrics.json").read_text())
    reference = (compare(result.faithful) if not args.quick and args.seed == 0 else
                 {"skipped": "the reference is the full run with seed 0"})
    report: dict[str, Any] = {
        "study": "kdd99-adversarial-training",
        "quick": args.quick,
        "seed": args.seed,
        "device": "cpu",
        "device_name": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "torch": torch.__version__,
        "seconds": round(time.perf_counter() - t0, 1),
        "cpu_seconds": round(_cpu() - c0, 1),
        "stages": stages.rows,
        "faithful_gradient_passes": metrics.get("faithful_passes"),
        "reference": reference,
        # other busy processes distort every number: record the 1-minute load around the run
        "load_average_1min": {"before": round(load_before[0], 2),
                              "after": round(os.getloadavg()[0], 2), "cpus": os.cpu_count()},
    }
    text = json.dumps(report, indent=2)
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")
    sys.stdout.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
