"""Stream decoded inputs in the sources' order, in bounded pieces, decoding images in a pool.

Memory stays flat whatever the input: at most `ahead` pieces are in flight, each a bounded number
of files or rows, and arrays are read chunk by chunk.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from classify_batch.jobs.arrays import ArrayFile, IdxFile, NpyFile
from classify_batch.jobs.decode import Decoded, decode_files, decode_rows
from classify_batch.jobs.discover import Source
from classify_batch.jobs.errors import InputError

if TYPE_CHECKING:
    # Imported where a pool is started: a run without one (a few files, arrays) never pays
    # for multiprocessing's imports, a noticeable part of a single image's start-up.
    from classify_batch.jobs.workers import Pool

# The most files in one decode task: fewer, bigger tasks cost the main process less to hand out
# and collect (measured: 256 beats 128 and ties 512 on 10,000 MNIST PNGs).
FILES_PER_TASK = 256
# Small enough that a chunk and its copies stay a few MB (flat memory from 1k rows up), large
# enough that numpy, not Python, does the work; it is one batch for each of two inference threads
# (jobs/infer.py), which says what larger ones cost in memory.
ROWS_PER_CHUNK = 1024
# A pool costs ~15 ms to start and stop. MNIST-size PNGs decode in ~13 us each, so it pays from
# about 2,000 of them (measured: 1,000 run faster without, 2,000 break even); photos and scans
# decode at ~10-20 ms per MB, so a few MB of them pay for it.
POOL_MIN_FILES = 2048
POOL_MIN_BYTES = 4 * 1024 * 1024
# About the bytes of one decode task: 256 MNIST PNGs are ~80 kB; a phone photo is 1-5 MB, so
# photos go one per task, which costs ~1 ms of pickling against their ~50 ms of decoding.
TASK_BYTES = 256 * 1024


@dataclass(frozen=True)
class Shard:
    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        try:
            i, n = (int(p) for p in text.split("/"))
        except ValueError:
            raise ValueError(f"--shard must look like I/N, e.g. 0/4 (got {text!r})") from None
        if not (n >= 1 and 0 <= i < n):
            raise ValueError(f"--shard {text}: need 0 <= I < N")
        return cls(i, n)

    def owns_file(self, source: Source) -> bool:
        # A hash of the path as the CSV shows it: adding files never moves the others, and a
        # file reached through two overlapping inputs lands in one shard both times, so that
        # merge can tell its two identical rows apart by their order.
        key = source.shown
        digest = hashlib.blake2b(key.encode("utf-8", "surrogateescape"), digest_size=8).digest()
        return int.from_bytes(digest, "big") % self.count == self.index

    def rows(self, count: int) -> tuple[int, int]:
        return count * self.index // self.count, count * (self.index + 1) // self.count


Piece = Callable[[], Iterator[Decoded]]


@dataclass
class Ahead:
    """The first sources of a walk, looked at to plan the run; `sources` still yields them all."""

    sources: Iterator[Source]
    empty: bool  # no source at all (the walk is then over)
    image_paths: list[str]  # the first image files this run owns, as many as planning needs


def look_ahead(sources: Iterable[Source], workers: int, shard: Shard | None = None) -> Ahead:
    """Take enough of `sources` to decide on a pool and a task size, without walking the rest.

    A walk of a million files is never held whole: only the first images, up to what the
    decisions need (POOL_MIN_FILES, and four full tasks per worker), are kept in a list.
    """
    it = iter(sources)
    head: list[Source] = []
    images: list[str] = []
    need = max(POOL_MIN_FILES, 4 * max(1, workers) * FILES_PER_TASK)
    for source in it:
        head.append(source)
        if source.kind == "image" and (shard is None or shard.owns_file(source)):
            images.append(source.path)
            if len(images) >= need:
                break
        elif len(head) >= 4 * need:
            break  # arrays or errors by the thousand: plan from what was seen
    return Ahead(itertools.chain(head, it), not head, images)


def start_pool(workers: int, image_paths: Sequence[str]) -> Pool | None:
    """Decoder processes when the image files are enough work to pay for them, else None.

    Called before onnxruntime is imported, so the workers can be forked (see jobs.workers).
    """
    if workers <= 1 or not _worth_a_pool(image_paths):
        return None
    from classify_batch.jobs.images import set_big_image_gate
    from classify_batch.jobs.memory import big_image_gate
    from classify_batch.jobs.workers import Pool

    gate = big_image_gate(workers)
    return Pool(workers, decode_files, None if gate is None else (set_big_image_gate, (gate,)))


def files_per_task(image_files: int, workers: int, sample: Sequence[str] = ()) -> int:
    """How many image files go into one decode task.

    At least four tasks per worker, so that no worker is left with a long last task alone (100
    photos are seconds of work), and at most FILES_PER_TASK. With `sample` (the first image
    paths), tasks are also sized by bytes: photos vary from 50 kB to 10 MB, and a task of a
    dozen big ones would leave the other workers idle at the end, so big files go one or a few
    per task and the pool hands them to whichever worker is free.
    """
    by_count = max(1, min(FILES_PER_TASK, -(-image_files // (4 * max(1, workers)))))
    average = _average_size(sample)
    if average is None:
        return by_count
    return max(1, min(by_count, TASK_BYTES // max(1, average)))


def _average_size(paths: Sequence[str]) -> int | None:
    sizes = []
    for path in paths[:64]:  # the first few say whether these are photos or MNIST-size files
        try:
            sizes.append(os.stat(path).st_size)
        except OSError:
            continue
    return sum(sizes) // len(sizes) if sizes else None


def _worth_a_pool(paths: Sequence[str]) -> bool:
    if len(paths) >= POOL_MIN_FILES:
        return True
    if len(paths) < 2:
        return False
    total = 0
    for path in paths:  # fewer than POOL_MIN_FILES stats: a few ms at most
        try:
            total += os.stat(path).st_size
        except OSError:
            continue  # decoding will say what is wrong with it
        if total >= POOL_MIN_BYTES:
            return True
    return False


def stream(
    sources: Iterable[Source],
    preprocess: str,
    pool: Pool | None = None,
    shard: Shard | None = None,
    workers: int = 1,
    task_files: int = FILES_PER_TASK,
) -> Iterator[Decoded]:
    """Decoded pieces in the sources' order; image files go to `pool` when there is one.

    Image files are decoded `task_files` at a time (see files_per_task). With a pool, the first
    tasks are submitted before this returns.
    """
    return _ordered(_pieces(sources, preprocess, shard, task_files), pool, workers)


def _pieces(
    sources: Iterable[Source], preprocess: str, shard: Shard | None, task_files: int
) -> Iterator[tuple[list[tuple], str] | Piece]:
    """Image files grouped into pool tasks, arrays as lazy chunk readers, in source order."""
    batch: list[tuple] = []
    for source in sources:
        if shard is not None and source.kind in ("image", "error") and not shard.owns_file(source):
            continue
        if source.kind == "image":
            batch.append((source.path, source.shown))
            if len(batch) >= task_files:
                yield batch, preprocess
                batch = []
            continue
        if batch:
            yield batch, preprocess
            batch = []
        if source.kind == "error":
            yield _error_piece(source)
        else:
            yield _array_piece(source, preprocess, shard)
    if batch:
        yield batch, preprocess


def _error_piece(source: Source) -> Piece:
    def read() -> Iterator[Decoded]:
        yield Decoded(errors=[(source.shown, None, source.reason)], files=1)

    return read


def _array_piece(source: Source, preprocess: str, shard: Shard | None) -> Piece:
    def read() -> Iterator[Decoded]:
        try:
            array: ArrayFile = (
                NpyFile(source.path) if source.kind == "npy" else IdxFile(source.path)
            )
        except InputError as e:
            # A whole-file failure is one error line in a single run: one shard reports it.
            if shard is None or shard.owns_file(source):
                yield Decoded(errors=[(source.shown, None, str(e))], files=1)
            else:
                yield Decoded(files=1)
            return
        start, stop = shard.rows(array.count) if shard else (0, array.count)
        position = start
        try:
            for rows in array.chunks(start, stop, ROWS_PER_CHUNK):
                out = decode_rows(source.shown, rows.indices, rows.images, preprocess)
                out.errors += [(source.shown, i, reason) for i, reason in rows.errors]
                position = rows.start + ROWS_PER_CHUNK
                yield out
        except InputError as e:
            yield Decoded(errors=[(source.shown, min(position, stop), str(e))])
        yield Decoded(files=1)

    return read


def _ordered(
    pieces: Iterator[tuple[list[tuple], str] | Piece],
    pool: Pool | None,
    workers: int,
) -> Iterator[Decoded]:
    # Enough to keep every worker busy while the caller loads the model (~30 ms, once) and then
    # classifies; the results waiting are 28x28 images, so even 17 pieces are about 2 MB.
    ahead = 8 * workers + 1
    window: deque[tuple[int | None, tuple[list[tuple], str] | Piece]] = deque()

    def submit(piece: tuple[list[tuple], str] | Piece) -> None:
        ticket = pool.submit(*piece) if pool and isinstance(piece, tuple) else None
        window.append((ticket, piece))

    def drain_one() -> Iterator[Decoded]:
        ticket, piece = window.popleft()
        if ticket is not None:
            from classify_batch.jobs.workers import WorkerDied

            assert pool is not None and isinstance(piece, tuple)
            try:
                yield pool.result(ticket)
            except WorkerDied:
                # A decoder process died (a codec crash, the kernel's OOM killer): find the file
                # that kills it, one file per task; the pool has replaced the process.
                yield from _isolate(pool, *piece)
        elif isinstance(piece, tuple):
            yield decode_files(*piece)
        else:
            yield from piece()

    def ordered() -> Iterator[Decoded]:
        for piece in pieces:
            submit(piece)
            while len(window) > ahead:
                yield from drain_one()
        while window:
            yield from drain_one()

    # The first pieces go to the pool now, not at the first next(): decoding overlaps whatever
    # the caller does before it asks (loading the model). Array pieces are read lazily anyway.
    for piece in itertools.islice(pieces, ahead):
        submit(piece)
    return ordered()


def _isolate(pool: Pool, files: list[tuple], preprocess: str) -> Iterator[Decoded]:
    from classify_batch.jobs.workers import WorkerDied

    for path, shown in files:
        try:
            yield pool.result(pool.submit([(path, shown)], preprocess))
        except WorkerDied:
            yield Decoded(errors=[(shown, None, "the image decoder crashed on this file")], files=1)
