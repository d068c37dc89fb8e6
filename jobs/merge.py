"""`digits merge`: the part files of a sharded run, checked and joined into what one run writes.

Each part is a subsequence of the single run's order (sources sorted per input, rows by index),
so a k-way merge on that order gives exactly the single run's files.
"""

import contextlib
import csv
import hashlib
import heapq
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from classify_batch.contract import ExitCode
from classify_batch.jobs.atomic import AtomicFile
from classify_batch.jobs.output import (
    ERROR_HEADER,
    LOCK_SUFFIX,
    SIDE_SUFFIXES,
    OutputError,
    OutputMistake,
    check_output,
    check_publishable,
    lock_output,
    output_files,
    part_seal,
    side_file,
)


class MergeError(Exception):
    """A part is missing, incomplete or does not belong with the others."""


@dataclass
class Part:
    csv: Path
    record: dict[str, Any]
    header: list[str]


def _load_part(path: Path) -> Part:
    record_path = side_file(path, ".json")
    if not path.is_file():
        raise MergeError(f"{path}: part is missing")
    if not record_path.is_file():
        raise MergeError(f"{path}: no run record {record_path.name}: that run did not finish")
    try:
        record = json.loads(record_path.read_text())
        shard = record["options"]["shard"]
        counts = record["counts"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise MergeError(f"{record_path}: unreadable run record ({e})") from None
    if record.get("status") != "complete" or not shard:
        raise MergeError(f"{path}: not the complete output of a --shard run")
    header, rows = _count_rows(path)
    if rows != counts["classified"]:
        raise MergeError(
            f"{path}: truncated or changed: {rows:,} rows, its run record says "
            f"{counts['classified']:,}"
        )
    errors_path = side_file(path, ".errors.csv")
    if not errors_path.is_file():
        raise MergeError(f"{errors_path}: part's errors file is missing")
    error_header, errors = _count_rows(errors_path)
    if error_header != ERROR_HEADER or errors != counts["failed"]:
        raise MergeError(
            f"{errors_path}: truncated or changed: {errors:,} rows, its run record says "
            f"{counts['failed']:,}"
        )
    _check_seal(path, record)
    return Part(path, record, header)


def _check_seal(path: Path, record: dict[str, Any]) -> None:
    """The part's record names its shard, inputs and files, sealed together at the run."""
    part = record.get("part")
    if not isinstance(part, dict) or "seal" not in part:
        raise MergeError(f"{path}: its run record has no part seal (made by an older version?)")
    if part.get("shard") != record["options"]["shard"] or part_seal(part) != part["seal"]:
        raise MergeError(f"{path}: its run record was edited (shard or digests do not match)")
    files = part.get("files_sha256") or {}
    for kind, suffix in (("csv", ".csv"), ("errors", ".errors.csv"), ("review", ".review.csv")):
        target = path if kind == "csv" else side_file(path, suffix)
        if kind not in files:
            continue
        try:
            with open(target, "rb") as f:
                digest = hashlib.file_digest(f, "sha256").hexdigest()
        except OSError as e:
            raise MergeError(f"{target}: cannot read: {e.strerror or e}") from None
        if digest != files[kind]:
            raise MergeError(f"{target}: changed since its run (SHA-256 differs from its record)")


def _count_rows(path: Path) -> tuple[list[str], int]:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise MergeError(f"{path}: cannot read: {e.strerror or e}") from None
    if not data.endswith(b"\n"):
        raise MergeError(f"{path}: truncated (does not end with a complete line)")
    with open(path, newline="", encoding="utf-8", errors="surrogateescape") as f:
        reader = csv.reader(f)
        header = next(reader, [])
        return header, sum(1 for _ in reader)


def _check_together(parts: list[Part]) -> int:
    first = parts[0]
    shards = []
    for part in parts:
        if part.header != first.header:
            raise MergeError(f"{part.csv}: header {part.header} differs from {first.csv}'s")
        if part.record["inputs"] != first.record["inputs"]:
            raise MergeError(f"{part.csv}: a run over other inputs than {first.csv}")
        if part.record["part"]["inputs_sha256"] != first.record["part"]["inputs_sha256"]:
            raise MergeError(
                f"{part.csv}: its run found other files than {first.csv}'s "
                f"(the folders changed between the shards' runs)"
            )
        for option, value in _comparable(part.record).items():
            theirs = _comparable(first.record).get(option)
            if value != theirs:
                raise MergeError(
                    f"{part.csv}: made with {option} {value}, {first.csv} with {theirs}"
                )
        if part.record["model"]["sha256"] != first.record["model"]["sha256"]:
            raise MergeError(f"{part.csv}: made with another model than {first.csv}")
        index, count = (int(x) for x in part.record["options"]["shard"].split("/"))
        shards.append((index, count))
    count = shards[0][1]
    if any(n != count for _, n in shards):
        raise MergeError("parts come from runs split into different numbers of shards")
    missing = sorted(set(range(count)) - {i for i, _ in shards})
    if missing:
        raise MergeError(f"shard(s) {', '.join(f'{i}/{count}' for i in missing)} missing")
    if len(shards) != count:
        raise MergeError("a shard is given twice")
    return count


# Options that change what a part holds; workers and max_errors do not.
COMPARABLE = ("preprocess", "precision", "probabilities", "min_confidence")


def _comparable(record: dict[str, Any]) -> dict[str, Any]:
    options = record.get("options") or {}
    return {f"--{k.replace('_', '-')}": options.get(k) for k in COMPARABLE}


Key = tuple[int, tuple[str, ...], int]


def order_keys(inputs: Sequence[str], rows: Iterator[list[str]]) -> Iterator[tuple[Key, list[str]]]:
    """Each row of one part with its place in the single run's order: input given first, then
    path parts below it, then row index.

    With overlapping inputs (`in` and `in/a`) one source can sit under several inputs. A part's
    rows are in the single run's order, and both copies of a file are in the same part (shards
    are assigned by the path shown), so each row takes the first place after the row before it.
    """
    prefixes = [(k, inp, inp.rstrip("/") + "/") for k, inp in enumerate(inputs)]
    previous: Key | None = None
    for row in rows:
        source, index = row[0], row[1]
        position = int(index) if index else -1
        places: list[Key] = [
            (k, () if source == given else tuple(source[len(p) :].split("/")), position)
            for k, given, p in prefixes
            if source == given or source.startswith(p)
        ] or [(len(prefixes), (source,), position)]
        key = next((place for place in places if previous is None or place > previous), places[-1])
        previous = key
        yield key, row


def _rows(path: Path) -> Iterator[list[str]]:
    with open(path, newline="", encoding="utf-8", errors="surrogateescape") as f:
        reader = csv.reader(f)
        next(reader)
        yield from reader


def _merge_file(
    parts: list[tuple[int, Path]],
    header: list[str],
    out: AtomicFile,
    inputs: Sequence[str],
    check: Callable[[int, list[str]], None] | None = None,
) -> int:
    """Writes the rows of `parts` ((shard, path)) in the single run's order into `out`."""
    writer = csv.writer(out.file, lineterminator="\n")
    writer.writerow(header)
    n = 0
    last: tuple[Key, int, Path] | None = None
    streams = [_tagged(shard, path, inputs) for shard, path in parts]
    for key, shard, path, row in heapq.merge(*streams, key=lambda item: item[0]):
        if last is not None and key == last[0]:
            raise MergeError(
                f"{path}: row {row[0]}{f'[{row[1]}]' if row[1] else ''} is also in {last[2]}: "
                f"a part copied under another shard's name?"
            )
        if check is not None:
            check(shard, row)
        last = (key, shard, path)
        writer.writerow(row)
        n += 1
    return n


def _tagged(
    shard: int, path: Path, inputs: Sequence[str]
) -> Iterator[tuple[Key, int, Path, list[str]]]:
    for key, row in order_keys(inputs, _rows(path)):
        yield key, shard, path, row


def _owner_check(count: int) -> Callable[[int, list[str]], None]:
    """An image file's row must come from the shard that owns its path."""
    from classify_batch.jobs.discover import Source
    from classify_batch.jobs.pipeline import Shard

    def check(shard: int, row: list[str]) -> None:
        if row[1] == "" and not Shard(shard, count).owns_file(Source(row[0], row[0], "image", "")):
            raise MergeError(
                f"{row[0]}: its row is in the part of shard {shard}/{count}, which does not "
                f"own it: a part relabelled as another shard?"
            )

    return check


def select_parts(paths: Sequence[Path]) -> list[Path]:
    """The part CSVs among `paths`: a glob such as parts/part-*.csv also matches the parts'
    .errors.csv and .review.csv (and parts/* their .json and .lock); those are left out when
    their part is given too. Anything else is not a part, and said so."""
    given = {str(p) for p in paths}
    parts = []
    for path in paths:
        side = next((s for s in (*SIDE_SUFFIXES, LOCK_SUFFIX) if path.name.endswith(s)), None)
        if side is not None:
            part = path.with_name(path.name[: -len(side)] + ".csv")
            if str(part) in given:
                continue
            raise MergeError(
                f"{path}: not a part but the {side} file of {part}; give the part CSVs "
                f"(e.g. parts/part-*.csv)"
            )
        if not path.name.lower().endswith(".csv"):
            raise MergeError(f"{path}: not a part: parts are the .csv files of --shard runs")
        parts.append(path)
    return parts


def merge(part_paths: Sequence[Path], out: Path, err: TextIO | None = None) -> int:
    err = err or sys.stderr  # looked up per call: tests and callers may replace sys.stderr
    try:
        csvs = select_parts(part_paths)
        if not csvs:
            raise MergeError("no parts given")
        check_output(out, [p for c in csvs for p in output_files(c)])
        parts = [_load_part(p) for p in csvs]
        count = _check_together(parts)
        lock = lock_output(out)
    except OutputMistake as e:
        print(f"digits merge: {e}", file=err)
        return ExitCode.USAGE
    except (MergeError, OutputError) as e:
        print(f"digits merge: {e}", file=err)
        return ExitCode.NOTHING_DONE
    try:
        return _merge(parts, count, out, err)
    except (MergeError, OutputError) as e:
        print(f"digits merge: {e}", file=err)
        return ExitCode.NOTHING_DONE
    finally:
        os.close(lock)


def _merge(parts: list[Part], count: int, out: Path, err: TextIO) -> int:
    csvs = [p.csv for p in parts]
    records = [p.record for p in parts]
    inputs = records[0]["inputs"]
    shards = [int(r["options"]["shard"].split("/")[0]) for r in records]
    review = records[0]["options"].get("min_confidence") is not None
    files = [AtomicFile(out), AtomicFile(side_file(out, ".errors.csv"))]
    if review:
        files.append(AtomicFile(side_file(out, ".review.csv")))
    try:
        rows = _merge_file(
            list(zip(shards, csvs, strict=True)),
            parts[0].header,
            files[0],
            inputs,
            _owner_check(count),
        )
        errors = _merge_file(
            [(i, side_file(p, ".errors.csv")) for i, p in zip(shards, csvs, strict=True)],
            ERROR_HEADER,
            files[1],
            inputs,
        )
        if review:
            reviews = [(i, side_file(p, ".review.csv")) for i, p in zip(shards, csvs, strict=True)]
            missing = [p for _, p in reviews if not p.is_file()]
            if missing:
                raise MergeError(f"{missing[0]}: part's review file is missing")
            _merge_file(reviews, parts[0].header, files[2], inputs)
        totals = {k: sum(r["counts"][k] for r in records) for k in records[0]["counts"]}
        # Skipped files are seen by every shard's walk; one shard's figure is the run's.
        totals["skipped"] = records[0]["counts"]["skipped"]
        code = ExitCode.SOME_FAILED if errors else ExitCode.OK
        record = {
            **records[0],
            "exit_code": code,
            "output": str(out),
            "options": {**records[0]["options"], "shard": None},
            "merged_from": [str(p) for p in csvs],
            "shards": count,
            "counts": totals,
            "started": min(r["started"] for r in records),
            "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        for per_part in ("seconds", "decoder_processes", "part"):
            record.pop(per_part, None)
        files.append(AtomicFile(side_file(out, ".json")))
        files[-1].file.write(json.dumps(record, indent=2, allow_nan=False) + "\n")
        for f in files:
            f.finish()
        check_publishable(out)
    except OSError as e:
        for f in files:
            f.discard()
        raise OutputError(f"{out}: cannot write: {e.strerror or e}") from None
    except BaseException:
        for f in files:
            f.discard()
        raise
    with contextlib.suppress(FileNotFoundError):
        os.unlink(files[-1].target)  # until the new record is in, none describes the files
    for f in files[:-1]:
        f.publish()
    if not review:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(side_file(out, ".review.csv"))
    files[-1].publish()
    noun = "error" if errors == 1 else "errors"
    print(f"digits merge: {len(parts)} parts, {rows:,} rows, {errors:,} {noun} -> {out}", file=err)
    return code
