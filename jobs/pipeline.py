"""Stream decoded inputs in the sources' order, in bounded pieces, decoding images in a pool.

Memory stays flat whatever the input: at most `ahead` pieces are in flight, each a bounded number
of files or rows, and arrays are read chunk by chunk.
"""

from __future__ import annotations

import hashlib
import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from jobs.arrays import ArrayFile, IdxFile, NpyFile
from jobs.decode import Decoded, decode_files, decode_rows
from jobs.discover import Source
from jobs.errors import InputError

if TYPE_CHECKING:
    # Imported where a pool is started: a run without one (a few files, arrays) never pays
    # for multiprocessing's imports, a noticeable part of a single image's start-up.
    from concurrent.futures import Future, ProcessPoolExecutor

FILES_PER_TASK = 128
# Small enough that a chunk and its copies stay a few MB (flat memory from 1k rows up), large
# enough that numpy, not Python, does the work; onnxruntime takes it in two batches.
ROWS_PER_CHUNK = 2048
POOL_MIN_FILES = 2 * FILES_PER_TASK  # below this a pool costs more than it saves


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
        # A hash of the path below the input root: adding files never moves the others.
        key = source.rel or source.shown.rsplit("/", 1)[-1]
        digest = hashlib.blake2b(key.encode("utf-8", "surrogateescape"), digest_size=8).digest()
        return int.from_bytes(digest, "big") % self.count == self.index

    def rows(self, count: int) -> tuple[int, int]:
        return count * self.index // self.count, count * (self.index + 1) // self.count


Piece = Callable[[], Iterator[Decoded]]


def start_pool(workers: int, image_files: int) -> ProcessPoolExecutor | None:
    """A decode pool when there are enough image files to pay for it, else None.

    Called before onnxruntime is imported: forked from a process with no other thread, the
    workers start in milliseconds with numpy and Pillow already imported.
    """
    if workers <= 1 or image_files < POOL_MIN_FILES:
        return None
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # A fork copies only the calling thread: if any other thread holds a lock at that moment
    # (a library's thread pool, say), the child can wait on it forever. Fork only when this
    # process has no other thread; otherwise start from a clean forkserver.
    method = "fork" if _single_threaded() else "forkserver"
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method))
    for f in [pool.submit(int) for _ in range(workers)]:
        f.result()  # one no-op each, so every worker is forked now, not later
    return pool


def close_pool(pool: ProcessPoolExecutor) -> None:
    """Shut a pool down and wait for its processes, even when one of them died.

    Waiting avoids CPython 3.11's exit-time "Bad file descriptor" traceback from a pool left
    running. But in a broken pool a surviving worker can block forever writing a result that
    nobody reads any more, so those are killed first.
    """
    if getattr(pool, "_broken", False):
        for process in list(getattr(pool, "_processes", {}).values()):
            process.kill()
    pool.shutdown(wait=True, cancel_futures=True)


def _single_threaded() -> bool:
    try:
        return len(os.listdir("/proc/self/task")) == 1  # native threads too, not only Python's
    except OSError:
        return False


def stream(
    sources: Sequence[Source],
    preprocess: str,
    pool: ProcessPoolExecutor | None = None,
    shard: Shard | None = None,
    workers: int = 1,
) -> Iterator[Decoded]:
    """Decoded pieces in the sources' order; image files go to `pool` when there is one."""
    yield from _ordered(_pieces(sources, preprocess, shard), pool, workers)


def _pieces(
    sources: Sequence[Source], preprocess: str, shard: Shard | None
) -> Iterator[tuple[list[tuple], str] | Piece]:
    """Image files grouped into pool tasks, arrays as lazy chunk readers, in source order."""
    batch: list[tuple] = []
    for source in sources:
        if shard is not None and source.kind in ("image", "error") and not shard.owns_file(source):
            continue
        if source.kind == "image":
            batch.append((source.path, source.shown))
            if len(batch) == FILES_PER_TASK:
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
            yield Decoded(errors=[(source.shown, None, str(e))], files=1)
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
    pool: ProcessPoolExecutor | None,
    workers: int,
) -> Iterator[Decoded]:
    ahead = 2 * workers + 1  # enough to keep every worker busy while the caller classifies
    window: deque[tuple[Future[Decoded] | None, tuple[list[tuple], str] | Piece]] = deque()
    pools = [pool]

    def submit(piece: tuple[list[tuple], str] | Piece) -> None:
        live = pools[-1]
        future = live.submit(decode_files, *piece) if live and isinstance(piece, tuple) else None
        window.append((future, piece))

    def drain_one() -> Iterator[Decoded]:
        future, piece = window.popleft()
        if future is not None:
            from concurrent.futures.process import BrokenProcessPool

            try:
                yield future.result()
                return
            except BrokenProcessPool:
                # A decoder process died (a codec crash, the kernel's OOM killer): find the file
                # that kills it, one file per process, and carry on with a fresh pool.
                assert isinstance(piece, tuple)
                yield from _isolate(*piece)
                pools.append(_fresh_pool(workers))
                for _ in range(len(window)):
                    _, later = window.popleft()
                    submit(later)
                return
        if isinstance(piece, tuple):
            yield decode_files(*piece)
        else:
            yield from piece()

    try:
        for piece in pieces:
            submit(piece)
            while len(window) > ahead:
                yield from drain_one()
        while window:
            yield from drain_one()
    finally:
        for extra in pools[1:]:
            if extra is not None:
                close_pool(extra)


def _fresh_pool(workers: int) -> ProcessPoolExecutor:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # onnxruntime's threads are running by now, so no more forks: start from a clean server.
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("forkserver"))


def _isolate(files: list[tuple], preprocess: str) -> Iterator[Decoded]:
    from concurrent.futures.process import BrokenProcessPool

    pool = _fresh_pool(1)
    for path, shown in files:
        try:
            yield pool.submit(decode_files, [(path, shown)], preprocess).result()
        except BrokenProcessPool:
            close_pool(pool)
            pool = _fresh_pool(1)
            yield Decoded(errors=[(shown, None, "the image decoder crashed on this file")], files=1)
    close_pool(pool)
