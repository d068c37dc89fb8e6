"""to_mnist on synthetic digits drawn with Pillow, and (with MNIST_DATA_DIR) on real MNIST."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from classify_batch.jobs.errors import InputError
from classify_batch.jobs.normalize import PREPROCESS_MODES, to_mnist


def centre_of_mass(image: np.ndarray) -> tuple[float, float]:
    weights = image.astype(np.float64)
    mass = weights.sum()
    rows, cols = np.indices(image.shape)
    return float((rows * weights).sum() / mass), float((cols * weights).sum() / mass)


def ink_box(image: np.ndarray, fraction: float = 0.15) -> tuple[int, int]:
    """Height and width of the pixels brighter than `fraction` of the brightest."""
    rows, cols = np.nonzero(image > fraction * image.max())
    return int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)


def assert_centred(image: np.ndarray, tolerance: float = 1.0) -> None:
    row, col = centre_of_mass(image)
    assert abs(row - 14) <= tolerance and abs(col - 14) <= tolerance, (row, col)


def assert_mnist_like(image: np.ndarray) -> None:
    assert image.shape == (28, 28)
    assert image.dtype == np.uint8
    assert image.max() >= 200  # bright ink
    assert image[:2].max() == image[-2:].max() == 0  # black margins, like MNIST
    assert 19 <= max(ink_box(image)) <= 20
    assert_centred(image)


def mnist_ring() -> np.ndarray:
    """A "0" the way MNIST holds it: white on black, inside 20x20, centred."""
    img = Image.new("L", (28, 28), 0)
    ImageDraw.Draw(img).ellipse((7, 4, 20, 23), outline=255, width=3)
    return np.asarray(img)


def paper_drawing(
    size: tuple[int, int] = (280, 200), box: tuple[int, int, int, int] = (90, 40, 190, 170)
) -> np.ndarray:
    """A dark "0" drawn on white paper, `box` being (left, top, right, bottom)."""
    img = Image.new("L", size, 255)
    ImageDraw.Draw(img).ellipse(box, outline=0, width=14)
    return np.asarray(img)


def test_modes_are_exported() -> None:
    assert PREPROCESS_MODES == ("auto", "mnist", "none")


def test_auto_passes_an_mnist_style_image_through_untouched() -> None:
    digit = mnist_ring()
    before = digit.copy()

    out = to_mnist(digit)

    assert np.array_equal(out, before)
    assert out.dtype == np.uint8
    assert np.array_equal(digit, before)


def test_auto_passes_an_off_centre_mnist_style_image_untouched() -> None:
    # Recentring would change what the model sees for MNIST files; auto must not second-guess.
    digit = np.roll(mnist_ring(), 2, axis=1)

    assert np.array_equal(to_mnist(digit, "auto"), digit)


def test_dark_ink_on_white_paper_becomes_mnist_style() -> None:
    out = to_mnist(paper_drawing())

    assert_mnist_like(out)
    assert out[0, 0] == 0


def test_longer_side_is_twenty_and_aspect_ratio_is_kept() -> None:
    img = Image.new("L", (300, 300), 255)
    ImageDraw.Draw(img).rectangle((50, 140, 249, 179), fill=0)  # 200 wide, 40 tall

    height, width = ink_box(to_mnist(np.asarray(img), "mnist"))

    assert width == 20
    assert 3 <= height <= 5


def test_tiny_digit_in_a_corner_is_centred() -> None:
    out = to_mnist(paper_drawing(size=(200, 200), box=(4, 6, 16, 22)))

    assert_mnist_like(out)


def test_inverted_28x28_is_inverted_and_centred_in_auto() -> None:
    dark_on_light = 255 - np.roll(mnist_ring(), (3, -3), axis=(0, 1))

    out = to_mnist(dark_on_light, "auto")

    assert out[0, 0] == 0
    assert out.max() == 255
    assert_centred(out)
    assert max(ink_box(out)) <= 20


def test_none_refuses_anything_but_28x28() -> None:
    with pytest.raises(InputError) as info:
        to_mnist(np.zeros((100, 60), dtype=np.uint8), "none")  # 100 rows of 60 pixels

    assert str(info.value) == "is 60x100 pixels, not 28x28 (use --preprocess auto or mnist)"


def test_none_returns_28x28_as_is_even_dark_on_light() -> None:
    image = 255 - mnist_ring()

    assert np.array_equal(to_mnist(image, "none"), image)


@pytest.mark.parametrize("mode", ["auto", "mnist"])
@pytest.mark.parametrize("value", [0, 128, 255])
def test_blank_image_is_an_input_error(mode: str, value: int) -> None:
    with pytest.raises(InputError, match="no ink found: the image is blank"):
        to_mnist(np.full((50, 40), value, dtype=np.uint8), mode)


def test_faint_paper_noise_is_blank() -> None:
    noise = np.random.default_rng(3).normal(200, 2, (120, 90))
    paper = np.clip(noise, 0, 255).astype(np.uint8)

    with pytest.raises(InputError, match="blank"):
        to_mnist(paper)


def test_mnist_mode_only_recentres_an_mnist_style_image() -> None:
    digit = mnist_ring()  # centre of mass at (13.5, 13.5): a half-pixel shift is allowed

    out = to_mnist(digit, "mnist")

    assert_centred(out)
    assert max(ink_box(out)) <= 20
    shifts = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    assert any(np.array_equal(out, np.roll(digit, s, axis=(0, 1))) for s in shifts)


def test_grey_paper_with_uneven_light_and_noise() -> None:
    rows, cols = np.indices((300, 400))
    paper = 150 + 60 * cols / 400 + 20 * rows / 300  # lighting gradient across the photo
    ink = np.asarray(paper_drawing(size=(400, 300), box=(150, 60, 260, 240))) < 128
    photo = np.where(ink, 50.0, paper) + np.random.default_rng(4).normal(0, 6, paper.shape)

    out = to_mnist(np.clip(photo, 0, 255).astype(np.uint8))

    assert_mnist_like(out)
    assert np.count_nonzero(out[:4]) == 0  # the paper, gradient and noise are gone


def test_isolated_speck_does_not_stretch_the_box() -> None:
    drawing = paper_drawing().copy()
    drawing[195:197, 2:4] = 0  # a dust speck far from the digit

    out = to_mnist(drawing)

    assert_mnist_like(out)


def test_ink_touching_the_border_is_not_taken_for_paper() -> None:
    img = Image.new("L", (60, 80), 255)
    ImageDraw.Draw(img).line((30, 0, 30, 79), fill=0, width=8)  # a "1" cut by the frame

    out = to_mnist(np.asarray(img))

    assert out.max() == 255
    assert ink_box(out)[0] == 20
    assert_centred(out)


def test_big_phone_photo_is_normalized() -> None:
    img = Image.new("L", (4000, 3000), 255)
    ImageDraw.Draw(img).ellipse((1500, 700, 2400, 2300), outline=0, width=160)

    assert_mnist_like(to_mnist(np.asarray(img)))


def test_thin_pen_line_on_a_big_digit_stays_full_strength() -> None:
    photo = paper_drawing(size=(4000, 3000), box=(1500, 700, 2400, 2300))  # 14 px pen

    out = to_mnist(photo)

    assert out.max() == 255
    assert_centred(out)


def test_small_digit_in_a_big_photo_keeps_its_strokes() -> None:
    # Reduced to the working size the ring is a few blurred pixels; it is re-cropped at full size.
    photo = paper_drawing(size=(4000, 3000), box=(300, 300, 400, 440))

    out = to_mnist(photo)

    assert_mnist_like(out)
    assert np.count_nonzero(out > 200) >= 25


def test_thin_one_stroke_is_kept() -> None:
    img = Image.new("L", (100, 160), 255)
    ImageDraw.Draw(img).line((50, 20, 50, 140), fill=0, width=4)

    out = to_mnist(np.asarray(img))

    assert ink_box(out)[0] == 20
    assert out.max() >= 200
    assert_centred(out)


def test_unknown_mode_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="mode"):
        to_mnist(mnist_ring(), "fancy")


def test_colour_array_is_an_input_error() -> None:
    with pytest.raises(InputError, match="grayscale"):
        to_mnist(np.zeros((28, 28, 3), dtype=np.uint8))


def test_empty_array_is_an_input_error() -> None:
    with pytest.raises(InputError, match="no pixels"):
        to_mnist(np.zeros((0, 10), dtype=np.uint8))


@pytest.mark.mnist
def test_real_mnist_survives_normalization(test_set: tuple[np.ndarray, np.ndarray]) -> None:
    images = test_set[0][:200]

    for image in images:
        assert to_mnist(image, "auto") is image or np.array_equal(to_mnist(image), image)
        out = to_mnist(image, "mnist")
        row, col = centre_of_mass(out)
        assert abs(row - 14) <= 1.5 and abs(col - 14) <= 1.5
        assert max(ink_box(out)) <= 20
