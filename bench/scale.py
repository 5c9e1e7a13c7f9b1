"""Issue 17's measurement in one JSON: executors (serial vs 2 workers) and data out of core.

Runs, each as a subprocess so that one's memory does not count in the other's peak RSS:

- ``bench/scale_executors.py``: ``examples/nsl-kdd.toml`` with 4 seeds, serial against
  ``--executor processes --workers 2``: wall seconds, ``ratio`` (processes / serial) and
  whether ``sweep.csv`` is the same;
- ``bench/scale_data.py``: a 4,940,210-row KDD-format file built at bench time (the shared 10 %
  file ten times) read in chunks, the FeatureSpace fitted from them, encoded into a ``.npy``
  store, one training epoch and one FGSM pass from it: seconds per stage and peak RSS.

Usage::

    .venv/bin/python bench/scale.py            # reduced executor study; about 5 minutes
    .venv/bin/python bench/scale.py --full     # the example as shipped; about 8 minutes
    .venv/bin/python bench/scale.py --quick    # smoke: quick executor study, 494,021 rows

JSON to stdout and to ``bench/results/scale.json`` (``--out``); each part also writes its own
file (``scale_executors.json``, ``scale_data.json``); progress on stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("bench.scale")


def part(script: str, args: list[str], out: Path) -> dict[str, Any]:
    """Run ``bench/<script>`` with ``args``, writing its JSON to ``out``; its parsed result."""
    cmd = [sys.executable, str(ROOT / "bench" / script), *args, "--out", str(out)]
    log.info("running %s", " ".join(cmd[1:]))
    done = subprocess.run(cmd, stdout=subprocess.DEVNULL, check=False)
    if done.returncode != 0:
        raise SystemExit(f"bench/{script} failed with exit code {done.returncode}")
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true",
                        help="the NSL-KDD example as shipped (default: reduced rows)")
    parser.add_argument("--quick", action="store_true", help="a smoke run of both parts")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "scale.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")

    results = args.out.parent
    results.mkdir(parents=True, exist_ok=True)
    exe_args = ["--full"] if args.full else (["--quick"] if args.quick else [])
    data_args = ["--repeat", "1"] if args.quick else []
    executors = part("scale_executors.py", exe_args, results / "scale_executors.json")
    data = part("scale_data.py", data_args, results / "scale_data.json")
    summary = {
        "benchmark": "scale",
        "cpu_count": os.cpu_count(),
        "executors": {
            "study": executors.get("study"),
            "serial_s": executors["runs"]["serial"]["seconds"],
            "workers_s": executors["runs"]["processes"]["seconds"],
            "workers": executors.get("workers"),
            "ratio": executors.get("ratio"),
            "speedup": executors.get("speedup"),
            "sweep_matches": executors.get("sweep_matches"),
        },
        "data": {
            "rows": data.get("rows"),
            "seconds": data.get("seconds"),
            "peak_rss_mb": data.get("peak_rss_mb"),
            "under_1_5_gb": data.get("under_1_5_gb"),
            "store_mb": data.get("store_mb"),
        },
        "parts": {"executors": executors, "data": data},
    }
    text = json.dumps(summary, indent=1)
    args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
