"""Inputs read as streams (issue 17): float arrays in small chunks converted in place, and the walk
folder by folder, giving exactly what the whole-at-once versions gave."""

import tracemalloc

import numpy as np
import pytest

from classify_batch.jobs.arrays import PIXELS, NpyFile


def reference_rows(array: np.ndarray) -> tuple[list[int], np.ndarray, list[tuple[int, str]]]:
    """What the job gave before: the whole file as one chunk, a float mask and a filtered copy."""
    flat = array.reshape(len(array), PIXELS)
    finite = flat[np.isfinite(flat)]
    scale = 255.0 if (finite.max() if finite.size else 0.0) <= 1.0 else 1.0
    nonfinite = ~np.isfinite(flat).all(axis=1)
    with np.errstate(invalid="ignore", over="ignore"):
        values = flat * scale
        out_of_range = ~nonfinite & ((values < 0).any(axis=1) | (values > 255).any(axis=1))
    errors = [(int(i), "contains NaN or infinite values") for i in np.flatnonzero(nonfinite)]
    errors += [(int(i), "values outside 0..255") for i in np.flatnonzero(out_of_range)]
    keep = ~(nonfinite | out_of_range)
    images = np.rint(values[keep]).astype(np.uint8).reshape(-1, 28, 28)
    return np.flatnonzero(keep).tolist(), images, sorted(errors)


def read_all(npy: NpyFile, size: int):
    indices, images, errors = [], [], []
    for rows in npy.chunks(0, npy.count, size):
        indices += rows.indices.tolist()
        images.append(rows.images)
        errors += rows.errors
    return indices, np.concatenate(images), errors


@pytest.mark.parametrize("dtype", ["<f4", ">f8", "<f2", "<f8"])
@pytest.mark.parametrize("unit", [True, False])
@pytest.mark.parametrize("fortran", [False, True])
def test_float_chunks_give_the_rows_the_whole_array_gave(tmp_path, dtype, unit, fortran):
    rng = np.random.default_rng(7)
    array = rng.uniform(0, 1 if unit else 255, (5000, 28, 28)).astype(dtype)
    array[17, 3, 4] = np.nan
    array[2100, 0, 0] = np.inf
    array[4097, 5, 5] = -0.25 if unit else -3
    if not unit:
        array[4999, 27, 27] = 300  # in a 0..1 file, any value above 1 would switch the scale
    stored = np.asfortranarray(array.reshape(len(array), PIXELS)) if fortran else array
    np.save(tmp_path / "x.npy", stored)
    want = reference_rows(array)
    got = read_all(NpyFile(tmp_path / "x.npy"), 2048)
    assert got[0] == want[0]
    assert np.array_equal(got[1], want[1])
    assert got[2] == want[2]


def test_reading_float_rows_needs_memory_for_a_chunk_not_the_file(tmp_path):
    rows = 40_000  # 125 MB of float32
    array = np.lib.format.open_memmap(tmp_path / "x.npy", "w+", np.float32, (rows, 28, 28))
    array[:] = 0.5
    array.flush()
    del array
    tracemalloc.start()
    try:
        npy = NpyFile(tmp_path / "x.npy")
        count = sum(len(r.images) for r in npy.chunks(0, npy.count, 2048))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == rows
    # A 2,048-row float32 chunk is 6.4 MB; the 65,536-row pass and its copies were ~600 MB.
    assert peak < 32 * 1024 * 1024, f"peak {peak / 2**20:.0f} MiB"
