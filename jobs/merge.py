"""`digits merge`: the part files of a sharded run, checked and joined into what one run writes.

Each part is a subsequence of the single run's order (sources sorted per input, rows by index),
so a k-way merge on that order gives exactly the single run's files.
"""

import csv
import heapq
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from classify_batch.contract import ExitCode
from classify_batch.jobs.atomic import AtomicFile, write_text
from classify_batch.jobs.output import ERROR_HEADER, OutputError, check_writable, side_file


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
    return Part(path, record, header)


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
        for key in ("inputs",):
            if part.record[key] != first.record[key]:
                raise MergeError(f"{part.csv}: a run over other inputs than {first.csv}")
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


def order_key(inputs: Sequence[str]) -> Callable[[list[str]], tuple[int, tuple[str, ...], int]]:
    """The single run's order: input given first, then path parts below it, then row index."""
    prefixes = [(k, inp, inp.rstrip("/") + "/") for k, inp in enumerate(inputs)]

    def key(row: list[str]) -> tuple[int, tuple[str, ...], int]:
        source, index = row[0], row[1]
        position = int(index) if index else -1
        for k, given, prefix in prefixes:
            if source == given:
                return k, (), position
            if source.startswith(prefix):
                return k, tuple(source[len(prefix) :].split("/")), position
        return len(prefixes), (source,), position

    return key


def _rows(path: Path) -> Iterator[list[str]]:
    with open(path, newline="", encoding="utf-8", errors="surrogateescape") as f:
        reader = csv.reader(f)
        next(reader)
        yield from reader


def _merge_file(paths: list[Path], header: list[str], target: Path, key: Any) -> int:
    out = AtomicFile(target)
    try:
        writer = csv.writer(out.file, lineterminator="\n")
        writer.writerow(header)
        n = 0
        for row in heapq.merge(*(_rows(p) for p in paths), key=key):
            writer.writerow(row)
            n += 1
    except BaseException:
        out.discard()
        raise
    out.commit()
    return n


def merge(part_paths: Sequence[Path], out: Path, err: TextIO = sys.stderr) -> int:
    try:
        check_writable(out)
        parts = [_load_part(p) for p in part_paths]
        if not parts:
            raise MergeError("no parts given")
        count = _check_together(parts)
    except (MergeError, OutputError) as e:
        print(f"digits merge: {e}", file=err)
        return ExitCode.NOTHING_DONE

    records = [p.record for p in parts]
    key = order_key(records[0]["inputs"])
    csvs = [p.csv for p in parts]
    rows = _merge_file(csvs, parts[0].header, out, key)
    errors = _merge_file(
        [side_file(p, ".errors.csv") for p in csvs],
        ERROR_HEADER,
        side_file(out, ".errors.csv"),
        key,
    )
    reviews = [side_file(p, ".review.csv") for p in csvs]
    if all(r.is_file() for r in reviews):
        _merge_file(reviews, parts[0].header, side_file(out, ".review.csv"), key)
    totals = {k: sum(r["counts"][k] for r in records) for k in records[0]["counts"]}
    # Skipped files are seen by every shard's walk; one shard's figure is the run's.
    totals["skipped"] = records[0]["counts"]["skipped"]
    record = {
        **records[0],
        "exit_code": ExitCode.SOME_FAILED if errors else ExitCode.OK,
        "output": str(out),
        "options": {**records[0]["options"], "shard": None},
        "merged_from": [str(p) for p in csvs],
        "shards": count,
        "counts": totals,
        "started": min(r["started"] for r in records),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    record.pop("seconds", None)
    record.pop("decoder_processes", None)  # per part, not for the whole
    write_text(side_file(out, ".json"), json.dumps(record, indent=2) + "\n")
    print(f"digits merge: {len(parts)} parts, {rows:,} rows, {errors:,} errors -> {out}", file=err)
    return ExitCode.SOME_FAILED if errors else ExitCode.OK
