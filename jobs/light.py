"""Even out the light on the paper of a photo before ink is told from paper.

A phone photo of a sheet is lit unevenly: a lamp on one side, the lens darkening the corners, a
shadow. One threshold for the whole image then takes a dark corner for ink, and the dark border
can even make jobs/ink.py take the paper for ink (a blot where the digit was). So the paper's own
brightness is estimated and divided out (flat-field correction, as document scanners do):
- the image is cut into blocks (a sixteenth of its shorter side); light paper's level in a block
  is its brightest pixel, since strokes do not count where any paper shows;
- a closing over 5x5 blocks (max, then min) bridges strokes that cover whole blocks while
  following the light's slow changes;
- that map, enlarged bilinearly to the image's size, divides the image, so the paper comes out
  even and a stroke keeps its contrast against the paper around it.
Dark paper (chalk, white ink) is the same, mirrored. Which of the two it is follows the pixels
that stand out from the paper's median level: ink stands out on one side only, whatever the
border looks like.

Only images at least MIN_SIDE pixels on their shorter side whose paper is uneven by more than
UNEVEN_PERCENT in both readings are touched: drawings, cells and crops with even paper go through
as they were, byte for byte. That also keeps the browser page's normalize.js, fed by its own
drawing pad, in agreement without this step (tests/test_other_runtimes.py would see it).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from classify_batch.jobs.components import max_filter, min_filter

# Below this shorter side an image is a crop or a cell: the digit fills too much of it to see the
# paper's light around it.
MIN_SIDE = 128
# Blocks per shorter side, and the smoothing's radius in blocks.
GRID = 16
SMOOTH_BLOCKS = 2
# Paper whose brightest and darkest estimates differ by less than this is left alone.
UNEVEN_PERCENT = 15
# A pixel this far from the paper's level is ink (twice jobs/ink.py's minimum contrast).
STANDS_OUT = 40


class Lighting:
    """The paper's brightness at every pixel of the image it was measured on."""

    def __init__(self, paper: np.ndarray, paper_is_light: bool) -> None:
        self.paper = paper
        self.paper_is_light = paper_is_light

    def even(
        self, image: np.ndarray, rows: slice | None = None, cols: slice | None = None
    ) -> np.ndarray:
        """`image` (the whole image, or the part at rows/cols of the measured one, at any scale)
        with the paper's light divided out."""
        paper = self.paper
        if rows is not None and cols is not None:
            paper = paper[rows, cols]
        if paper.shape != image.shape:
            paper = _enlarge(paper, image.shape)
        work, level = image.astype(np.int32), paper.astype(np.int32)
        if not self.paper_is_light:
            work, level = 255 - work, 255 - level
        # round(255 * v / paper), capped at white, in integers
        out = np.minimum(255, (510 * work + level) // (2 * np.maximum(level, 1))).astype(np.uint8)
        return out if self.paper_is_light else 255 - out


def measure_lighting(image: np.ndarray) -> Lighting | None:
    """The paper's light when it is uneven enough to matter, else None."""
    height, width = image.shape
    if min(height, width) < MIN_SIDE:
        return None
    block = min(height, width) // GRID
    rows, cols = height // block, width // block
    cells = (
        image[: rows * block, : cols * block]
        .reshape(rows, block, cols, block)
        .transpose(0, 2, 1, 3)
        .reshape(rows, cols, block * block)
    )
    # Light paper's level is each block's brightest pixel (strokes do not count where any paper
    # shows), and a closing over 5x5 blocks (max, then min) bridges strokes that cover whole
    # blocks; dark paper's the same, mirrored. When either reading finds even paper, the image
    # is left alone: a drawing's paper is even one way, whatever its strokes do the other way.
    light_paper = _closing(cells.max(axis=2))
    dark_paper = 255 - _closing(255 - cells.min(axis=2))
    if _even(light_paper) or _even(255 - dark_paper):
        return None
    paper_is_light = _ink_is_dark(image, cells, rows, cols)
    return Lighting(
        _enlarge(light_paper if paper_is_light else dark_paper, image.shape), paper_is_light
    )


def _enlarge(levels: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A map of levels (per block, or of a part of the image) at `shape`, bilinearly."""
    size = (shape[1], shape[0])
    return np.asarray(Image.fromarray(levels).resize(size, Image.Resampling.BILINEAR))


def _closing(levels: np.ndarray) -> np.ndarray:
    # On the blocks extended by their edge values: outside the image is neither paper nor ink.
    r = SMOOTH_BLOCKS
    padded = np.pad(levels, r, mode="edge")
    return np.ascontiguousarray(min_filter(max_filter(padded, r), r)[r:-r, r:-r])


def _even(light: np.ndarray) -> bool:
    low, high = int(light.min()), int(light.max())
    return (high - low) * 100 < UNEVEN_PERCENT * max(high, 1)


def _ink_is_dark(image: np.ndarray, cells: np.ndarray, rows: int, cols: int) -> bool:
    """Whether the pixels that stand out from the paper are darker than it.

    The paper's level here is the median of each block, then the median over 5x5 blocks: the
    paper fills most of nearly every block, in either polarity. Uneven light misleads the border
    test of jobs/ink.py (dark corners vote for dark paper); the ink's side does not change.
    """
    r = SMOOTH_BLOCKS
    padded = np.pad(_lower_median(cells), r, mode="edge")
    near = [
        padded[dy : dy + rows, dx : dx + cols] for dy in range(2 * r + 1) for dx in range(2 * r + 1)
    ]
    paper = _enlarge(_lower_median(np.stack(near, axis=2)), image.shape)
    offset = image.astype(np.int16) - paper.astype(np.int16)
    return bool(np.count_nonzero(offset < -STANDS_OUT) >= np.count_nonzero(offset > STANDS_OUT))


def _lower_median(values: np.ndarray) -> np.ndarray:
    middle = (values.shape[2] - 1) // 2
    return np.ascontiguousarray(np.partition(values, middle, axis=2)[:, :, middle])
