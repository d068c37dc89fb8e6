"""Files that appear whole or not at all: written beside their target, flushed, then renamed.

A rename within one folder is atomic on POSIX, so a reader, or a process killed at any moment
(SIGKILL included), sees the previous complete file or the new one, never a part.
"""

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO


class AtomicFile:
    """A temporary file in target's folder that replaces target on commit()."""

    def __init__(self, target: Path, mode: str = "w") -> None:
        self.target = target
        fd, self.tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        text = "b" not in mode
        # surrogateescape: a file name that is not valid UTF-8 is written back as its own bytes.
        self.file: IO = os.fdopen(
            fd,
            mode,
            encoding="utf-8" if text else None,
            errors="surrogateescape" if text else None,
            newline="" if text else None,
        )

    def commit(self) -> None:
        self.finish()
        self.publish()

    def finish(self) -> None:
        """Make the temporary file complete and durable; the target is not touched yet.

        Separate from publish() so that several files can all be finished, and every write
        error seen, before any of them replaces its target.
        """
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        # mkstemp makes the file 0600; give it the mode a plain open() would have.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(self.tmp, 0o666 & ~umask)

    def publish(self) -> None:
        os.replace(self.tmp, self.target)

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self.file.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.tmp)


@contextlib.contextmanager
def atomic_writer(target: Path, mode: str = "w") -> Iterator[IO]:
    f = AtomicFile(target, mode)
    try:
        yield f.file
        f.commit()
    except BaseException:
        f.discard()
        raise


def write_bytes(target: Path, data: bytes) -> None:
    with atomic_writer(target, "wb") as f:
        f.write(data)


def write_text(target: Path, text: str) -> None:
    with atomic_writer(target, "w") as f:
        f.write(text)
