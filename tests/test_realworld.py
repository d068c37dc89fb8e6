"""Handwriting that does not look like MNIST: tight binarized crops, 16x16 scans, grid cells,
hairlines, markers (benchmarks/stress.py makes them from MNIST test digits), blank inputs, and
real digits from other writers and another scanner (optdigits, through OPTDIGITS_FILE)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import almost_filled_bar, corner_lit_bar, one_sided_grid_cell, tight_zero
from PIL import Image, ImageDraw

from classify_batch.export.optdigits import OPTDIGITS_ENV, as_scans, load_optdigits
from classify_batch.jobs.errors import InputError
from classify_batch.jobs.light import measure_lighting
from classify_batch.jobs.model import load
from classify_batch.jobs.normalize import to_mnist

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from stress import STRESS_SETS, blank_cell  # noqa: E402

PER_CLASS = 500
# Classes that do not yet meet MAX_LOSS_POINTS with the committed model, and why (README, Known
# limits): their test reports the measured loss instead of failing.
KNOWN_SHORT = {
    "2 px pen on a 1000 px canvas": "a pen's centre line loses the stroke shapes MNIST's writers"
    " make (loops close, blobs thin); the normalizer draws the line whole",
}
# A stress class may cost at most this many points against the same digits as plain MNIST arrays.
MAX_LOSS_POINTS = 1.5


def read(image: np.ndarray) -> np.ndarray | None:
    try:
        return to_mnist(image)
    except InputError:
        return None


def ink_box(image: np.ndarray) -> tuple[int, int]:
    rows, cols = np.nonzero(image > 0.15 * image.max())
    return int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)


# --- blank means no digit -------------------------------------------------------------------------


@pytest.mark.parametrize("paper", [0, 200, 255])
def test_blank_paper_is_blank(paper: int) -> None:
    rng = np.random.default_rng(paper)
    sheet = np.clip(rng.normal(paper, 3, (90, 70)), 0, 255).astype(np.uint8)
    with pytest.raises(InputError, match="blank"):
        to_mnist(sheet)


@pytest.mark.parametrize("seed", range(12))
def test_empty_grid_cell_is_blank(seed: int) -> None:
    with pytest.raises(InputError, match="blank"):
        to_mnist(blank_cell(np.random.default_rng(seed)))


@pytest.mark.parametrize("shape", [(28, 28), (64, 64), (300, 200)])
def test_pure_noise_is_blank(shape: tuple[int, int]) -> None:
    noise = np.random.default_rng(5).integers(0, 256, shape, dtype=np.uint8)
    with pytest.raises(InputError, match="blank"):
        to_mnist(noise)


# --- shapes that broke the border-only rule (no data needed) --------------------------------------


@pytest.mark.parametrize("side", [16, 32, 48])
def test_tight_binarized_crop_is_read_not_blank(side: int) -> None:
    out = to_mnist(tight_zero(side))

    assert out.max() == 255
    assert out[14, 14] == 0  # the hole stays paper: the ring was taken for ink
    assert max(ink_box(out)) == 20


def test_square_tight_crop_is_given_handwriting_shape() -> None:
    height, width = ink_box(to_mnist(tight_zero(32)))

    assert height == 20 and 15 <= width <= 17  # MNIST's usual 0.8, not the box's square


def test_bold_one_filling_its_box_is_read_as_ink() -> None:
    height, width = ink_box(to_mnist(corner_lit_bar()))

    assert height == 20 and width <= 10  # the bar, not the two light corners


def test_bar_filling_almost_all_its_box_is_not_noise() -> None:
    height, width = ink_box(to_mnist(almost_filled_bar()))

    assert height == 20 and width <= 4  # a stretched 1, not "blank"


def test_grid_line_on_one_side_is_removed() -> None:
    height, width = ink_box(to_mnist(np.asarray(one_sided_grid_cell())))

    assert height == 20 and width <= 6  # the stroke alone, not the line under it


def test_grid_cell_lines_are_removed() -> None:
    cell = Image.new("L", (64, 64), 215)
    draw = ImageDraw.Draw(cell)
    draw.rectangle((0, 0, 63, 63), outline=40, width=2)  # the grid, all four edges
    draw.line((32, 14, 32, 50), fill=30, width=4)  # a "1"
    draw.point([(6, 57), (8, 58)], fill=170)  # pencil specks

    out = to_mnist(np.asarray(cell))

    height, width = ink_box(out)
    assert height == 20 and width <= 6  # the stroke alone, not the frame


def test_hairline_is_drawn_at_mnist_width() -> None:
    canvas = Image.new("L", (64, 64), 255)
    ImageDraw.Draw(canvas).ellipse((14, 6, 50, 58), outline=0, width=1)

    out = to_mnist(np.asarray(canvas))

    assert out.max() == 255
    assert np.count_nonzero(out >= 128) >= 45  # MNIST's 0s have about 90; a trace would have 30


def test_marker_is_drawn_thinner() -> None:
    canvas = Image.new("L", (64, 64), 255)
    ImageDraw.Draw(canvas).ellipse((12, 4, 52, 60), outline=0, width=14)

    out = to_mnist(np.asarray(canvas))

    assert np.count_nonzero(out[10:18, 12:16] >= 128) <= 4  # the hole stays open


def test_stretched_one_is_squeezed() -> None:
    bar = Image.new("L", (32, 32), 255)
    ImageDraw.Draw(bar).polygon([(12, 0), (31, 0), (19, 31), (0, 31)], fill=0)  # a wide 1

    height, width = ink_box(to_mnist(np.asarray(bar)))

    assert height == 20 and width <= 10  # a slanted MNIST 1, not a 20 px wide slab


# A digit drawn with a 2 px pen on a 1000 px canvas (a tablet, a drawing app's export), per digit.
THIN_DRAWINGS = {
    2: [[(300, 300), (450, 170), (650, 280), (600, 480), (300, 850), (720, 850)]],
    4: [[(600, 850), (600, 150), (250, 600), (750, 600)]],
    7: [[(300, 200), (700, 200), (450, 850)]],
    9: [[(650, 300), (500, 180), (330, 300), (400, 450), (650, 330)], [(650, 300), (620, 850)]],
}


@pytest.mark.parametrize("digit", list(THIN_DRAWINGS))
def test_thin_strokes_on_a_big_canvas_stay_whole(digit: int, committed_model: Path) -> None:
    canvas = Image.new("L", (1000, 1000), 255)
    for line in THIN_DRAWINGS[digit]:
        ImageDraw.Draw(canvas).line(line, fill=0, width=2)

    out = to_mnist(np.asarray(canvas))

    assert ink_box(out)[0] == 20  # every stroke kept, not the piece that was heaviest
    assert load(committed_model)(out[None])[1][0] == digit


def test_thin_pen_on_a_big_canvas_is_drawn_at_mnist_weight() -> None:
    canvas = Image.new("L", (1000, 1000), 255)
    draw = ImageDraw.Draw(canvas)
    draw.arc((350, 150, 650, 500), 200, 90, fill=0, width=2)  # a "3" in two arcs
    draw.arc((330, 480, 670, 850), 270, 160, fill=0, width=2)

    out = to_mnist(np.asarray(canvas))

    # MNIST's 3s have about 100 such pixels; shrunk 10 times before thickening, the pen's line
    # came out as a faint, broken trace of 60.
    assert np.count_nonzero(out >= 128) >= 85


def test_digit_on_ruled_paper_is_read_without_the_lines() -> None:
    page = Image.new("L", (600, 450), 235)
    draw = ImageDraw.Draw(page)
    for y in range(20, 450, 40):
        draw.line((0, y, 599, y), fill=160, width=2)  # a notebook's ruled lines, mid-grey
    draw.line([(240, 120), (360, 120), (270, 330)], fill=40, width=14)  # a "7" across them

    height, width = ink_box(to_mnist(np.asarray(page)))

    assert height == 20 and width <= 16  # the digit, not a page-wide line joined to it


# --- photos: uneven light -----------------------------------------------------------------------


FOUR = [[(430, 180), (370, 330), (470, 330)], [(450, 260), (450, 420)]]


def sheet_photo(
    light_falloff: float,
    dark_paper: bool = False,
    size: tuple[int, int] = (800, 600),
    strokes: list[list[tuple[int, int]]] = FOUR,
) -> np.ndarray:
    """A digit (a "4") drawn in pen on a sheet, the light falling off towards the corners the way
    a phone's lens and a desk lamp do; falloff 0 is an evenly lit scan of the same sheet."""
    pen = Image.new("L", size, 0)
    for line in strokes:
        ImageDraw.Draw(pen).line(line, fill=255, width=14)
    ink = np.asarray(pen, np.float32) / 255
    width, height = size
    y, x = np.mgrid[-1 : 1 : height * 1j, -1 : 1 : width * 1j].astype(np.float32)
    light = 1.0 + light_falloff * (0.4 * x - x * x - y * y)
    paper, pen_level = (100.0, 240.0) if dark_paper else (225.0, 30.0)
    grain = np.random.default_rng(1).normal(0, 3, light.shape).astype(np.float32)
    pixels = (paper * (1 - ink) + pen_level * ink) * light + grain
    return np.clip(pixels, 0, 255).astype(np.uint8)


def test_photo_with_dark_corners_reads_like_an_even_scan() -> None:
    even = to_mnist(sheet_photo(0.0)) >= 128

    photo = to_mnist(sheet_photo(0.45)) >= 128  # corners from a quarter of the light to black

    overlap = np.count_nonzero(even & photo) / np.count_nonzero(even | photo)
    assert overlap >= 0.8  # the same strokes, not dark corners or the paper around the digit


def test_small_digit_in_a_big_unevenly_lit_photo_is_found(committed_model: Path) -> None:
    seven = [[(600, 500), (720, 500), (630, 680)]]  # 3% of a 12 MP photo's width
    photo = sheet_photo(0.3, size=(4000, 3000), strokes=seven)

    out = to_mnist(photo)  # the digit is re-cut from the full image, its light evened too

    assert ink_box(out)[0] == 20 and load(committed_model)(out[None])[1][0] == 7


def test_chalk_on_an_unevenly_lit_board_is_read_too() -> None:
    even = to_mnist(sheet_photo(0.0, dark_paper=True)) >= 128

    photo = to_mnist(sheet_photo(0.45, dark_paper=True)) >= 128

    assert np.count_nonzero(even & photo) / np.count_nonzero(even | photo) >= 0.8


def test_even_paper_is_not_relit() -> None:
    assert measure_lighting(sheet_photo(0.0)) is None
    bold = Image.new("L", (300, 300), 60)  # a marker drawing that covers whole blocks
    ImageDraw.Draw(bold).line([(40, 40), (260, 150), (60, 260)], fill=250, width=70)
    assert measure_lighting(np.asarray(bold)) is None


# --- the stress sets against plain MNIST ----------------------------------------------------------


@pytest.fixture(scope="module")
def plain(test_set, committed_model: Path):
    images, labels = test_set[0][:PER_CLASS], test_set[1][:PER_CLASS]
    classify = load(committed_model)
    return images, labels, classify, float((classify(images)[1] == labels).mean())


@pytest.mark.mnist
@pytest.mark.parametrize("name", list(STRESS_SETS))
def test_stress_class_reads_like_plain_mnist(name: str, plain) -> None:
    images, labels, classify, plain_accuracy = plain
    rng = np.random.default_rng(0)
    read_back = [read(STRESS_SETS[name](image, rng)) for image in images]
    blank = [i for i, out in enumerate(read_back) if out is None]
    assert blank == [], f"{name}: real digits refused as blank: {blank[:10]}"
    accuracy = float((classify(np.stack(read_back))[1] == labels).mean())  # type: ignore[arg-type]
    loss = 100 * (plain_accuracy - accuracy)
    if name in KNOWN_SHORT and loss > MAX_LOSS_POINTS:
        pytest.xfail(f"{KNOWN_SHORT[name]} (loses {loss:.1f} points)")
    assert loss <= MAX_LOSS_POINTS, f"{name}: {accuracy:.2%} vs plain MNIST {plain_accuracy:.2%}"


# --- optdigits: other writers, another scanner --------------------------------------------------


@pytest.fixture(scope="module")
def optdigits() -> tuple[np.ndarray, np.ndarray]:
    path = os.environ.get(OPTDIGITS_ENV)
    if not path:
        pytest.skip("set OPTDIGITS_FILE to UCI optdigits' optdigits-orig.tra to run this test")
    return load_optdigits(Path(path))


def test_optdigits_are_read_and_none_is_blank(optdigits, committed_model: Path) -> None:
    bitmaps, labels = optdigits
    images = as_scans(bitmaps)
    read_back = [read(image) for image in images]
    blank = [i for i, out in enumerate(read_back) if out is None]
    assert blank == [], f"optdigits refused as blank: {blank[:10]}"
    digits = load(committed_model)(np.stack(read_back))[1]  # type: ignore[arg-type]
    assert (digits == labels).mean() >= 0.93


@pytest.mark.mnist
def test_scan_like_photo_with_a_small_digit_is_not_blank(test_set, tmp_path: Path) -> None:
    """benchmarks/realworld.py's scan-like variant of test digit 394: a small pencil 9 on paper lit
    unevenly, which Otsu splits in two; the middle of the range still finds the paper."""
    from realworld import scan

    from classify_batch.jobs.images import read_image

    rng = np.random.default_rng(0)
    for image in test_set[0][:394]:
        scan(image, rng)  # the variant draws from one generator, digit after digit
    picture, _ = scan(test_set[0][394], rng)
    picture.save(tmp_path / "394.jpg", quality=75)

    out = to_mnist(read_image(tmp_path / "394.jpg", draft_side=512))

    assert max(ink_box(out)) == 20
