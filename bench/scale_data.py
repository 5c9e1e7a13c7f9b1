"""Benchmark: a 4.9 M-row KDD'99-format file end to end out of core, with the peak RSS.

Issue 17's data criterion. At bench time, the shared 10 % file
(``../shared/datasets/kdd99/kddcup.data_10_percent.gz``, 494,021 rows) is decompressed and
written ``--repeat`` times (default 10: 4,940,210 rows, 749 MB of text) into a temporary
folder. Then a fresh Python subprocess (measured alone: ``resource.getrusage(RUSAGE_CHILDREN)``
after it exits, ``ru_maxrss``) runs the stages, each timed:

- ``read``: one pass of pyarrow's streaming CSV reader (:mod:`advsec.datasets.stream`) alone;
- ``fit``: the first pass of :func:`advsec.datasets.encoded.build_store` over
  :class:`~advsec.datasets.kdd_stream.KddChunks` (read, clean, label, check the values, add to
  the FeatureSpace statistics);
- ``encode``: the second pass (read again, encode into ``x.npy`` float32 ``(N, D)`` and
  ``y.npy``, check the records against the schema);
- ``train``: one epoch of the MLP ``Detector`` (hidden 64-32, batch 256, 10 % validation) on
  ``store.x``, mini-batches read by window;
- ``fgsm``: one FGSM pass (eps 0.1, the FeatureSpace's valid region, repaired records, validity
  checked) over every row with :func:`advsec.attacks.streamed.attack_rows`.

The JSON (stdout, and ``--out FILE``; default ``bench/results/scale_data.json``) gives the rows,
``D``, seconds per stage, the child's peak RSS in MB (and the RSS after each stage, from its own
``getrusage``), whether the peak is under 1.5 GB, ``store_mb`` (the encoded files), and the
metrics (clean / FGSM accuracy). Usage::

    .venv/bin/python bench/scale_data.py                # several minutes on 2 cores
    .venv/bin/python bench/scale_data.py --repeat 1     # one copy (494,021 rows): a smoke run
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
NAME = "kddcup.data_10_percent"
LIMIT_MB = 1536.0
log = logging.getLogger("scale_data")


def default_source() -> Path:
    """The shared 10 % file (``$ADVSEC_DATA/kdd99`` first)."""
    folders = [Path(os.environ["ADVSEC_DATA"]) / "kdd99"] if os.environ.get("ADVSEC_DATA") else []
    folders.append(REPO.parent / "shared" / "datasets" / "kdd99")
    for folder in folders:
        for name in (NAME, f"{NAME}.gz"):
            if (folder / name).is_file():
                return folder / name
    sys.exit(f"bench/scale_data.py: {NAME}[.gz] not found; pass --source PATH")


def build_file(source: Path, target: Path, repeat: int) -> int:
    """``source`` (plain or gzip) decompressed and written ``repeat`` times to ``target``;
    returns the bytes written."""
    with source.open("rb") as fh:
        magic = fh.read(2)
    opener = gzip.open if magic == b"\x1f\x8b" else open
    with opener(source, "rb") as fh:  # type: ignore[operator]
        text: bytes = fh.read()
    if not text.endswith(b"\n"):
        text += b"\n"
    with target.open("wb") as out:
        for _ in range(repeat):
            out.write(text)
    return len(text) * repeat


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def child(file: Path, work: Path, *, threads: int, batch_size: int, validity: bool) -> None:
    """The measured process: every stage on ``file``, JSON on stdout."""
    import torch

    from advsec.attacks.fgsm import FGSM
    from advsec.attacks.streamed import attack_rows
    from advsec.datasets.encoded import encode_store, scan
    from advsec.datasets.kdd_stream import KddChunks
    from advsec.models.detector import Detector

    torch.set_num_threads(threads)
    stages: dict[str, float] = {}
    rss: dict[str, float] = {"imports": _rss_mb()}

    def stage(name: str, start: float) -> None:
        stages[name] = round(time.perf_counter() - start, 2)
        rss[name] = round(_rss_mb(), 1)
        log.info("%s: %.1f s, peak RSS so far %.0f MB", name, stages[name], rss[name])

    chunks = KddChunks(file, scheme="binary")
    t = time.perf_counter()
    read_rows = sum(batch.num_rows for batch in chunks.stream)
    stage("read", t)
    t = time.perf_counter()
    first = scan(chunks)
    space = first.stats.space()
    stage("fit", t)
    t = time.perf_counter()
    store = encode_store(chunks, space, rows=first.rows, classes=chunks.classes(first.labels),
                         folder=work / "store")
    stage("encode", t)
    t = time.perf_counter()
    det = Detector(hidden=(64, 32), epochs=1, batch_size=batch_size, seed=0, device="cpu",
                   validation_split=0.1).fit(store.x, store.y)
    stage("train", t)
    t = time.perf_counter()
    attack = FGSM(eps=0.1, feature_space=store.space)
    totals = attack_rows(attack, det, store.x, store.y, validity=validity)
    stage("fgsm", t)
    size = sum(p.stat().st_size for p in (store.x_path, store.y_path))
    print(json.dumps({
        "rows": len(store), "rows_read": read_rows, "columns": int(store.x.shape[1]),
        "seconds": stages, "rss_after_stage_mb": rss, "store_mb": round(size / 2**20, 1),
        "history": det.history_, "clean_accuracy": totals.clean_accuracy,
        "fgsm_accuracy": totals.accuracy[0], "fgsm_success_rate": totals.success_rate[0],
        "fgsm_valid_share": totals.valid_share[0], "fgsm_attack_seconds": totals.seconds,
    }))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=None, help="the 10 %% file")
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1: small MLP batches gain nothing from more)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--no-validity", action="store_true",
                        help="skip the validity check of the FGSM records")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where to build the file (default: a temporary folder, removed)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" /
                        "scale_data.json")
    parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    if args.child is not None:
        child(args.child, args.workdir, threads=args.threads, batch_size=args.batch_size,
              validity=not args.no_validity)
        return
    source = args.source or default_source()
    work = Path(tempfile.mkdtemp(prefix="advsec-scale-", dir=args.workdir))
    try:
        big = work / "kddcup.data"
        t = time.perf_counter()
        size = build_file(source, big, args.repeat)
        built = round(time.perf_counter() - t, 2)
        log.info("built %s (%.0f MB) in %.1f s", big, size / 2**20, built)
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(big),
               "--workdir", str(work), "--threads", str(args.threads),
               "--batch-size", str(args.batch_size)] + (["--no-validity"]
                                                        if args.no_validity else [])
        t = time.perf_counter()
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, check=True, text=True)
        wall = round(time.perf_counter() - t, 2)
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
        result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out = {
        "benchmark": "scale_data", "file_mb": round(size / 2**20, 1), "repeat": args.repeat,
        "build_seconds": built, "child_wall_seconds": wall, **result,
        "peak_rss_mb": round(peak_mb, 1), "limit_mb": LIMIT_MB,
        "under_1_5_gb": peak_mb < LIMIT_MB, "rss_source": "getrusage(RUSAGE_CHILDREN).ru_maxrss",
        "threads": args.threads, "cpu_count": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2), "python": platform.python_version(),
    }
    text = json.dumps(out, indent=1)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
