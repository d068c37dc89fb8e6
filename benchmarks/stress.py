"""Synthetic stress sets: MNIST test digits drawn the ways real handwriting reaches the job.

Each maker turns one 28x28 MNIST digit (white on black) into a grayscale picture the way a form
reader, a scanner, a grid photo or a drawing tablet would hand it over. Used by
benchmarks/realworld.py and tests/test_realworld.py; nothing made here is ever saved in the repo.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

Maker = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def _crop(digit: np.ndarray, level: int = 40) -> np.ndarray:
    rows = np.flatnonzero((digit >= level).any(axis=1))
    cols = np.flatnonzero((digit >= level).any(axis=0))
    return digit[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def _fit(digit: np.ndarray, side: int) -> np.ndarray:
    """The ink crop enlarged, aspect kept, so that its longer side is `side`."""
    crop = _crop(digit)
    scale = side / max(crop.shape)
    size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
    return np.asarray(Image.fromarray(crop).resize(size, Image.Resampling.BICUBIC))


def tight(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Cropped to the ink, stretched to fill a square box, then binarized (a form reader's
    order): black ink on white, touching all four edges."""
    side = int(rng.choice([16, 32, 32, 48]))
    crop = _crop(digit, 128)
    box = Image.fromarray(crop).resize((side, side), Image.Resampling.BILINEAR)
    return np.where(np.asarray(box) >= 128, 0, 255).astype(np.uint8)


def low_res(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A 16x16 scan, 8-bit or 1-bit, the digit filling it (aspect kept), dark on light."""
    crop = _crop(digit)
    scale = 16 / max(crop.shape)
    size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
    small = np.asarray(Image.fromarray(crop).resize(size, Image.Resampling.LANCZOS))
    canvas = np.zeros((16, 16), np.uint8)
    top, left = (16 - size[1]) // 2, (16 - size[0]) // 2
    canvas[top : top + size[1], left : left + size[0]] = small
    if rng.random() < 0.5:
        canvas = np.where(canvas >= 128, 255, 0).astype(np.uint8)
    return 255 - canvas


def _cell(digit: np.ndarray | None, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A grid cell: the digit in pen on tinted paper, grid lines on 2-4 edges, pencil specks."""
    side = int(rng.integers(48, 97))
    alpha = np.zeros((side, side))
    if digit is not None:
        ink = _fit(digit, int(side * rng.uniform(0.5, 0.72))).astype(np.float64) / 255
        top = int(rng.integers(side // 8, side - ink.shape[0] - side // 8 + 1))
        left = int(rng.integers(side // 8, side - ink.shape[1] - side // 8 + 1))
        alpha[top : top + ink.shape[0], left : left + ink.shape[1]] = ink
    paper = float(rng.integers(175, 245))
    pen = float(rng.integers(10, 90))
    image = paper * (1 - alpha) + pen * alpha
    grid = float(rng.integers(0, 100))
    edges = rng.permutation(4)[: int(rng.integers(2, 5))]
    for edge in edges:
        at, width = int(rng.integers(0, 4)), int(rng.integers(1, 4))
        band = slice(at, at + width)
        if edge == 0:
            image[band, :] = grid
        elif edge == 1:
            image[side - at - width : side - at, :] = grid
        elif edge == 2:
            image[:, band] = grid
        else:
            image[:, side - at - width : side - at] = grid
    corner_y = int(rng.choice([side // 10, side - side // 5]))
    corner_x = int(rng.choice([side // 10, side - side // 5]))
    for _ in range(int(rng.integers(2, 6))):
        y, x = (
            corner_y + int(rng.integers(0, side // 10)),
            corner_x + int(rng.integers(0, side // 10)),
        )
        image[y : y + int(rng.integers(1, 3)), x : x + int(rng.integers(1, 3))] = (
            paper - rng.uniform(30, 70)
        )
    return image, alpha


def grid_cell(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    image, _ = _cell(digit, rng)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def photo_cell(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A grid cell photographed: uneven light, sensor noise, blur."""
    image, _ = _cell(digit, rng)
    side = image.shape[0]
    light = np.linspace(rng.uniform(0.75, 1.0), rng.uniform(0.75, 1.0), side)
    image = image * (light[None, :] if rng.random() < 0.5 else light[:, None])
    image += rng.normal(0, rng.uniform(2, 8), image.shape)
    picture = Image.fromarray(np.clip(np.rint(image), 0, 255).astype(np.uint8))
    return np.asarray(picture.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2))))


def _skeleton(mask: np.ndarray) -> np.ndarray:
    """Zhang-Suen thinning: the 1-pixel centre line of each stroke."""
    image = np.pad(mask.astype(np.uint8), 1)
    changed = True
    while changed:
        changed = False
        for step in (0, 1):
            p = image
            n = [
                np.roll(p, s, axis=(0, 1))
                for s in [(1, 0), (1, -1), (0, -1), (-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1)]
            ]  # P2..P9 clockwise from north
            count = sum(n)
            transitions = sum((n[i] == 0) & (n[(i + 1) % 8] == 1) for i in range(8))
            if step == 0:
                cond = (n[0] * n[2] * n[4] == 0) & (n[2] * n[4] * n[6] == 0)
            else:
                cond = (n[0] * n[2] * n[6] == 0) & (n[0] * n[4] * n[6] == 0)
            drop = (p == 1) & (count >= 2) & (count <= 6) & (transitions == 1) & cond
            if drop.any():
                image = np.where(drop, 0, image).astype(np.uint8)
                changed = True
    return image[1:-1, 1:-1].astype(bool)


def hairline(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A 1-pixel mouse or stylus line on a 64x64 canvas: dark on white."""
    side = 64
    big = _fit(digit, int(rng.integers(40, 57))) >= 128
    canvas = np.zeros((side, side), bool)
    top, left = (side - big.shape[0]) // 2, (side - big.shape[1]) // 2
    canvas[top : top + big.shape[0], left : left + big.shape[1]] = _skeleton(big)
    return np.where(canvas, 0, 255).astype(np.uint8)


def tablet(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A 2 px pen on a 1000 px canvas (a tablet, a drawing app's export): the digit's centre line
    drawn as connected segments, dark on white, filling half to four fifths of the canvas."""
    side = 1000
    centre = _skeleton(_fit(digit, 64) >= 128)
    scale = side * rng.uniform(0.5, 0.8) / 64
    offset_x, offset_y = rng.uniform(0.05, 0.2, 2) * side
    canvas = Image.new("L", (side, side), 255)
    draw = ImageDraw.Draw(canvas)
    height, width = centre.shape
    for y, x in zip(*np.nonzero(centre), strict=True):
        for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):
            if 0 <= y + dy < height and 0 <= x + dx < width and centre[y + dy, x + dx]:
                start = (offset_x + x * scale, offset_y + y * scale)
                end = (offset_x + (x + dx) * scale, offset_y + (y + dy) * scale)
                draw.line([start, end], fill=0, width=2)
    return np.asarray(canvas)


def marker(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A felt marker on a 64x64 canvas: strokes about a fifth of the digit's height."""
    side = 64
    big = _fit(digit, int(rng.integers(44, 57)))
    canvas = np.zeros((side, side), np.uint8)
    top, left = (side - big.shape[0]) // 2, (side - big.shape[1]) // 2
    canvas[top : top + big.shape[0], left : left + big.shape[1]] = big
    thick = Image.fromarray(canvas).filter(ImageFilter.MaxFilter(5))
    return 255 - np.asarray(thick)


STRESS_SETS: dict[str, Maker] = {
    "tight crop, binarized, stretched": tight,
    "16x16, 8-bit or 1-bit": low_res,
    "grid cell, tinted, specks": grid_cell,
    "photographed grid cell": photo_cell,
    "hairline on 64x64": hairline,
    "2 px pen on a 1000 px canvas": tablet,
    "marker on 64x64": marker,
}


def blank_cell(rng: np.random.Generator) -> np.ndarray:
    """An empty grid cell: tinted paper, grid lines on 2-4 edges, a few pencil specks."""
    image, _ = _cell(None, rng)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)
