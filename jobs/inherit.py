"""File descriptors that a forked decoder process must not keep.

A fork copies every open descriptor. A decoder that still held the main process's end of its own
pipe (or another decoder's) would never see EOF when the main process dies, and one that held the
run's lock would keep it locked after the run. Whoever opens such a descriptor registers it here;
a forked worker points each at /dev/null before it does anything else.
"""

import os

_FDS: set[int] = set()


def keep_from_workers(fd: int) -> None:
    _FDS.add(fd)


def release_from_workers(fd: int) -> None:
    _FDS.discard(fd)


def registered() -> list[int]:
    return sorted(_FDS)


def drop_inherited(fds: list[int]) -> None:
    """In a forked child: release what `fds` refer to, keeping the numbers taken.

    dup2 of /dev/null rather than close: Python objects copied from the parent still own those
    numbers and will close them one day; a number closed now could meanwhile be reused.
    """
    if not fds:
        return
    null = os.open(os.devnull, os.O_RDWR)
    try:
        for fd in fds:
            try:
                os.dup2(null, fd)
            except OSError:
                continue  # already closed
    finally:
        os.close(null)
