"""Opening an input file: one place that turns what the file system says into one-line reasons."""

import io
import os
import stat
from pathlib import Path

from classify_batch.jobs.errors import InputError

_MEGA = 1_000_000


def open_input(path: str | Path, max_bytes: int | None = None) -> io.BufferedReader:
    """Open a regular, non-empty file for reading, or raise InputError saying why not."""
    fd, _ = _open_checked(path, max_bytes)
    return os.fdopen(fd, "rb")


def read_input(path: str | Path, max_bytes: int, whole_up_to: int) -> bytes | io.BufferedReader:
    """A file's content if it has at most `whole_up_to` bytes, else the file open for reading.

    Checked as open_input checks, with one open either way. For small files (an MNIST PNG is
    ~300 bytes) a buffered file object costs more than reading the file does.
    """
    fd, st = _open_checked(path, max_bytes)
    if st.st_size > whole_up_to:
        return os.fdopen(fd, "rb")
    try:
        parts = []
        size = 0
        while size < st.st_size:
            part = os.read(fd, st.st_size - size)
            if not part:
                break  # shrank while we read: the decoder will report what is missing
            parts.append(part)
            size += len(part)
        return parts[0] if len(parts) == 1 else b"".join(parts)
    finally:
        os.close(fd)


def _open_checked(path: str | Path, max_bytes: int | None) -> tuple[int, os.stat_result]:
    # O_NONBLOCK so a FIFO dropped in the folder cannot hang the job in open(); it has no
    # effect on regular files.
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise InputError("file not found") from None
    except PermissionError:
        raise InputError("permission denied") from None
    except IsADirectoryError:
        raise InputError("is a directory, not a file") from None
    except OSError as exc:
        raise InputError(f"cannot open the file ({exc.strerror or 'I/O error'})") from None
    try:
        st = os.fstat(fd)
        _check(st, max_bytes)
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def _check(st: os.stat_result, max_bytes: int | None) -> None:
    if stat.S_ISDIR(st.st_mode):
        raise InputError("is a directory, not a file")
    if not stat.S_ISREG(st.st_mode):
        raise InputError("not a regular file")
    if st.st_size == 0:
        raise InputError("empty file")
    if max_bytes is not None and st.st_size > max_bytes:
        raise InputError(
            f"file too large: {st.st_size / _MEGA:.0f} MB (limit {max_bytes // _MEGA} MB)"
        )
