"""Make any digit image look like an MNIST sample: 28x28 uint8, white ink on black.

MNIST was made by fitting each digit into a 20x20 box (keeping its aspect ratio, with
anti-aliasing) and pasting it into a 28x28 field so that its centre of mass sits at the centre.
The model only knows that distribution, so scans and photos are brought to it the same way:
jobs/light.py evens out a photo's light, jobs/ink.py tells ink from paper, jobs/cleanup.py keeps
only the digit's strokes, and jobs/strokes.py fits them to the box at MNIST's stroke width.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from classify_batch.contract import DIGIT_BOX, IMAGE_SIDE, PREPROCESS_MODES
from classify_batch.jobs.errors import BLANK, InputError

MNIST_SIDE = IMAGE_SIDE
# Centre of mass of MNIST digits in (row, col) pixel indices: measured mean is (13.99, 14.01).
CENTRE = 14.0

# Big photos are box-reduced to at most this long side before any numpy work; a digit that fills
# a decent part of the frame keeps far more resolution than the 20 px it ends up with.
WORK_SIDE = 512
# When the ink is smaller than this (in reduced pixels), re-crop it from the full-size image.
REFINE_BELOW = 4 * DIGIT_BOX

# Pixels below this fraction of full ink are anti-aliasing or dirt, not part of the bounding box.
BBOX_FRACTION = 0.15
# Fraction of the ink mass allowed outside the box on each side: drops isolated specks.
BBOX_TRIM = 0.002

# An input already looks like MNIST when its outer ring is dark and it has bright ink.
_MNIST_RING = 2
_MNIST_MAX_RING_MEAN = 32.0
_MNIST_MIN_INK = 128

if TYPE_CHECKING:
    from classify_batch.jobs.ink import Levels
    from classify_batch.jobs.light import Lighting


def to_mnist(gray: np.ndarray, mode: str = "auto") -> np.ndarray:
    """Return `gray` (uint8, H x W) as a 28x28 uint8 MNIST-style image.

    "none" requires a 28x28 input and returns it as is; "mnist" always normalizes; "auto"
    returns a 28x28 input that already looks like MNIST untouched and normalizes anything else.
    """
    if mode not in PREPROCESS_MODES:
        raise ValueError(f"mode must be one of {', '.join(PREPROCESS_MODES)}, not {mode!r}")
    image = _check_gray(gray)
    if mode == "none":
        if image.shape != (MNIST_SIDE, MNIST_SIDE):
            height, width = image.shape
            raise InputError(
                f"is {width}x{height} pixels, not 28x28 (use --preprocess auto or mnist)"
            )
        return image
    if mode == "auto" and looks_like_mnist(image):
        return image
    return _normalize(image)


def looks_like_mnist(image: np.ndarray) -> bool:
    """True for a 28x28 image with a dark border and bright ink, as MNIST itself holds them."""
    if image.shape != (MNIST_SIDE, MNIST_SIDE):
        return False
    ring = _border(image, _MNIST_RING)
    return float(ring.mean()) <= _MNIST_MAX_RING_MEAN and int(image.max()) >= _MNIST_MIN_INK


def _check_gray(gray: np.ndarray) -> np.ndarray:
    image = np.asarray(gray)
    if image.dtype != np.uint8:
        raise TypeError(f"expected a uint8 grayscale array, got dtype {image.dtype}")
    if image.ndim != 2:
        raise InputError(f"expected a grayscale image, got an array of shape {image.shape}")
    if image.size == 0:
        raise InputError(f"image has no pixels: {image.shape[0]}x{image.shape[1]}")
    return image


def _normalize(image: np.ndarray) -> np.ndarray:
    # The steps are imported on first use: a run over MNIST-like files or arrays never needs them.
    from classify_batch.jobs.cleanup import keep_digit
    from classify_batch.jobs.ink import measure_levels
    from classify_batch.jobs.light import measure_lighting
    from classify_batch.jobs.strokes import fit_box

    preview, factor = _reduce(image, WORK_SIDE)
    lighting = measure_lighting(preview)
    if lighting is not None:
        preview = lighting.even(preview)
    levels = measure_levels(preview)
    inked = keep_digit(levels.lut()[preview])
    rows, cols = _ink_box(inked)
    # Ink that runs from edge to edge may have been stretched to fill the image.
    spans_height = bool(inked[0].any() and inked[-1].any())
    spans_width = bool(inked[:, 0].any() and inked[:, -1].any())
    if factor > 1 and max(rows.stop - rows.start, cols.stop - cols.start) < REFINE_BELOW:
        inked, rows, cols = _refine(image, levels, lighting, rows, cols, factor)
    return _place(fit_box(inked[rows, cols], spans_width, spans_height))


def _reduce(image: np.ndarray, max_side: int) -> tuple[np.ndarray, int]:
    factor = math.ceil(max(image.shape) / max_side)
    if factor <= 1:
        return image, 1
    # Image.reduce is an integer box filter: fast, and it averages thin strokes instead of
    # dropping them the way sampling would.
    return np.asarray(Image.fromarray(image).reduce(factor)), factor


def _border(image: np.ndarray, width: int) -> np.ndarray:
    width = min(width, (min(image.shape) + 1) // 2)
    middle = image[width:-width] if image.shape[0] > 2 * width else image[:0]
    return np.concatenate(
        [
            image[:width].ravel(),
            image[-width:].ravel(),
            middle[:, :width].ravel(),
            middle[:, -width:].ravel(),
        ]
    )


def _ink_box(inked: np.ndarray) -> tuple[slice, slice]:
    weights = np.where(inked > round(BBOX_FRACTION * 255), inked, 0).astype(np.float64)
    total = float(weights.sum())
    if total == 0.0:
        raise InputError(BLANK)
    return _trimmed_span(weights.sum(axis=1), total), _trimmed_span(weights.sum(axis=0), total)


def _trimmed_span(profile: np.ndarray, total: float) -> slice:
    cumulative = np.cumsum(profile)
    margin = BBOX_TRIM * total
    start = int(np.searchsorted(cumulative, margin, side="right"))
    stop = int(np.searchsorted(cumulative, total - margin, side="left")) + 1
    return slice(start, max(stop, start + 1))


def _refine(
    image: np.ndarray,
    levels: Levels,
    lighting: Lighting | None,
    rows: slice,
    cols: slice,
    factor: int,
) -> tuple[np.ndarray, slice, slice]:
    # The digit is small in a big photo: crop it (with a reduced pixel of margin) from the full
    # image and reduce only as far as needed, instead of upscaling a few blurry preview pixels.
    near_rows = slice(max(0, rows.start - 1), rows.stop + 1)
    near_cols = slice(max(0, cols.start - 1), cols.stop + 1)
    top, left = near_rows.start * factor, near_cols.start * factor
    bottom = min(image.shape[0], near_rows.stop * factor)
    right = min(image.shape[1], near_cols.stop * factor)
    crop, _ = _reduce(image[top:bottom, left:right], 2 * REFINE_BELOW)
    if lighting is not None:
        crop = lighting.even(crop, near_rows, near_cols)
    inked = levels.lut()[crop]
    crop_rows, crop_cols = _ink_box(inked)
    return inked, crop_rows, crop_cols


def _place(patch: np.ndarray) -> np.ndarray:
    height, width = patch.shape
    weights = patch.astype(np.float64)
    mass = float(weights.sum())
    if mass == 0.0:
        raise InputError(BLANK)
    centre_row = float(weights.sum(axis=1) @ np.arange(height)) / mass
    centre_col = float(weights.sum(axis=0) @ np.arange(width)) / mass
    top = _offset(CENTRE - centre_row, MNIST_SIDE - height)
    left = _offset(CENTRE - centre_col, MNIST_SIDE - width)
    canvas = np.zeros((MNIST_SIDE, MNIST_SIDE), dtype=np.uint8)
    canvas[top : top + height, left : left + width] = patch
    return canvas


def _offset(shift: float, room: int) -> int:
    # Round half up (not to even) and keep the whole patch on the canvas.
    return min(max(math.floor(shift + 0.5), 0), room)


def normalize_rows(images: np.ndarray, mode: str) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """to_mnist over a chunk of 28x28 array rows, without a Python loop for the common case.

    Returns the images that could be used and (row, reason) for those that could not.
    """
    if mode == "none" or len(images) == 0:
        return images, []
    if mode == "auto":
        ring = np.ones((MNIST_SIDE, MNIST_SIDE), dtype=bool)
        ring[_MNIST_RING:-_MNIST_RING, _MNIST_RING:-_MNIST_RING] = False
        # The same test as looks_like_mnist, for all rows at once.
        mnist_like = (images[:, ring].mean(axis=1) <= _MNIST_MAX_RING_MEAN) & (
            images.max(axis=(1, 2)) >= _MNIST_MIN_INK
        )
        todo = np.flatnonzero(~mnist_like)
    else:
        todo = np.arange(len(images))
    if len(todo) == 0:
        return images, []
    out = images.copy()
    failed: list[tuple[int, str]] = []
    for row in todo.tolist():
        try:
            out[row] = _normalize(images[row])
        except InputError as e:
            failed.append((row, str(e)))
    if failed:
        keep = np.ones(len(images), dtype=bool)
        keep[[row for row, _ in failed]] = False
        out = out[keep]
    return out, failed
