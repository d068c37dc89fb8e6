"""The streaming decoder: a decoder process that dies costs no input, and the order holds."""

import os
import signal

import numpy as np
from PIL import Image

from classify_batch.jobs import pipeline
from classify_batch.jobs.discover import find_inputs


def test_a_killed_decoder_process_loses_no_input(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(pipeline.POOL_MIN_FILES):
        image = np.zeros((28, 28), np.uint8)
        image[4:24, 10 + i % 8 : 14 + i % 8] = rng.integers(128, 256)
        Image.fromarray(image).save(tmp_path / f"{i:04d}.png")
    sources = find_inputs([str(tmp_path)]).sources
    pool = pipeline.start_pool(2, [s.path for s in sources])
    assert pool is not None
    try:
        victim = pool.pids()[0]  # what a codec crash or the OOM killer does
        shown: list[str] = []
        task_files = pipeline.files_per_task(len(sources), 2)
        for i, piece in enumerate(pipeline.stream(sources, "auto", pool, None, 2, task_files)):
            if i == 0:
                os.kill(victim, signal.SIGKILL)
            assert piece.errors == []
            shown += piece.sources
    finally:
        pool.close()
    assert shown == [s.shown for s in sources]


def test_a_few_small_images_are_decoded_without_a_pool(tmp_path):
    paths = []
    for i in range(100):
        Image.fromarray(np.full((28, 28), i, np.uint8)).save(tmp_path / f"{i}.png")
        paths.append(str(tmp_path / f"{i}.png"))
    assert pipeline.start_pool(2, paths) is None


def test_a_few_big_photos_get_a_pool(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(3):
        noise = rng.integers(0, 256, (1200, 1200, 3), dtype=np.uint8)  # ~4 MB as PNG
        Image.fromarray(noise).save(tmp_path / f"{i}.png", compress_level=0)
        paths.append(str(tmp_path / f"{i}.png"))
    pool = pipeline.start_pool(2, paths)
    assert pool is not None
    pool.close()


def test_every_worker_gets_several_tasks_of_a_small_folder():
    assert pipeline.files_per_task(100, 2) == 13
    assert pipeline.files_per_task(10_000, 2) == pipeline.FILES_PER_TASK
    assert pipeline.files_per_task(1, 2) == 1
