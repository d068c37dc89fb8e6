"""Decode one user-supplied image file, safely, to a grayscale uint8 array.

Users drop anything into the input folder: scans, phone photos, MNIST PNGs, broken or hostile
files. Every way a file can be unusable ends as an InputError with a short reason; the caller
adds the path.
"""

from __future__ import annotations

import contextlib
import io
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from classify_batch.jobs import fast_png
from classify_batch.jobs.errors import InputError
from classify_batch.jobs.files import read_input
from classify_batch.jobs.memory import SMALL_IMAGE_BYTES

# Only the decoders a digit image plausibly needs; a file with a misleading suffix must not
# reach an exotic plugin (EPS, FITS, PSD, ...). JPEG covers MPO, which phones write.
PILLOW_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP", "PPM")

IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {
        ".png",
        ".jpg",
        ".jpeg",
        ".jpe",
        ".jfif",
        ".bmp",
        ".gif",
        ".tif",
        ".tiff",
        ".webp",
        ".pgm",
        ".ppm",
        ".pbm",
        ".pnm",
    }
)

# Well under Pillow's own bomb threshold (~89 MP), and far more than a digit needs; 50 MP of
# RGBA is 200 MB while decoding, which a batch worker can afford.
MAX_PIXELS = 50_000_000
# A side this long is a strip or a crafted header, never a photo of a digit.
MAX_SIDE = 20_000
# An uncompressed 50 MP RGBA TIFF is 200 MB; anything bigger is not worth reading.
MAX_FILE_BYTES = 256 * 1024 * 1024

# A progressive JPEG can repeat a scan any number of times, and libjpeg decodes every one: 40,000
# scans of a 3 MB file take 95 s. Pillow (13.0) sets no limit and its JPEG plugin only skips the
# SOS marker; libjpeg-turbo leaves the limit to the application (djpeg -maxscans, TurboJPEG 3's
# TJPARAM_SCANLIMIT, "default: 0 (no limit)") and its own fuzz targets use 500. Real encoders
# write 1 (baseline) to about 10-20 scans (libjpeg's progressive script: 10 for colour).
MAX_JPEG_SCANS = 500
_SOS = b"\xff\xda"
_SOI = b"\xff\xd8"

# Set in decoder processes when the job's memory limit leaves no room for every decoder to hold
# a big image at once (see jobs/memory.py): a semaphore shared by the pool.
_big_image_gate: Any = None

_MEGA = 1_000_000
_PILLOW_BOMB_PIXELS = re.compile(r"\((\d+) pixels\)")


def read_image(path: Path | str, *, draft_side: int | None = None) -> np.ndarray:
    """Return the first frame of the image at `path` as a uint8 (H, W) grayscale array.

    EXIF orientation is applied and transparency is composited onto white, so dark ink on a
    transparent background reads as dark ink on paper (light strokes go onto black instead).

    `draft_side` lets JPEGs decode at a reduced DCT scale (1/2, 1/4 or 1/8) as long as the long
    side stays >= draft_side; that is several times faster for phone photos. Big grey or RGB
    PNGs (and WebP, BMP, PNM) are decoded whole, then box-reduced by the same factors.
    """
    content = read_input(path, MAX_FILE_BYTES, fast_png.MAX_BYTES)
    if isinstance(content, bytes):
        if _big_image_gate is None:  # no gate: not even a context manager (13 us a file)
            pixels = _fast_png(content)
        else:
            # A 50 MP PNG of blank paper compresses to kilobytes: its size is in its header.
            with _admitted(*fast_png.size(content)):
                pixels = _fast_png(content)
        if pixels is not None:
            return pixels
    with io.BytesIO(content) if isinstance(content, bytes) else content as fh:
        _check_jpeg_scans(fh)
        return _decode(fh, draft_side)


def _fast_png(content: bytes) -> np.ndarray | None:
    pixels = fast_png.decode(content, MAX_SIDE, MAX_PIXELS)
    if pixels is None or pixels.ndim == 2:
        return pixels
    return _composite(pixels.astype(np.uint16))


def _check_jpeg_scans(fh: IO[bytes]) -> None:
    """Refuse a JPEG with more than MAX_JPEG_SCANS scans before the decoder sees it.

    Counts FF DA (start of scan) in the whole stream, in C: entropy-coded data stuffs every FF
    with 00, so FF DA appears only as a marker or inside metadata (an EXIF thumbnail's own few
    scans), which can only make the count a little high. A few ms for a 10 MB photo.
    """
    if fh.read(2) != _SOI:
        fh.seek(0)
        return
    scans = 0
    tail = b""
    while chunk := fh.read(1 << 20):
        block = tail + chunk
        scans += block.count(_SOS)
        tail = block[-1:] if block[-1:] == b"\xff" else b""
        if scans > MAX_JPEG_SCANS:
            raise InputError(
                f"JPEG with more than {MAX_JPEG_SCANS} scans refused (a decoding-time bomb)"
            )
    fh.seek(0)


def _decode(fh: IO[bytes], draft_side: int | None) -> np.ndarray:
    try:
        # Scoped so the process-wide filters are restored afterwards. Our own MAX_PIXELS check
        # is lower than Pillow's warning threshold, so even if concurrent threads interleave
        # catch_warnings() the limit still holds; only a stray warning could be printed.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(fh, formats=PILLOW_FORMATS) as im:
                _check_dimensions(im.size)
                if draft_side is not None and im.format in ("JPEG", "MPO"):
                    _draft_jpeg(im, draft_side)
                with _admitted(*im.size):  # after the draft: a reduced JPEG is small
                    im.load()
                    small = im if draft_side is None else _reduce_like_draft(im, draft_side)
                    return _to_gray(_apply_orientation(small))
    except InputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InputError(_pillow_bomb_message(exc)) from None
    except UnidentifiedImageError:
        raise InputError("not an image Pillow can read") from None
    except MemoryError:
        raise InputError("image too large to decode in the memory available") from None
    except EOFError:
        raise InputError("truncated image data") from None
    except Exception as exc:
        # A hostile file can make a decoder raise almost anything (OSError, ValueError,
        # SyntaxError, struct.error, IndexError, ...); each is one bad input, not a crashed job.
        raise InputError(_decode_failure_message(exc)) from None


def set_big_image_gate(gate: Any) -> None:
    """In a decoder process: the pool's shared semaphore for big images (jobs/memory.py)."""
    global _big_image_gate
    _big_image_gate = gate


@contextlib.contextmanager
def _admitted(width: int, height: int) -> Iterator[None]:
    if _big_image_gate is None or width * height * 4 <= SMALL_IMAGE_BYTES:
        yield
        return
    with _big_image_gate:
        yield


def _check_dimensions(size: tuple[int, int]) -> None:
    width, height = size
    if width < 1 or height < 1:
        raise InputError(f"image has no pixels: {width}x{height}")
    if width > MAX_SIDE or height > MAX_SIDE:
        raise InputError(
            f"image too large: {width}x{height} pixels (limit {MAX_SIDE} pixels per side)"
        )
    if width * height > MAX_PIXELS:
        raise InputError(
            f"image too large: {width}x{height} pixels (limit {MAX_PIXELS // _MEGA} megapixels)"
        )


def _pillow_bomb_message(exc: Exception) -> str:
    # Pillow refuses in Image.open before we see the size; its message has the pixel count.
    limit = f"limit {MAX_PIXELS // _MEGA} megapixels"
    match = _PILLOW_BOMB_PIXELS.search(str(exc))
    if match is None:
        return f"image too large ({limit})"
    return f"image too large: {int(match.group(1)) / _MEGA:.0f} megapixels ({limit})"


def _decode_failure_message(exc: Exception) -> str:
    # Pillow's own messages can carry the file name or a wall of detail; keep ours fixed.
    text = str(exc).lower()
    if "truncated" in text or "premature end" in text:
        return "truncated image data"
    return "corrupt or unsupported image data"


def _draft_jpeg(im: Image.Image, draft_side: int) -> None:
    width, height = im.size
    scale = min(1.0, draft_side / max(width, height))
    # Mode "L" makes libjpeg hand over the luma channel directly, skipping colour conversion.
    im.draft("L", (max(1, int(width * scale)), max(1, int(height * scale))))


# Formats whose orientation, if any, is in im.info (EXIF), which a reduced copy keeps; TIFF's is
# in its own tags, and palette or alpha images must not be averaged before compositing.
_REDUCIBLE = frozenset({"PNG", "WEBP", "BMP", "PPM"})


def _reduce_like_draft(im: Image.Image, draft_side: int) -> Image.Image:
    """A big PNG (scans, screenshots, phone exports) reduced as a JPEG draft would be.

    PNG has no reduced decoding, so the whole image is inflated anyway; but everything after
    it (EXIF rotation, grey conversion, numpy's copy, the normalizer's own reduction) costs as
    much again at full size. An integer box reduction by 2, 4 or 8, keeping the long side at
    least `draft_side`, gives the normalizer what a JPEG of the same size gives it.
    """
    if im.format not in _REDUCIBLE or im.mode not in ("L", "RGB"):
        return im
    factor = 1
    while factor < 8 and max(im.size) // (2 * factor) >= draft_side:
        factor *= 2
    return im if factor == 1 else im.reduce(factor)


def _apply_orientation(im: Image.Image) -> Image.Image:
    # Orientation lives in EXIF (JPEG, PNG, WebP: then in im.info) or in TIFF's own tags; an
    # image with neither has nothing to rotate, and small PNGs are decoded by the thousand.
    if im.format != "TIFF" and "exif" not in im.info and "Raw profile type exif" not in im.info:
        return im
    try:
        return ImageOps.exif_transpose(im)
    except Exception:
        # The pixels decoded fine; a mangled EXIF block only costs us the orientation.
        return im


def _to_gray(im: Image.Image) -> np.ndarray:
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        return _high_depth_to_gray(np.asarray(im))
    if im.mode == "L":
        return np.array(im, dtype=np.uint8)
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info:
        return _composite(np.asarray(im.convert("LA"), dtype=np.uint16))
    if im.mode not in ("1", "P", "RGB", "CMYK", "YCbCr"):
        im = im.convert("RGB")  # LAB, HSV, ... have no direct route to L
    return np.array(im.convert("L"), dtype=np.uint8)


def _composite(la: np.ndarray) -> np.ndarray:
    lum, alpha = la[..., 0], la[..., 1]
    # What is drawn picks the backdrop: dark strokes on a transparent canvas (the usual export)
    # go on white paper, light ones (a drawing app in dark mode, white chalk cut out) on black,
    # where white paper would swallow them whole.
    drawn = int(alpha.sum(dtype=np.int64))
    light = 2 * int((lum * alpha).sum(dtype=np.int64)) > 255 * drawn
    backdrop = 0 if drawn and light else 255
    # lum*a + backdrop*(1-a), rounded, in integers to stay fast on big images.
    out = (lum * alpha + backdrop * (255 - alpha) + 127) // 255
    return out.astype(np.uint8)


def _high_depth_to_gray(arr: np.ndarray) -> np.ndarray:
    # Pillow's I;16 -> L conversion clips instead of scaling, which turns 16-bit scans white.
    values = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=255.0, neginf=0.0)
    top = float(values.max()) if values.size else 0.0
    if arr.dtype.kind == "f" and top <= 1.0:
        values = values * 255.0
    elif top > 255.0:
        values = values * (255.0 / (65535.0 if top <= 65535.0 else top))
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)
