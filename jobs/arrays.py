"""Arrays of digits (.npy and IDX files), read in bounded chunks whatever their size."""

import ast
import contextlib
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from classify_batch.jobs.errors import InputError
from classify_batch.jobs.files import open_input

NPY_MAGIC = b"\x93NUMPY"
IDX_IMAGES_MAGIC = b"\x00\x00\x08\x03"  # unsigned bytes, three dimensions
GZIP_MAGIC = b"\x1f\x8b"
PIXELS = 28 * 28
# Rows read at a time: a few MB even as float64 (the pipeline asks for its chunks the same size).
ROWS_PER_READ = 2048


@dataclass
class Rows:
    """A chunk of an array input: uint8 images and the rows that could not be used."""

    start: int
    indices: np.ndarray  # int64 positions inside the file of the rows in `images`
    images: np.ndarray  # uint8 (k, 28, 28)
    errors: list[tuple[int, str]]  # (position, reason)


class ArrayFile:
    """An opened .npy or IDX file: its row count, and rows read on demand."""

    count: int

    def chunks(self, start: int, stop: int, size: int) -> Iterator[Rows]:
        raise NotImplementedError

    def close(self) -> None:
        pass


def open_array(path: str | Path) -> ArrayFile:
    head = _head(path)
    if head.startswith(NPY_MAGIC):
        return NpyFile(path)
    if head.startswith(IDX_IMAGES_MAGIC) or head.startswith(GZIP_MAGIC):
        return IdxFile(path)
    if head[:2] == b"\x00\x00" and len(head) >= 4:
        raise InputError(_idx_kind_error(head))
    raise InputError("not a .npy or IDX file (no NumPy or IDX header)")


def _head(path: str | Path) -> bytes:
    with open_input(path) as f:
        return f.read(16)


def _idx_kind_error(head: bytes) -> str:
    dtype, dims = head[2], head[3]
    if dims == 1:
        return "IDX file holds labels (1 dimension), not images"
    return (
        f"IDX file of type 0x{dtype:02x} with {dims} dimensions: need unsigned bytes, N x 28 x 28"
    )


class NpyFile(ArrayFile):
    def __init__(self, path: str | Path) -> None:
        self.path = path
        with open_input(path) as f:
            shape, fortran, dtype = _read_npy_header(f)
            offset = f.tell()
        self.shape = shape
        self.dtype = dtype
        if shape == (28, 28):
            self.count = 1
        elif shape[1:] in ((28, 28), (PIXELS,), (28, 28, 1), (1, 28, 28)):
            # Keras users' (N, 28, 28, 1) and (N, 1, 28, 28) hold the same bytes as (N, 28, 28).
            self.count = int(shape[0])
        else:
            raise InputError(f"shape {shape} not accepted: need (N, 28, 28), (28, 28) or (N, 784)")
        self.row_bytes = PIXELS * dtype.itemsize
        self.expected = offset + self.count * self.row_bytes
        size = os.path.getsize(path)
        if size < self.expected:
            raise InputError(
                f"truncated .npy file: {size:,} bytes, header promises {self.expected:,}"
            )
        self.fortran = fortran
        self.offset = offset
        self.scale = 1.0
        if self.count and dtype.kind == "f":
            self.scale = self._float_scale()

    def _float_scale(self) -> float:
        # Floats in [0, 1] are scaled by 255, floats in [0, 255] are taken as they are; which of
        # the two is decided once for the whole file, so every row of it is read the same way.
        # Chunks as small as the reading ones, cleaned in place: no mask or filtered copy, so
        # this pass needs no more memory than reading does, whatever the dtype.
        top = 0.0
        for rows in self._raw_chunks(0, self.count, ROWS_PER_READ):
            np.nan_to_num(rows, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
            top = max(top, float(rows.max()))
        return 255.0 if top <= 1.0 else 1.0

    def _raw_chunks(self, start: int, stop: int, size: int) -> Iterator[np.ndarray]:
        # Read with pread into arrays of our own, not through a memory map: a file cut short
        # while the job reads it (another process rewriting it, a full disk, a network mount)
        # turns a mapped read into SIGBUS, which kills the whole run with nothing written. A
        # short read here is one failed input. The page cache, not this process, holds the file.
        fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        try:
            for lo in range(start, stop, size):
                hi = min(lo + size, stop)
                yield self._read_rows(fd, lo, hi)
        finally:
            os.close(fd)

    def _read_rows(self, fd: int, lo: int, hi: int) -> np.ndarray:
        itemsize = self.dtype.itemsize
        if not self.fortran:
            rows = np.empty((hi - lo, PIXELS), dtype=self.dtype)
            self._pread_into(fd, _bytes_of(rows), self.offset + lo * self.row_bytes)
            return rows
        # Fortran order stores pixel p of every row together: one read per pixel column.
        columns = np.empty((PIXELS, hi - lo), dtype=self.dtype)
        view = _bytes_of(columns)
        width = (hi - lo) * itemsize
        for p in range(PIXELS):
            where = self.offset + (p * self.count + lo) * itemsize
            self._pread_into(fd, view[p * width : (p + 1) * width], where)
        return np.ascontiguousarray(columns.T)

    def _pread_into(self, fd: int, buffer: memoryview, where: int) -> None:
        done = 0
        while done < len(buffer):
            got = os.preadv(fd, [buffer[done:]], where + done)
            if got <= 0:
                size = os.fstat(fd).st_size
                raise InputError(
                    f"truncated .npy file: {size:,} bytes now, header promises "
                    f"{self.expected:,} (the file changed while it was read)"
                )
            done += got

    def chunks(self, start: int, stop: int, size: int) -> Iterator[Rows]:
        for lo, raw in zip(
            range(start, stop, size), self._raw_chunks(start, stop, size), strict=True
        ):
            yield to_uint8(lo, raw, self.scale)


def _bytes_of(array: np.ndarray) -> memoryview:
    return memoryview(array.view(np.uint8).reshape(-1).data)


# The header of a .npy file is a Python dict literal, padded; numpy writes ~120 bytes. numpy's own
# reader reads the whole length the file claims before checking it against its limit, so a header
# claiming 2 GiB costs 2 GiB: here the length is checked before anything is read.
MAX_NPY_HEADER = 10_000
_NPY_KEYS = {"descr", "fortran_order", "shape"}


def _read_npy_header(f: IO[bytes]) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran_order, dtype) of the .npy file open at its start, read within a small bound.

    Leaves `f` at the first byte of the data.
    """
    start = _read_exact(f, 8, ".npy header")
    if not start.startswith(NPY_MAGIC):
        raise InputError("not a valid .npy file (no NumPy magic)")
    version = (start[6], start[7])
    if version == (1, 0):
        (length,) = struct.unpack("<H", _read_exact(f, 2, ".npy header"))
    elif version in ((2, 0), (3, 0)):
        (length,) = struct.unpack("<I", _read_exact(f, 4, ".npy header"))
    else:
        raise InputError(f".npy format version {version[0]}.{version[1]} not supported")
    if length > MAX_NPY_HEADER:
        raise InputError(
            f"not a valid .npy file (header length {length:,} bytes, limit {MAX_NPY_HEADER:,})"
        )
    raw = _read_exact(f, length, ".npy header")
    try:
        text = raw.decode("utf-8" if version == (3, 0) else "latin1")
        header = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError, UnicodeDecodeError, TypeError):
        raise InputError("not a valid .npy file (header is not a Python literal)") from None
    if not isinstance(header, dict) or set(header) != _NPY_KEYS:
        raise InputError("not a valid .npy file (header needs descr, fortran_order and shape)")
    shape, fortran, descr = header["shape"], header["fortran_order"], header["descr"]
    if not isinstance(shape, tuple) or not all(type(n) is int and 0 <= n < 2**62 for n in shape):
        raise InputError(f"not a valid .npy file (shape {shape!r} is not a tuple of sizes >= 0)")
    if not isinstance(fortran, bool):
        raise InputError("not a valid .npy file (fortran_order is not True or False)")
    if not isinstance(descr, str) or len(descr) > 16:
        # Structured dtypes (a list) and anything else exotic: never digits.
        raise InputError(
            f"dtype {str(descr)[:40]} not accepted: need uint8, other integers or floats"
        )
    try:
        dtype = np.dtype(descr)
    except TypeError:
        raise InputError(f"not a valid .npy file (unknown dtype {descr!r})") from None
    if dtype.hasobject:
        # np.load(allow_pickle=False) refuses these too; say so before anyone unpickles.
        raise InputError("object array (pickled Python objects) refused: need numbers")
    if dtype.kind not in "uif" or dtype.itemsize > 8:
        raise InputError(f"dtype {dtype} not accepted: need uint8, other integers or floats")
    return shape, fortran, dtype


def to_uint8(start: int, raw: np.ndarray, scale: float) -> Rows:
    """Validate a chunk of rows and convert it to uint8 images; bad rows become errors.

    Works in `raw` itself (the reader's own copy): besides it, only per-row flags and the uint8
    result are allocated, so a float64 chunk costs no more extra memory than a uint8 one.
    """
    flat = raw.reshape(len(raw), PIXELS)
    positions = np.arange(start, start + len(raw), dtype=np.int64)
    if flat.dtype == np.uint8:
        return Rows(start, positions, flat.reshape(-1, 28, 28), [])
    errors: list[tuple[int, str]] = []
    bad = np.zeros(len(flat), dtype=bool)
    if flat.dtype.kind == "f":
        nonfinite = ~np.isfinite(flat).all(axis=1)
        errors += [
            (int(start + i), "contains NaN or infinite values") for i in np.flatnonzero(nonfinite)
        ]
        bad |= nonfinite
        if scale != 1.0:
            with np.errstate(invalid="ignore", over="ignore"):
                np.multiply(flat, scale, out=flat, casting="same_kind")
    with np.errstate(invalid="ignore"):
        out_of_range = ~bad & ((flat.min(axis=1) < 0) | (flat.max(axis=1) > 255))
    errors += [(int(start + i), "values outside 0..255") for i in np.flatnonzero(out_of_range)]
    bad |= out_of_range
    if flat.dtype.kind == "f":
        flat[bad] = 0  # NaN and the like, in rows that are dropped anyway: no warning from rint
        np.rint(flat, out=flat)
    images = flat.astype(np.uint8)
    if bad.any():
        images = images[~bad]
    errors.sort()
    return Rows(start, positions[~bad], images.reshape(-1, 28, 28), errors)


class IdxFile(ArrayFile):
    """MNIST's own format: magic 0x00000803, N, 28, 28, then N*784 unsigned bytes; maybe gzipped."""

    def __init__(self, path: str | Path) -> None:
        self.path = path
        with self._open() as f:
            header = _read_exact(f, 16, "IDX header")
        if header[:4] != IDX_IMAGES_MAGIC:
            raise InputError(_idx_kind_error(header))
        count, rows, cols = struct.unpack(">III", header[4:16])
        if (rows, cols) != (28, 28):
            raise InputError(f"IDX images are {rows}x{cols}, not 28x28")
        # A truncated file is found while reading: the whole images before the cut still count.
        self.count = count

    def _open(self) -> IO[bytes]:
        if _head(self.path).startswith(GZIP_MAGIC):
            return _Gunzip(open_input(self.path))  # type: ignore[return-value]
        return open_input(self.path)

    def chunks(self, start: int, stop: int, size: int) -> Iterator[Rows]:
        # A file that ends early gives the same one error, at the first missing row, whatever
        # rows were asked for: the shard whose range holds that row reports it, a shard whose
        # range starts beyond it reports nothing, so N shards together equal one run.
        try:
            with self._open() as f:
                if _skip(f, 16 + start * PIXELS) < 16 + start * PIXELS:
                    return
                for lo in range(start, stop, size):
                    hi = min(lo + size, stop)
                    data = f.read((hi - lo) * PIXELS)
                    whole = len(data) // PIXELS
                    images = np.frombuffer(data[: whole * PIXELS], np.uint8).reshape(-1, 28, 28)
                    positions = np.arange(lo, lo + whole, dtype=np.int64)
                    if whole < hi - lo:
                        reason = f"truncated IDX file: ends after {lo + whole:,} of {self.count:,}"
                        yield Rows(lo, positions, images, [(lo + whole, reason)])
                        return
                    yield Rows(lo, positions, images, [])
        except OSError as e:
            raise InputError(f"corrupt IDX file ({_first_line(e)})") from None


class _Gunzip:
    """gzip decompression that gives every byte the file holds, and then ends quietly.

    gzip.GzipFile raises at a cut or corrupt stream and drops the data of the read that met it,
    so how much came out depended on how the file was read (from which row); here it does not.
    """

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.inflate = zlib.decompressobj(31)
        self.pending = b""
        self.spill = b""
        self.ended = False

    def read(self, n: int) -> bytes:
        out = bytearray()
        while len(out) < n and not self.ended:
            data = self.pending or self.raw.read(1 << 16)
            if not data:
                # What zlib still holds for a stream cut short comes out with flush().
                with contextlib.suppress(zlib.error):
                    self.spill = self.inflate.flush()
                self.ended = True
                break
            try:
                out += self.inflate.decompress(data, n - len(out))
            except zlib.error:
                self.ended = True  # corrupt from here on: what came before stands
                break
            self.pending = self.inflate.unconsumed_tail
            if self.inflate.eof:
                # A member ends; another may follow (gzip allows several).
                self.pending = self.inflate.unused_data + self.pending
                self.inflate = zlib.decompressobj(31)
        if len(out) < n and self.spill:
            take = self.spill[: n - len(out)]
            self.spill = self.spill[len(take) :]
            out += take
        return bytes(out)

    def __enter__(self) -> "_Gunzip":
        return self

    def __exit__(self, *exc: object) -> None:
        self.raw.close()


def _read_exact(f: IO[bytes], n: int, what: str) -> bytes:
    try:
        data = f.read(n)
    except (OSError, EOFError) as e:
        raise InputError(f"corrupt file ({_first_line(e)})") from None
    if len(data) < n:
        raise InputError(f"truncated: {what} incomplete")
    return data


def _skip(f: IO[bytes] | _Gunzip, n: int) -> int:
    """Move to byte n; returns where it got, less than n when the data ends before."""
    if isinstance(f, _Gunzip):
        done = 0
        while done < n:
            piece = f.read(min(n - done, 1 << 20))  # gzip has to decompress its way there
            if not piece:
                break
            done += len(piece)
        return done
    size = os.fstat(f.fileno()).st_size
    f.seek(min(n, size), os.SEEK_SET)
    return min(n, size)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:160] if text else type(e).__name__
