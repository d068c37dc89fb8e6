"""The installed programs, `classify-batch` and `digits`: what a process sets up before it starts.

These settings belong to a process, not to importing the library (the tests and any program that
imports classify_batch keep their own), so they live here, in the module the scripts name.
"""

import gc
import os
import sys

# Start-up allocates some 100,000 objects (Typer, numpy, the job's modules) and frees almost none:
# Python's cyclic collector walks them again and again for nothing. Off while importing, then
# they are frozen (never walked again) and collection resumes for what the run allocates. The
# frozen objects also stay shared with the forked decoders: a collection there would write to
# every one of their pages. 10k PNGs: 0.525 s against 0.565 s (median of 10 alternated runs).
gc.disable()


def _settled() -> None:
    gc.freeze()
    gc.enable()


def _single_threaded_numpy() -> None:
    # numpy does no matrix work in the job and onnxruntime has its own threads, so OpenBLAS's idle
    # pool is only a cost: without it the process stays single-threaded and the decode pool may
    # fork (fast) instead of starting a forkserver. Set before numpy is imported; an explicit
    # setting is respected.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def classify_batch_main() -> None:
    _single_threaded_numpy()
    # What every run imports, imported before the collector resumes (--help pays it too).
    import classify_batch.jobs.run  # noqa: F401
    from classify_batch.cli import build_classify_batch, run_app

    _settled()
    sys.exit(run_app(build_classify_batch(), "classify-batch"))


def digits_main() -> None:
    _single_threaded_numpy()
    from classify_batch.cli import build_digits, run_app

    _settled()
    sys.exit(run_app(build_digits(), "digits"))
