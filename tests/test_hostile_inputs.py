"""Hostile inputs (issue 15): each is refused in bounded time and memory with one line naming the
file and the reason, and the rest of the run goes on."""

import io
import json
import os
import struct
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from classify_batch.jobs.arrays import NpyFile
from classify_batch.jobs.errors import InputError
from classify_batch.jobs.images import read_image
from classify_batch.jobs.pipeline import ROWS_PER_CHUNK


def run_job(*args: object) -> subprocess.CompletedProcess:
    command = [str(Path(sys.executable).parent / "classify-batch"), *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def error_lines(out_csv: Path) -> dict[str, str]:
    lines = (out_csv.parent / (out_csv.stem + ".errors.csv")).read_text().splitlines()[1:]
    return {Path(line.split(",")[0]).name: line for line in lines}


def good_png(folder: Path) -> None:
    digit = np.zeros((28, 28), np.uint8)
    digit[6:22, 12:16] = 255  # a "1"
    Image.fromarray(digit).save(folder / "good.png")


def npy_with_header(path: Path, header: bytes, version: int = 1, claimed: int | None = None):
    length = len(header) if claimed is None else claimed
    size = struct.pack("<H", length) if version == 1 else struct.pack("<I", length)
    path.write_bytes(b"\x93NUMPY" + bytes([version, 0]) + size + header)


def test_a_npy_header_claiming_2_gib_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "huge-header.npy"
    npy_with_header(path, b"{'descr': '|u1', ", version=2, claimed=2**31)
    with open(path, "r+b") as f:
        f.truncate(4096)  # sparse: the file is small, only its header lies
    tracemalloc.start()
    try:
        with pytest.raises(InputError, match="header length"):
            NpyFile(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000  # numpy's reader allocates the 2 GiB it was promised


def test_a_npy_with_a_negative_shape_is_an_error_line(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    good_png(folder)
    header = b"{'descr': '|u1', 'fortran_order': False, 'shape': (-1, 28, 28), }"
    npy_with_header(folder / "negative.npy", header.ljust(117) + b"\n")
    with open(folder / "negative.npy", "ab") as f:
        f.write(bytes(784 * 3))
    result = run_job(folder, tmp_path / "out.csv")
    assert result.returncode == 3, result.stderr
    errors = error_lines(tmp_path / "out.csv")
    assert "negative.npy" in errors and "shape" in errors["negative.npy"]
    assert "Traceback" not in result.stderr
    assert "good.png" in (tmp_path / "out.csv").read_text()


@pytest.mark.parametrize(
    "header,words",
    [
        (b"{'descr': '|u1', 'fortran_order': False, 'shape': (2, 28, 28), 'x': 1}", "header"),
        (b"{'descr': '|u1', 'fortran_order': 0, 'shape': (2, 28, 28)}", "fortran_order"),
        (b"{'descr': '|u1', 'fortran_order': False, 'shape': [2, 28, 28]}", "shape"),
        (b"{'descr': [('a', '|u1')], 'fortran_order': False, 'shape': (2,)}", "dtype"),
        (b"{'descr': '|u1', 'fortran_order': False, 'shape': (2, 28, 28)" + b"(" * 5000, "header"),
        (b"__import__('os').system('true')", "header"),
    ],
)
def test_malformed_npy_headers_are_refused_with_a_reason(tmp_path, header, words):
    npy_with_header(tmp_path / "bad.npy", header)
    with open(tmp_path / "bad.npy", "ab") as f:
        f.write(bytes(784 * 2))
    with pytest.raises(InputError, match=words):
        NpyFile(tmp_path / "bad.npy")


TRUNCATE_WHILE_READING = textwrap.dedent(
    """
    import json, os, sys
    from classify_batch.jobs import pipeline
    from classify_batch.jobs.discover import find_inputs

    npy, log = sys.argv[1], sys.argv[2]
    sources = find_inputs([os.path.dirname(npy)]).sources
    seen = {"rows": 0, "errors": [], "files": 0}
    for i, piece in enumerate(pipeline.stream(sources, "none")):
        if i == 0:
            os.truncate(npy, 128 + 784 * 100)  # another process cuts the file short
        seen["rows"] += len(piece.images)
        seen["errors"] += [[s.rsplit("/", 1)[-1], i, r] for s, i, r in piece.errors]
        seen["files"] += piece.files
    with open(log, "w") as f:
        json.dump(seen, f)
    """
)


def test_a_npy_truncated_while_it_is_read_fails_alone(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    np.save(folder / "a.npy", np.zeros((10_000, 28, 28), np.uint8))
    good_png(folder)  # sorts after a.npy: the run must go on to it
    log = tmp_path / "log.json"
    result = subprocess.run(
        [sys.executable, "-c", TRUNCATE_WHILE_READING, str(folder / "a.npy"), str(log)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, (result.returncode, result.stderr[-2000:])  # -7: SIGBUS
    seen = json.loads(log.read_text())
    assert seen["files"] == 2
    assert seen["rows"] >= ROWS_PER_CHUNK + 1  # the first chunk, and the good PNG
    [(name, index, reason)] = seen["errors"]
    assert name == "a.npy" and index is not None and "truncated" in reason


def test_folders_nested_1500_deep_are_walked(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    deep = str(folder)
    try:
        for _ in range(1500):  # a loop: pathlib's and os.makedirs' own recursion would fail
            deep += "/d"
            os.mkdir(deep)
        good_png(Path(deep))
        good_png(folder)
        result = run_job(folder, tmp_path / "out.csv", "-q")
        assert result.returncode == 0, result.stderr[-2000:]  # was a RecursionError traceback
        lines = (tmp_path / "out.csv").read_text().splitlines()[1:]
        assert [line.split(",")[0] for line in lines] == [f"{deep}/good.png", f"{folder}/good.png"]
    finally:
        # pytest removes old temporary folders with shutil.rmtree, which recurses in Python
        # 3.11: a tree this deep left behind would break every later pytest run on the machine.
        remove_deep_tree(folder)


def remove_deep_tree(top: Path) -> None:
    stack = [str(top)]
    while stack:
        with os.scandir(stack[-1]) as it:
            entries = list(it)
        folders = [e.path for e in entries if e.is_dir(follow_symlinks=False)]
        for entry in entries:
            if not entry.is_dir(follow_symlinks=False):
                os.unlink(entry.path)
        if folders:
            stack += folders
        else:
            os.rmdir(stack.pop())


def jpeg_with_scans(path: Path, repeats: int) -> None:
    """A progressive JPEG with its smallest scan repeated `repeats` times: libjpeg decodes each."""
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (600, 800, 3), dtype=np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90, progressive=True)
    data = buffer.getvalue()
    end = data.rindex(b"\xff\xd9")
    starts = [i for i in range(len(data) - 1) if data[i : i + 2] == b"\xff\xda"]
    scans = [data[a:b] for a, b in zip(starts, [*starts[1:], end], strict=True)]
    path.write_bytes(data[:end] + min(scans, key=len) * repeats + data[end:])


def test_a_jpeg_with_thousands_of_scans_is_refused_before_decoding(tmp_path):
    jpeg_with_scans(tmp_path / "scans.jpg", 2_000)  # the file had 40,000: 95 s
    with pytest.raises(InputError, match="scans"):
        read_image(tmp_path / "scans.jpg")
    jpeg_with_scans(tmp_path / "fine.jpg", 0)  # an ordinary progressive JPEG: 10 scans
    assert read_image(tmp_path / "fine.jpg").shape == (600, 800)


def test_a_big_jpeg_with_too_many_scans_is_refused_too(tmp_path):
    # Over fast_png.MAX_BYTES the file is read through an open file, not as bytes.
    path = tmp_path / "big.jpg"
    jpeg_with_scans(path, 40_000)
    assert path.stat().st_size > 1024 * 1024
    with pytest.raises(InputError, match="scans"):
        read_image(path)


def test_a_folder_of_hostile_files_gives_one_line_each_and_the_good_rows(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    good_png(folder)
    npy_with_header(folder / "huge-header.npy", b"{'descr': '|u1', ", version=2, claimed=2**31)
    header = b"{'descr': '|u1', 'fortran_order': False, 'shape': (-1, 28, 28), }"
    npy_with_header(folder / "negative.npy", header.ljust(117) + b"\n")
    jpeg_with_scans(folder / "scans.jpg", 2_000)
    result = run_job(folder, tmp_path / "out.csv")
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr
    errors = error_lines(tmp_path / "out.csv")
    assert set(errors) == {"huge-header.npy", "negative.npy", "scans.jpg"}
    assert "header length" in errors["huge-header.npy"]
    assert "shape" in errors["negative.npy"]
    assert "scans" in errors["scans.jpg"]
    rows = (tmp_path / "out.csv").read_text().splitlines()[1:]
    assert [Path(row.split(",")[0]).name for row in rows] == ["good.png"]
