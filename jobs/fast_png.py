"""Decode plain 8-bit PNGs without Pillow's Python-level parser.

A folder of MNIST-style PNGs is thousands of ~300-byte files, and for those Pillow's chunk
parsing, plugin lookup and bookkeeping cost twice what the decompression does. This reads the
chunk layout itself and hands the image data to Pillow's own zlib/unfilter decoder and colour
conversion, so the pixels are Pillow's, bit for bit.

It takes only files it can vouch for: anything unusual (palette or 16-bit, interlacing, tRNS
transparency, EXIF, text, an unknown or damaged chunk, a size outside our limits, data the
decoder rejects) returns None, and the caller decodes the file the ordinary way, with the
ordinary checks and error messages.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np
from PIL import Image

SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Whole files up to this size are read for a look; a bigger PNG is a scan or a photo, where the
# parsing overhead is lost in the decoding anyway.
MAX_BYTES = 1024 * 1024

# Ancillary chunks that cannot change the pixels we return, with the only length Pillow parses
# without raising. Text, EXIF (orientation), tRNS (transparency), ICC profiles and the rest go
# the ordinary way, as do these same chunks after the image data.
_HARMLESS = {b"pHYs": 9, b"gAMA": 4, b"sRGB": 1}

# PNG colour type (at bit depth 8) -> Pillow's mode for it, and the mode we hand back: grayscale,
# or grayscale with alpha for the caller to composite, as it does for any other image.
_MODES = {0: ("L", "L"), 2: ("RGB", "L"), 4: ("LA", "LA"), 6: ("RGBA", "LA")}

_LENGTH_TYPE = struct.Struct(">I4s")
_IHDR = struct.Struct(">IIBBBBB")
_CRC = struct.Struct(">I")


def size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's header, or (0, 0) for anything else: no decoding."""
    if len(data) < 24 or not data.startswith(SIGNATURE) or data[12:16] != b"IHDR":
        return 0, 0
    width, height = struct.unpack_from(">II", data, 16)
    return width, height


def decode(data: bytes, max_side: int, max_pixels: int) -> np.ndarray | None:
    """The pixels of `data`, a whole PNG file, or None to decode it the usual way.

    uint8 (H, W) grayscale, or (H, W, 2) grayscale and alpha for PNGs with an alpha channel:
    Pillow's own conversions to "L" and "LA".
    """
    try:
        return _decode(data, max_side, max_pixels)
    except Exception:
        # Any surprise from a hostile file is the ordinary path's to report, in its words.
        return None


def _decode(data: bytes, max_side: int, max_pixels: int) -> np.ndarray | None:
    if not data.startswith(SIGNATURE):
        return None
    length, kind = _LENGTH_TYPE.unpack_from(data, 8)
    if kind != b"IHDR" or length != 13 or not _crc_ok(data, 8, length):
        return None
    width, height, depth, colour, compression, filtering, interlace = _IHDR.unpack_from(data, 16)
    if (depth, compression, filtering, interlace) != (8, 0, 0, 0) or colour not in _MODES:
        return None
    if not (1 <= width <= max_side and 1 <= height <= max_side and width * height <= max_pixels):
        return None
    pos = 8 + 12 + length
    idat: list[bytes] = []
    while True:
        length, kind = _LENGTH_TYPE.unpack_from(data, pos)
        end = pos + 12 + length
        if end > len(data):
            return None  # truncated: let Pillow say so
        if kind == b"IDAT":
            idat.append(data[pos + 8 : end - 4])
        elif kind == b"IEND":
            break
        elif idat or _HARMLESS.get(kind) != length or not _crc_ok(data, pos, length):
            return None
        pos = end
    if not idat:
        return None
    mode, out = _MODES[colour]
    return _inflate(width, height, idat[0] if len(idat) == 1 else b"".join(idat), mode, out)


def _inflate(width: int, height: int, data: bytes, mode: str, out: str) -> np.ndarray:
    # Pillow's C decoder and encoder, driven the way Image.frombytes(..., "zip") and tobytes()
    # drive them, minus their Python layers: those cost more than decoding a 28x28 image.
    # These are Pillow internals: if they change, this raises, the file goes the ordinary way
    # (only slower), and tests/test_fast_png.py fails so that someone notices.
    box = (0, 0, width, height)
    image = Image.core.new(mode, (width, height))
    decoder = Image.core.zip_decoder(mode, mode)
    try:
        decoder.setimage(image, box)
        unused, status = decoder.decode(data)
    finally:
        decoder.cleanup()  # frees zlib's state now, as ImageFile.load does
    if unused >= 0 or status != 0:  # what frombytes calls "not enough" or "cannot decode"
        raise ValueError("zip decoder did not finish the image")
    if out != mode:
        image = image.convert(out, Image.Dither.FLOYDSTEINBERG)  # what Image.convert(out) runs
    encoder = Image.core.raw_encoder(out, out)
    try:
        encoder.setimage(image, box)
        parts = []
        status = 0
        while not status:
            _, status, part = encoder.encode(max(65536, width * 4))  # as tobytes() asks
            parts.append(part)
    finally:
        encoder.cleanup()
    if status < 0:
        raise ValueError("raw encoder failed")
    shape = (height, width) if out == "L" else (height, width, len(out))
    return np.frombuffer(b"".join(parts), dtype=np.uint8).reshape(shape).copy()  # writable


def _crc_ok(data: bytes, pos: int, length: int) -> bool:
    # Pillow checks the CRC of every chunk before the image data and refuses the file if one
    # is wrong; a file it would refuse must not be decoded here.
    (stored,) = _CRC.unpack_from(data, pos + 8 + length)
    return zlib.crc32(data[pos + 4 : pos + 8 + length]) == stored
