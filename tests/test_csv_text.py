"""The CSV is exactly what csv.writer writes, however it is built: array rows take a path that lays
whole lines out in numpy (jobs/output.py), image files the general one."""

import csv
import io
from pathlib import Path

import numpy as np
import pytest
from conftest import run_in_process, tiled

from classify_batch.jobs.output import _array_text, _lines


def writer_text(rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()


@pytest.mark.parametrize("probabilities", [False, True])
@pytest.mark.parametrize(
    "source", ["digits.npy", "/data/écrits/ü.npy", "/data/\udcff.npy", "/data/a,b.npy"]
)
def test_array_lines_are_the_general_paths_lines(source: str, probabilities: bool):
    """Row numbers across every width up to 7 digits, with gaps (rows that failed), a non-UTF-8
    path (surrogate escapes) and one that must be quoted (the general path takes it)."""
    rng = np.random.default_rng(0)
    indices = np.array([0, 1, 9, 10, 11, 99, 100, 101, 999, 1000, 99999, 100000, 999999, 1000000])
    p = rng.dirichlet(np.ones(10), len(indices)).astype(np.float32)
    p[0] = np.eye(10, dtype=np.float32)[3]  # exactly 1 and 0
    digits = p.argmax(axis=1)
    confidence = p.max(axis=1)
    values = np.column_stack([confidence, p]) if probabilities else confidence[:, None]
    sources = [source] * len(indices)
    general = "".join(_lines(sources, [str(i) for i in indices], digits, values))
    fast = _array_text(sources, indices, digits, values)
    if "," in source:
        assert fast is None
    else:
        assert fast == general


def test_an_arrays_csv_is_csv_writers_text_with_failed_rows_left_out(tmp_path: Path, samples):
    images, _ = samples
    array = tiled(images, 1100)
    array[[5, 10, 999]] = 0  # blank rows: refused, so their numbers are missing from the CSV
    folder = tmp_path / "écrits"
    folder.mkdir()
    np.save(folder / "x.npy", array)
    code, _, err = run_in_process(
        "classify-batch", folder / "x.npy", tmp_path / "out.csv", "--probabilities", "-q"
    )
    assert code == 3, err
    text = (tmp_path / "out.csv").read_text()
    rows = list(csv.reader(io.StringIO(text)))
    assert text == writer_text(rows)
    assert [int(r[1]) for r in rows[1:]] == [i for i in range(1100) if i not in (5, 10, 999)]
    assert {r[0] for r in rows[1:]} == {str(folder / "x.npy")}


def test_the_review_list_holds_the_csv_lines_of_low_confidence_rows(tmp_path: Path, samples):
    """The folder's name holds a line separator that is not "\\n" (U+2028): csv.writer leaves it
    unquoted, and str.splitlines would cut a line there."""
    images, _ = samples
    array = np.concatenate([tiled(images, 600), 255 - tiled(images, 600)])  # inverted: unsure
    folder = tmp_path / "scans\u2028b"
    folder.mkdir()
    np.save(folder / "x.npy", array)
    out = tmp_path / "out.csv"
    code, _, err = run_in_process(
        "classify-batch", folder / "x.npy", out, "--min-confidence", "0.99"
    )
    assert code == 0, err
    rows = list(csv.reader(io.StringIO(out.read_text())))[1:]
    review = list(csv.reader(io.StringIO((tmp_path / "out.review.csv").read_text())))[1:]
    assert review and len(review) < len(rows)
    assert review == [row for row in rows if float(row[3]) < 0.99]
