"""`digits evaluate --report`: the printed figures, and the page and PNGs as a reader opens them."""

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import run_program, tiled, varied
from PIL import Image

from classify_batch.export import evaluate
from classify_batch.export.report import history_beside, write_report
from classify_batch.jobs import model as model_loader

FIGURES = (
    "first-test-images.png",
    "confusion-matrix.png",
    "confident-mistakes.png",
    "training-curves.png",
)
MIN_SIDE = 600
# A page of nothing but background has a deviation near 0; the real figures are above 25.
MIN_PIXEL_STD = 10.0


def digits(*args: str | Path, **kwargs) -> subprocess.CompletedProcess[str]:
    return run_program("digits", *args, **kwargs)


def assert_readable_picture(path: Path) -> None:
    with Image.open(path) as im:
        im.load()
        width, height = im.size
        gray = np.asarray(im.convert("L"), dtype=np.float64)
    assert width >= MIN_SIDE and height >= MIN_SIDE, f"{path.name} is {width}x{height}"
    assert gray.min() < gray.max(), f"{path.name} is all one colour"
    assert gray.std() > MIN_PIXEL_STD, f"{path.name} looks blank (std {gray.std():.1f})"


@pytest.fixture(scope="module")
def card(committed_model: Path) -> dict:
    return json.loads(committed_model.with_name("model.json").read_text())


@pytest.fixture(scope="module")
def report(test_set, tmp_path_factory) -> tuple[subprocess.CompletedProcess[str], Path]:
    folder = tmp_path_factory.mktemp("report") / "out"
    return digits("evaluate", "--report", folder), folder


def test_evaluate_prints_the_accuracy_per_digit_the_cards_and_its_report(report, card):
    result, folder = report
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    expected = card["test_accuracy"]
    assert re.search(rf"accuracy: {expected:.4f}\s+card: {expected:.4f}", result.stdout)
    assert card["test_accuracy_note"] in result.stdout
    assert "(matches)" in result.stdout
    for digit, accuracy in card["test_accuracy_per_digit"].items():
        assert re.search(
            rf"^\s+{digit}\s+\d+\s+{accuracy:.4f}\s+{accuracy:.4f}$", result.stdout, re.M
        )
    assert f"report: {folder / 'index.html'}" in result.stdout
    assert sorted(p.name for p in folder.iterdir()) == sorted([*FIGURES, "index.html"])


@pytest.fixture(scope="module")
def sample_report(samples, committed_model, card, tmp_path_factory) -> Path:
    """The report's pages and figures drawn from 400 digits made from the samples (some of them
    misread), without MNIST: the end-to-end `digits evaluate --report` is tested above."""
    images, labels = varied(samples[0], 400), tiled(samples[1], 400)
    result = evaluate.run(model_loader.load(committed_model), images, labels)
    folder = tmp_path_factory.mktemp("sample-report") / "out"
    write_report(result, card, folder, history_beside(committed_model))
    return folder


def test_report_page_shows_every_figure_and_the_training_data_note(sample_report, card):
    folder = sample_report
    page = (folder / "index.html").read_text()
    for name in FIGURES:
        assert f'src="{name}"' in page
    assert "24,345 of 60,000" in page
    assert html.escape(card["architecture"]) in page  # "first layer's" is &#x27; in HTML
    assert f"{card['test_accuracy']:.2%}" in page


@pytest.mark.parametrize("name", FIGURES)
def test_each_figure_is_a_readable_picture(sample_report, name):
    assert_readable_picture(sample_report / name)


def test_no_temporary_files_are_left_behind(sample_report):
    assert sorted(p.name for p in sample_report.iterdir()) == sorted([*FIGURES, "index.html"])


def test_a_card_that_disagrees_is_flagged_and_the_report_says_so(
    test_set, committed_model, card, tmp_path
):
    shutil.copy(committed_model, tmp_path / "model.onnx")
    edited = {**card, "test_accuracy": round(card["test_accuracy"] - 0.01, 4)}
    (tmp_path / "model.json").write_text(json.dumps(edited))
    result = digits("evaluate", "--model", tmp_path / "model.onnx", "--report", tmp_path / "out")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "MISMATCH" in result.stdout
    assert "Traceback" not in result.stderr
    page = (tmp_path / "out" / "index.html").read_text()
    assert "MISMATCH" in page
    # No history.json beside this copy: the committed model's curves would describe another run.
    assert not (tmp_path / "out" / "training-curves.png").exists()
    assert "No training curves" in page


def test_an_unwritable_report_folder_is_an_error_not_a_traceback(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = digits("evaluate", "--report", blocker / "out", env={"MNIST_DATA_DIR": ""})
    assert result.returncode == 1
    # Said before any data is looked for: no MNIST is needed to find this out.
    assert result.stderr.startswith("digits evaluate: cannot write the report"), result.stderr
    assert "Traceback" not in result.stderr
