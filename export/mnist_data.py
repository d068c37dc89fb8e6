"""The MNIST data layer: find the four IDX files, check them, and hand back uint8 arrays.

Lookup order: the folder in $MNIST_DATA_DIR, else the cache, else a download from public mirrors
into the cache. Downloads and cached files are held to the published sizes and SHA-256s;
MNIST_DATA_DIR is only checked structurally, because it may hold a partial training set.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.client
import io
import logging
import os
import struct
import tempfile
import urllib.parse
import urllib.request
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import mnist
import numpy as np

log = logging.getLogger(__name__)

FULL_TRAIN_COUNT = 60000

TRAIN_IMAGES = "train-images-idx3-ubyte.gz"
TRAIN_LABELS = "train-labels-idx1-ubyte.gz"
TEST_IMAGES = "t10k-images-idx3-ubyte.gz"
TEST_LABELS = "t10k-labels-idx1-ubyte.gz"

# Plain HTTPS without certificate pinning is enough: every byte is checked against PINS.
MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
MIRRORS_ENV = "CLASSIFY_BATCH_MNIST_MIRRORS"
DATA_DIR_ENV = "MNIST_DATA_DIR"
TIMEOUT_S = 30.0
_CHUNK = 1 << 20

_IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions
_LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension


class DataError(Exception):
    """The data cannot be had; str(e) is one line meant for the user."""


@dataclass(frozen=True)
class Pin:
    size: int
    sha256: str


PINS: Mapping[str, Pin] = MappingProxyType(
    {
        TRAIN_IMAGES: Pin(
            9912422, "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"
        ),
        TRAIN_LABELS: Pin(
            28881, "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"
        ),
        TEST_IMAGES: Pin(
            1648877, "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"
        ),
        TEST_LABELS: Pin(4542, "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
    }
)


@dataclass(frozen=True)
class MnistData:
    train_images: np.ndarray  # uint8 (N, 28, 28)
    train_labels: np.ndarray  # uint8 (N,)
    test_images: np.ndarray  # uint8 (M, 28, 28); M is 10,000 for the real set
    test_labels: np.ndarray  # uint8 (M,)
    source: str  # "MNIST_DATA_DIR" | "cache" | "download"
    sha256: dict[str, str]  # file name -> SHA-256 of the file actually used

    def describe(self) -> str:
        return (
            f"MNIST: {len(self.train_images):,} of {FULL_TRAIN_COUNT:,} training images, "
            f"{len(self.test_images):,} test images (from {self.source})"
        )


def load_mnist(
    *,
    mirrors: Sequence[str] | None = None,
    cache_dir: Path | None = None,
    pins: Mapping[str, Pin] | None = None,
) -> MnistData:
    """Load all four files; `mirrors`, `cache_dir` and `pins` default to the real ones."""
    raws, source = _fetch(
        (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS), mirrors, cache_dir, pins
    )
    train_images, train_labels = _parse_pair(raws, TRAIN_IMAGES, TRAIN_LABELS, source)
    test_images, test_labels = _parse_pair(raws, TEST_IMAGES, TEST_LABELS, source)
    return MnistData(train_images, train_labels, test_images, test_labels, source, _hashes(raws))


def load_test_set(
    *,
    mirrors: Sequence[str] | None = None,
    cache_dir: Path | None = None,
    pins: Mapping[str, Pin] | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, str]]:
    """Load only the t10k files: (images, labels, file name -> SHA-256)."""
    raws, source = _fetch((TEST_IMAGES, TEST_LABELS), mirrors, cache_dir, pins)
    images, labels = _parse_pair(raws, TEST_IMAGES, TEST_LABELS, source)
    return images, labels, _hashes(raws)


def default_cache_dir() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    # The XDG spec says a relative value is to be ignored.
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "classify-batch" / "mnist"


def _fetch(
    names: Sequence[str],
    mirrors: Sequence[str] | None,
    cache_dir: Path | None,
    pins: Mapping[str, Pin] | None,
) -> tuple[dict[str, bytes], str]:
    """Return the raw .gz bytes of each file and where they came from."""
    data_dir = os.environ.get(DATA_DIR_ENV)
    if data_dir:
        return {name: _read_local(Path(data_dir), name) for name in names}, DATA_DIR_ENV

    pins = PINS if pins is None else pins
    if mirrors is None:
        mirrors = os.environ.get(MIRRORS_ENV, "").split() or MIRRORS
    cache = default_cache_dir() if cache_dir is None else cache_dir
    raws: dict[str, bytes] = {}
    downloaded = False
    for name in names:
        raw = _read_cached(cache / name, pins[name])
        if raw is None:
            raw = _download(name, pins[name], mirrors, cache)
            downloaded = True
        raws[name] = raw
    return raws, "download" if downloaded else "cache"


def _read_local(folder: Path, name: str) -> bytes:
    path = folder / name
    try:
        return path.read_bytes()
    except OSError as e:
        reason = e.strerror or _one_line(e)
        raise DataError(f"{DATA_DIR_ENV}: cannot read {path}: {reason}") from e


def _read_cached(path: Path, pin: Pin) -> bytes | None:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise DataError(f"cannot read cached MNIST file {path}: {_one_line(e)}") from e
    if len(raw) == pin.size and hashlib.sha256(raw).hexdigest() == pin.sha256:
        return raw
    log.warning("cached %s does not match its pinned SHA-256; downloading it again", path)
    # Gone even if every mirror fails, so a bad file is never trusted on a later run.
    path.unlink()
    return None


def _download(name: str, pin: Pin, mirrors: Sequence[str], cache: Path) -> bytes:
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"cannot create the MNIST cache {cache}: {_one_line(e)}") from e
    failures = []
    for mirror in mirrors:
        url = urllib.parse.urljoin(mirror if mirror.endswith("/") else mirror + "/", name)
        try:
            log.info("downloading %s", url)
            return _download_one(url, pin, cache / name)
        except (OSError, http.client.HTTPException, ValueError) as e:
            # URLError, HTTPError, timeouts and resets are OSErrors; a cut-off body is an
            # HTTPException; a bad checksum or a non-HTTP URL is a ValueError.
            log.warning("mirror failed for %s: %s", url, _one_line(e))
            failures.append(f"{url}: {_one_line(e)}")
    tried = "; ".join(failures) or "no mirrors configured"
    raise DataError(
        f"could not get {name}: no MNIST mirror was reachable or served the published file "
        f"({tried}); set {DATA_DIR_ENV} to a folder holding the four MNIST .gz files"
    )


def _download_one(url: str, pin: Pin, target: Path) -> bytes:
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise ValueError("only http(s) mirrors are supported")
    digest = hashlib.sha256()
    body = io.BytesIO()
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as e:
        # Not the mirror's fault, so not worth trying the next one.
        raise DataError(f"cannot write to the MNIST cache {target.parent}: {_one_line(e)}") from e
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=TIMEOUT_S) as resp:
            # Reading one byte past the pinned size is enough to know it is wrong, and stops a
            # hostile or broken mirror from filling the disk.
            remaining = pin.size + 1
            while remaining > 0 and (chunk := resp.read(min(_CHUNK, remaining))):
                remaining -= len(chunk)
                digest.update(chunk)
                body.write(chunk)
                out.write(chunk)
            size = pin.size + 1 - remaining
            if size != pin.size:
                raise ValueError(f"got {size} bytes, expected {pin.size}")
            if digest.hexdigest() != pin.sha256:
                raise ValueError(f"SHA-256 {digest.hexdigest()} is not the pinned {pin.sha256}")
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return body.getvalue()


def _parse_pair(
    raws: Mapping[str, bytes], images_name: str, labels_name: str, source: str
) -> tuple[np.ndarray, np.ndarray]:
    where = f" in {DATA_DIR_ENV}" if source == DATA_DIR_ENV else ""
    images = _parse(raws[images_name], images_name, _IMAGES_MAGIC, where)
    labels = _parse(raws[labels_name], labels_name, _LABELS_MAGIC, where)
    if images.shape[1:] != (28, 28):
        raise DataError(f"{images_name}{where}: images are {images.shape[1:]}, expected 28x28")
    if len(images) == 0:
        raise DataError(f"{images_name}{where}: holds no images")
    if len(images) != len(labels):
        raise DataError(
            f"{labels_name}{where}: {len(labels):,} labels for the {len(images):,} images "
            f"in {images_name}"
        )
    if labels.max() > 9:
        raise DataError(f"{labels_name}{where}: label {int(labels.max())} is not a digit 0-9")
    return images, labels


def _parse(raw: bytes, name: str, magic: int, where: str) -> np.ndarray:
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(raw)) as f:
            header = f.read(4)
            if len(header) < 4:
                raise DataError(f"{name}{where}: too short to hold an IDX header")
            (found,) = struct.unpack(">I", header)
            if found != magic:
                raise DataError(
                    f"{name}{where}: IDX magic is 0x{found:08x}, expected 0x{magic:08x}"
                )
            f.seek(0)
            # parse_idx also checks that the header's counts match the length of the data.
            array = mnist.parse_idx(f)
    except (OSError, EOFError, zlib.error, struct.error, mnist.IdxDecodeError) as e:
        raise DataError(
            f"{name}{where}: not a valid gzip-compressed IDX file ({_one_line(e)})"
        ) from e
    # The magic says unsigned bytes, so this cast cannot change a value.
    return np.asarray(array, dtype=np.uint8)


def _hashes(raws: Mapping[str, bytes]) -> dict[str, str]:
    return {name: hashlib.sha256(raw).hexdigest() for name, raw in raws.items()}


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__
