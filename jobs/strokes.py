"""Bring a cropped digit to MNIST's shape: aspect, resolution and stroke width.

The crop is first drawn at a working size (longer side STROKE_SIDE, four times MNIST's 20 px box)
where the strokes are measured and corrected, then shrunk to the box with Lanczos, the
anti-aliasing MNIST itself was made with. That one route serves all inputs:
- a 16x16 or 1-bit scan is enlarged with bilinear smoothing and, if it was two-level, cut again at
  half ink, which gives smooth edges instead of blocks;
- a hairline from a big canvas is drawn thicker, a marker stroke thinner, to MNIST's width;
- a digit stretched to fill its box (the ink spans the image, upright strokes much wider than
  lying ones) is squeezed back before it is fitted, and one that fills a square box with no such
  evidence is given handwriting's usual shape, taller than wide.

Sizes and widths come from integer counts and exact comparisons, and the filters are max/min and
Pillow's resampling, so the browser page (examples/web/normalize.js) reaches the same bytes.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from classify_batch.contract import DIGIT_BOX
from classify_batch.jobs.components import max_filter, min_filter

STROKE_SIDE = 4 * DIGIT_BOX
STROKE_LEVEL = 128
# MNIST's stroke width at the working size, as 2 * area / perimeter of the pixels at half ink:
# the median over the first 2,000 test digits is 7.4 (quartiles 6.4 and 8.9).
TARGET_WIDTH_HALVES = 15
# Widths outside [0.6, 1.5] x the target (4.5 to 11.25) are corrected; MNIST's own digits from its
# 5th percentile (5.0) to about its 94th are left as they are.
THIN_TENTHS, THICK_TENTHS = 6, 15
# Stretch is undone only when the ink spans the image and its strokes are 1.3 times wider one
# way than the other (a normal digit's strokes differ by less: pens are round).
STRETCH_TENTHS = 13
# A box two thirds full of ink is a stretched 1, squeezed to a sixth of its height.
FILLED_THIRDS, BAR_SIXTH = 3, 6
# A digit that fills a square box both ways, with no stroke evidence of a stretch, is given
# MNIST's median shape for digits other than 1 (width 0.8 of height; quartiles 0.65 and 0.9).
SQUARE_BOX_SQUEEZE = 0.8
# A single upright bar spanning the image's width is a stretched 1 when its strokes are wider
# than a quarter of its height; it is squeezed to an eighth, about a bold MNIST 1.
BAR_QUARTER, BAR_EIGHTH = 4, 8


def fit_box(crop: np.ndarray, spans_width: bool, spans_height: bool) -> np.ndarray:
    """The cropped ink (255 on 0) as a patch whose longer side is DIGIT_BOX."""
    mask = crop >= STROKE_LEVEL
    squeeze_x, squeeze_y = _stretch(mask, spans_width, spans_height)
    if (squeeze_x, squeeze_y) == (1.0, 1.0):
        crop = _thicken_before_shrinking(crop, mask)
    height, width = crop.shape
    eff_width, eff_height = width / squeeze_x, height / squeeze_y
    scale = STROKE_SIDE / max(eff_width, eff_height)
    size = (max(1, round(eff_width * scale)), max(1, round(eff_height * scale)))
    work = _resize(crop, size)
    if scale > 1 and _two_level(crop):
        work = np.where(work >= STROKE_LEVEL, 255, 0).astype(np.uint8)
    work, adjusted = _adjust_width(_full_strength(work))
    if not adjusted and (squeeze_x, squeeze_y) == (1.0, 1.0) and max(crop.shape) == DIGIT_BOX:
        return _full_strength(crop)  # already MNIST's size: MNIST in "mnist" mode stays itself
    work = _inked_part(work)
    height, width = work.shape
    scale = DIGIT_BOX / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return _full_strength(_resize(work, size))


def _thicken_before_shrinking(crop: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """A thin line shrunk several times over becomes a faint, dotted trace that the width
    correction cannot join again (a 2 px pen on a 1000 px tablet canvas): thickened first, at
    the crop's own resolution, to two working pixels, it survives the shrink whole."""
    side = max(crop.shape)
    if side <= 2 * STROKE_SIDE or not mask.any():
        return crop
    num, den = stroke_width_halves(mask)
    # width * STROKE_SIDE / side < 2 working pixels, with width = num / den; in integers
    if num * STROKE_SIDE >= 2 * den * side:
        return crop
    # radius = ceil((2 * side / STROKE_SIDE - width) / 2)
    radius = -(-(2 * side * den - STROKE_SIDE * num) // (2 * STROKE_SIDE * den))
    return max_filter(crop, radius)


def _inked_part(work: np.ndarray) -> np.ndarray:
    # A thinner stroke is also a shorter one: the box is fitted to what remains.
    rows = np.flatnonzero(work.any(axis=1))
    cols = np.flatnonzero(work.any(axis=0))
    if len(rows) == 0:
        return work
    return work[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def _resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if (image.shape[1], image.shape[0]) == size:
        return image
    # Lanczos anti-aliases when shrinking like MNIST's own resampling; when enlarging, bilinear
    # avoids Lanczos' ringing halo.
    shrink = size[0] < image.shape[1] or size[1] < image.shape[0]
    resample = Image.Resampling.LANCZOS if shrink else Image.Resampling.BILINEAR
    return np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize(size, resample))


def _two_level(crop: np.ndarray) -> bool:
    return bool(np.all((crop == 0) | (crop == 255)))


def _full_strength(patch: np.ndarray) -> np.ndarray:
    # A pen line that is thin next to a big digit shrinks to a faint sub-pixel trace; MNIST
    # strokes always peak at full white, so stretch the brightest pixel back to 255.
    peak = int(patch.max())
    if peak in (0, 255):
        return patch
    return np.rint(patch * (255.0 / peak)).astype(np.uint8)


def stroke_width_halves(mask: np.ndarray) -> tuple[int, int]:
    """Stroke width as the fraction 2 * area / perimeter (numerator, denominator).

    The perimeter counts pixel edges between ink and paper (the image's edge is paper).
    """
    padded = np.pad(mask, 1)
    area = int(np.count_nonzero(mask))
    perimeter = int(np.count_nonzero(padded[1:] != padded[:-1])) + int(
        np.count_nonzero(padded[:, 1:] != padded[:, :-1])
    )
    return 2 * area, max(1, perimeter)


def _adjust_width(work: np.ndarray) -> tuple[np.ndarray, bool]:
    mask = work >= STROKE_LEVEL
    if not mask.any():
        return work, False
    num, den = stroke_width_halves(mask)
    # width = num / den, target = TARGET_WIDTH_HALVES / 2; compared as integers.
    if 20 * num < THIN_TENTHS * TARGET_WIDTH_HALVES * den:
        # radius = round((target - width) / 2), at least 1
        radius = max(1, (TARGET_WIDTH_HALVES * den - 2 * num + 2 * den) // (4 * den))
        return max_filter(np.pad(work, radius), radius), True
    if 20 * num > THICK_TENTHS * TARGET_WIDTH_HALVES * den:
        radius = max(1, (2 * num - TARGET_WIDTH_HALVES * den + 2 * den) // (4 * den))
        thinner = min_filter(work, radius)
        # A thinner stroke must still be a stroke: keep the marker drawing if erosion erases it.
        if int(thinner.max()) >= STROKE_LEVEL:
            return thinner, True
    return work, False


def _runs(mask: np.ndarray) -> np.ndarray:
    """For every pixel, the length of the horizontal run of ink it belongs to (0 on paper)."""
    out = np.zeros(mask.shape, dtype=np.int32)
    for y in range(mask.shape[0]):
        row = mask[y].astype(np.int8)
        edges = np.flatnonzero(np.diff(np.concatenate(([0], row, [0]))))
        for start, stop in zip(edges[::2], edges[1::2], strict=True):
            out[y, start:stop] = stop - start
    return out


def _lower_median(values: np.ndarray) -> int:
    ordered = np.sort(values)
    return int(ordered[(len(ordered) - 1) // 2])


def _stretch(mask: np.ndarray, spans_width: bool, spans_height: bool) -> tuple[float, float]:
    """How much the ink was stretched across (x) and down (y), 1.0 when there is no evidence."""
    if not (spans_width or spans_height) or not mask.any():
        return 1.0, 1.0
    across = _runs(mask)
    down = _runs(mask.T).T
    upright = mask & (across < down)  # in an upright stroke, the run across is its width
    lying = mask & (down < across)
    count = int(np.count_nonzero(mask))
    has_upright = 10 * int(np.count_nonzero(upright)) >= count
    has_lying = 10 * int(np.count_nonzero(lying)) >= count
    height, width = mask.shape
    if spans_width and spans_height and FILLED_THIRDS * count >= 2 * mask.size:
        # Two thirds of the box is ink: no digit but a 1 fills its box that much (others stay
        # below 0.62 even when bold), so it is one upright stroke stretched sideways.
        return BAR_SIXTH * width / height, 1.0
    if has_upright and has_lying:
        wide = _lower_median(across[upright])
        tall = _lower_median(down[lying])
        # Only a sideways stretch is read from the strokes. Lying strokes thicker than upright
        # ones do not show a digit stretched down: a box filled to its height was fitted in
        # width too (NIST's scaling does both), and squashing such digits made them too wide
        # (on UCI optdigits it cost 5 right answers net; no stress set gained from it).
        if spans_width and 10 * wide >= STRETCH_TENTHS * tall:
            return wide / tall, 1.0
    elif has_upright and spans_width:
        wide = _lower_median(across[upright])
        if BAR_QUARTER * wide >= height:
            return BAR_EIGHTH * wide / height, 1.0
    if spans_width and spans_height and 10 * abs(height - width) <= max(height, width):
        # The ink fills a square box both ways and its strokes do not say how it got there: the
        # shape is the box's, not the digit's. Give it the typical handwriting shape instead.
        return 1.0, SQUARE_BOX_SQUEEZE
    return 1.0, 1.0
