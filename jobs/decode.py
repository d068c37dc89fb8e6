"""Turn sources into uint8 28x28 arrays: image files one by one, arrays chunk by chunk.

Everything here runs in decode worker processes as well as in the main one, so it returns plain
picklable data and reports bad inputs as rows, never as exceptions.
"""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from classify_batch.jobs.errors import InputError
from classify_batch.jobs.images import read_image
from classify_batch.jobs.normalize import PREPROCESS_MODES, WORK_SIDE, normalize_rows, to_mnist


@dataclass
class Decoded:
    """Images ready for the model, with where each came from, and the inputs that failed."""

    sources: list[str] = field(default_factory=list)
    # "" per image file; an array's rows are numbered by an int64 array (the CSV's index)
    indices: list[str] | np.ndarray = field(default_factory=list)
    images: np.ndarray = field(default_factory=lambda: np.empty((0, 28, 28), np.uint8))
    errors: list[tuple[str, int | None, str]] = field(default_factory=list)
    files: int = 0  # input files finished with this piece, for the progress bar


def decode_image(path: str | Path, preprocess: str) -> np.ndarray:
    # JPEG photos decode straight at a reduced size: the digit ends up 20 px tall anyway.
    return to_mnist(read_image(path, draft_side=WORK_SIDE), preprocess)


def decode_files(files: list[tuple[str, str]], preprocess: str) -> Decoded:
    out = Decoded(files=len(files))
    read: list[tuple[int, str, np.ndarray]] = []  # (position in files, shown, 28x28 grayscale)
    failed: list[tuple[int, str, str]] = []  # (position in files, shown, reason)
    images: dict[int, np.ndarray] = {}
    for position, (path, shown) in enumerate(files):
        try:
            gray = read_image(path, draft_side=WORK_SIDE)
            if gray.shape == (28, 28):
                read.append((position, shown, gray))  # checked together below, in one pass
            else:
                # At once, so a task holds one photo's pixels at a time, not all of them: the
                # memory bound of jobs/memory.py counts one per decoder.
                images[position] = to_mnist(gray, preprocess)
            del gray
        except Exception as e:
            failed.append((position, shown, _reason(e)))
    done = _normalize_small(read, preprocess, images, failed)
    for position, shown, gray in read:
        if position in done:
            continue
        try:
            images[position] = to_mnist(gray, preprocess)
        except Exception as e:
            failed.append((position, shown, _reason(e)))
    failed.sort()
    out.errors = [(shown, None, reason) for _, shown, reason in failed]
    kept = sorted(images)
    out.sources = [files[position][1] for position in kept]
    out.indices = [""] * len(kept)
    if kept:
        out.images = np.stack([images[position] for position in kept])
    return out


def _normalize_small(
    read: list[tuple[int, str, np.ndarray]],
    preprocess: str,
    images: dict[int, np.ndarray],
    failed: list[tuple[int, str, str]],
) -> set[int]:
    """Images already 28x28 (MNIST PNGs) are checked in one numpy pass, as array rows are.

    Returns the positions it dealt with; the others go through to_mnist one by one.
    """
    small = [(position, shown, gray) for position, shown, gray in read if gray.shape == (28, 28)]
    if not small or preprocess not in PREPROCESS_MODES:
        return set()
    try:
        normalized, bad = normalize_rows(np.stack([gray for _, _, gray in small]), preprocess)
    except Exception:
        return set()  # a normalizer bug: one by one, it costs only the files it hits
    rejected = {row for row, _ in bad}
    failed += [(small[row][0], small[row][1], reason) for row, reason in bad]
    kept = [position for row, (position, _, _) in enumerate(small) if row not in rejected]
    images.update(zip(kept, normalized, strict=True))
    return {position for position, _, _ in small}


def _reason(e: Exception) -> str:
    if isinstance(e, InputError):
        return str(e)
    if isinstance(e, MemoryError):
        return "image too large to decode in memory"
    # A decoder bug must cost one file, not the run.
    return f"cannot decode image ({type(e).__name__})"


def decode_rows(shown: str, indices: np.ndarray, images: np.ndarray, preprocess: str) -> Decoded:
    """A chunk of an array input, normalized as --preprocess says."""
    rows = indices.astype(np.int64)
    out = Decoded(sources=[shown] * len(rows), indices=rows)
    out.images, failed = normalize_rows(images, preprocess)
    if failed:
        keep = np.ones(len(indices), dtype=bool)
        for row, reason in failed:
            keep[row] = False
            out.errors.append((shown, int(indices[row]), reason))
        out.sources = [shown] * int(keep.sum())
        out.indices = rows[keep]
    return out
