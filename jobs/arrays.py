"""Arrays of digits (.npy and IDX files), read in bounded chunks whatever their size."""

import contextlib
import mmap
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
        try:
            with open_input(path) as f:
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    header = np.lib.format.read_array_header_1_0(f, max_header_size=10000)
                elif version == (2, 0):
                    header = np.lib.format.read_array_header_2_0(f, max_header_size=10000)
                else:
                    raise InputError(f".npy format version {version} not supported")
                shape, fortran, dtype = header
                offset = f.tell()
        except (ValueError, OSError, SyntaxError, struct.error) as e:
            raise InputError(f"not a valid .npy file ({_first_line(e)})") from None
        if dtype.hasobject:
            # np.load(allow_pickle=False) refuses these too; say so before anyone unpickles.
            raise InputError("object array (pickled Python objects) refused: need numbers")
        if dtype.kind not in "uif" or dtype.itemsize > 8:
            raise InputError(f"dtype {dtype} not accepted: need uint8, other integers or floats")
        self.shape = shape
        self.dtype = dtype
        if shape == (28, 28):
            self.count = 1
        elif shape[1:] in ((28, 28), (PIXELS,), (28, 28, 1), (1, 28, 28)):
            # Keras users' (N, 28, 28, 1) and (N, 1, 28, 28) hold the same bytes as (N, 28, 28).
            self.count = int(shape[0])
        else:
            raise InputError(f"shape {shape} not accepted: need (N, 28, 28), (28, 28) or (N, 784)")
        expected = offset + self.count * PIXELS * dtype.itemsize
        size = os.path.getsize(path)
        if size < expected:
            raise InputError(f"truncated .npy file: {size:,} bytes, header promises {expected:,}")
        self.fortran = fortran
        self.offset = offset
        self.scale = 1.0
        if self.count and dtype.kind == "f":
            self.scale = self._float_scale()

    def _map(self) -> tuple[mmap.mmap, np.ndarray]:
        with open(self.path, "rb") as f:
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        flat = np.frombuffer(mm, dtype=self.dtype, count=self.count * PIXELS, offset=self.offset)
        if self.fortran:
            rows = flat.reshape((PIXELS, self.count), order="C").T
        else:
            rows = flat.reshape(self.count, PIXELS)
        return mm, rows

    def _float_scale(self) -> float:
        # Floats in [0, 1] are scaled by 255, floats in [0, 255] are taken as they are; which of
        # the two is decided once for the whole file, so every row of it is read the same way.
        top = 0.0
        for rows in self._raw_chunks(0, self.count, 65536):
            finite = rows[np.isfinite(rows)]
            if finite.size:
                top = max(top, float(finite.max()))
        return 255.0 if top <= 1.0 else 1.0

    def _raw_chunks(self, start: int, stop: int, size: int) -> Iterator[np.ndarray]:
        mm, rows = self._map()
        try:
            for lo in range(start, stop, size):
                hi = min(lo + size, stop)
                chunk = np.array(rows[lo:hi])
                if not self.fortran:
                    # Dropped before the caller works on the copy: the file's pages and the
                    # copy are never resident together for long.
                    _drop_pages(
                        mm,
                        self.offset + lo * PIXELS * self.dtype.itemsize,
                        (hi - lo) * PIXELS * self.dtype.itemsize,
                    )
                yield chunk
        finally:
            del rows
            mm.close()

    def chunks(self, start: int, stop: int, size: int) -> Iterator[Rows]:
        for lo, raw in zip(
            range(start, stop, size), self._raw_chunks(start, stop, size), strict=True
        ):
            yield to_uint8(lo, raw, self.scale)


def _drop_pages(mm: mmap.mmap, offset: int, length: int) -> None:
    """Tell the kernel the rows just read are done with, so a huge file keeps RSS flat."""
    page = mmap.PAGESIZE
    lo = offset // page * page
    hi = (offset + length) // page * page
    if hi > lo and hasattr(mm, "madvise"):
        mm.madvise(mmap.MADV_DONTNEED, lo, hi - lo)


def to_uint8(start: int, raw: np.ndarray, scale: float) -> Rows:
    """Validate a chunk of rows and convert it to uint8 images; bad rows become errors."""
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
        with np.errstate(invalid="ignore"):
            values = flat * scale
    else:
        values = flat
    with np.errstate(invalid="ignore"):
        out_of_range = ~bad & ((values < 0).any(axis=1) | (values > 255).any(axis=1))
    errors += [(int(start + i), "values outside 0..255") for i in np.flatnonzero(out_of_range)]
    bad |= out_of_range
    keep = ~bad
    images = np.rint(values[keep]).astype(np.uint8).reshape(-1, 28, 28)
    errors.sort()
    return Rows(start, positions[keep], images, errors)


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
