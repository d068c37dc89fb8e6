"""The run's files: the digits CSV, its errors and review lists, the run record; all atomic."""

import csv
import io
import json
import re
import sys
import tempfile
from pathlib import Path
from typing import IO, Any

import numpy as np

from classify_batch.jobs import atomic
from classify_batch.jobs.atomic import AtomicFile

HEADER = ["source", "index", "digit", "confidence"]
PROBABILITY_COLUMNS = [f"p{d}" for d in range(10)]
ERROR_HEADER = ["source", "index", "error"]


class OutputError(Exception):
    """The output cannot be written; str(error) is one line for the user."""


def side_file(out: Path, suffix: str) -> Path:
    """OUT.csv -> OUT.errors.csv, OUT.review.csv, OUT.json."""
    stem = out.name[:-4] if out.name.lower().endswith(".csv") else out.name
    return out.with_name(stem + suffix)


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


class _AtomicCsv(AtomicFile):
    """A CSV growing in a temporary file beside its target, renamed over it only on commit."""

    def __init__(self, target: Path, header: list[str]) -> None:
        super().__init__(target, "w")
        self.writer = csv.writer(self.file, lineterminator="\n")
        self.writer.writerow(header)


class Outputs:
    """All the files of one run; nothing appears under its final name before commit()."""

    def __init__(self, out: str, probabilities: bool, review: bool) -> None:
        self.to_stdout = out == "-"
        self.out = Path(out)
        self.probabilities = probabilities
        header = HEADER + (PROBABILITY_COLUMNS if probabilities else [])
        self._files: list[_AtomicCsv] = []
        self.review: _AtomicCsv | None = None
        self.errors: _AtomicCsv | None = None
        if self.to_stdout:
            if isinstance(sys.stdout, io.TextIOWrapper):
                sys.stdout.reconfigure(errors="surrogateescape")  # as AtomicFile does
            self.writer = csv.writer(sys.stdout, lineterminator="\n")
            self.writer.writerow(header)
            self.text: IO[str] = sys.stdout
        else:
            self.main = self._open(self.out, header)
            self.writer = self.main.writer
            self.text = self.main.file
            self.errors = self._open(side_file(self.out, ".errors.csv"), ERROR_HEADER)
            if review:
                self.review = self._open(side_file(self.out, ".review.csv"), header)
        self.error_count = 0
        self.review_count = 0

    def _open(self, target: Path, header: list[str]) -> _AtomicCsv:
        f = _AtomicCsv(target, header)
        self._files.append(f)
        return f

    def write_rows(
        self,
        sources: list[str],
        indices: list[str],
        digits: np.ndarray,
        probabilities: np.ndarray,
        min_confidence: float | None,
    ) -> None:
        confidence = probabilities.max(axis=1)
        lines = _lines(sources, indices, digits, confidence, probabilities, self.probabilities)
        # One write per batch: the text is built with numpy, not row by row through csv.writer.
        self.text.write("".join(lines))
        if min_confidence is not None:
            low = np.flatnonzero(confidence < min_confidence)
            self.review_count += len(low)
            if self.review is not None:
                self.review.file.write("".join([lines[i] for i in low.tolist()]))

    def write_error(self, source: str, index: int | None, reason: str) -> None:
        self.error_count += 1
        row = [source, "" if index is None else index, reason]
        if self.errors is not None:
            self.errors.writer.writerow(row)
        else:
            # With the CSV on stdout there is no folder for side files: errors go to stderr.
            print_error(source, index, reason)

    def commit(self, record: dict[str, Any]) -> None:
        if self.to_stdout:
            sys.stdout.flush()
            return
        for f in self._files:
            f.commit()
        # The run record goes last: finding it tells a downstream step the run finished.
        atomic.write_text(side_file(self.out, ".json"), json.dumps(record, indent=2) + "\n")

    def discard(self) -> None:
        for f in self._files:
            f.discard()


def print_error(source: str, index: int | None, reason: str) -> None:
    """One failed input as one line on stderr."""
    print(f"error: {source}{'' if index is None else f'[{index}]'}: {reason}", file=sys.stderr)


def _fmt(values: np.ndarray) -> list[str]:
    # Six decimals: enough to compare runtimes, and far faster than repr of every float.
    return np.char.mod("%.6f", values.astype(np.float64)).tolist()


_NEEDS_QUOTING = re.compile(r'[,"\r\n]').search


def _lines(
    sources: list[str],
    indices: list[str],
    digits: np.ndarray,
    confidence: np.ndarray,
    probabilities: np.ndarray,
    with_probabilities: bool,
) -> list[str]:
    """The CSV lines of a batch, "\n"-terminated, exactly as csv.writer would write them."""
    values = np.column_stack([confidence, probabilities]) if with_probabilities else confidence
    tails = _fast_tails(digits, values.reshape(len(digits), -1))
    if tails is None:
        columns: list[Any] = [sources, indices, digits.tolist(), _fmt(confidence)]
        if with_probabilities:
            columns += [_fmt(probabilities[:, d]) for d in range(10)]
        return _csv_lines(zip(*columns, strict=True))
    quoted = {s: _field(s) for s in set(sources)}
    return [f"{quoted[s]},{i},{t}" for s, i, t in zip(sources, indices, tails, strict=True)]


def _fast_tails(digits: np.ndarray, values: np.ndarray) -> list[str] | None:
    """ "digit,value,...\n" per row as numpy builds it, or None when only printf can be trusted.

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
    return text.view(f"S{text.shape[1]}").ravel().astype(f"U{text.shape[1]}").tolist()


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
