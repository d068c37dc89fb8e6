"""Keep the digit, drop the rest: grid lines along the edges of a cell, specks, faint marks, noise.

Works on the ink image (ink 255 on 0) before the digit is cropped, since a grid line or a pencil
speck would otherwise stretch the crop. Connected components and dilation come from
jobs/components.py (why not scipy.ndimage: see there).

Components use 8-connectivity and are kept or dropped by integer rules, so the browser page
(examples/web/normalize.js) reaches the same bytes with its own labelling.
"""

from __future__ import annotations

import numpy as np

from classify_batch.jobs.components import dilate3, label
from classify_batch.jobs.errors import BLANK, InputError
from classify_batch.jobs.ink import percentile

# A pixel at half the ink level or more is part of a stroke; above FAINT_LEVEL it is ink at all
# (the bounding box's threshold, 15% of full ink).
STROKE_LEVEL = 128
FAINT_LEVEL = 38
# The digit's pieces are told apart a little below half ink: a thin stroke shrunk from a big
# canvas is a chain of pixels at about half ink that, cut exactly there, falls apart into pieces
# the rules of _main_strokes then drop (tablet drawings, 1000 px with 2 px strokes: 84% -> 97%).
# A quarter (64) did as well there but joined digits to mid-grey ruled lines (100% -> 57%).
LINK_LEVEL = 112
# Frame lines are looked for within side // FRAME_DEPTH_DIVISOR of each edge.
FRAME_DEPTH_DIVISOR = 5
# A row (column) is a frame line when ink covers 19/20 of it (a 7's stem near the edge of a
# tight crop covers less) ...
FRAME_FULL_TWENTIETHS = 19
# ... and the run of such lines is at most this fraction of the side thick (a 7's bar in a tight
# crop is thicker and, alone on its side, is kept by the next rule).
FRAME_THICK_DIVISOR = 10
# Lines are removed only when at least two sides have one: a cell has a frame, a tight crop of a
# 7 or a 2 has a bar along one side only.
FRAME_MIN_SIDES = 2
# Inside a frame, a digit spans at least 1 / CELL_MIN_PART of the cell; less is specks.
CELL_MIN_PART = 5
# Ink pixels whose 8 neighbours are ink hardly more often than chance are noise, not strokes:
# chance-corrected, a hairline scores about 23 hundredths, a filled box 67, uniform noise 0.
MIN_COHERENCE_PERCENT = 12


def keep_digit(inked: np.ndarray) -> np.ndarray:
    """`inked` with frame lines, far specks and faint marks set to 0; InputError when no digit."""
    mask = inked >= STROKE_LEVEL
    if not mask.any():
        raise InputError(BLANK)
    if _is_noise(mask):
        raise InputError(BLANK)
    # Grid lines are often fainter than the pen (printed grey, or in shadow), so any ink counts.
    top, bottom, left, right = _inside_frame(inked >= FAINT_LEVEL)
    inside = np.zeros_like(mask)
    inside[top:bottom, left:right] = True
    if not inside.all():
        # The grid lines set the ink level; without them the pen is the darkest ink.
        inked = _restretch(np.where(inside, inked, 0).astype(np.uint8))
        mask = inked >= STROKE_LEVEL
    mask &= inside
    if not mask.any():
        raise InputError(BLANK)
    keep = _main_strokes((inked >= LINK_LEVEL) & inside, inked)
    if not inside.all() and _too_small(keep & mask, min(bottom - top, right - left)):
        raise InputError(BLANK)  # an empty cell with a few specks or a stray tick in it
    return np.where(keep & inside, inked, 0).astype(np.uint8)


def _too_small(strokes: np.ndarray, side: int) -> bool:
    rows = np.flatnonzero(strokes.any(axis=1))
    cols = np.flatnonzero(strokes.any(axis=0))
    extent = max(int(rows[-1] - rows[0]), int(cols[-1] - cols[0])) + 1
    return extent * CELL_MIN_PART < side


def _restretch(inked: np.ndarray) -> np.ndarray:
    hist = np.bincount(inked.ravel(), minlength=256)
    hist[0] = 0
    if hist.sum() == 0:
        return inked
    peak = max(1, percentile(hist, 99))
    values = np.arange(256, dtype=np.int64)
    # round(v * 255 / peak), half up, in integers
    lut = np.minimum(255, (2 * 255 * values + peak) // (2 * peak)).astype(np.uint8)
    return lut[inked]


def _is_noise(mask: np.ndarray) -> bool:
    count = int(np.count_nonzero(mask))
    padded = np.pad(mask, 1).astype(np.int32)
    height, width = mask.shape
    inside = np.pad(np.ones(mask.shape, dtype=np.int32), 1)
    neighbours = np.zeros(mask.shape, dtype=np.int32)
    places = np.zeros(mask.shape, dtype=np.int32)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy or dx:
                neighbours += padded[1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width]
                places += inside[1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width]
    agree = int(neighbours[mask].sum())
    # Only neighbours inside the image count: a bold stroke that fills most of a tight crop
    # would otherwise lose its agreement along the edges and look like noise.
    slots = int(places[mask].sum())
    size = mask.size
    # Chance-corrected agreement, (agree / slots - p) / (1 - p) with p = count / size, below
    # MIN_COHERENCE_PERCENT / 100: compared in integers.
    return 100 * (agree * size - slots * count) < MIN_COHERENCE_PERCENT * slots * (size - count)


def _inside_frame(mask: np.ndarray) -> tuple[int, int, int, int]:
    """Rows [top, bottom) and columns [left, right) inside the grid lines along the edges."""
    height, width = mask.shape
    rows = mask.sum(axis=1).astype(np.int64)
    cols = mask.sum(axis=0).astype(np.int64)
    depths = [
        _frame_depth(rows, width, height),
        _frame_depth(rows[::-1], width, height),
        _frame_depth(cols, height, width),
        _frame_depth(cols[::-1], height, width),
    ]
    if sum(1 for d in depths if d) < FRAME_MIN_SIDES:
        return 0, height, 0, width
    top, bottom_cut, left, right_cut = depths
    return top, height - bottom_cut, left, width - right_cut


def _frame_depth(counts: np.ndarray, length: int, side: int) -> int:
    """How many lines from this edge to clear: through the innermost frame line, or 0."""
    limit = max(1, side // FRAME_DEPTH_DIVISOR)
    full = counts * 20 >= FRAME_FULL_TWENTIETHS * length
    last = -1
    for k in range(min(limit, len(full))):
        if full[k]:
            last = k
    if last < 0:
        return 0
    start = last
    while start > 0 and full[start - 1]:
        start -= 1
    stop = last
    while stop + 1 < len(full) and full[stop + 1]:
        stop += 1
    if stop - start + 1 > max(1, side // FRAME_THICK_DIVISOR):
        return 0
    return stop + 1


def _main_strokes(linked: np.ndarray, inked: np.ndarray) -> np.ndarray:
    """The strokes of the digit: the heaviest component and the pieces near it or heavy too."""
    labels, count = label(linked)
    ink = np.bincount(labels.ravel(), weights=inked.ravel().astype(np.float64), minlength=count + 1)
    masses = [int(m) for m in ink[1:]]
    boxes = _boxes(labels, count)
    order = sorted(range(count), key=lambda i: (-masses[i], i))
    main = order[0]
    top, bottom = boxes[main][0].start, boxes[main][0].stop
    left, right = boxes[main][1].start, boxes[main][1].stop
    height, width = linked.shape
    # A digit clear of every edge sits in a cell: pieces of grid line the frame test missed (one
    # side only, or broken by blur and shadow) are dropped. A tight crop's digit touches the
    # edges, and there a long piece along the edge may be its own stroke (a 5's flag).
    in_cell = top > 0 and left > 0 and bottom < height and right < width
    kept = [main]
    for i in order[1:]:
        box = boxes[i]
        if in_cell and _frame_piece(box, (top, bottom, left, right), height, width):
            continue
        gap = max(
            top - box[0].stop, box[0].start - bottom, left - box[1].stop, box[1].start - right, 0
        )
        reach = max(2, max(bottom - top, right - left) // 4)
        if (
            gap <= 1
            or (gap <= reach and masses[i] * 10 >= masses[main])
            or (masses[i] * 2 >= masses[main])
        ):
            kept.append(i)
            top, bottom = min(top, box[0].start), max(bottom, box[0].stop)
            left, right = min(left, box[1].start), max(right, box[1].stop)
    lookup = np.zeros(count + 1, dtype=bool)
    lookup[[i + 1 for i in kept]] = True
    # One pixel of margin keeps the anti-aliased edge of the kept strokes.
    return dilate3(lookup[labels])


def _frame_piece(
    box: tuple[slice, slice], main: tuple[int, int, int, int], height: int, width: int
) -> bool:
    """A long thin piece lying along an edge, longer than the digit is wide (or tall) there."""
    rows, cols = box
    top, bottom, left, right = main
    return _along_edge(cols, rows, right - left, width, height) or _along_edge(
        rows, cols, bottom - top, height, width
    )


def _along_edge(along: slice, across: slice, digit: int, length: int, side: int) -> bool:
    """Whether a piece spanning `along` (of `length`) and `across` (of `side`) runs along an
    edge: at least half the length and the digit's own extent, thin, and in the edge's band."""
    extent = along.stop - along.start
    if 2 * extent < length or extent < digit:
        return False
    thin = across.stop - across.start <= max(1, side // FRAME_THICK_DIVISOR)
    band = max(1, side // FRAME_DEPTH_DIVISOR)
    return thin and (across.stop <= band or across.start >= side - band)


def _boxes(labels: np.ndarray, count: int) -> list[tuple[slice, slice]]:
    """The bounding box of each component, as scipy.ndimage.find_objects gives them."""
    rows, cols = np.nonzero(labels)
    ids = labels[rows, cols] - 1
    top = np.full(count, labels.shape[0])
    bottom = np.zeros(count, dtype=np.int64)
    left = np.full(count, labels.shape[1])
    right = np.zeros(count, dtype=np.int64)
    np.minimum.at(top, ids, rows)
    np.maximum.at(bottom, ids, rows + 1)
    np.minimum.at(left, ids, cols)
    np.maximum.at(right, ids, cols + 1)
    return [
        (slice(int(top[i]), int(bottom[i])), slice(int(left[i]), int(right[i])))
        for i in range(count)
    ]
