"""Scale-out: N shards of a run, merged, are exactly the single run; a bad part writes nothing."""

from pathlib import Path

import numpy as np
import pytest
from conftest import run_program, tiled
from PIL import Image

SHARDS = 3
run = run_program


@pytest.fixture
def inputs(tmp_path: Path, samples) -> Path:
    """A folder of PNGs in subfolders, an array, a broken file and a note, all under in/."""
    images = tiled(samples[0], 200)
    folder = tmp_path / "in"
    for i in range(40):
        path = folder / f"part{i % 3}" / f"{i:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(images[i]).save(path)
    np.save(folder / "arrays.npy", images[100:171])
    (folder / "part1" / "broken.png").write_bytes(b"not a png")
    (folder / "notes.txt").write_text("skipped")
    return tmp_path


def sharded(cwd: Path, *extra: str) -> list[Path]:
    (cwd / "parts").mkdir()
    parts = []
    for i in range(SHARDS):
        part = Path("parts") / f"part-{i}.csv"
        result = run(
            "classify-batch", "in", part, "--shard", f"{i}/{SHARDS}", "-q", *extra, cwd=cwd
        )
        assert result.returncode in (0, 3), result.stderr
        parts.append(part)
    return parts


def test_merged_shards_equal_the_single_run(inputs: Path):
    single = run("classify-batch", "in", "single.csv", "-q", cwd=inputs)
    assert single.returncode == 3, single.stderr  # the broken file
    parts = sharded(inputs)
    sizes = [len((inputs / p).read_text().splitlines()) - 1 for p in parts]
    assert all(size > 0 for size in sizes)  # every shard had work
    merged = run("digits", "merge", *parts, "merged.csv", cwd=inputs)
    assert merged.returncode == 3, merged.stderr
    assert (inputs / "merged.csv").read_bytes() == (inputs / "single.csv").read_bytes()
    assert (inputs / "merged.errors.csv").read_bytes() == (
        inputs / "single.errors.csv"
    ).read_bytes()


def test_shards_split_arrays_by_index_ranges(inputs: Path):
    parts = sharded(inputs)
    for part in parts:
        lines = (inputs / part).read_text().splitlines()[1:]
        indices = [int(line.split(",")[1]) for line in lines if "arrays.npy" in line]
        assert indices == list(range(indices[0], indices[0] + len(indices)))


def test_adding_files_does_not_move_the_others(inputs: Path, samples):
    first = sharded(inputs)
    before = {i: set((inputs / p).read_text().splitlines()) for i, p in enumerate(first)}
    Image.fromarray(samples[0][5]).save(inputs / "in" / "part0" / "new.png")
    (inputs / "parts").rename(inputs / "parts-before")
    after = sharded(inputs)
    for i, p in enumerate(after):
        lines = set((inputs / p).read_text().splitlines())
        assert before[i] - lines == set()


def test_a_missing_part_fails_and_writes_nothing(inputs: Path):
    parts = sharded(inputs)
    result = run("digits", "merge", *parts[:-1], "merged.csv", cwd=inputs)
    assert result.returncode == 1
    assert f"shard(s) {SHARDS - 1}/{SHARDS} missing" in result.stderr
    assert not list(inputs.glob("merged*"))


def test_a_truncated_part_fails_and_writes_nothing(inputs: Path):
    parts = sharded(inputs)
    text = (inputs / parts[1]).read_text()
    (inputs / parts[1]).write_text(text[: len(text) // 2])
    result = run("digits", "merge", *parts, "merged.csv", cwd=inputs)
    assert result.returncode == 1
    assert "truncated" in result.stderr and str(parts[1]) in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not list(inputs.glob("merged*"))


def test_parts_with_different_headers_are_refused(inputs: Path):
    parts = sharded(inputs)
    other = run(
        "classify-batch",
        "in",
        "parts/other.csv",
        "--shard",
        f"0/{SHARDS}",
        "--probabilities",
        "-q",
        cwd=inputs,
    )
    assert other.returncode in (0, 3), other.stderr
    result = run("digits", "merge", "parts/other.csv", *parts[1:], "merged.csv", cwd=inputs)
    assert result.returncode == 1 and "header" in result.stderr
    assert not list(inputs.glob("merged*"))


def test_more_shards_than_files_still_merge_to_the_single_run(tmp_path: Path, samples):
    (tmp_path / "in").mkdir()
    Image.fromarray(samples[0][0]).save(tmp_path / "in" / "only.png")
    single = run("classify-batch", "in", "single.csv", "-q", cwd=tmp_path)
    assert single.returncode == 0, single.stderr
    parts = sharded(tmp_path)  # asserts every shard, even an empty one, succeeds
    merged = run("digits", "merge", *parts, "merged.csv", cwd=tmp_path)
    assert merged.returncode == 0, merged.stderr
    assert (tmp_path / "merged.csv").read_bytes() == (tmp_path / "single.csv").read_bytes()
