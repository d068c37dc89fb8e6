"""Connected components and square max/min filters in numpy, for jobs/ink.py and jobs/cleanup.py.

scipy.ndimage does both, but importing it costs more than importing numpy (0.3-0.4 s measured
here, which made a one-photo run almost twice as slow as a plain onnxruntime script); digit images
are small enough that labelling the runs of each row and joining them row to row is as fast.
tests/test_components.py checks the labels against scipy.ndimage.label.
"""

from __future__ import annotations

import numpy as np


def label(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected components of a 2-D bool mask, numbered from 1 in raster order of their first
    pixel (as scipy.ndimage.label with a 3x3 structure numbers them); 0 is background."""
    height, width = mask.shape
    padded = np.zeros((height, width + 2), dtype=np.int8)
    padded[:, 1:-1] = mask
    edges = np.diff(padded, axis=1)
    rows, starts = np.nonzero(edges == 1)
    _, stops = np.nonzero(edges == -1)  # both in raster order, so they pair up
    count = len(rows)
    if count == 0:
        return np.zeros(mask.shape, dtype=np.int32), 0
    parent = list(range(count))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first = np.searchsorted(rows, np.arange(height + 1)).tolist()
    start_list, stop_list = starts.tolist(), stops.tolist()
    for y in range(1, height):
        a, a_end = first[y - 1], first[y]
        b, b_end = a_end, first[y + 1]
        # Runs [start, stop) touch the row below when they overlap, diagonals included.
        while a < a_end and b < b_end:
            if start_list[a] <= stop_list[b] and start_list[b] <= stop_list[a]:
                ra, rb = root(a), root(b)
                if ra != rb:
                    parent[max(ra, rb)] = min(ra, rb)  # the root is the first run in raster order
            if stop_list[a] < stop_list[b]:
                a += 1
            else:
                b += 1
    numbers = np.zeros(count, dtype=np.int32)
    total = 0
    for i in range(count):
        r = root(i)
        if r == i:
            total += 1
            numbers[i] = total
        else:
            numbers[i] = numbers[r]
    lengths = stops - starts
    offsets = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    flat = np.repeat(rows * width + starts, lengths) + offsets
    labels = np.zeros(height * width, dtype=np.int32)
    labels[flat] = np.repeat(numbers, lengths)
    return labels.reshape(height, width), total


def dilate3(mask: np.ndarray) -> np.ndarray:
    """A 3x3 binary dilation: every pixel next to (or on) the mask."""
    return max_filter(mask.astype(np.uint8), 1).astype(bool)


def max_filter(image: np.ndarray, radius: int) -> np.ndarray:
    """Square max filter of side 2 * radius + 1; outside the image counts as 0."""
    return _rank(image, radius, np.maximum)


def min_filter(image: np.ndarray, radius: int) -> np.ndarray:
    """Square min filter of side 2 * radius + 1; outside the image counts as 0 (edges erode)."""
    return _rank(image, radius, np.minimum)


def _rank(image: np.ndarray, radius: int, pick: np.ufunc) -> np.ndarray:
    out = image
    for axis in (0, 1):
        padded = np.pad(out, [(radius, radius) if a == axis else (0, 0) for a in (0, 1)])
        length = out.shape[axis]
        result = np.take(padded, range(0, length), axis=axis)
        for shift in range(1, 2 * radius + 1):
            result = pick(result, np.take(padded, range(shift, shift + length), axis=axis))
        out = result
    return out
