"""Find the inputs: walk folders in a stable order and tell images, .npy and IDX files apart."""

import hashlib
import os
import re
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from classify_batch.jobs.arrays import GZIP_MAGIC, IDX_IMAGES_MAGIC, NPY_MAGIC
from classify_batch.jobs.images import IMAGE_SUFFIXES

# "error": a path that could not even be looked at; it keeps its place in the order, so a
# sharded run reports it exactly once and a merge puts it where a single run would.
Kind = Literal["image", "npy", "idx", "error"]
IDX_NAME = re.compile(r"(-idx3-ubyte|\.idx3?)(\.gz)?$", re.IGNORECASE)


class Source(NamedTuple):
    # A NamedTuple, not a frozen dataclass: one is made for every file of the walk, and a frozen
    # dataclass's __init__ costs four times as much (1.6 against 0.4 us; a million files).
    path: str  # what to open
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
    # Images first, as most files are: no name ending in an image suffix is any other kind.
    if os.path.splitext(lower)[1] in IMAGE_SUFFIXES:
        return "image"
    if lower.endswith(".npz"):
        return "error"  # plainly meant as input, so it is reported, not skipped
    if lower.endswith(".npy"):
        return "npy"
    if IDX_NAME.search(lower):
        return "idx"
    return None


def kind_by_content(path: str) -> Kind:
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


class Walk:
    """The inputs in order, found lazily: memory follows the largest folder, not the whole tree.

    Iterate it once; `skipped` counts the files passed over so far (all of them once iterated).
    """

    def __init__(self, inputs: Sequence[str]) -> None:
        self.inputs = list(inputs)
        self.skipped = 0
        self._digest = hashlib.sha256()

    def __iter__(self) -> Iterator[Source]:
        for item in _everything(self.inputs):
            if isinstance(item, Source):
                line = f"{item.kind}\0{item.shown}\0{item.rel}\n"
            else:
                line = f"skipped\0{item}\n"
                self.skipped += 1
            self._digest.update(line.encode("utf-8", "surrogateescape"))
            if isinstance(item, Source):
                yield item

    def sha256(self) -> str:
        """A digest of everything the walk found and skipped, in order: the shards of one run
        must have seen the same (digits merge checks it). Complete once the walk is."""
        return self._digest.hexdigest()


def find_inputs(inputs: Sequence[str]) -> Found:
    """Every input at once, as lists: for callers that show a bounded number of them."""
    found = Found()
    for item in _everything(inputs):
        if isinstance(item, Source):
            found.sources.append(item)
        else:
            found.skipped.append(item)
    return found


def _everything(inputs: Sequence[str]) -> Iterator[Source | str]:
    """Sources, and the paths of skipped files (as str), in order."""
    for given in inputs:
        try:
            st = os.stat(given)
        except FileNotFoundError:
            broken = os.path.islink(given)
            reason = "broken symbolic link" if broken else "no such file or directory"
            yield _error(given, reason)
            continue
        except OSError as e:
            yield _error(given, f"cannot access: {e.strerror or e}")
            continue
        if stat.S_ISDIR(st.st_mode):
            for rel, path, kind, reason in _entries(given):
                yield path if kind is None else Source(path, path, kind, rel, reason)
        elif stat.S_ISREG(st.st_mode):
            name = os.path.basename(given)
            kind = kind_by_name(name) or kind_by_content(given)
            yield Source(given, given, kind, "", _reason(kind))
        else:
            yield _error(given, "not a regular file (device, socket or pipe)")


def _reason(kind: Kind) -> str:
    return NPZ_REASON if kind == "error" else ""


def _error(given: str, reason: str) -> Source:
    return Source(given, given, "error", "", reason)


Entry = tuple[str, str, Kind | None, str]  # path below root, path to open, kind, reason


@dataclass(frozen=True)
class _Folder:
    path: str
    rel: str


def _entries(root: str) -> Iterator[Entry]:
    """Every file below root, in sorted order of path components; folder symlinks followed once.

    Visiting each folder's entries sorted by name, depth first, is that order: no global sort.
    A stack of folder listings instead of recursion: a tree nested thousands deep is only
    data here, and only the folders on the current path are held, each as one sorted listing.
    """
    seen: set[tuple[int, int]] = set()
    stack = [_listing(root, "", seen)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, _Folder):
                stack.append(_listing(item.path, item.rel, seen))
                break
            yield item
        else:
            stack.pop()


def _listing(folder: str, rel: str, seen: set[tuple[int, int]]) -> Iterator[Entry | _Folder]:
    try:
        st = os.stat(folder)
        if (st.st_dev, st.st_ino) in seen:
            return  # a symlink loop, or a second way into a folder already walked
        seen.add((st.st_dev, st.st_ino))
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as e:
        yield rel, folder, "error", f"cannot list folder: {e.strerror or e}"
        return
    prefix = rel + "/" if rel else ""
    for entry in entries:
        # DirEntry knows the type from the listing itself: no stat per file, except symlinks.
        sub = prefix + entry.name
        try:
            is_dir = entry.is_dir()
            is_file = not is_dir and entry.is_file()
            broken = (
                not (is_dir or is_file) and entry.is_symlink() and not os.path.exists(entry.path)
            )
        except OSError:
            is_dir = is_file = False
            broken = True
        if broken:
            yield sub, entry.path, "error", "broken symbolic link"
        elif is_dir:
            yield _Folder(entry.path, sub)
        elif is_file:
            kind = None if entry.name.startswith(".") else kind_by_name(entry.name)
            yield sub, entry.path, kind, _reason(kind) if kind else ""
        else:
            # Sockets, pipes and devices are skipped unopened: reading a FIFO would hang the job.
            yield sub, entry.path, None, ""
