"""Tell ink from paper: which grey levels are ink, and whether the image holds any.

The border alone is not enough evidence: a digit cropped tight to its ink has ink all along the
border, and a cell cut from a form has dark grid lines there. So the image is split into two
classes by Otsu's threshold, and the paper is the class that fills most of the lines along the
border (each border row or column counts only when it is uniform), else the class that covers
more of the image, else (an even split) light paper, the common case for scans.

Every step is integer arithmetic or exact comparisons of integers, so that the browser page
(examples/web/normalize.js) reaches the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from classify_batch.jobs.components import label
from classify_batch.jobs.errors import BLANK, InputError

# Ink must stand out from the background by this many grey levels, else the image is blank.
MIN_CONTRAST = 20
# Border rows and columns looked at on each side: a fifth of the shorter side, at least 1.
# Deep enough to see past a grid line along the edge of a cell crop.
BORDER_DEPTH = 5
# A border line votes when at least 9/10 of it falls in one class.
UNIFORM_TENTHS = 9
# A digit cropped tight to its ink still leaves the corners of its box blank, as strokes curve
# or slant: when 3 of the 4 corner pixels agree, they are paper.
CORNER_VOTES = 3
# The minority class is taken for ink only when it is clearly the minority (below 45%); an even
# split says nothing, and light paper is then assumed.
MINORITY_PERCENT = 45


@dataclass(frozen=True)
class Levels:
    """How to turn an image into ink-is-255-on-0: optional inversion, then a linear stretch."""

    invert: bool
    background: int
    ink: int

    def lut(self) -> np.ndarray:
        values = np.arange(256, dtype=np.float32)
        if self.invert:
            values = 255.0 - values
        span = max(1, self.ink - self.background)
        # Soft threshold: everything at or below the paper goes to 0, anti-aliasing survives.
        stretched = np.clip((values - self.background) * (255.0 / span), 0.0, 255.0)
        return np.rint(stretched).astype(np.uint8)


def measure_levels(image: np.ndarray) -> Levels:
    """The ink and paper levels of a grayscale image; InputError when there is no ink."""
    hist = np.bincount(image.ravel(), minlength=256)
    low, high = int(np.flatnonzero(hist)[0]), int(np.flatnonzero(hist)[-1])
    if high - low < MIN_CONTRAST:
        raise InputError(BLANK)
    threshold = otsu(hist)
    dark = image <= threshold
    # The border is judged by Otsu's classes, then against the middle of the image's range:
    # Otsu may split paper lit unevenly around a small digit, the middle stays below all of it.
    decided = _border_decides(image, dark)
    if decided is None:
        decided = _border_decides(image, image <= (low + high) // 2)
    if decided is not None and not decided[0] and _tight_binary_crop(hist, ~dark):
        # A bold stroke stretched to fill its box leaves only the box's corners light, and the
        # border votes for dark paper. Light paper touching all four edges of a two-level image
        # is a form reader's tight crop of black ink on white, its convention.
        decided = True, image[~dark]
    if decided is not None:
        paper_is_light, paper = decided
    else:
        dark_count = int(np.count_nonzero(dark))
        corners = [bool(dark[0, 0]), bool(dark[0, -1]), bool(dark[-1, 0]), bool(dark[-1, -1])]
        if sum(corners) <= 4 - CORNER_VOTES:
            paper_is_light = True
        elif sum(corners) >= CORNER_VOTES:
            paper_is_light = False
        elif (pieces := _pieces(dark) - _pieces(~dark)) != 0:
            # The strokes cut the paper of a tight crop into pieces; the ink is in one piece.
            paper_is_light = pieces < 0
        elif _two_level(hist):
            paper_is_light = True  # binarized scans are black ink on white by convention
        elif dark_count * 100 < MINORITY_PERCENT * image.size:
            paper_is_light = True
        elif (image.size - dark_count) * 100 < MINORITY_PERCENT * image.size:
            paper_is_light = False
        else:
            paper_is_light = True
        paper = image[~dark] if paper_is_light else image[dark]
    invert = paper_is_light
    paper_hist = np.bincount(paper.ravel(), minlength=256)
    if invert:
        paper_hist = paper_hist[::-1]
        hist = hist[::-1]
    background = _background_level(paper_hist)
    above = hist.copy()
    above[: background + 1] = 0
    if above.sum() == 0:
        raise InputError(BLANK)
    # A high percentile rather than the max, so one hot pixel cannot dim the whole digit.
    ink = percentile(above, 99)
    if ink - background < MIN_CONTRAST:
        raise InputError(BLANK)
    return Levels(invert=invert, background=background, ink=ink)


def _border_decides(image: np.ndarray, dark: np.ndarray) -> tuple[bool, np.ndarray] | None:
    """(paper is light, the paper's grey levels) when most border lines agree, else None."""
    votes = _border_votes(image, dark)
    if max(votes.light, votes.dark) * 2 < _border_line_count(image.shape):
        return None
    if votes.light == votes.dark:
        return None
    paper_is_light = votes.light > votes.dark
    # The paper's own grey levels: the border lines that voted for it, as a photo's paper varies
    # with the light and the noise there says how far the paper reaches.
    return paper_is_light, np.concatenate(
        votes.light_levels if paper_is_light else votes.dark_levels
    )


def _two_level(hist: np.ndarray) -> bool:
    """A binarized image: two grey levels, no more."""
    return int(np.count_nonzero(hist)) == 2


def _tight_binary_crop(hist: np.ndarray, light: np.ndarray) -> bool:
    if not _two_level(hist):
        return False
    return bool(light[0].any() and light[-1].any() and light[:, 0].any() and light[:, -1].any())


def otsu(hist: np.ndarray) -> int:
    """The grey level t that best splits the histogram into <= t and > t (Otsu, 1979).

    The between-class variance is compared as exact fractions of Python integers: no rounding
    that another runtime could do differently.
    """
    counts = [int(c) for c in hist]
    total = sum(counts)
    total_sum = sum(i * c for i, c in enumerate(counts))
    best_t, best_num, best_den = 0, -1, 1
    weight = 0
    mass = 0
    for t in range(255):
        weight += counts[t]
        mass += t * counts[t]
        rest = total - weight
        if weight == 0 or rest == 0:
            continue
        diff = mass * rest - (total_sum - mass) * weight
        num, den = diff * diff, weight * rest
        if num * best_den > best_num * den:
            best_t, best_num, best_den = t, num, den
    return best_t


def _border_line_count(shape: tuple[int, ...]) -> int:
    return 4 * _depth(shape)


def _depth(shape: tuple[int, ...]) -> int:
    return max(1, min(shape) // BORDER_DEPTH)


@dataclass
class _Votes:
    light: int = 0
    dark: int = 0
    light_levels: list[np.ndarray] = field(default_factory=list)
    dark_levels: list[np.ndarray] = field(default_factory=list)


def _border_votes(image: np.ndarray, dark: np.ndarray) -> _Votes:
    """The uniform rows and columns near the border, counted by the class of their majority,
    with that majority's grey levels (the minority there is a grid line crossing the line or a
    stroke touching it).

    All rows at once, then all columns, in numpy: a photo has a hundred such lines a side, and
    one Python call per line cost a tenth of its normalization.
    """
    height, width = dark.shape
    depth = _depth(dark.shape)
    rows = [i for k in range(depth) for i in (k, height - 1 - k)]
    cols = [i for k in range(depth) for i in (k, width - 1 - k)]
    votes = _Votes()
    for lines, marks in ((image[rows], dark[rows]), (image[:, cols].T, dark[:, cols].T)):
        # The ends are left out: there the lines along the other edges cross these.
        end = lines.shape[1] // 10
        lines, marks = lines[:, end : lines.shape[1] - end], marks[:, end : marks.shape[1] - end]
        size = marks.shape[1]
        dark_counts = np.count_nonzero(marks, axis=1)
        is_dark = dark_counts * 10 >= UNIFORM_TENTHS * size
        is_light = ~is_dark & ((size - dark_counts) * 10 >= UNIFORM_TENTHS * size)
        votes.dark += int(np.count_nonzero(is_dark))
        votes.light += int(np.count_nonzero(is_light))
        votes.dark_levels.append(lines[is_dark][marks[is_dark]])
        votes.light_levels.append(lines[is_light][~marks[is_light]])
    return votes


def _pieces(mask: np.ndarray) -> int:
    """Connected parts (8-connected) of at least 1% of the image."""
    labels, count = label(mask)
    sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    return int(np.count_nonzero(sizes * 100 >= mask.size))


def _background_level(paper_hist: np.ndarray) -> int:
    # The paper's high percentile covers noisy or unevenly lit paper; capping it at a robust
    # spread above the median keeps ink that strays into the paper class from lifting it.
    median = percentile(paper_hist, 50)
    spread = percentile(paper_hist, 75) - percentile(paper_hist, 25)
    return min(percentile(paper_hist, 98), median + 4 * spread)


def percentile(hist: np.ndarray, q: float) -> int:
    cumulative = np.cumsum(hist)
    rank = q / 100.0 * (int(cumulative[-1]) - 1)
    return int(np.searchsorted(cumulative, rank, side="right"))
