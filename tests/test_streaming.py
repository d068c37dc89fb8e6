"""Inputs read as streams (issue 17): float arrays in small chunks converted in place, and the walk
folder by folder, giving exactly what the whole-at-once versions gave."""

import csv
import json
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from classify_batch.jobs.arrays import PIXELS, NpyFile
from classify_batch.jobs.discover import Walk, find_inputs


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


# --- the walk -----------------------------------------------------------------------------------


def tricky_tree(root: Path) -> set[str]:
    """A tree whose order is easy to get wrong; returns the files the walk must find in it."""
    files = [
        "1.png",
        "10.png",
        "2.png",
        "a.png",
        "a/x.png",
        "a-b/y.png",
        "a.b/z.png",
        "a0.png",
        "B.png",
        "b/deep/er/1.png",
        "b/deep/er.png",
        "e.png",
        "é.png",
        "z.png",
        "Ä/ü.png",
        "日本/数字.png",
        "real/r1.png",
        "real/r2.npy",
    ]
    for name in files:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    (root / ".hidden.png").write_bytes(b"x")  # skipped
    (root / "notes.txt").write_bytes(b"x")  # skipped
    os.symlink(root / "real", root / "link-to-real")  # sorts first: "real" is then seen already
    os.symlink(root, root / "b" / "loop")  # back to the top: never walked twice
    found = set(files) - {"real/r1.png", "real/r2.npy"}
    return found | {"link-to-real/r1.png", "link-to-real/r2.npy"}


def components(rel: str) -> list[str]:
    return rel.split("/")


def test_the_walk_gives_sorted_path_components_order_on_a_tricky_tree(tmp_path):
    expected = tricky_tree(tmp_path)
    walk = Walk([str(tmp_path)])
    got = [source.rel for source in walk]
    assert set(got) == expected
    assert got == sorted(expected, key=components)
    assert walk.skipped == 2
    assert got == [source.rel for source in find_inputs([str(tmp_path)]).sources]


def test_the_walk_lists_folders_only_as_it_reaches_them(tmp_path, monkeypatch):
    for folder in range(20):
        for name in range(3):
            path = tmp_path / f"{folder:02d}" / f"{name}.png"
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(b"x")
    listed = []
    real_scandir = os.scandir

    def scandir(path):
        listed.append(path)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    sources = iter(Walk([str(tmp_path)]))
    first = next(sources)
    assert first.rel == "00/0.png"
    assert len(listed) == 2  # the root and its first folder, not the 19 others
    assert len(list(sources)) == 59
    assert len(listed) == 21


def test_a_run_over_the_tricky_tree_writes_rows_in_the_walk_order(tmp_path):
    tree = tmp_path / "tree"
    tree.mkdir()
    expected = tricky_tree(tree)
    rng = np.random.default_rng(0)
    for rel in expected:
        digit = np.zeros((28, 28), np.uint8)
        digit[6:22, 10:18] = rng.integers(128, 256)
        if rel.endswith(".npy"):
            np.save(tree / rel, digit[None].repeat(3, axis=0))
        else:
            Image.fromarray(digit).save(tree / rel, format="PNG")
    out = tmp_path / "out.csv"
    result = subprocess.run(
        [str(Path(sys.executable).parent / "classify-batch"), str(tree), str(out), "-q"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    with open(out, newline="") as f:
        rows = [(r["source"], r["index"]) for r in csv.DictReader(f)]
    order = sorted(expected, key=components)
    want = []
    for rel in order:
        shown = str(tree / rel)
        want += [(shown, str(i)) for i in range(3)] if rel.endswith(".npy") else [(shown, "")]
    assert rows == want
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["counts"]["skipped"] == 2
