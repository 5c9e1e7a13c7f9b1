"""Benchmark: read (and encode) KDD Cup 1999 10 % with advsec's pyarrow path vs pandas.read_csv.

Usage: ``python bench/load.py [--file PATH] [--repeat 3] [--threads N]``. Prints one JSON object
with, on the same file in the same run:

- ``pandas_read_csv``: plain ``pandas.read_csv`` (default C engine, the 42 names given);
- ``advsec_pyarrow_read``: ``advsec.datasets._kdd.read_kdd_file`` with the parse cache off
  (pyarrow's multithreaded CSV reader, typed columns, labels cleaned): a cold read;
- ``advsec_cached_read``: the same call with ``$ADVSEC_PARSE_CACHE`` set to a temporary folder
  that a first read filled (the parsed table maps from an lz4 Arrow file): a warm read;
- rows/s and the speed-up over pandas of both, and the seconds for read + FeatureSpace fit +
  encode (cold and warm).

Each timing is the median of ``--repeat`` runs, alternating the readers; ``cpu_seconds`` is the
process CPU time of the same calls (all threads), and ``load_average_1min`` tells whether other
work shared the machine (wall-time ratios are only meaningful on an otherwise idle machine).
Targets: speed-up >= 3 and read + fit + encode < 3 s on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa

from advsec.datasets._common import builtin_schema
from advsec.datasets._kdd import ATTACK, KDD_FEATURES, read_kdd_file
from advsec.datasets._readers import CACHE_ENV
from advsec.features.space import FeatureSpace

REPO = Path(__file__).resolve().parents[1]
NAME = "kddcup.data_10_percent"


def default_file() -> Path:
    candidates = []
    if os.environ.get("ADVSEC_DATA"):
        candidates.append(Path(os.environ["ADVSEC_DATA"]) / "kdd99")
    candidates.append(REPO.parent / "shared" / "datasets" / "kdd99")
    for folder in candidates:
        for name in (NAME, f"{NAME}.gz"):
            if (folder / name).is_file():
                return folder / name
    sys.exit(f"bench/load.py: {NAME}[.gz] not found; pass --file PATH")


CPU: dict[str, list[float]] = {}


def timed(fn, kind: str | None = None) -> tuple[float, object]:
    """Wall seconds of ``fn()`` (and, under ``kind``, the process CPU seconds it used)."""
    cpu, start = time.process_time(), time.perf_counter()
    out = fn()
    wall = time.perf_counter() - start
    if kind is not None:
        CPU.setdefault(kind, []).append(time.process_time() - cpu)
    return wall, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", type=Path, default=None)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None,
                        help="pyarrow CPU threads (default: all cores)")
    args = parser.parse_args()
    path = args.file or default_file()
    if args.threads:
        pa.set_cpu_count(args.threads)
    names = [*KDD_FEATURES, "label"]
    schema = builtin_schema("kdd", benign_label="normal")

    os.environ.pop(CACHE_ENV, None)
    cache = tempfile.mkdtemp(prefix="advsec-bench-")
    times: dict[str, list[float]] = {k: [] for k in ("cold", "warm", "pandas", "fit", "encode")}
    rows = 0

    def advsec_read(kind: str) -> None:
        nonlocal rows
        if kind == "warm":
            os.environ[CACHE_ENV] = cache
        try:
            t, df = timed(lambda: read_kdd_file(path), kind)
        finally:
            os.environ.pop(CACHE_ENV, None)
        times[kind].append(t)
        rows = len(df)
        if kind == "cold":
            space = FeatureSpace(schema)
            times["fit"].append(timed(lambda: space.fit(df))[0])
            te, x = timed(lambda: space.encode(df))
            times["encode"].append(te)
            assert x.shape == (rows, space.n_features_out)

    os.environ[CACHE_ENV] = cache
    read_kdd_file(path)  # fill the parse cache once (not timed)
    os.environ.pop(CACHE_ENV, None)
    for i in range(args.repeat):
        order = ["cold", "warm", "pandas"]
        for which in order[i % 3:] + order[: i % 3]:
            if which == "pandas":
                t, pdf = timed(lambda: pd.read_csv(path, header=None, names=names), "pandas")
                times["pandas"].append(t)
                assert len(pdf) == rows or rows == 0
            else:
                advsec_read(which)
    med = {k: statistics.median(v) for k, v in times.items()}
    base = med["pandas"]
    fit_encode = med["fit"] + med["encode"]
    cpu = {k: round(statistics.median(v), 4) for k, v in CPU.items()}
    result = {
        "file": str(path),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "rows": rows,
        "repeat": args.repeat,
        "cpu_count": os.cpu_count(),
        "pyarrow_threads": pa.cpu_count(),
        "python": platform.python_version(),
        "pandas": pd.__version__,
        "pyarrow": pa.__version__,
        "pandas_read_csv": {"seconds": round(base, 4), "cpu_seconds": cpu["pandas"],
                            "rows_per_s": round(rows / base)},
        "advsec_pyarrow_read": {"seconds": round(med["cold"], 4), "cpu_seconds": cpu["cold"],
                                "rows_per_s": round(rows / med["cold"]),
                                "speedup_vs_pandas": round(base / med["cold"], 2)},
        "advsec_cached_read": {"seconds": round(med["warm"], 4), "cpu_seconds": cpu["warm"],
                               "rows_per_s": round(rows / med["warm"]),
                               "speedup_vs_pandas": round(base / med["warm"], 2)},
        "fit_seconds": round(med["fit"], 4),
        "encode_seconds": round(med["encode"], 4),
        "read_fit_encode_seconds": {"cold": round(med["cold"] + fit_encode, 4),
                                    "warm": round(med["warm"] + fit_encode, 4)},
        "targets": {"speedup_vs_pandas": 3.0, "read_fit_encode_seconds": 3.0},
        "columns": {"features": len(KDD_FEATURES), "extra": [ATTACK]},
    }
    for f in Path(cache).iterdir():
        f.unlink()
    os.rmdir(cache)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
