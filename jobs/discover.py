"""Find the inputs: walk folders in a stable order and tell images, .npy and IDX files apart."""

import os
import re
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Literal

from jobs.arrays import GZIP_MAGIC, IDX_IMAGES_MAGIC, NPY_MAGIC
from jobs.images import IMAGE_SUFFIXES

# "error": a path that could not even be looked at; it keeps its place in the order, so a
# sharded run reports it exactly once and a merge puts it where a single run would.
Kind = Literal["image", "npy", "idx", "error"]
IDX_NAME = re.compile(r"(-idx3-ubyte|\.idx3?)(\.gz)?$", re.IGNORECASE)


@dataclass(frozen=True)
class Source:
    path: Path  # what to open
    shown: str  # the path as the user gave it (relative inputs stay relative), for the CSV
    kind: Kind
    rel: str  # path below the input it was found in ("" for a file named directly)
    reason: str = ""  # why, for kind "error"


@dataclass
class Found:
    sources: list[Source] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


NPZ_REASON = "a .npz archive is not read: save each array with numpy.save as a .npy file"


def kind_by_name(name: str) -> Kind | None:
    lower = name.lower()
    if lower.endswith(".npz"):
        return "error"  # plainly meant as input, so it is reported, not skipped
    if lower.endswith(".npy"):
        return "npy"
    if IDX_NAME.search(lower):
        return "idx"
    if os.path.splitext(lower)[1] in IMAGE_SUFFIXES:
        return "image"
    return None


def kind_by_content(path: Path) -> Kind:
    """For a file named on the command line with no telling suffix: look at its first bytes."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError:
        return "image"  # the decoder reports the reason
    if head.startswith(NPY_MAGIC):
        return "npy"
    if head.startswith(IDX_IMAGES_MAGIC) or head.startswith(GZIP_MAGIC):
        return "idx"
    return "image"


def find_inputs(inputs: Sequence[str]) -> Found:
    found = Found()
    for given in inputs:
        path = Path(given)
        try:
            st = path.stat()
        except FileNotFoundError:
            reason = "broken symbolic link" if path.is_symlink() else "no such file or directory"
            found.sources.append(_error(path, given, "", reason))
            continue
        except OSError as e:
            found.sources.append(_error(path, given, "", f"cannot access: {e.strerror or e}"))
            continue
        if stat.S_ISDIR(st.st_mode):
            _walk(given, found)
        elif stat.S_ISREG(st.st_mode):
            kind = kind_by_name(path.name) or kind_by_content(path)
            found.sources.append(Source(path, given, kind, "", _reason(path.name, kind)))
        else:
            reason = "not a regular file (device, socket or pipe)"
            found.sources.append(_error(path, given, "", reason))
    return found


def _reason(name: str, kind: Kind) -> str:
    return NPZ_REASON if kind == "error" else ""


def _error(path: Path, shown: str, rel: str, reason: str) -> Source:
    return Source(path, shown, "error", rel, reason)


def _walk(root: str, found: Found) -> None:
    """Every file below root, sorted by path components; folder symlinks followed once each."""
    entries = sorted(_entries(Path(root), (), set()), key=lambda e: e[0])
    for parts, path, kind, reason in entries:
        shown = os.path.join(root, *parts)
        if kind is None:
            found.skipped.append(shown)
        else:
            rel = str(PurePosixPath(*parts)) if parts else ""
            found.sources.append(Source(path, shown, kind, rel, reason))


Entry = tuple[tuple[str, ...], Path, Kind | None, str]  # parts below root, path, kind, reason


def _entries(folder: Path, parts: tuple[str, ...], seen: set[tuple[int, int]]) -> Iterator[Entry]:
    try:
        st = folder.stat()
        if (st.st_dev, st.st_ino) in seen:
            return  # a symlink loop, or a second way into a folder already walked
        seen.add((st.st_dev, st.st_ino))
        with os.scandir(folder) as it:
            entries = list(it)
    except OSError as e:
        yield parts, folder, "error", f"cannot list folder: {e.strerror or e}"
        return
    for entry in entries:
        sub = (*parts, entry.name)
        try:
            st = entry.stat(follow_symlinks=True)
        except OSError:
            yield sub, Path(entry.path), "error", "broken symbolic link"
            continue
        if stat.S_ISDIR(st.st_mode):
            yield from _entries(Path(entry.path), sub, seen)
        elif stat.S_ISREG(st.st_mode):
            kind = None if entry.name.startswith(".") else kind_by_name(entry.name)
            yield sub, Path(entry.path), kind, _reason(entry.name, kind) if kind else ""
        else:
            # Sockets, pipes and devices are skipped unopened: reading a FIFO would hang the job.
            yield sub, Path(entry.path), None, ""
