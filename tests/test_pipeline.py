"""The streaming decoder: a decoder process that dies costs no input, and the order holds."""

import os
import signal

import numpy as np
from PIL import Image

from jobs import pipeline
from jobs.discover import find_inputs


def test_a_killed_decoder_process_loses_no_input(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(4 * pipeline.FILES_PER_TASK):
        image = np.zeros((28, 28), np.uint8)
        image[4:24, 10 + i % 8 : 14 + i % 8] = rng.integers(128, 256)
        Image.fromarray(image).save(tmp_path / f"{i:04d}.png")
    sources = find_inputs([str(tmp_path)]).sources
    pool = pipeline.start_pool(2, len(sources))
    assert pool is not None
    try:
        victim = next(iter(pool._processes))  # what a codec crash or the OOM killer does
        shown: list[str] = []
        for i, piece in enumerate(pipeline.stream(sources, "auto", pool, None, 2)):
            if i == 0:
                os.kill(victim, signal.SIGKILL)
            assert piece.errors == []
            shown += piece.sources
    finally:
        pipeline.close_pool(pool)
    assert shown == [s.shown for s in sources]
