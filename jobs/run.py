"""One run of the job: check the output, find inputs, classify them in order, commit the files."""

import os
import signal
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from classify_batch.contract import ExitCode, package_version
from classify_batch.jobs import model as model_loader
from classify_batch.jobs import pipeline
from classify_batch.jobs.cpus import usable_cpus
from classify_batch.jobs.discover import Source, Walk
from classify_batch.jobs.infer import classified
from classify_batch.jobs.inherit import keep_from_workers, release_from_workers
from classify_batch.jobs.output import (
    OutputError,
    OutputMistake,
    Outputs,
    StdoutClosed,
    abandon_stdout,
    check_output,
    lock_output,
    print_error,
    side_file,
    stop,
)
from classify_batch.jobs.pipeline import Shard
from classify_batch.jobs.progress import Progress


@dataclass
class Options:
    inputs: list[str]
    out: str
    model: Path | None = None
    preprocess: str = "auto"
    probabilities: bool = False
    min_confidence: float | None = None
    max_errors: int | None = None
    precision: str = "fp32"
    workers: int | None = None  # None: the usable CPUs
    quiet: bool = False
    shard: Shard | None = None
    command: str = "classify-batch"  # how messages name the command: `digits classify` too


@dataclass
class Counts:
    classified: int = 0
    failed: int = 0
    skipped: int = 0
    for_review: int = 0


class TooManyErrors(Exception):
    pass


# SIGTERM (a scheduler's deadline), SIGHUP (a closed terminal or session) and SIGUSR1 all end the
# run the same way: unwound like Ctrl-C, so temporary files and decoder processes are removed.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1)


def run(opts: Options, err: TextIO | None = None) -> int:
    err = err or sys.stderr  # looked up per call: tests and callers may replace sys.stderr
    previous = {signum: signal.signal(signum, stop) for signum in STOP_SIGNALS}
    try:
        return _run(opts, err)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _run(opts: Options, err: TextIO) -> int:
    if opts.out == "-":
        return _locked_run(opts, err)
    try:
        check_output(Path(opts.out), opts.inputs)
        lock = lock_output(Path(opts.out))
    except OutputMistake as e:
        print(f"{opts.command}: {e}", file=err)
        return ExitCode.USAGE
    except OutputError as e:
        print(f"{opts.command}: {e}", file=err)
        return ExitCode.NOTHING_DONE
    # A forked decoder must not hold the lock on after this process is gone.
    keep_from_workers(lock)
    try:
        return _locked_run(opts, err)
    finally:
        release_from_workers(lock)
        os.close(lock)


def _locked_run(opts: Options, err: TextIO) -> int:
    started = datetime.now(UTC)
    clock = time.monotonic()

    def fail(message: str) -> int:
        print(f"{opts.command}: {message}", file=err)
        return ExitCode.NOTHING_DONE

    missing = [given for given in opts.inputs if not os.path.exists(given)]
    if missing and len(missing) == len(opts.inputs):
        # Nothing named exists: a typo or an unmounted volume, not a run with failed inputs.
        return fail(f"no such file or directory: {', '.join(missing)}; nothing done")

    workers = _workers(opts.workers, err, opts.command)
    # The walk is read as the run goes: only its first images are looked at to plan.
    walk = Walk(opts.inputs)
    shard = opts.shard
    ahead = pipeline.look_ahead(walk, workers, shard)
    if ahead.empty:
        return fail(f"no inputs found in {', '.join(opts.inputs)} ({walk.skipped} skipped)")

    pool = pipeline.start_pool(workers, ahead.image_paths)
    try:
        # Started before the model loads, so the decoders are busy meanwhile.
        stream = pipeline.stream(
            ahead.sources,
            opts.preprocess,
            pool,
            opts.shard,
            workers,
            pipeline.files_per_task(
                len(ahead.image_paths), workers if pool else 1, ahead.image_paths
            ),
        )
        try:
            # One onnxruntime thread per run: with decoder processes on every core, inference
            # (2% of the work for images) has one; alone, it runs batches on every core at once
            # (jobs/infer.py).
            classifier = model_loader.load(
                opts.model or model_loader.default_model_path(), threads=1
            )
        except model_loader.ModelError as e:
            return fail(str(e))
        # Only a person at a terminal sees the totals, so only then is the tree walked twice.
        on_terminal = not opts.quiet and err.isatty()
        files, images = _totals(Walk(opts.inputs), shard) if on_terminal else (0, 0)
        progress = Progress(files, enabled=on_terminal, total_images=lambda: images)
        counts = Counts()
        outputs = Outputs(opts.out, opts.probabilities, review=opts.min_confidence is not None)
        try:
            outputs.open()
            for piece, probabilities, digits in classified(
                stream, classifier, 1 if pool else workers
            ):
                for source, index, reason in piece.errors:
                    _record_error(outputs, counts, opts, source, index, reason)
                if len(digits):
                    outputs.write_rows(
                        piece.sources, piece.indices, digits, probabilities, opts.min_confidence
                    )
                counts.classified += len(piece.images)
                progress.update(piece.files, len(piece.images) + len(piece.errors))
            counts.for_review = outputs.review_count
            counts.skipped = walk.skipped
            progress.close()
            code = ExitCode.SOME_FAILED if counts.failed else ExitCode.OK
            # A shard may own nothing of a small input: its empty part still counts for merge.
            if counts.classified == 0 and counts.failed == 0 and shard is None:
                outputs.discard()
                return fail(f"no inputs found in {', '.join(opts.inputs)}")
            decoders = len(pool.pids()) if pool else 0
            record = _record(opts, classifier, counts, workers, decoders, started, clock, code)
            if shard is not None:
                record["part"] = {"shard": record["options"]["shard"]}
                record["part"]["inputs_sha256"] = walk.sha256()
            outputs.commit(record, seal=shard is not None)
        except TooManyErrors:
            progress.close()
            if outputs.to_stdout and outputs.rows_written:
                written = f"the {outputs.rows_written:,} rows already on stdout are incomplete"
            else:
                outputs.discard()
                written = "nothing written"
            return fail(
                f"stopped: more than {opts.max_errors} inputs failed (--max-errors); "
                f"{written}, the failures are listed above"
            )
        except StdoutClosed:
            # The reader has what it wanted (`| head`); nothing is wrong with the run.
            progress.close()
            abandon_stdout()
            return ExitCode.OK
        except (OutputError, model_loader.ModelError) as e:
            progress.close()
            outputs.discard()
            if opts.out == "-":
                abandon_stdout()
            return fail(str(e))
        except BaseException:
            progress.close()
            outputs.discard()
            raise
    finally:
        if pool is not None:
            pool.close()

    seconds = time.monotonic() - clock
    if counts.failed:
        where = "stderr" if opts.out == "-" else side_file(Path(opts.out), ".errors.csv")
        noun = "input" if counts.failed == 1 else "inputs"
        print(f"{opts.command}: {counts.failed:,} {noun} failed: see {where}", file=err)
    if not opts.quiet:
        review = f", for review {counts.for_review:,}" if opts.min_confidence is not None else ""
        print(
            f"{opts.command}: classified {counts.classified:,}, failed {counts.failed:,}, "
            f"skipped {counts.skipped:,}{review} in {seconds:.2f}s"
            + ("" if opts.out == "-" else f" -> {opts.out}"),
            file=err,
        )
    return code


def _record_error(
    outputs: Outputs, counts: Counts, opts: Options, source: str, index: int | None, reason: str
) -> None:
    counts.failed += 1
    if opts.max_errors is not None and counts.failed > opts.max_errors:
        # Nothing is committed after an abort, so the failures are shown where they can be seen.
        print_error(source, index, reason)
        raise TooManyErrors
    outputs.write_error(source, index, reason)
    if opts.max_errors is not None and outputs.errors is not None:
        print_error(source, index, reason)


def _workers(asked: int | None, err: TextIO, command: str) -> int:
    # More decoders than CPUs only share the same cores (300 on 2 ran six times slower) and can
    # hit the process limit; a note says so instead of obeying.
    cpus = usable_cpus()
    if asked is None:
        return cpus
    if asked > cpus:
        print(f"{command}: --workers {asked} capped to {cpus}, the CPUs usable here", file=err)
        return cpus
    return asked


def _record(
    opts: Options,
    classifier: model_loader.Classifier,
    counts: Counts,
    workers: int,
    decoders: int,
    started: datetime,
    clock: float,
    code: int,
) -> dict[str, Any]:
    meta = classifier.metadata
    return {
        "status": "complete",
        "exit_code": code,
        "classify_batch_version": package_version(),
        "model": {
            "path": str(classifier.path),
            "sha256": classifier.sha256,
            "version": classifier.version,
            "preset": meta.get("preset"),
            "test_accuracy": _number(meta.get("test_accuracy")),
        },
        "inputs": list(opts.inputs),
        "output": opts.out,
        "options": {
            "preprocess": opts.preprocess,
            "precision": opts.precision,
            "workers": workers,
            "probabilities": opts.probabilities,
            "min_confidence": opts.min_confidence,
            "max_errors": opts.max_errors,
            "shard": None if opts.shard is None else f"{opts.shard.index}/{opts.shard.count}",
        },
        "counts": {
            "classified": counts.classified,
            "failed": counts.failed,
            "skipped": counts.skipped,
            "for_review": counts.for_review,
        },
        "decoder_processes": decoders,
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": round(time.monotonic() - clock, 3),
    }


def _number(text: str | None) -> float | None:
    try:
        return None if text is None else float(text)
    except ValueError:
        return None


def _totals(sources: Iterable[Source], shard: Shard | None) -> tuple[int, int]:
    """For the progress bar: the files found, and the images to do in them (image files plus the
    rows of arrays, from their headers only)."""
    files = total = 0
    for source in sources:
        files += 1
        if source.kind in ("image", "error"):
            total += 1 if shard is None or shard.owns_file(source) else 0
            continue
        rows = _array_rows(source)
        if shard is not None:
            lo, hi = shard.rows(rows)
            rows = hi - lo
        total += rows
    return files, total


def _array_rows(source: Source) -> int:
    from classify_batch.jobs.arrays import IdxFile
    from classify_batch.jobs.errors import InputError

    try:
        if source.kind == "idx":
            return IdxFile(source.path).count
        import numpy as np

        with open(source.path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape = read(f, max_header_size=10000)[0]
        return 1 if tuple(shape) == (28, 28) else max(0, int(shape[0]))
    except (InputError, OSError, ValueError, TypeError, IndexError, SyntaxError):
        return 1
