"""Datasets larger than memory: streamed CSV reading, FeatureSpace fits from chunk statistics,
encoded stores on disk, training and attacks read by window; each equals the in-memory path."""

from __future__ import annotations

import gzip
import shutil

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import torch

from advsec.attacks.fgsm import FGSM
from advsec.attacks.streamed import attack_rows
from advsec.datasets._kdd import ATTACK, KDD_FEATURES, kdd_types, kdd_what, read_kdd_file
from advsec.datasets._readers import read_csv
from advsec.datasets.encoded import EncodedStore, build_store
from advsec.datasets.kdd99 import load_kdd99
from advsec.datasets.kdd_stream import KddChunks
from advsec.datasets.stream import read_csv_streamed, stream_csv
from advsec.errors import DataError, SchemaError
from advsec.features.schema import Feature, FeatureKind, FeatureSchema
from advsec.features.space import FeatureSpace
from advsec.features.streaming import SpaceStats, fit_streaming
from advsec.models.detector import Detector
from advsec.rowstore import RowFile, create_rows, is_memmap

pytestmark = pytest.mark.usefixtures("one_thread")

BLOCK = 1 << 16  # the smallest block: a few hundred KDD rows per chunk
NAMES = (*KDD_FEATURES, ATTACK)
KDD_OPTS = {"header": False, "names": NAMES, "types": kdd_types(NAMES), "quoted": False,
            "what": kdd_what()}


@pytest.fixture(scope="module")
def kdd_lines(shared_datasets):
    """3,294 lines of the KDD'99 10 % file (every 150th), with many labels and services."""
    with gzip.open(shared_datasets / "kdd99" / "kddcup.data_10_percent.gz", "rt") as fh:
        return [line for i, line in enumerate(fh) if i % 150 == 0]


@pytest.fixture()
def kdd_root(tmp_path, kdd_lines):
    root = tmp_path / "kdd"
    root.mkdir()
    (root / "kddcup.data_10_percent").write_text("".join(kdd_lines))
    with gzip.open(root / "corrected.gz", "wt") as fh:
        fh.write("".join(kdd_lines[:500]))
    return root


@pytest.fixture()
def kdd_store(kdd_root, tmp_path):
    chunks = KddChunks(kdd_root / "kddcup.data_10_percent", block_bytes=BLOCK)
    return build_store(chunks, folder=tmp_path / "store")


# ----------------------------------------------------------------------------- reading
def test_streamed_reader_equals_read_csv_plain_gzip_and_header(tmp_path, kdd_root):
    plain = kdd_root / "kddcup.data_10_percent"
    stream = stream_csv(plain, block_bytes=BLOCK, **KDD_OPTS)  # type: ignore[arg-type]
    assert len(list(stream)) > 3  # several chunks, and re-iterable
    assert read_csv_streamed(plain, block_bytes=BLOCK, **KDD_OPTS).equals(
        read_csv(plain, **KDD_OPTS).table)  # type: ignore[arg-type]
    gz = kdd_root / "corrected.gz"
    assert read_csv_streamed(gz, block_bytes=BLOCK, **KDD_OPTS).equals(
        read_csv(gz, **KDD_OPTS).table)  # type: ignore[arg-type]
    headed = tmp_path / "h.csv"
    headed.write_text("a, b ,a\n1,x,2.5\n3,\"y,z\",4\n")
    types = {"a": pa.int64(), "b": pa.string(), "a.1": pa.float64()}
    streamed = read_csv_streamed(headed, header=True, types=types)
    assert streamed.equals(read_csv(headed, header=True, types=types).table)
    assert streamed.column_names == ["a", "b", "a.1"]


def test_a_record_longer_than_a_block_is_read_whole(tmp_path):
    path = tmp_path / "long.csv"
    rows = ["id,text"] + [f"{i},short" for i in range(2000)]
    rows[1500] = "1499," + "x" * 200_000
    path.write_text("\n".join(rows) + "\n")
    types = {"id": pa.int64(), "text": pa.string()}
    table = read_csv_streamed(path, header=True, types=types, block_bytes=BLOCK)
    assert table.equals(read_csv(path, header=True, types=types).table)
    assert table.num_rows == 2000


@pytest.mark.parametrize("bad", ["fields", "number"])
def test_a_bad_row_is_the_same_one_line_error_as_read_csv(tmp_path, kdd_lines, bad):
    lines = list(kdd_lines)
    fields = lines[2500].rstrip("\n").split(",")
    if bad == "fields":
        fields = fields[:-2]
    elif bad == "number":
        fields[4] = "12abc"
    lines[2500] = ",".join(fields) + "\n"
    path = tmp_path / "bad.gz"
    with gzip.open(path, "wt") as fh:
        fh.write("".join(lines))
    with pytest.raises(DataError) as eager:
        read_csv(path, **KDD_OPTS)  # type: ignore[arg-type]
    with pytest.raises(DataError) as streamed:
        read_csv_streamed(path, block_bytes=BLOCK, **KDD_OPTS)
    assert str(streamed.value) == str(eager.value)
    assert "\n" not in str(streamed.value) and "row 2501" in str(streamed.value)


def test_an_empty_kdd_value_names_the_row_of_the_whole_file(tmp_path, kdd_lines):
    lines = list(kdd_lines)
    fields = lines[2500].split(",")
    fields[5] = ""
    lines[2500] = ",".join(fields)
    path = tmp_path / "empty"
    path.write_text("".join(lines))
    with pytest.raises(DataError) as eager:
        read_kdd_file(path)
    with pytest.raises(DataError) as streamed:
        list(KddChunks(path, block_bytes=BLOCK))
    assert str(streamed.value) == str(eager.value)
    assert "row 2501, column 'dst_bytes'" in str(eager.value)


def test_header_only_and_truncated_gzip_are_one_line_errors(tmp_path, kdd_lines):
    head = tmp_path / "head.csv"
    head.write_text("a,b\n")
    with pytest.raises(DataError, match="no data rows"):
        read_csv_streamed(head, header=True)
    whole = gzip.compress("".join(kdd_lines).encode())
    cut = tmp_path / "cut.gz"
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DataError) as info:
        read_csv_streamed(cut, block_bytes=BLOCK, **KDD_OPTS)
    assert str(cut) in str(info.value) and "\n" not in str(info.value)


def test_kdd_chunks_equal_the_loaders_training_table(kdd_root):
    for scheme in ("binary", "category", "attack"):
        ds = load_kdd99(root=kdd_root, scheme=scheme, test="corrected")
        chunks = KddChunks(kdd_root / "kddcup.data_10_percent", scheme=scheme,
                           block_bytes=BLOCK)
        parts = list(chunks)
        assert len(parts) > 3
        pd.testing.assert_frame_equal(pd.concat(parts, ignore_index=True), ds.train)
        seen = set(pd.concat(parts)["label"].astype(str))
        assert chunks.classes(seen)[: len(ds.classes)] == ds.classes


# ----------------------------------------------------------------------------- fitting
def test_streamed_space_equals_the_in_memory_fit(kdd_root):
    chunks = KddChunks(kdd_root / "kddcup.data_10_percent", block_bytes=BLOCK)
    table = pd.concat(list(chunks), ignore_index=True)
    eager = FeatureSpace(chunks.schema).fit(table)
    streamed = fit_streaming(chunks.schema, chunks)
    assert streamed.to_dict() == eager.to_dict()
    assert streamed.columns_ == eager.columns_ and streamed.schema == eager.schema


def test_chunk_statistics_combine_decimals_value_sets_and_nan_like_one_fit():
    schema = FeatureSchema((
        Feature("rate", FeatureKind.CONTINUOUS),
        Feature("big", FeatureKind.CONTINUOUS),
        Feature("ttl", FeatureKind.INTEGER, values="observed"),
        Feature("proto", FeatureKind.CATEGORICAL),
        Feature("bytes", FeatureKind.INTEGER, lower=0, upper=1000, transform="log1p"),
    ))
    rng = np.random.default_rng(0)
    n = 900
    table = pd.DataFrame({
        "rate": np.round(rng.random(n), 2),
        "big": rng.random(n) * 1e9,
        "ttl": rng.choice([32, 64, 128, 255], n),
        "proto": rng.choice(["tcp", "udp", "icmp"], n),
        "bytes": rng.integers(0, 1000, n),
    })
    table.loc[700, "rate"] = 0.125  # three decimals in one chunk only
    table.loc[10, "big"] = 2.0**51  # a large value in another chunk: no decimals
    eager = FeatureSpace(schema).fit(table).to_dict()
    for sizes in ([n], [1, 299, 300, 300], [450, 450]):
        stats, start = SpaceStats(schema), 0
        for size in sizes:
            stats.update(table.iloc[start : start + size])
            start += size
        assert stats.fitted() == eager
    assert eager["decimals"]["rate"] == 3 and "big" not in eager["decimals"]


def test_training_check_raises_the_in_memory_schema_error():
    schema = FeatureSchema((Feature("a", FeatureKind.INTEGER, upper=10),
                            Feature("b", FeatureKind.INTEGER)),
                           relations=({"type": "order", "features": ["a", "b"]},))
    table = pd.DataFrame({"a": np.arange(40) % 5, "b": np.arange(40) % 5 + 1})
    table.loc[23, "b"] = 0  # breaks a <= b
    table.loc[31, "a"] = 12  # breaks the upper bound
    with pytest.raises(SchemaError) as eager:
        FeatureSpace(schema).fit(table)
    chunks = [table.iloc[i : i + 7] for i in range(0, 40, 7)]
    with pytest.raises(SchemaError) as streamed:
        fit_streaming(schema, chunks)
    assert str(streamed.value) == str(eager.value)
    assert "training record 23" in str(eager.value)


# ----------------------------------------------------------------------------- encoding
def test_the_store_equals_encode_of_the_whole_table_and_is_reused(kdd_root, tmp_path):
    chunks = KddChunks(kdd_root / "kddcup.data_10_percent", block_bytes=BLOCK)
    store = build_store(chunks, folder=tmp_path / "store")
    table = pd.concat(list(chunks), ignore_index=True)
    space = FeatureSpace(chunks.schema).fit(table)
    assert is_memmap(store.x) and store.x.dtype == np.float32
    assert np.array_equal(np.asarray(store.x), space.encode(table))
    assert store.classes == ["normal", "attack"]
    assert np.array_equal(np.asarray(store.y), (table["label"] != "normal").to_numpy())
    assert store.space.to_dict() == space.to_dict()
    again = build_store(chunks, folder=tmp_path / "store")
    assert again.x_path.stat().st_mtime_ns == store.x_path.stat().st_mtime_ns
    assert EncodedStore.open(tmp_path / "store").classes == store.classes
    test = build_store(KddChunks(kdd_root / "corrected.gz", block_bytes=BLOCK),
                       folder=tmp_path / "test", space=store.space, classes=store.classes)
    assert np.array_equal(np.asarray(test.x), np.asarray(store.x)[:500])


def test_the_default_store_folder_is_under_the_parse_cache(kdd_root, tmp_path, monkeypatch):
    chunks = KddChunks(kdd_root / "corrected.gz", block_bytes=BLOCK)
    monkeypatch.delenv("ADVSEC_PARSE_CACHE", raising=False)
    with pytest.raises(Exception, match="ADVSEC_PARSE_CACHE"):
        build_store(chunks)
    monkeypatch.setenv("ADVSEC_PARSE_CACHE", str(tmp_path / "cache"))
    store = build_store(chunks)
    assert store.folder.parent == tmp_path / "cache" / "encoded"


def test_row_files_read_write_and_gather_by_window(tmp_path):
    rows = create_rows(tmp_path / "r.npy", (50, 3), np.float32)
    data = np.arange(150, dtype=np.float32).reshape(50, 3)
    rows.write(0, data[:20])
    rows.write(20, data[20:])
    assert np.array_equal(np.load(tmp_path / "r.npy"), data)
    assert np.array_equal(rows.read(45, 60), data[45:])
    index = np.array([49, 3, 3, 17, 0])
    assert np.array_equal(RowFile(np.load(tmp_path / "r.npy", mmap_mode="r")).take(index),
                          data[index])
    with pytest.raises(TypeError):
        RowFile(np.load(tmp_path / "r.npy", mmap_mode="r")[2:5])


# ----------------------------------------------------------------------------- training
@pytest.mark.parametrize("validation_split", [0.0, 0.2])
def test_streamed_training_equals_in_memory_training(kdd_store, validation_split):
    def fit(x: np.ndarray) -> Detector:
        return Detector(hidden=(16,), epochs=2, batch_size=64, seed=3, device="cpu",
                        validation_split=validation_split, patience=5).fit(x, kdd_store.y)

    streamed, again = fit(kdd_store.x), fit(kdd_store.x)
    eager = fit(np.array(kdd_store.x))
    for name, value in streamed.module_.state_dict().items():
        assert torch.equal(value, eager.module_.state_dict()[name]), name
        assert torch.equal(value, again.module_.state_dict()[name]), name
    assert all(np.isfinite(h["loss"]) for h in streamed.history_)
    assert [h["loss"] for h in streamed.history_] == [h["loss"] for h in eager.history_]
    if validation_split:
        for a, b in zip(streamed.history_, eager.history_, strict=True):
            assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-6)
    assert np.array_equal(streamed.predict(kdd_store.x), eager.predict(np.array(kdd_store.x)))


# ----------------------------------------------------------------------------- attacks
def test_windowed_fgsm_equals_the_in_memory_fgsm(kdd_store, tmp_path):
    det = Detector(hidden=(16,), epochs=2, batch_size=64, seed=0, device="cpu",
                   validation_split=0.0).fit(kdd_store.x, kdd_store.y)
    attack = FGSM(eps=[0.05, 0.2], feature_space=kdd_store.space, batch_size=256)
    x, y = np.array(kdd_store.x), torch.as_tensor(np.array(kdd_store.y))
    eager = attack.run(det, torch.from_numpy(x), y)
    out = tmp_path / "fgsm"
    totals = attack_rows(attack, det, kdd_store.x, kdd_store.y, rows=1024, out=out)
    table = eager.table()
    assert totals.n == len(x) and totals.windows == 4
    assert totals.accuracy == pytest.approx(list(table["accuracy"]), abs=0)
    assert totals.success_rate == pytest.approx(list(table["attack_success_rate"]), abs=0)
    assert totals.valid_share == pytest.approx(list(table["valid_share"]), abs=0)
    assert totals.mean_linf == pytest.approx(list(table["mean_linf"]), rel=1e-5)
    assert totals.clean_accuracy == int((eager.clean_pred == y).sum()) / len(x)
    for i in range(2):
        assert np.array_equal(np.load(out / f"x_adv_{i}.npy"), eager.x_adv[i].numpy())
        assert np.array_equal(np.load(out / f"adv_pred_{i}.npy"), eager.adv_pred[i].numpy())
    assert len((out / "windows.jsonl").read_text().splitlines()) == 4
    assert (out / "metrics.json").is_file()


def test_gzip_is_recognised_by_its_bytes_in_chunks_too(kdd_root, tmp_path):
    """A gzip copy of a plain file gives the same chunks (gzip is sniffed by magic bytes)."""
    plain = kdd_root / "kddcup.data_10_percent"
    gz = tmp_path / "copy.bin"
    with plain.open("rb") as src, gzip.open(gz, "wb") as dst:
        shutil.copyfileobj(src, dst)
    a = pd.concat(list(KddChunks(plain, block_bytes=BLOCK)), ignore_index=True)
    b = pd.concat(list(KddChunks(gz, block_bytes=BLOCK)), ignore_index=True)
    pd.testing.assert_frame_equal(a, b)
