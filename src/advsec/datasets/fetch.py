"""Official download locations with pinned SHA-256, used only by ``advsec data fetch``.

Nothing in advsec downloads implicitly: loaders only read files that are already on disk and,
when one is missing, say where to get it (:func:`hint`). :func:`fetch` downloads a dataset's
files into a cache folder (:func:`~advsec.datasets._readers.default_cache_dir` by default, where
the loaders look too) and checks each against its pinned SHA-256: either of the downloaded bytes or
of the decompressed content (the gzip container may be re-compressed by a mirror, the content may
not change). Files without a direct official URL (NSL-KDD, UNSW-NB15 and CIC-IDS2017 sit behind
the publishers' web pages) are listed with their page and checksum so a manual download can be
checked with :func:`verify`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

from advsec.datasets._readers import default_cache_dir, is_gzip
from advsec.errors import DataError

__all__ = ["SOURCES", "RemoteFile", "Source", "content_sha256", "fetch", "file_sha256", "hint",
           "verify"]

log = logging.getLogger(__name__)
_CHUNK = 1 << 20


@dataclass(frozen=True)
class RemoteFile:
    """One distributed file.

    Attributes:
        name: file name as stored locally (e.g. ``corrected.gz``).
        url: direct official download URL, or None when only a web page offers it.
        content_sha256: SHA-256 of the (decompressed) content, pinned; None if unknown.
        download_sha256: SHA-256 of the bytes as the official URL serves them, when known.
    """

    name: str
    url: str | None = None
    content_sha256: str | None = None
    download_sha256: str | None = None


@dataclass(frozen=True)
class Source:
    """Where a dataset comes from: its official page and files."""

    dataset: str
    page: str
    files: tuple[RemoteFile, ...]
    note: str = ""

    @property
    def fetchable(self) -> tuple[RemoteFile, ...]:
        """Files :func:`fetch` can download and check (direct URL and a pinned checksum)."""
        return tuple(f for f in self.files if f.url and (f.content_sha256 or f.download_sha256))


_UCI = "http://kdd.ics.uci.edu/databases/kddcup99"

SOURCES: dict[str, Source] = {
    "kdd99": Source(
        "kdd99",
        f"{_UCI}/kddcup99.html",
        (
            RemoteFile("kddcup.data_10_percent.gz", f"{_UCI}/kddcup.data_10_percent.gz",
                       "f8c8267ebcd9c0ed1fd7d6277fe5bfff8732e9b7db8e61b873542b2a534b6f9a",
                       "7bfaa8cef1350f72842018c32893e2fa4539d57efbb22f998eb74ecefc3da3b4"),
            RemoteFile("corrected.gz", f"{_UCI}/corrected.gz",
                       "547dfb9c0f0dc1d9944219ec79e851191faebaeb8acbfa1cd171c418397052a4",
                       "74f0daef49b242badc09f2adbd457dea6a45b4f77177efbd11216d333651044b"),
            RemoteFile("kddcup.data.gz", f"{_UCI}/kddcup.data.gz"),
        ),
        "UCI KDD Archive; the full kddcup.data has no pinned checksum and is not fetched",
    ),
    "nsl-kdd": Source(
        "nsl-kdd",
        "https://www.unb.ca/cic/datasets/nsl.html",
        (
            RemoteFile("KDDTrain+.txt", None,
                       "1b86d2f957b33082081bba410fe129b475efebcc13c9014c3f447c8271aadf95"),
            RemoteFile("KDDTrain+_20Percent.txt", None,
                       "7ea86479faab5ca2190b7f18b4982fb058ce5bf2b46e0e1017d0d9ef90f9c16e"),
            RemoteFile("KDDTest+.txt", None,
                       "fa46b0935342616aa83b7c2578db355b6a7aaabbc492248172c7a1e8b7ab8f84"),
            RemoteFile("KDDTest-21.txt", None,
                       "746993ac9e25868827cacf09eab450050a2a1056e1ce48a1ad39f5dc801d531d"),
        ),
        "the Canadian Institute for Cybersecurity distributes NSL-KDD through a web form",
    ),
    "unsw-nb15": Source(
        "unsw-nb15",
        "https://research.unsw.edu.au/projects/unsw-nb15-dataset",
        (
            RemoteFile("UNSW_NB15_testing-set.csv", None,
                       "734fe6642edf758f7c94d7d9149426b49d202fe8e7bf0bef47392489c3c0a559"),
            RemoteFile("UNSW_NB15_training-set.csv", None, None),
        ),
        "UNSW Canberra distributes UNSW-NB15 through a SharePoint folder linked from the page",
    ),
    "cicids2017": Source(
        "cicids2017",
        "https://www.unb.ca/cic/datasets/ids-2017.html",
        (RemoteFile("MachineLearningCSV.zip", None, None),),
        "the Canadian Institute for Cybersecurity distributes CIC-IDS2017 through a web form; "
        "unzip MachineLearningCVE/*.csv into the data folder",
    ),
}


def hint(dataset: str) -> str:
    """Where to get ``dataset``'s files, for "file not found" errors (one clause, no newline)."""
    src = SOURCES.get(dataset)
    if src is None:
        return ""
    if src.fetchable:
        return f"get it from {src.page} or run `advsec data fetch {dataset}`"
    return f"download it from {src.page} (manual download: {src.note})"


def content_sha256(path: str | Path) -> str:
    """SHA-256 of a file's content, decompressing gzip on the fly."""
    path = Path(path)
    h = hashlib.sha256()
    gz = is_gzip(path)
    inflate = zlib.decompressobj(31) if gz else None
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            if inflate is not None:
                chunk = inflate.decompress(chunk)
                while inflate.unused_data:  # a further gzip member
                    rest = inflate.unused_data
                    h.update(chunk)
                    inflate = zlib.decompressobj(31)
                    chunk = inflate.decompress(rest)
            h.update(chunk)
    if inflate is not None:
        h.update(inflate.flush())
    return h.hexdigest()


def verify(dataset: str, folder: str | Path) -> dict[str, bool | None]:
    """For each file of ``dataset`` found in ``folder`` (plain or .gz): does its content match the
    pinned SHA-256? ``None`` when no checksum is pinned. Files not present are left out."""
    src = _source(dataset)
    out: dict[str, bool | None] = {}
    for f in src.files:
        base = f.name[:-3] if f.name.endswith(".gz") else f.name
        for name in (base, f"{base}.gz"):
            path = Path(folder) / name
            if path.is_file():
                out[name] = None if f.content_sha256 is None else (
                    content_sha256(path) == f.content_sha256)
    return out


def fetch(
    dataset: str,
    *,
    cache_dir: str | Path | None = None,
    timeout: float = 60.0,
    source: Source | None = None,
) -> list[Path]:
    """Download ``dataset``'s fetchable files into ``cache_dir/<dataset>/`` and check them.

    Files already there with the right checksum are kept. Raises :class:`DataError` (one line)
    when the dataset has no direct download, the network is unreachable, or a checksum differs
    (the bad download is deleted).

    Returns:
        The local paths, one per file.
    """
    src = source or _source(dataset)
    if not src.fetchable:
        raise DataError(
            f"{dataset}: no direct download; get the files from {src.page} ({src.note}) and pass "
            f"their folder with --root"
        )
    folder = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    folder = folder / dataset
    folder.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for f in src.fetchable:
        dest = folder / f.name
        if dest.is_file() and _matches(dest, f):
            log.info("%s: %s already present and verified", dataset, dest)
            paths.append(dest)
            continue
        _download(dataset, f, dest, timeout=timeout, page=src.page)
        paths.append(dest)
    return paths


def _source(dataset: str) -> Source:
    if dataset not in SOURCES:
        raise DataError(f"no download source for {dataset!r}; known: {', '.join(sorted(SOURCES))}")
    return SOURCES[dataset]


def _matches(path: Path, f: RemoteFile) -> bool:
    if f.download_sha256 and file_sha256(path) == f.download_sha256:
        return True
    return bool(f.content_sha256) and content_sha256(path) == f.content_sha256


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes as they are (read in chunks)."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _download(dataset: str, f: RemoteFile, dest: Path, *, timeout: float, page: str) -> None:
    assert f.url is not None
    log.info("%s: downloading %s", dataset, f.url)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{f.name}.", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(f.url, timeout=timeout) as resp:
                    while chunk := resp.read(_CHUNK):
                        out.write(chunk)
            except (urllib.error.URLError, OSError, TimeoutError) as exc:
                reason = getattr(exc, "reason", exc)
                raise DataError(
                    f"{dataset}: cannot download {f.url} ({reason}); no network? download it by "
                    f"hand from {page} into {dest.parent}"
                ) from None
        if not _matches(tmp, f):
            raise DataError(
                f"{dataset}: {f.name} downloaded from {f.url} does not match its pinned SHA-256 "
                f"({f.content_sha256 or f.download_sha256}); the file was deleted"
            )
        tmp.replace(dest)
        log.info("%s: saved %s", dataset, dest)
    finally:
        if tmp.exists():
            tmp.unlink()
