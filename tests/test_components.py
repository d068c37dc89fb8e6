"""jobs/components.py against scipy.ndimage: the same labels, numbering and filters."""

from __future__ import annotations

import numpy as np
import pytest

from classify_batch.jobs.components import dilate3, label, max_filter, min_filter

ndimage = pytest.importorskip("scipy.ndimage")
EIGHT = np.ones((3, 3), dtype=bool)


def masks() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    out = [np.zeros((5, 7), bool), np.ones((4, 4), bool), np.eye(6, dtype=bool)[::-1]]
    for _ in range(200):
        height, width = (int(v) for v in rng.integers(1, 50, 2))
        out.append(rng.random((height, width)) < rng.uniform(0.05, 0.7))
    return out


def test_labels_equal_scipy_with_eight_connectivity() -> None:
    for mask in masks():
        labels, count = label(mask)
        expected, expected_count = ndimage.label(mask, structure=EIGHT)
        assert count == expected_count
        np.testing.assert_array_equal(labels, expected)


def test_filters_equal_scipy_with_zero_outside() -> None:
    rng = np.random.default_rng(1)
    for mask in masks()[:60]:
        image = rng.integers(0, 256, mask.shape, dtype=np.uint8)
        radius = int(rng.integers(1, 6))
        size = 2 * radius + 1
        np.testing.assert_array_equal(
            max_filter(image, radius), ndimage.maximum_filter(image, size, mode="constant")
        )
        np.testing.assert_array_equal(
            min_filter(image, radius), ndimage.minimum_filter(image, size, mode="constant")
        )
        np.testing.assert_array_equal(dilate3(mask), ndimage.binary_dilation(mask, EIGHT))
