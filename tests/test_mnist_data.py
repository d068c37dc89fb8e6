"""The MNIST data layer against small fake IDX files served by a real local HTTP server."""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from classify_batch.export.mnist_data import (
    FULL_TRAIN_COUNT,
    DataError,
    Pin,
    load_mnist,
    load_test_set,
)

NAMES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
TRAIN_N, TEST_N = 50, 20

# Read at import, before the autouse fixture clears it for the fake-data tests.
REAL_DATA_DIR = os.environ.get("MNIST_DATA_DIR")


def idx_gz(magic: int, array: np.ndarray, count: int | None = None) -> bytes:
    """An IDX file, gzip-compressed; `count` overrides the header's first dimension."""
    dims = list(array.shape)
    if count is not None:
        dims[0] = count
    header = struct.pack(f">I{len(dims)}I", magic, *dims)
    return gzip.compress(header + array.astype(np.uint8).tobytes(), mtime=0)


def images(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)


def labels(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 10, size=n, dtype=np.uint8)


@dataclass
class FakeMnist:
    arrays: dict[str, np.ndarray]
    files: dict[str, bytes]
    pins: dict[str, Pin]

    def write(self, folder: Path, names: tuple[str, ...] = NAMES) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        for name in names:
            (folder / name).write_bytes(self.files[name])
        return folder


@pytest.fixture
def fake() -> FakeMnist:
    rng = np.random.default_rng(0)
    arrays = {
        NAMES[0]: images(rng, TRAIN_N),
        NAMES[1]: labels(rng, TRAIN_N),
        NAMES[2]: images(rng, TEST_N),
        NAMES[3]: labels(rng, TEST_N),
    }
    files = {name: idx_gz(0x803 if a.ndim == 3 else 0x801, a) for name, a in arrays.items()}
    pins = {name: Pin(len(b), hashlib.sha256(b).hexdigest()) for name, b in files.items()}
    return FakeMnist(arrays, files, pins)


@dataclass
class Mirrors:
    """URLs of the mirror kinds one local server offers, and the paths it was asked for."""

    good: str
    corrupt: str
    missing: str
    hangup: str
    requests: list[str] = field(default_factory=list)


@pytest.fixture
def mirrors(fake: FakeMnist) -> Iterator[Mirrors]:
    requests: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append(self.path)
            kind, _, name = self.path.strip("/").partition("/")
            if kind == "hangup":
                self.close_connection = True  # no status line at all
                return
            if kind not in ("good", "corrupt") or name not in fake.files:
                self.send_error(404)
                return
            body = fake.files[name]
            if kind == "corrupt":
                body = bytes(b ^ 0x55 for b in body)  # same length, wrong bytes
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield Mirrors(
            f"{base}/good/", f"{base}/corrupt/", f"{base}/missing/", f"{base}/hangup/", requests
        )
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test gets its own XDG cache and no MNIST_DATA_DIR or mirror override."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("MNIST_DATA_DIR", raising=False)
    monkeypatch.delenv("CLASSIFY_BATCH_MNIST_MIRRORS", raising=False)
    return tmp_path / "xdg" / "classify-batch" / "mnist"


def assert_matches(data_arrays: tuple[np.ndarray, ...], fake: FakeMnist) -> None:
    for got, name in zip(data_arrays, NAMES, strict=True):
        assert got.dtype == np.uint8
        np.testing.assert_array_equal(got, fake.arrays[name])


def test_corrupt_mirror_is_rejected_and_good_one_used(
    fake: FakeMnist, mirrors: Mirrors, cache: Path
) -> None:
    data = load_mnist(mirrors=[mirrors.corrupt, mirrors.good], pins=fake.pins)

    assert data.source == "download"
    assert_matches((data.train_images, data.train_labels, data.test_images, data.test_labels), fake)
    assert data.sha256 == {name: pin.sha256 for name, pin in fake.pins.items()}
    assert {p.split("/")[1] for p in mirrors.requests} == {"corrupt", "good"}
    assert sorted(p.name for p in cache.iterdir()) == sorted(NAMES)  # no temp files left
    for name in NAMES:
        assert (cache / name).read_bytes() == fake.files[name]


def test_second_load_makes_no_request(fake: FakeMnist, mirrors: Mirrors) -> None:
    load_mnist(mirrors=[mirrors.good], pins=fake.pins)
    mirrors.requests.clear()

    data = load_mnist(mirrors=[mirrors.good], pins=fake.pins)

    assert mirrors.requests == []
    assert data.source == "cache"
    assert_matches((data.train_images, data.train_labels, data.test_images, data.test_labels), fake)


def test_404_and_dropped_connection_fall_through(fake: FakeMnist, mirrors: Mirrors) -> None:
    data = load_mnist(mirrors=[mirrors.missing, mirrors.hangup, mirrors.good], pins=fake.pins)

    assert data.source == "download"
    assert {p.split("/")[1] for p in mirrors.requests} == {"missing", "hangup", "good"}


def test_all_mirrors_bad_asks_for_mnist_data_dir(
    fake: FakeMnist, mirrors: Mirrors, cache: Path
) -> None:
    with pytest.raises(DataError) as info:
        load_mnist(mirrors=[mirrors.corrupt, mirrors.missing, mirrors.hangup], pins=fake.pins)

    message = str(info.value)
    assert "MNIST_DATA_DIR" in message
    assert "train-images-idx3-ubyte.gz" in message
    assert "\n" not in message
    assert list(cache.iterdir()) == []


def test_bad_cached_file_is_replaced_by_fresh_download(
    fake: FakeMnist, mirrors: Mirrors, cache: Path
) -> None:
    fake.write(cache)
    stale = "t10k-labels-idx1-ubyte.gz"
    (cache / stale).write_bytes(b"not what was pinned")

    data = load_mnist(mirrors=[mirrors.good], pins=fake.pins)

    assert mirrors.requests == [f"/good/{stale}"]
    assert (cache / stale).read_bytes() == fake.files[stale]
    np.testing.assert_array_equal(data.test_labels, fake.arrays[stale])


def test_bad_cached_file_is_removed_even_when_no_mirror_works(
    fake: FakeMnist, mirrors: Mirrors, cache: Path
) -> None:
    fake.write(cache)
    stale = cache / "train-labels-idx1-ubyte.gz"
    stale.write_bytes(b"not what was pinned")

    with pytest.raises(DataError, match=stale.name):
        load_mnist(mirrors=[mirrors.missing], pins=fake.pins)

    assert not stale.exists()


def test_mirrors_from_environment(
    fake: FakeMnist, mirrors: Mirrors, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLASSIFY_BATCH_MNIST_MIRRORS", f"{mirrors.missing} {mirrors.good}")

    images_, labels_, sha256 = load_test_set(pins=fake.pins)

    np.testing.assert_array_equal(images_, fake.arrays["t10k-images-idx3-ubyte.gz"])
    np.testing.assert_array_equal(labels_, fake.arrays["t10k-labels-idx1-ubyte.gz"])
    assert set(sha256) == {"t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"}
    assert not any("train" in p for p in mirrors.requests)


def test_mnist_data_dir_wins_over_cache_and_mirrors(
    fake: FakeMnist,
    mirrors: Mirrors,
    cache: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake.write(cache)
    local = fake.write(tmp_path / "local")
    # A partial training set, as the real MNIST_DATA_DIR holds: it must be used as it is.
    rng = np.random.default_rng(1)
    partial = {
        "train-images-idx3-ubyte.gz": images(rng, 7),
        "train-labels-idx1-ubyte.gz": labels(rng, 7),
    }
    (local / NAMES[0]).write_bytes(idx_gz(0x803, partial[NAMES[0]]))
    (local / NAMES[1]).write_bytes(idx_gz(0x801, partial[NAMES[1]]))
    monkeypatch.setenv("MNIST_DATA_DIR", str(local))

    data = load_mnist(mirrors=[mirrors.good], pins=fake.pins)

    assert mirrors.requests == []
    assert data.source == "MNIST_DATA_DIR"
    np.testing.assert_array_equal(data.train_images, partial[NAMES[0]])
    assert data.sha256 == {n: hashlib.sha256((local / n).read_bytes()).hexdigest() for n in NAMES}
    assert data.describe() == (
        f"MNIST: 7 of 60,000 training images, {TEST_N} test images (from MNIST_DATA_DIR)"
    )


def _bad_magic(fake: FakeMnist) -> tuple[str, bytes]:
    name = "train-images-idx3-ubyte.gz"
    return name, idx_gz(0x801, fake.arrays[name])


def _count_mismatch(fake: FakeMnist) -> tuple[str, bytes]:
    name = "train-labels-idx1-ubyte.gz"
    return name, idx_gz(0x801, fake.arrays[name][:-1])


def _truncated_gzip(fake: FakeMnist) -> tuple[str, bytes]:
    name = "t10k-images-idx3-ubyte.gz"
    return name, fake.files[name][: len(fake.files[name]) // 2]


def _header_count_too_big(fake: FakeMnist) -> tuple[str, bytes]:
    name = "t10k-images-idx3-ubyte.gz"
    return name, idx_gz(0x803, fake.arrays[name], count=TEST_N + 1)


def _wrong_dims(fake: FakeMnist) -> tuple[str, bytes]:
    name = "train-images-idx3-ubyte.gz"
    return name, idx_gz(0x803, fake.arrays[name][:, :27, :])


def _label_not_a_digit(fake: FakeMnist) -> tuple[str, bytes]:
    name = "t10k-labels-idx1-ubyte.gz"
    return name, idx_gz(0x801, np.full(TEST_N, 10, dtype=np.uint8))


@pytest.mark.parametrize(
    "damage",
    [
        _bad_magic,
        _count_mismatch,
        _truncated_gzip,
        _header_count_too_big,
        _wrong_dims,
        _label_not_a_digit,
    ],
)
def test_bad_mnist_data_dir_names_the_file(
    fake: FakeMnist,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    damage: Callable[[FakeMnist], tuple[str, bytes]],
) -> None:
    local = fake.write(tmp_path / "local")
    name, raw = damage(fake)
    (local / name).write_bytes(raw)
    monkeypatch.setenv("MNIST_DATA_DIR", str(local))

    with pytest.raises(DataError) as info:
        load_mnist(mirrors=[], pins=fake.pins)

    assert name in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_file_in_mnist_data_dir(
    fake: FakeMnist, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    local = fake.write(tmp_path / "local", NAMES[1:])
    monkeypatch.setenv("MNIST_DATA_DIR", str(local))

    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz"):
        load_mnist(mirrors=[], pins=fake.pins)
    # Evaluation needs only the t10k files, so it does not care.
    assert len(load_test_set(mirrors=[], pins=fake.pins)[0]) == TEST_N


@pytest.mark.mnist
@pytest.mark.skipif(
    not REAL_DATA_DIR,
    reason="set MNIST_DATA_DIR to a folder with the four MNIST .gz files to run the data tests",
)
def test_real_mnist(monkeypatch: pytest.MonkeyPatch) -> None:
    assert REAL_DATA_DIR
    monkeypatch.setenv("MNIST_DATA_DIR", REAL_DATA_DIR)

    data = load_mnist(mirrors=[])

    n = len(data.train_images)
    assert 0 < n <= FULL_TRAIN_COUNT
    assert data.train_images.shape == (n, 28, 28)
    assert data.train_labels.shape == (n,)
    assert data.test_images.shape == (10000, 28, 28)
    assert data.test_labels.shape == (10000,)
    for array in (data.train_images, data.train_labels, data.test_images, data.test_labels):
        assert array.dtype == np.uint8
    assert set(np.unique(data.test_labels)) == set(range(10))
    assert data.source == "MNIST_DATA_DIR"
    assert f"{n:,} of 60,000 training images" in data.describe()
    assert sorted(data.sha256) == sorted(NAMES)
