"""Classify decoded pieces in order, in batches, on more than one thread when the cores are free.

onnxruntime releases the GIL while it runs. Where inference is nearly all the work (arrays, with
no decoder processes), the batches run on one thread per core, each an onnxruntime run of one
thread, while the main thread reads the next rows and writes the CSV. One run at a time on
onnxruntime's own two threads, whose every operator waits for the slower of the two, and which
leaves a core idle while the main thread reads and writes, was a little slower: 1M rows in 9.0 s
against 8.8 s (medians of four paired runs).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from classify_batch.contract import LABELS
from classify_batch.jobs.decode import Decoded
from classify_batch.jobs.model import Classifier

if TYPE_CHECKING:
    from concurrent.futures import Future

# With 1,024-row chunks (jobs/pipeline.py), memory stays flat from 1k rows up: 3.5% more at 10k
# rows than at 1k with one chunk in flight, 5-8% with two (classified). Batches of 1,024 with
# 2,048-row chunks were 10% faster on a million rows (paired runs, whole 784x384 model) but held
# 17% more at 10k rows than at 1k.
MAX_BATCH = 512

# A batch's probabilities and digits.
Answer = tuple[np.ndarray, np.ndarray]


def classified(
    pieces: Iterable[Decoded], classifier: Classifier, threads: int
) -> Iterator[tuple[Decoded, np.ndarray, np.ndarray]]:
    """Each piece with the model's probabilities and digits for its images, in the pieces' order.

    With `threads` above 1, batches are run on that many threads once a piece holds more than
    one batch (array chunks): a few image files never pay for starting threads.
    """
    pending: deque[tuple[Decoded, list[Future[Answer]]]] = deque()
    executor: Any = None
    try:
        for piece in pieces:
            starts = range(0, len(piece.images), MAX_BATCH)
            if executor is None and threads > 1 and len(starts) > 1:
                from concurrent.futures import ThreadPoolExecutor

                executor = ThreadPoolExecutor(threads, thread_name_prefix="classify")
            if executor is None:
                yield piece, *_joined([_answer(classifier, piece.images, lo) for lo in starts])
                continue
            batches = [executor.submit(_answer, classifier, piece.images, lo) for lo in starts]
            pending.append((piece, batches))
            # Two pieces in flight (a chunk of array rows is a batch for each of two threads)
            # while the main thread writes the oldest and reads the next: with one, a thread
            # that finished its batch waited for the main thread to hand it the next piece's.
            # 1M rows: 0.91 the time (median of 9 paired runs, 3.8-4.9 s against 4.3-5.1 s),
            # for 1-2 MB more at 10k rows (79-81 MB against 79-80; 75-77 MB at 1k, one piece).
            while len(pending) > 2:
                done, futures = pending.popleft()
                yield done, *_joined([future.result() for future in futures])
        while pending:
            done, futures = pending.popleft()
            yield done, *_joined([future.result() for future in futures])
    finally:
        if executor is not None:
            # Stopped early (an error, a signal): the batches not started are dropped, the
            # running ones take milliseconds.
            executor.shutdown(wait=True, cancel_futures=True)


def _answer(classifier: Classifier, images: np.ndarray, lo: int) -> Answer:
    return classifier(images[lo : lo + MAX_BATCH])


def _joined(answers: list[Answer]) -> Answer:
    """A piece's batches' answers end to end: the CSV text of a chunk of 1,024 array rows is then
    built in one go, not once per batch of 512."""
    if len(answers) == 1:
        return answers[0]
    if not answers:  # a piece whose every input failed
        return np.empty((0, len(LABELS)), np.float32), np.empty(0, np.int64)
    return np.concatenate([a[0] for a in answers]), np.concatenate([a[1] for a in answers])
