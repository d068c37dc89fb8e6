"""Turn sources into uint8 28x28 arrays: image files one by one, arrays chunk by chunk.

Everything here runs in decode worker processes as well as in the main one, so it returns plain
picklable data and reports bad inputs as rows, never as exceptions.
"""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from jobs.errors import InputError
from jobs.images import read_image
from jobs.normalize import WORK_SIDE, normalize_rows, to_mnist


@dataclass
class Decoded:
    """Images ready for the model, with where each came from, and the inputs that failed."""

    sources: list[str] = field(default_factory=list)
    indices: list[str] = field(default_factory=list)  # "" for an image file, else the position
    images: np.ndarray = field(default_factory=lambda: np.empty((0, 28, 28), np.uint8))
    errors: list[tuple[str, int | None, str]] = field(default_factory=list)
    files: int = 0  # input files finished with this piece, for the progress bar


def decode_image(path: Path, preprocess: str) -> np.ndarray:
    # JPEG photos decode straight at a reduced size: the digit ends up 20 px tall anyway.
    return to_mnist(read_image(path, draft_side=WORK_SIDE), preprocess)


def decode_files(files: list[tuple[Path, str]], preprocess: str) -> Decoded:
    out = Decoded(files=len(files))
    images = []
    for path, shown in files:
        try:
            images.append(decode_image(path, preprocess))
        except InputError as e:
            out.errors.append((shown, None, str(e)))
        except MemoryError:
            out.errors.append((shown, None, "image too large to decode in memory"))
        except Exception as e:  # a decoder bug must cost one file, not the run
            out.errors.append((shown, None, f"cannot decode image ({type(e).__name__})"))
        else:
            out.sources.append(shown)
            out.indices.append("")
    if images:
        out.images = np.stack(images)
    return out


def decode_rows(shown: str, indices: np.ndarray, images: np.ndarray, preprocess: str) -> Decoded:
    """A chunk of an array input, normalized as --preprocess says."""
    out = Decoded(sources=[shown] * len(indices), indices=[str(i) for i in indices.tolist()])
    out.images, failed = normalize_rows(images, preprocess)
    if failed:
        keep = np.ones(len(indices), dtype=bool)
        for row, reason in failed:
            keep[row] = False
            out.errors.append((shown, int(indices[row]), reason))
        out.sources = [s for s, k in zip(out.sources, keep, strict=True) if k]
        out.indices = [i for i, k in zip(out.indices, keep, strict=True) if k]
    return out
