"""One run of the job: check the output, find inputs, classify them in order, commit the files."""

import signal
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from classify_batch.contract import ExitCode, package_version
from classify_batch.jobs import model as model_loader
from classify_batch.jobs import pipeline
from classify_batch.jobs.cpus import usable_cpus
from classify_batch.jobs.discover import Walk
from classify_batch.jobs.output import OutputError, Outputs, check_writable, print_error, side_file
from classify_batch.jobs.pipeline import Shard
from classify_batch.jobs.progress import Progress

# onnxruntime's best throughput for this model on two cores, and the run's memory stays small.
MAX_BATCH = 1024


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


@dataclass
class Counts:
    classified: int = 0
    failed: int = 0
    skipped: int = 0
    for_review: int = 0


class TooManyErrors(Exception):
    pass


def run(opts: Options, err: TextIO = sys.stderr) -> int:
    # SIGTERM (a scheduler's deadline) unwinds like Ctrl-C, so temporary files are removed.
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return _run(opts, err)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(opts: Options, err: TextIO) -> int:
    started = datetime.now(UTC)
    clock = time.monotonic()

    def fail(message: str) -> int:
        print(f"classify-batch: {message}", file=err)
        return ExitCode.NOTHING_DONE

    if opts.out != "-":
        try:
            check_writable(Path(opts.out))
        except OutputError as e:
            return fail(str(e))

    workers = _workers(opts.workers, err)
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
            # With decoder processes on every core, inference (2% of the work for images) gets
            # one thread that sleeps between batches; alone, it gets the cores and may spin.
            classifier = model_loader.load(
                opts.model or model_loader.default_model_path(),
                threads=1 if pool else None,
                spinning=pool is None,
            )
        except model_loader.ModelError as e:
            return fail(str(e))
        outputs = Outputs(opts.out, opts.probabilities, review=opts.min_confidence is not None)
        counts = Counts()
        # Only a person at a terminal sees the total, so only then is the tree walked twice.
        on_terminal = not opts.quiet and sys.stderr.isatty()
        progress = Progress(Walk(opts.inputs).count() if on_terminal else 0, on_terminal)
        try:
            for piece in stream:
                for source, index, reason in piece.errors:
                    _record_error(outputs, counts, opts, source, index, reason)
                for lo in range(0, len(piece.images), MAX_BATCH):
                    hi = lo + MAX_BATCH
                    probabilities, digits = classifier(piece.images[lo:hi])
                    outputs.write_rows(
                        piece.sources[lo:hi],
                        piece.indices[lo:hi],
                        digits,
                        probabilities,
                        opts.min_confidence,
                    )
                counts.classified += len(piece.images)
                progress.update(piece.files, len(piece.images))
            counts.for_review = outputs.review_count
            counts.skipped = walk.skipped
            progress.close()
            code = ExitCode.SOME_FAILED if counts.failed else ExitCode.OK
            # A shard may own nothing of a small input: its empty part still counts for merge.
            if counts.classified == 0 and counts.failed == 0 and shard is None:
                outputs.discard()
                return fail(f"no inputs found in {', '.join(opts.inputs)}")
            decoders = len(pool.pids()) if pool else 0
            outputs.commit(
                _record(opts, classifier, counts, workers, decoders, started, clock, code)
            )
        except TooManyErrors:
            progress.close()
            outputs.discard()
            return fail(
                f"stopped: more than {opts.max_errors} inputs failed (--max-errors); "
                f"nothing written, the failures are listed above"
            )
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
        print(f"classify-batch: {counts.failed:,} inputs failed: see {where}", file=err)
    if not opts.quiet:
        review = f", for review {counts.for_review:,}" if opts.min_confidence is not None else ""
        print(
            f"classify-batch: classified {counts.classified:,}, failed {counts.failed:,}, "
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


def _workers(asked: int | None, err: TextIO) -> int:
    # More decoders than CPUs only share the same cores (300 on 2 ran six times slower) and can
    # hit the process limit; a note says so instead of obeying.
    cpus = usable_cpus()
    if asked is None:
        return cpus
    if asked > cpus:
        print(f"classify-batch: --workers {asked} capped to {cpus}, the CPUs usable here", file=err)
        return cpus
    return asked


def _terminate(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


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
