"""`digits show`: a grid picture for a folder of mixed inputs, broken files included."""

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import run_program
from PIL import Image, ImageFilter

from classify_batch.jobs import model as model_loader
from classify_batch.jobs import show
from classify_batch.jobs.discover import find_inputs

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = sorted((ROOT / "samples").glob("t10k-*.png"))  # the first test images, committed
SCANNED_LABEL = 7


def digits(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_program("digits", *args, cwd=cwd)


def scanned(digit: np.ndarray) -> Image.Image:
    """An MNIST digit as a scan: dark blue ink on off-white paper, RGB, 300x380, a little noise."""
    ink = Image.fromarray(digit).resize((220, 220), Image.Resampling.BICUBIC)
    alpha = np.zeros((380, 300), np.float32)
    alpha[70:290, 40:260] = np.asarray(ink.filter(ImageFilter.GaussianBlur(1.5))) / 255.0
    paper, pen = np.array([236, 231, 218.0]), np.array([35, 40, 70.0])
    rgb = paper * (1 - alpha[..., None]) + pen * alpha[..., None]
    rgb += np.random.default_rng(0).normal(0, 4, rgb.shape)
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    inputs = tmp_path / "in"
    inputs.mkdir()
    for sample in SAMPLES[:5]:
        shutil.copy(sample, inputs / sample.name)
    seven = np.asarray(Image.open(SAMPLES[0]))  # t10k-0000 is a 7
    scanned(seven).save(inputs / "scan.jpg", quality=90)
    (inputs / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a PNG")
    return inputs


def test_show_draws_a_grid_for_a_mixed_folder(folder, tmp_path):
    result = digits("show", folder, "--out", tmp_path / "grid.png", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "7 inputs, 1 failed" in result.stderr
    assert result.stdout == ""  # summaries go to stderr, like every command's
    with Image.open(tmp_path / "grid.png") as im:
        im.load()
        assert im.format == "PNG"
        assert im.width >= 600
        gray = np.asarray(im.convert("L"), dtype=np.float64)
    assert gray.min() < gray.max() and gray.std() > 10.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid.png", "in"]  # no temporary file


def test_default_output_is_show_png_in_the_current_folder(folder, tmp_path):
    result = digits("show", "in", "--limit", "3", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "3 inputs (--limit)" in result.stderr
    assert (tmp_path / "show.png").is_file()


def test_cells_hold_the_models_answers_and_the_reason_for_the_broken_file(folder):
    cells, more = show.collect(find_inputs([str(folder)]).sources, "auto", 100)
    show.classify(cells, model_loader.load(model_loader.default_model_path()))
    by_name = {Path(cell.name).name: cell for cell in cells}
    assert not more
    assert by_name["broken.png"].error in ("truncated image data", "not an image Pillow can read")
    assert by_name["broken.png"].given is None
    scan = by_name["scan.jpg"]
    assert scan.error is None and scan.digit == SCANNED_LABEL
    assert scan.given_size == (300, 380) and scan.given is not None and scan.given.mode == "RGB"
    for sample in SAMPLES[:5]:
        label = int(sample.stem.rsplit("-", 1)[1])
        assert by_name[sample.name].digit == label


def test_bad_options_and_missing_inputs_are_messages_not_tracebacks(folder, tmp_path):
    cases = [
        (["show", "in", "--preprocess", "sideways"], 2, "is not one of 'auto', 'mnist', 'none'"),
        (["show", "in", "--out", "grid.gif"], 2, "name a .png"),
        (["show", "in", "--out", "no/such/folder/grid.png"], 1, "existing folder"),
        (["show", "in", "--model", "missing.onnx"], 1, "model file not found"),
    ]
    (tmp_path / "empty").mkdir()
    cases.append((["show", "empty"], 1, "no inputs found"))
    for args, code, message in cases:
        result = digits(*args, cwd=tmp_path)
        assert result.returncode == code, (args, result.stderr)
        assert message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "show.png").exists()
