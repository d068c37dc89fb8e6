"""How much memory the job may use, and how many big images its decoders may hold at once.

A pod's memory limit is a property of the job, not of one file: two workers each decoding a
50-megapixel PNG reach 524 MB together, over the CronJob's 512 Mi, although each alone fits.
So a decoder about to decode a big image first takes one of a few slots shared by the whole
pool (a cross-process semaphore), sized from the limit. Small images, the common case, never
wait; without a limit (or with room for every worker's biggest image) there is no gate at all.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

CGROUP = Path("/sys/fs/cgroup")
MIB = 1024 * 1024

# The limit when there is no cgroup limit, e.g. on a shared VM: bytes, or with an M/G suffix.
LIMIT_VARIABLE = "CLASSIFY_BATCH_MEMORY_LIMIT"

# An image whose decoded pixels (4 bytes a pixel, RGBA at most) fit in this is decoded without
# asking: up to 16 MP. Phone JPEGs decode at a reduced DCT scale (images.read_image's draft),
# so they stay below; big PNG, TIFF and BMP scans take the gate.
SMALL_IMAGE_BYTES = 64 * MIB
# The most one decoder holds while decoding the largest image accepted (images.MAX_PIXELS,
# 50 MP): the decoded RGB(A) pixels, the grey copy and numpy's copy of it (measured: two
# workers decoding a 50 MP PNG each, 524 MB together).
BIG_IMAGE_BYTES = 300 * MIB
# What a decoder holds outside the gate: its own ~60 MB, and a decoded grey image while it is
# normalized (1 byte a pixel, and Pillow's copy of it: 100 MB at 50 MP). decode.py normalizes
# each big image as soon as it is read, so there is only ever one.
WORKER_BYTES = 160 * MIB
# The main process: model, batches in flight, CSV buffers (measured ~100 MB).
MAIN_BYTES = 160 * MIB


def memory_limit(cgroup: Path = CGROUP) -> int | None:
    """Bytes this process's memory may reach (the cgroup's limit), or None when unlimited."""
    given = os.environ.get(LIMIT_VARIABLE, "").strip()
    if given:
        return _parse_size(given)
    for path in (cgroup / "memory.max", cgroup / "memory" / "memory.limit_in_bytes"):
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text == "max":
            return None
        try:
            value = int(text)
        except ValueError:
            return None
        # cgroup v1 says "no limit" with a huge number (PAGE_COUNTER_MAX pages).
        return value if value < 1 << 60 else None
    return None


def big_image_slots(workers: int, limit: int | None) -> int | None:
    """How many decoders may hold a big image at once; None when all of them may."""
    if limit is None:
        return None
    room = limit - MAIN_BYTES - workers * WORKER_BYTES
    slots = max(1, room // BIG_IMAGE_BYTES)
    return None if slots >= workers else int(slots)


def big_image_gate(workers: int, cgroup: Path = CGROUP) -> Any | None:
    """A semaphore the pool's decoders share, or None when the limit leaves room for all."""
    slots = big_image_slots(workers, memory_limit(cgroup))
    if slots is None:
        return None
    # From the spawn context: such a semaphore can be inherited by forked workers and handed
    # to forkserver ones alike (workers.py uses either).
    # Imported here: a run without workers (one image, arrays) never pays for multiprocessing.
    import multiprocessing

    return multiprocessing.get_context("spawn").BoundedSemaphore(slots)


def _parse_size(text: str) -> int | None:
    units = {"k": 1024, "m": MIB, "g": 1024 * MIB}
    try:
        if text[-1].lower() in units:
            return int(float(text[:-1]) * units[text[-1].lower()])
        return int(text)
    except (ValueError, IndexError):
        return None
