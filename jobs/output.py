"""The run's files: the digits CSV, its errors and review lists, the run record; all atomic."""

import contextlib
import csv
import fcntl
import hashlib
import io
import json
import os
import re
import stat
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from classify_batch.jobs.atomic import AtomicFile

HEADER = ["source", "index", "digit", "confidence"]
PROBABILITY_COLUMNS = [f"p{d}" for d in range(10)]
ERROR_HEADER = ["source", "index", "error"]


class OutputError(Exception):
    """The output cannot be written; str(error) is one line for the user (exit 1)."""


class OutputMistake(OutputError):
    """OUT is not what a command line meant as OUT: a usage error (exit 2), nothing written."""


class StdoutClosed(Exception):
    """The reader of stdout went away (`| head`): the run ends quietly, as Unix tools do."""


SIDE_SUFFIXES = (".errors.csv", ".review.csv", ".json")
LOCK_SUFFIX = ".lock"


def side_file(out: Path, suffix: str) -> Path:
    """OUT.csv -> OUT.errors.csv, OUT.review.csv, OUT.json, OUT.lock."""
    stem = out.name[:-4] if out.name.lower().endswith(".csv") else out.name
    return out.with_name(stem + suffix)


def output_files(out: Path) -> list[Path]:
    """Every file a run with this OUT may replace, the lock included."""
    return [out] + [side_file(out, s) for s in (*SIDE_SUFFIXES, LOCK_SUFFIX)]


def check_output(out: Path, inputs: Sequence[str | Path] = ()) -> None:
    """Refuse an OUT that would destroy something or cannot be written, before any work.

    A forgotten OUT makes the last input the output (`classify-batch folder/*.png`): so OUT must
    end in .csv, must not be an input, and an existing file is replaced only when it is a
    previous output of this job. Raises OutputMistake (usage) or OutputError (cannot write).
    """
    if not out.name.lower().endswith(".csv"):
        raise OutputMistake(
            f"{out}: OUT (the last argument) must be a .csv file or - for stdout; was OUT left out?"
        )
    named = []
    for given in inputs:
        with contextlib.suppress(OSError):
            named.append((str(given), os.stat(given)))
    folder = os.path.realpath(out.parent)
    for given, seen in named:
        inside = os.path.realpath(given)
        if stat.S_ISDIR(seen.st_mode) and os.path.commonpath([folder, inside]) == inside:
            # The next run over that folder would find this run's files among its inputs.
            raise OutputMistake(
                f"{out}: is inside the input folder {given}: write OUT somewhere else"
            )
    for path in output_files(out):
        try:
            st = os.stat(path)
        except FileNotFoundError:
            continue
        except OSError as e:
            raise OutputError(f"{path}: cannot use as output: {e.strerror or e}") from None
        if stat.S_ISDIR(st.st_mode):
            raise OutputError(f"{path}: is a folder, need a file name for the output")
        if not stat.S_ISREG(st.st_mode):
            # A rename would replace a device or FIFO (even /dev/null) with a regular file.
            raise OutputError(f"{path}: not a regular file (device, FIFO or socket): refused")
        for given, seen in named:
            if (seen.st_dev, seen.st_ino) == (st.st_dev, st.st_ino):
                raise OutputMistake(f"{path}: is also an input ({given}): was OUT left out?")
        if path.name.endswith(LOCK_SUFFIX) or st.st_size == 0:
            continue
        if not _previous_output(path):
            raise OutputMistake(
                f"{path}: exists and is not an output of classify-batch: "
                f"refusing to replace it (remove it or choose another OUT)"
            )
    check_writable(out)


def _previous_output(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    if path.name.endswith(".json"):
        try:
            record = json.loads(path.read_bytes())
        except (OSError, ValueError):
            return False
        return isinstance(record, dict) and "status" in record and "counts" in record
    first = head.split(b"\n", 1)[0]
    wanted = ERROR_HEADER if path.name.endswith(".errors.csv") else HEADER
    return first.split(b",")[: len(wanted)] == [w.encode() for w in wanted]


def check_writable(out: Path) -> None:
    """Refuse an output that cannot be written before any work is done."""
    folder = out.parent
    if not folder.is_dir():
        raise OutputError(f"{out}: output folder {folder} does not exist")
    if out.is_dir():
        raise OutputError(f"{out}: is a folder, need a file name for the CSV")
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=f".{out.name}.", suffix=".probe"):
            pass
    except OSError as e:
        raise OutputError(f"{out}: cannot write to {folder}: {e.strerror or e}") from None


def lock_output(out: Path) -> int:
    """An exclusive lock on OUT.lock for the whole run, or OutputError if another run holds it.

    A second run refuses rather than waits: a nightly job that finds the previous night's still
    running has a problem an operator should see, and queued runs would only pile up. The file
    stays after the run; removing it would let a third run lock a file nobody else sees.
    """
    path = side_file(out, LOCK_SUFFIX)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o666)
    except OSError as e:
        raise OutputError(f"{path}: cannot create the lock file: {e.strerror or e}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise OutputError(
            f"{out}: another run is writing it (it holds {path.name}); not started"
        ) from None
    except OSError as e:
        os.close(fd)
        raise OutputError(f"{path}: cannot lock: {e.strerror or e}") from None
    return fd


class _AtomicCsv(AtomicFile):
    """A CSV growing in a temporary file beside its target, renamed over it only on commit."""

    def __init__(self, target: Path, header: list[str]) -> None:
        super().__init__(target, "w")
        self.writer = csv.writer(self.file, lineterminator="\n")
        self.writer.writerow(header)


class Outputs:
    """All the files of one run; nothing appears under its final name before commit().

    Every write error (a full disk, a file too large) becomes OutputError, one line; with the CSV
    on stdout, a reader that went away becomes StdoutClosed.
    """

    def __init__(self, out: str, probabilities: bool, review: bool) -> None:
        self.to_stdout = out == "-"
        self.out = Path(out)
        self.probabilities = probabilities
        self.wants_review = review
        self._files: list[_AtomicCsv] = []
        self.review: _AtomicCsv | None = None
        self.errors: _AtomicCsv | None = None
        self.rows_written = 0
        self.error_count = 0
        self.review_count = 0

    def open(self) -> None:
        """Start the files. Separate from __init__ so that the caller holds the object, and can
        discard what was started, whatever moment a stop signal picks."""
        header = HEADER + (PROBABILITY_COLUMNS if self.probabilities else [])
        review = self.wants_review
        if self.to_stdout:
            if isinstance(sys.stdout, io.TextIOWrapper):
                sys.stdout.reconfigure(errors="surrogateescape")  # as AtomicFile does
            self.writer = csv.writer(sys.stdout, lineterminator="\n")
            self.text: IO[str] = sys.stdout
            with self._writing("stdout"):
                self.writer.writerow(header)
        else:
            try:
                with self._writing(self.out):
                    self.main = self._open(self.out, header)
                    self.writer = self.main.writer
                    self.text = self.main.file
                    self.errors = self._open(side_file(self.out, ".errors.csv"), ERROR_HEADER)
                    if review:
                        self.review = self._open(side_file(self.out, ".review.csv"), header)
            except BaseException:
                # Whoever calls open() alone (not run()) still leaks no temporary file.
                self.discard()
                raise

    def _open(self, target: Path, header: list[str]) -> _AtomicCsv:
        # A stop signal between creating the temporary file and listing it would leak it.
        with _signals_held():
            f = _AtomicCsv(target, header)
            self._files.append(f)
        return f

    @contextlib.contextmanager
    def _writing(self, target: Path | str) -> Iterator[None]:
        try:
            yield
        except BrokenPipeError:
            if not self.to_stdout:
                raise
            raise StdoutClosed from None
        except OSError as e:
            raise OutputError(f"{target}: cannot write: {e.strerror or e}") from None

    def write_rows(
        self,
        sources: list[str],
        indices: list[str] | np.ndarray,
        digits: np.ndarray,
        probabilities: np.ndarray,
        min_confidence: float | None,
    ) -> None:
        """One piece's rows; `indices` are "" per image file, or an array's row numbers."""
        confidence = probabilities.max(axis=1)
        # The CSV's number columns: the confidence, then with --probabilities p0..p9.
        values = np.column_stack([confidence, probabilities]) if self.probabilities else confidence
        values = values.reshape(len(digits), -1)
        # One write per piece: the text is built with numpy, not row by row through csv.writer.
        text = _array_text(sources, indices, digits, values)
        lines = None
        if text is None:
            if isinstance(indices, np.ndarray):
                indices = [str(i) for i in indices.tolist()]
            lines = _lines(sources, indices, digits, values)
            text = "".join(lines)
        with self._writing("stdout" if self.to_stdout else self.out):
            self.text.write(text)
        self.rows_written += len(digits)
        if min_confidence is not None:
            low = np.flatnonzero(confidence < min_confidence)
            self.review_count += len(low)
            if self.review is not None and len(low):
                if lines is None:
                    # _array_text's lines hold no quoted field, so no "\n" but their ends (a
                    # path may hold other line breaks of str.splitlines', such as U+2028).
                    lines = [line + "\n" for line in text.split("\n")[:-1]]
                with self._writing(self.review.target):
                    self.review.file.write("".join([lines[i] for i in low.tolist()]))

    def write_error(self, source: str, index: int | None, reason: str) -> None:
        self.error_count += 1
        row = [source, "" if index is None else index, reason]
        if self.errors is not None:
            with self._writing(self.errors.target):
                self.errors.writer.writerow(row)
        else:
            # With the CSV on stdout there is no folder for side files: errors go to stderr.
            print_error(source, index, reason)

    def commit(self, record: dict[str, Any], seal: bool = False) -> None:
        """Publish the files as one unit: all written and flushed first, the run record last.

        A write error before the first rename leaves the previous outputs exactly as they were.
        With `seal` (a shard's part), record["part"] gets the SHA-256 of each file and a seal
        over them and the shard, which `digits merge` checks.
        """
        if self.to_stdout:
            with self._writing("stdout"):
                sys.stdout.flush()
            return
        files: list[AtomicFile] = list(self._files)
        try:
            for f in files:
                with self._writing(f.target):
                    f.finish()
            if seal:
                part = record["part"]
                part["files_sha256"] = {_kind(f.target): _sha256(Path(f.tmp)) for f in self._files}
                part["seal"] = part_seal(part)
            record_path = side_file(self.out, ".json")
            with self._writing(record_path):
                # strict JSON: a NaN or infinity would make the record unreadable downstream
                text = json.dumps(record, indent=2, allow_nan=False) + "\n"
                with _signals_held():
                    files.append(AtomicFile(record_path))
                files[-1].file.write(text)
                files[-1].finish()
            check_publishable(self.out)
        except BaseException:
            for f in files:
                f.discard()
            raise
        stale_review = self.review is None
        record_file = files.pop()
        try:
            # The old record goes first: until the new one is in place, OUT.json describes
            # nothing, never CSVs that another run wrote.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(record_file.target)
            for f in files:
                f.publish()
            if stale_review:
                # A review list from an earlier run with --min-confidence would describe
                # rows that this run did not select.
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(side_file(self.out, ".review.csv"))
            record_file.publish()
        except OSError as e:
            for f in (*files, record_file):
                f.discard()
            raise OutputError(
                f"{self.out}: cannot publish the outputs: {e.strerror or e} (no run record written)"
            ) from None

    def discard(self) -> None:
        for f in self._files:
            f.discard()


def _kind(target: Path) -> str:
    for suffix in SIDE_SUFFIXES:
        if target.name.endswith(suffix):
            return suffix.strip(".").split(".")[0]
    return "csv"


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def part_seal(part: dict[str, Any]) -> str:
    """Binds a part's shard to its input list and its files' digests: a part copied and
    relabelled as another shard no longer matches its seal."""
    fields = {k: part.get(k) for k in ("shard", "inputs_sha256", "files_sha256")}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


# Stop signals wait while a temporary file is created and listed. Blocking them with
# pthread_sigmask is not enough: onnxruntime's threads do not block them, and Python runs the
# handler in the main thread whichever thread the kernel picked.
_held = 0
_pending: int | None = None


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    global _held, _pending
    _held += 1
    try:
        yield
    finally:
        _held -= 1
        if not _held and _pending is not None:
            signum, _pending = _pending, None
            raise SystemExit(128 + signum)


def stop(signum: int, frame: object) -> None:
    """The handler for the stop signals: unwind as Ctrl-C does, exit code 128 + signum, once no
    temporary file is half made."""
    global _pending
    if _held:
        _pending = signum
        return
    raise SystemExit(128 + signum)


def check_publishable(out: Path) -> None:
    """The targets are still files or absent: a rename would fail midway on a folder."""
    for path in output_files(out):
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISDIR(os.stat(path).st_mode):
                raise OutputError(f"{path}: is a folder, need a file name for the output")


def abandon_stdout() -> None:
    """Point stdout at /dev/null: what is buffered for a closed or full stdout is dropped,
    so the interpreter's last flush cannot print a traceback or change the exit code."""
    with contextlib.suppress(OSError, ValueError):
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)


def print_error(source: str, index: int | None, reason: str) -> None:
    """One failed input as one line on stderr."""
    print(f"error: {source}{'' if index is None else f'[{index}]'}: {reason}", file=sys.stderr)


def _fmt(values: np.ndarray) -> list[str]:
    # Six decimals: enough to compare runtimes, and far faster than repr of every float.
    return np.char.mod("%.6f", values.astype(np.float64)).tolist()


_NEEDS_QUOTING = re.compile(r'[,"\r\n]').search


def _lines(
    sources: list[str], indices: list[str], digits: np.ndarray, values: np.ndarray
) -> list[str]:
    """The CSV lines of a batch, "\n"-terminated, exactly as csv.writer would write them;
    `values` holds the number columns, one row per line."""
    tails = _fast_tails(digits, values)
    if tails is None:
        columns: list[Any] = [sources, indices, digits.tolist()]
        columns += [_fmt(values[:, k]) for k in range(values.shape[1])]
        return _csv_lines(zip(*columns, strict=True))
    quoted = {s: _field(s) for s in set(sources)}
    return [f"{quoted[s]},{i},{t}" for s, i, t in zip(sources, indices, tails, strict=True)]


def _fast_tails(digits: np.ndarray, values: np.ndarray) -> list[str] | None:
    """ "digit,value,...\n" per row as numpy builds it, or None when only printf can be trusted."""
    text = _tail_bytes(digits, values)
    if text is None:
        return None
    return text.view(f"S{text.shape[1]}").ravel().astype(f"U{text.shape[1]}").tolist()


def _tail_bytes(digits: np.ndarray, values: np.ndarray) -> np.ndarray | None:
    """ "digit,value,...\n" per row, one row of uint8 each, or None when only printf can be trusted.

    The common case: digits 0..9 and float32 values in [0, 1]. For those, rint(x * 1e6) in
    float64 is exact (a float32 has 24 significant bits, 1e6 has 14) and rounds ties to even as
    "%.6f" does, so the text is the same, about six times faster than formatting each float.
    """
    n, k = values.shape
    if (
        values.dtype != np.float32
        or digits.dtype.kind not in "iu"
        or not ((digits >= 0) & (digits <= 9)).all()
        or not ((values >= 0) & (values <= 1)).all()  # NaN fails this too
        or np.signbit(values).any()  # "%.6f" writes -0.0 as "-0.000000"
    ):
        return None
    micro = np.rint(values.astype(np.float64) * 1e6).astype(np.int64)
    text = np.empty((n, 2 + 9 * k), np.uint8)
    text[:, 0] = ord("0") + digits
    text[:, 1] = ord(",")
    cells = text[:, 2:].reshape(n, k, 9)  # "W.FFFFFF" and a separator per value
    cells[:, :, 0] = ord("0") + micro // 1_000_000
    cells[:, :, 1] = ord(".")
    rest = micro % 1_000_000
    for position in range(7, 1, -1):
        cells[:, :, position] = ord("0") + rest % 10
        rest //= 10
    cells[:, :, 8] = ord(",")
    cells[:, -1, 8] = ord("\n")
    return text


def _array_text(
    sources: list[str], indices: list[str] | np.ndarray, digits: np.ndarray, values: np.ndarray
) -> str | None:
    """The CSV text of rows of one array, whole lines built in numpy, or None.

    On a million rows, formatting each row's source and index in Python cost 0.5 s of the main
    thread's 2.9 s (cProfile), with the inference threads waiting on it. Each line
    is laid out at a fixed width, the row number right-aligned after NUL padding, and the NULs
    (never in a path, nor in the rest) are dropped in one pass.
    """
    if not isinstance(indices, np.ndarray) or len(indices) == 0:
        return None
    source = sources[0]
    if sources.count(source) != len(sources) or _NEEDS_QUOTING(source) is not None:
        return None
    tails = _tail_bytes(digits, values)
    if tails is None or indices.min() < 0:
        return None
    prefix = np.frombuffer(source.encode("utf-8", "surrogateescape") + b",", np.uint8)
    rows = indices.astype(np.int64)
    width = len(str(int(rows.max())))
    text = np.zeros((len(rows), len(prefix) + width + 1 + tails.shape[1]), np.uint8)
    text[:, : len(prefix)] = prefix
    number = text[:, len(prefix) : len(prefix) + width]
    for position in range(width - 1, -1, -1):
        number[:, position] = ord("0") + rows % 10
        rows = rows // 10
    # A digit before the number's first one is a leading zero: padding, except the lone "0".
    digits_in = np.ones(len(indices), np.int64)
    for k in range(1, width):
        digits_in += indices >= 10**k
    number[np.arange(width) < (width - digits_in)[:, None]] = 0
    text[:, len(prefix) + width] = ord(",")
    text[:, len(prefix) + width + 1 :] = tails
    return text[text != 0].tobytes().decode("utf-8", "surrogateescape")


def _field(value: str) -> str:
    # Paths are quoted only when csv.writer would; it decides the rare ones itself.
    if _NEEDS_QUOTING(value) is None:
        return value
    return _csv_lines([(value, "")])[0][:-2]


def _csv_lines(rows: Any) -> list[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    lines = []
    for row in rows:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow(row)
        lines.append(buffer.getvalue())
    return lines
