"""advsec data fetch: pinned checksums, downloads into the cache, one-line errors offline; the
pinned checksums match the real files."""

from __future__ import annotations

import gzip
import hashlib
import re

import pytest

from advsec.datasets.fetch import SOURCES, RemoteFile, Source, content_sha256, fetch, hint, verify
from advsec.errors import DataError

CONTENT = b"0,tcp,http,SF,1,2\n" * 100


def source_for(tmp_path, *, sha: str | None, url: str | None = None) -> Source:
    served = tmp_path / "served.gz"
    served.write_bytes(gzip.compress(CONTENT))
    return Source("toy", "https://example.org/toy", (
        RemoteFile("toy.gz", url or served.as_uri(), sha),))


def test_fetch_downloads_checks_and_reuses(tmp_path):
    sha = hashlib.sha256(CONTENT).hexdigest()
    src = source_for(tmp_path, sha=sha)
    paths = fetch("toy", cache_dir=tmp_path / "cache", source=src)
    assert paths == [tmp_path / "cache" / "toy" / "toy.gz"]
    assert gzip.decompress(paths[0].read_bytes()) == CONTENT
    assert content_sha256(paths[0]) == sha
    mtime = paths[0].stat().st_mtime_ns
    assert fetch("toy", cache_dir=tmp_path / "cache", source=src) == paths
    assert paths[0].stat().st_mtime_ns == mtime  # verified, not downloaded again


def test_checksum_mismatch_deletes_the_download(tmp_path):
    src = source_for(tmp_path, sha="0" * 64)
    with pytest.raises(DataError, match="does not match its pinned SHA-256") as exc:
        fetch("toy", cache_dir=tmp_path / "cache", source=src)
    assert "\n" not in str(exc.value)
    assert list((tmp_path / "cache" / "toy").iterdir()) == []


def test_offline_is_a_one_line_error(tmp_path):
    src = source_for(tmp_path, sha="0" * 64, url="http://127.0.0.1:9/toy.gz")
    with pytest.raises(DataError, match=r"cannot download http://127.0.0.1:9/toy.gz .*by hand"):
        fetch("toy", cache_dir=tmp_path / "cache", source=src, timeout=5)
    assert list((tmp_path / "cache" / "toy").iterdir()) == []


def test_datasets_without_a_direct_download(tmp_path):
    with pytest.raises(DataError, match=re.escape(
            "nsl-kdd: no direct download; get the files from https://www.unb.ca/cic/datasets/")):
        fetch("nsl-kdd", cache_dir=tmp_path)
    with pytest.raises(DataError, match="no download source for 'kdd98'"):
        fetch("kdd98", cache_dir=tmp_path)
    assert "advsec data fetch kdd99" in hint("kdd99")
    assert "manual download" in hint("unsw-nb15") and hint("synthetic") == ""
    assert [f.name for f in SOURCES["kdd99"].fetchable] == ["kddcup.data_10_percent.gz",
                                                           "corrected.gz"]


def test_pinned_checksums_match_the_real_files(shared_datasets):
    assert verify("nsl-kdd", shared_datasets / "nsl-kdd") == {
        "KDDTrain+.txt.gz": True, "KDDTrain+_20Percent.txt.gz": True,
        "KDDTest+.txt.gz": True, "KDDTest-21.txt.gz": True}
    assert verify("unsw-nb15", shared_datasets / "unsw-nb15") == {
        "UNSW_NB15_testing-set.csv.gz": True}
    sums = (shared_datasets / "kdd99" / "SHA256SUMS").read_text().split()
    pinned = {f.name[:-3]: f.content_sha256 for f in SOURCES["kdd99"].fetchable}
    assert dict(zip(sums[1::2], sums[0::2], strict=True))["corrected"] == pinned["corrected"]
    assert verify("kdd99", shared_datasets / "kdd99")["corrected.gz"] is True
