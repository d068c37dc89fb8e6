"""Shared fixtures: the 20 labelled images in samples/, the real MNIST files (MNIST_DATA_DIR),
the committed model, and one way to run the programs.

The job's behaviour is tested on the samples and on arrays made from them, so it is tested
without MNIST; only accuracy, parity and the real-data paths need MNIST_DATA_DIR.
"""

import gzip
import os
import re
import struct
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
BIN = Path(sys.executable).parent
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
def samples() -> tuple[np.ndarray, np.ndarray]:
    """The 20 official MNIST test images shipped in samples/, with the labels in their names."""
    paths = sorted(SAMPLES.glob("t10k-*-label-*.png"))
    labels = [int(re.search(r"label-(\d)", p.name).group(1)) for p in paths]  # type: ignore[union-attr]
    images = np.stack([np.asarray(Image.open(p).convert("L")) for p in paths])
    return images, np.array(labels, dtype=np.uint8)


def tiled(images: np.ndarray, count: int) -> np.ndarray:
    """`count` images cycled from `images`: any number of real digits for the job's tests."""
    return np.ascontiguousarray(np.resize(images, (count, *images.shape[1:])))


def varied(images: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """`count` digits made from `images` by shifts of up to 3 px and dimmer ink: many different
    inputs (and so many different probability vectors) for agreement tests between runtimes."""
    rng = np.random.default_rng(seed)
    out = tiled(images, count).copy()
    for i, (dy, dx) in enumerate(rng.integers(-3, 4, size=(count, 2))):
        out[i] = np.roll(out[i], (int(dy), int(dx)), axis=(0, 1))
    scale = rng.uniform(0.5, 1.0, size=(count, 1, 1))
    return np.rint(out * scale).astype(np.uint8)


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


def run_program(
    program: str,
    *args: str | Path,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """Run `classify-batch` or `digits` as a real process, as a scheduler would: the one helper
    every test file uses for that (usage errors are tested in-process instead, tests/test_cli.py).
    """
    return subprocess.run(
        [str(BIN / program), *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )


def run_in_process(prog: str, *args: str | Path, cwd: Path | None = None) -> tuple[int, str, str]:
    """`classify-batch` or `digits` in this process, through run_app, the function the installed
    commands call (so usage errors are tested as users see them): (exit code, stdout, stderr)."""
    from typer.testing import CliRunner

    from classify_batch.cli import build_classify_batch, build_digits, run_app

    app = build_classify_batch() if prog == "classify-batch" else build_digits()
    with CliRunner().isolation() as (out, err, _):
        here = os.getcwd()
        if cwd is not None:
            os.chdir(cwd)
        try:
            code = run_app(app, prog, [str(a) for a in args])
        finally:
            os.chdir(here)
            sys.stdout.flush()
            sys.stderr.flush()
        return code, out.getvalue().decode(), err.getvalue().decode()


def one_line(stderr: str) -> str:
    """The one line a failure must be: no traceback, nothing else."""
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


def copy_samples(folder: Path, count: int) -> Path:
    """The first `count` sample PNGs, copied into `folder` (created)."""
    folder.mkdir()
    for path in sorted(SAMPLES.glob("*.png"))[:count]:
        (folder / path.name).write_bytes(path.read_bytes())
    return folder


# --- drawings that reach one normalization rule each (tests/test_realworld.py checks what the job
# makes of them, tests/test_other_runtimes.py that the browser page makes the same) ---------------


def tight_zero(side: int = 32) -> np.ndarray:
    """A binarized "0" cropped to its ink: black strokes touching all four edges."""
    image = Image.new("L", (side, side), 255)
    ImageDraw.Draw(image).ellipse((0, 0, side - 1, side - 1), outline=0, width=max(2, side // 6))
    return np.asarray(image)


def corner_lit_bar() -> np.ndarray:
    """A bold "1" stretched to its binarized box: only two light corners are left."""
    bar = Image.new("L", (32, 32), 255)
    ImageDraw.Draw(bar).polygon([(4, 0), (31, 0), (27, 31), (0, 31)], fill=0)
    return np.asarray(bar)


def almost_filled_bar() -> np.ndarray:
    """A bold "1" stretched to its box, 95% black ink: paper left only in two corners."""
    bar = np.zeros((32, 32), np.uint8)
    bar[0, 13:] = bar[30, :12] = bar[31, :19] = 255
    return bar


def one_sided_grid_cell() -> Image.Image:
    """A "1" in a cell whose crop holds the grid's bottom edge only."""
    cell = Image.new("L", (64, 64), 200)
    draw = ImageDraw.Draw(cell)
    draw.line((0, 60, 63, 60), fill=60, width=2)
    draw.line((32, 10, 32, 46), fill=30, width=4)
    return cell
