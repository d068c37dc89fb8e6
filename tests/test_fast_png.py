"""The grayscale PNG fast path: Pillow's pixels exactly, or no answer at all."""

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from classify_batch.jobs import fast_png
from classify_batch.jobs.errors import InputError
from classify_batch.jobs.images import MAX_PIXELS, MAX_SIDE, read_image

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def chunk(kind: bytes, data: bytes, crc: int | None = None) -> bytes:
    crc = zlib.crc32(kind + data) if crc is None else crc
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else b if pb <= pc else c


def filtered(pixels: np.ndarray, kind: int) -> bytes:
    """The PNG scanlines of `pixels`, every row filtered with filter type `kind` (0..4)."""
    out = bytearray()
    previous = [0] * pixels.shape[1]
    for row in pixels.tolist():
        out.append(kind)
        for x, value in enumerate(row):
            left = row[x - 1] if x else 0
            up, up_left = previous[x], (previous[x - 1] if x else 0)
            predictor = [0, left, up, (left + up) // 2, paeth(left, up, up_left)][kind]
            out.append((value - predictor) % 256)
        previous = row
    return bytes(out)


def gray_png(
    pixels: np.ndarray,
    kind: int = 4,
    extra: bytes = b"",
    depth: int = 8,
    colour: int = 0,
    interlace: int = 0,
    idat_parts: int = 1,
) -> bytes:
    height, width = pixels.shape
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, interlace)
    data = zlib.compress(filtered(pixels, kind))
    step = -(-len(data) // idat_parts)
    idat = b"".join(chunk(b"IDAT", data[i : i + step]) for i in range(0, len(data), step))
    return fast_png.SIGNATURE + chunk(b"IHDR", ihdr) + extra + idat + chunk(b"IEND", b"")


def pillow(data: bytes, path: Path) -> np.ndarray:
    path.write_bytes(data)
    with Image.open(path) as im:
        return np.asarray(im.convert("L"))


def decode(data: bytes) -> np.ndarray | None:
    return fast_png.decode(data, MAX_SIDE, MAX_PIXELS)


@pytest.fixture
def pixels() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (28, 31), dtype=np.uint8)


@pytest.mark.parametrize("kind", [0, 1, 2, 3, 4], ids=["none", "sub", "up", "average", "paeth"])
def test_every_png_filter_gives_pillows_pixels(tmp_path, pixels, kind):
    data = gray_png(pixels, kind)
    fast = decode(data)
    assert fast is not None
    assert np.array_equal(fast, pillow(data, tmp_path / "x.png"))
    assert np.array_equal(fast, pixels)


def test_image_data_split_over_several_chunks_is_joined(pixels):
    assert np.array_equal(decode(gray_png(pixels, idat_parts=5)), pixels)


def test_the_committed_samples_take_the_fast_path(tmp_path):
    # Pillow-written MNIST PNGs are what the fast path is for: if this fails, Pillow's internals
    # have moved and every PNG is going the slow way.
    for path in sorted(SAMPLES.glob("*.png")):
        fast = decode(path.read_bytes())
        assert fast is not None, path.name
        assert np.array_equal(fast, pillow(path.read_bytes(), tmp_path / "x.png"))


def test_a_pillow_written_grayscale_png_takes_the_fast_path(tmp_path, pixels):
    Image.fromarray(pixels).save(tmp_path / "p.png")
    assert np.array_equal(decode((tmp_path / "p.png").read_bytes()), pixels)


def test_the_result_is_writable_like_every_other_decode(pixels):
    fast = decode(gray_png(pixels))
    fast[0, 0] = 1  # normalization works in place on some paths


@pytest.mark.parametrize(
    "change",
    [
        dict(colour=3),  # palette
        dict(depth=16),
        dict(interlace=1),
        dict(extra=chunk(b"tRNS", b"\x00\x00")),  # transparency: composited on white
        dict(extra=chunk(b"eXIf", b"MM\x00*\x00\x00\x00\x08\x00\x00")),  # orientation
        dict(extra=chunk(b"tEXt", b"Raw profile type exif\x00...")),
        dict(extra=chunk(b"pHYs", b"\x00" * 9, crc=0)),  # Pillow refuses a bad checksum
        dict(extra=chunk(b"gAMA", b"\x00" * 3)),  # a length Pillow cannot parse
        dict(extra=chunk(b"zzZz", b"private")),
    ],
    ids=[
        "palette",
        "16-bit",
        "interlaced",
        "tRNS",
        "eXIf",
        "text",
        "bad-crc",
        "bad-gAMA",
        "unknown",
    ],
)
def test_anything_unusual_is_left_to_the_ordinary_decoder(pixels, change):
    assert decode(gray_png(pixels, **change)) is None


def test_harmless_ancillary_chunks_are_fine(pixels):
    dpi = chunk(b"pHYs", b"\x00\x00\x0b\x13\x00\x00\x0b\x13\x01")
    extra = dpi + chunk(b"gAMA", b"\x00\x00\xb1\x8f") + chunk(b"sRGB", b"\x00")
    assert np.array_equal(decode(gray_png(pixels, extra=extra)), pixels)


def test_truncated_or_damaged_files_are_left_to_the_ordinary_decoder(pixels):
    data = gray_png(pixels)
    assert decode(data[: len(data) // 2]) is None
    assert decode(data[:40]) is None
    ihdr_crc = 8 + 8 + 13
    assert decode(data[:ihdr_crc] + b"\x00\x00\x00\x00" + data[ihdr_crc + 4 :]) is None
    no_end = data[: -len(chunk(b"IEND", b""))]
    assert decode(no_end) is None


def test_corrupt_image_data_is_reported_by_the_ordinary_path(tmp_path, pixels):
    data = bytearray(gray_png(pixels))
    start = data.index(b"IDAT") + 4
    data[start + 2 : start + 40] = b"\xff" * 38
    (tmp_path / "bad.png").write_bytes(bytes(data))
    assert decode(bytes(data)) is None
    with pytest.raises(InputError, match="corrupt or unsupported|truncated"):
        read_image(tmp_path / "bad.png")


def test_sizes_beyond_the_limits_are_left_to_the_ordinary_decoder():
    assert fast_png.decode(gray_png(np.zeros((4, 30), np.uint8)), 29, MAX_PIXELS) is None
    assert fast_png.decode(gray_png(np.zeros((10, 10), np.uint8)), MAX_SIDE, 99) is None


def outcome(path: Path, monkeypatch: pytest.MonkeyPatch, fast: bool) -> tuple[str, bytes | str]:
    """What read_image makes of `path`, with the fast path or with the ordinary path only."""
    with monkeypatch.context() as patch:
        if not fast:
            patch.setattr(fast_png, "decode", lambda *args: None)
        try:
            return "pixels", read_image(path).tobytes()
        except InputError as e:
            return "error", str(e)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "LA"])
def test_colour_and_alpha_pngs_read_as_the_ordinary_path_reads_them(tmp_path, monkeypatch, mode):
    rng = np.random.default_rng(2)
    pixels = rng.integers(0, 256, (28, 33, len(mode)), dtype=np.uint8)
    Image.fromarray(pixels, mode).save(tmp_path / "c.png")
    data = (tmp_path / "c.png").read_bytes()
    assert decode(data) is not None
    fast = outcome(tmp_path / "c.png", monkeypatch, fast=True)
    assert fast[0] == "pixels"
    assert fast == outcome(tmp_path / "c.png", monkeypatch, fast=False)


def test_damaged_pngs_end_the_same_with_or_without_the_fast_path(tmp_path, monkeypatch):
    # The oracle is the ordinary path: same pixels, or the same one-line error, for every file.
    rng = np.random.default_rng(1)
    samples = [path.read_bytes() for path in sorted(SAMPLES.glob("*.png"))]
    for mode in ("RGB", "RGBA", "LA"):
        with Image.open(SAMPLES / "t10k-0000-label-7.png") as im:
            im.convert(mode).save(tmp_path / f"{mode}.png")
        samples.append((tmp_path / f"{mode}.png").read_bytes())
    for i in range(600):
        data = bytearray(samples[i % len(samples)])
        for _ in range(rng.integers(1, 4)):
            data[rng.integers(0, len(data))] = rng.integers(0, 256)
        if i % 5 == 0:
            data = data[: rng.integers(8, len(data))]
        path = tmp_path / f"{i}.png"
        path.write_bytes(bytes(data))
        assert outcome(path, monkeypatch, True) == outcome(path, monkeypatch, False), path.name
