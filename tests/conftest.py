"""Shared fixtures: the real MNIST files, read through MNIST_DATA_DIR, and the committed model."""

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
NEEDS_DATA = (
    "set MNIST_DATA_DIR to a folder with the four MNIST .gz files to run the tests that need data"
)


def _idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        raw = f.read()
    dims = raw[3]
    shape = struct.unpack(">" + "I" * dims, raw[4 : 4 + 4 * dims])
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * dims).reshape(shape)


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    folder = os.environ.get("MNIST_DATA_DIR")
    if not folder:
        pytest.skip(NEEDS_DATA)
    return Path(folder)


@pytest.fixture(scope="session")
def test_set(mnist_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """The official 10,000 test images and labels, read straight from the IDX files."""
    return _idx(mnist_dir / "t10k-images-idx3-ubyte.gz"), _idx(
        mnist_dir / "t10k-labels-idx1-ubyte.gz"
    )


@pytest.fixture(scope="session")
def committed_model() -> Path:
    path = ROOT / "artifacts" / "model.onnx"
    assert path.exists(), "artifacts/model.onnx is missing: run `digits train`"
    return path
