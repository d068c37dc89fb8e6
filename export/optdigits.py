"""UCI optdigits: real handwriting by 30 writers (not MNIST), for the model card's second figure.

The original 32x32 bitmaps of optdigits-orig.tra are read from the file named by OPTDIGITS_FILE
and measured as a user's files would be: each bitmap as a black-on-white image, through the job's
own normalization, then the model. A digit the normalizer refuses counts as wrong.
"""

import functools
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from classify_batch.jobs.errors import InputError
from classify_batch.jobs.normalize import to_mnist

OPTDIGITS_ENV = "OPTDIGITS_FILE"
SIDE = 32
NOTE = (
    "UCI optdigits-orig.tra: 1,934 digits by 30 writers on NIST forms, 32x32 bitmaps scaled to "
    "fill the box; each read as a black-on-white image through the job's normalization"
)


def load_optdigits(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The bitmaps (bool, True = ink, N x 32 x 32) and labels of the original text format: a
    header of `key = value` lines, then per digit 32 lines of 32 `0`/`1` and a line with its label.
    """
    lines = [line.strip() for line in path.read_text().splitlines()]
    start = next(i for i, line in enumerate(lines) if len(line) == SIDE and set(line) <= {"0", "1"})
    body = [line for line in lines[start:] if line]
    bitmaps, labels = [], []
    for at in range(0, len(body) - SIDE, SIDE + 1):
        bitmaps.append([[c == "1" for c in row] for row in body[at : at + SIDE]])
        labels.append(int(body[at + SIDE]))
    return np.array(bitmaps, dtype=bool), np.array(labels, dtype=np.int64)


def as_scans(bitmaps: np.ndarray) -> np.ndarray:
    """Black ink on white paper, uint8: what a scanner or a form reader hands the job."""
    return np.where(bitmaps, 0, 255).astype(np.uint8)


def figures(classify: Callable[[np.ndarray], np.ndarray]) -> dict[str, Any] | None:
    """Accuracy overall and per digit, or None when OPTDIGITS_FILE is not set.

    `classify` takes uint8 (n, 28, 28) and returns the digits.
    """
    from classify_batch.export.evaluate import per_digit_accuracy

    read = _read(classify)
    if read is None:
        return None
    digits, labels, refused, path = read
    return {
        "accuracy": float((digits == labels).mean()),
        "per_digit": per_digit_accuracy(digits, labels),
        "digits": int(len(labels)),
        "refused_as_blank": refused,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "note": NOTE,
    }


def right(classify: Callable[[np.ndarray], np.ndarray]) -> np.ndarray | None:
    """Per digit, whether `classify` reads it right, or None when OPTDIGITS_FILE is not set."""
    read = _read(classify)
    return None if read is None else read[0] == read[1]


def _read(
    classify: Callable[[np.ndarray], np.ndarray],
) -> tuple[np.ndarray, np.ndarray, int, Path] | None:
    """The digits `classify` reads (-1 where the normalizer refused the scan: wrong), the
    labels, how many were refused, and the file."""
    where = os.environ.get(OPTDIGITS_ENV)
    if not where:
        return None
    path = Path(where)
    stat = path.stat()
    seen, labels, refused = _normalized(path, stat.st_mtime_ns, stat.st_size)
    digits = np.asarray(classify(seen)).astype(np.int64)
    digits[refused] = -1
    return digits, labels, len(refused), path


@functools.cache
def _normalized(path: Path, mtime_ns: int, size: int) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """The file's scans as the job sees them (a refused one blank), their labels, and the refused
    ones: the same for every model measured in a process, and a pass takes 4.7 s (an export that
    tunes a factored model measures four). Read-only, as every caller shares them; the file's
    time and size are in the key so that a changed file is read again."""
    bitmaps, labels = load_optdigits(path)
    seen, refused = [], []
    for i, scan in enumerate(as_scans(bitmaps)):
        try:
            seen.append(to_mnist(scan, "auto"))
        except InputError:
            refused.append(i)
            seen.append(np.zeros((28, 28), np.uint8))
    images = np.stack(seen)
    images.flags.writeable = labels.flags.writeable = False
    return images, labels, refused
