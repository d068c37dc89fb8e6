"""read_image against real files written to tmp_path: formats, orientation, alpha, bad inputs."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from classify_batch.jobs.errors import InputError
from classify_batch.jobs.images import IMAGE_SUFFIXES, MAX_PIXELS, read_image

WIDTH, HEIGHT = 60, 40


def digit_one(mode: str = "RGB", size: tuple[int, int] = (WIDTH, HEIGHT)) -> Image.Image:
    """A thick dark "1" on white paper."""
    img = Image.new("RGB", size, "white")
    ImageDraw.Draw(img).line((size[0] // 2, 5, size[0] // 2, size[1] - 5), fill="black", width=6)
    return img.convert(mode)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG whose IHDR claims width x height 1-bit pixels: a decompression bomb's header."""
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(b""))
        + png_chunk(b"IEND", b"")
    )


def encoded(img: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **params)
    return buf.getvalue()


def assert_input_error(path: Path, *fragments: str) -> str:
    with pytest.raises(InputError) as info:
        read_image(path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) not in message
    for fragment in fragments:
        assert fragment in message
    return message


@pytest.mark.parametrize(
    ("suffix", "fmt", "mode"),
    [
        (".png", "PNG", "L"),
        (".png", "PNG", "RGB"),
        (".jpg", "JPEG", "RGB"),
        (".jpeg", "JPEG", "L"),
        (".bmp", "BMP", "RGB"),
        (".gif", "GIF", "P"),
        (".tif", "TIFF", "RGB"),
        (".tiff", "TIFF", "1"),
        (".webp", "WEBP", "RGB"),
        (".pgm", "PPM", "L"),
        (".ppm", "PPM", "RGB"),
    ],
)
def test_each_format_round_trips_to_gray_of_the_same_size(
    tmp_path: Path, suffix: str, fmt: str, mode: str
) -> None:
    path = tmp_path / f"digit{suffix}"
    digit_one(mode).save(path, fmt)

    gray = read_image(path)

    assert gray.dtype == np.uint8
    assert gray.shape == (HEIGHT, WIDTH)
    assert gray[2, 2] > 200  # paper stays light
    assert gray[HEIGHT // 2, WIDTH // 2] < 60  # ink stays dark
    assert suffix in IMAGE_SUFFIXES


def test_suffixes_are_lower_case_with_a_dot() -> None:
    assert {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"} <= IMAGE_SUFFIXES
    assert all(s.startswith(".") and s == s.lower() for s in IMAGE_SUFFIXES)


def test_accepts_a_str_path(tmp_path: Path) -> None:
    path = tmp_path / "digit.png"
    digit_one("L").save(path)
    assert read_image(str(path)).shape == (HEIGHT, WIDTH)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    path = tmp_path / "phone.jpg"
    img = digit_one("RGB")
    exif = img.getexif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    img.save(path, "JPEG", exif=exif)

    assert read_image(path).shape == (WIDTH, HEIGHT)


def test_transparent_background_becomes_white_paper(tmp_path: Path) -> None:
    path = tmp_path / "alpha.png"
    rgba = np.zeros((HEIGHT, WIDTH, 4), dtype=np.uint8)  # black everywhere, fully transparent
    rgba[5:-5, 27:33, 3] = 255  # only the opaque black stroke is ink
    Image.fromarray(rgba, "RGBA").save(path)

    gray = read_image(path)

    assert gray[0, 0] == 255
    assert gray[HEIGHT // 2, WIDTH // 2] == 0


def test_white_strokes_on_a_transparent_canvas_stay_visible(tmp_path: Path) -> None:
    path = tmp_path / "dark-mode.png"
    rgba = np.zeros((HEIGHT, WIDTH, 4), dtype=np.uint8)
    rgba[5:-5, 27:33] = 255  # a white, opaque stroke; the rest transparent
    Image.fromarray(rgba, "RGBA").save(path)

    gray = read_image(path)

    assert gray[0, 0] == 0  # black backdrop: white paper would swallow the stroke
    assert gray[HEIGHT // 2, WIDTH // 2] == 255


def test_half_transparent_ink_is_blended(tmp_path: Path) -> None:
    path = tmp_path / "la.png"
    la = np.zeros((4, 4, 2), dtype=np.uint8)
    la[..., 1] = 128
    Image.fromarray(la, "LA").save(path)

    assert np.all(read_image(path) == 127)


def test_palette_transparency_becomes_white(tmp_path: Path) -> None:
    path = tmp_path / "transparent.gif"
    img = digit_one("P")
    corner = img.getpixel((0, 0))
    img.save(path, "GIF", transparency=corner)

    gray = read_image(path)

    assert gray[0, 0] == 255
    assert gray[HEIGHT // 2, WIDTH // 2] < 60


def test_only_the_first_frame_of_an_animation_is_read(tmp_path: Path) -> None:
    path = tmp_path / "anim.gif"
    frames = [Image.new("L", (WIDTH, HEIGHT), value) for value in (0, 255, 128)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100)

    assert np.all(read_image(path) == 0)


def test_first_page_of_a_multi_page_tiff(tmp_path: Path) -> None:
    path = tmp_path / "pages.tif"
    pages = [Image.new("L", (WIDTH, HEIGHT), value) for value in (30, 220)]
    pages[0].save(path, save_all=True, append_images=pages[1:])

    assert np.all(read_image(path) == 30)


def test_sixteen_bit_gray_is_scaled_not_clipped(tmp_path: Path) -> None:
    path = tmp_path / "deep.png"
    deep = np.full((HEIGHT, WIDTH), 32768, dtype=np.uint16)
    Image.fromarray(deep).save(path)

    assert np.all(read_image(path) == 128)


def test_jpeg_draft_decodes_smaller_but_not_below_the_hint(tmp_path: Path) -> None:
    path = tmp_path / "photo.jpg"
    digit_one("RGB", size=(1600, 1200)).save(path, "JPEG")

    gray = read_image(path, draft_side=300)

    assert gray.shape == (300, 400)  # 1/4 scale: 1/8 would drop below 300
    assert gray.dtype == np.uint8


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
@pytest.mark.parametrize("keep", [0.3, 0.6, 0.95])
def test_truncated_file_is_an_input_error(tmp_path: Path, fmt: str, keep: float) -> None:
    noise = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    data = encoded(Image.fromarray(noise), fmt)
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(data[: int(len(data) * keep)])

    assert_input_error(path, "truncated")


def test_random_bytes_named_png(tmp_path: Path) -> None:
    path = tmp_path / "noise.png"
    path.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())

    assert_input_error(path, "not an image")


def test_text_file_named_jpg(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("these are not the pixels you are looking for\n" * 20)

    assert_input_error(path, "not an image")


def test_format_outside_the_allow_list_is_refused(tmp_path: Path) -> None:
    # Pillow reads TGA, but a .png that is really TGA must not reach that decoder.
    path = tmp_path / "sneaky.png"
    digit_one("RGB").save(path, "TGA")

    assert_input_error(path, "not an image")


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.png"
    path.touch()

    assert assert_input_error(path) == "empty file"


def test_missing_file(tmp_path: Path) -> None:
    assert_input_error(tmp_path / "gone.png", "not found")


def test_directory(tmp_path: Path) -> None:
    folder = tmp_path / "looks_like.png"
    folder.mkdir()

    assert_input_error(folder, "directory")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX named pipes")
def test_named_pipe_does_not_hang(tmp_path: Path) -> None:
    path = tmp_path / "pipe.png"
    os.mkfifo(path)

    assert_input_error(path, "not a regular file")


def test_permission_error_is_reported_plainly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Runs even as root, where chmod 000 cannot make a file unreadable.
    path = tmp_path / "secret.png"
    digit_one("L").save(path)

    def refuse(*args: object, **kwargs: object) -> int:
        raise PermissionError(13, "Permission denied")

    with monkeypatch.context() as patch:
        patch.setattr(os, "open", refuse)
        with pytest.raises(InputError) as info:
            read_image(path)

    assert str(info.value) == "permission denied"


def test_corrupted_png_data_is_an_input_error(tmp_path: Path) -> None:
    data = bytearray(encoded(digit_one("L"), "PNG"))
    start = data.index(b"IDAT") + 8
    data[start : start + 16] = bytes(16)  # smash the zlib stream but keep the length
    path = tmp_path / "smashed.png"
    path.write_bytes(bytes(data))

    assert_input_error(path)


@pytest.mark.parametrize(
    ("width", "height"),
    [
        (60_000, 60_000),  # Pillow itself refuses this in Image.open
        (10_000, 10_000),  # Pillow only warns; the warning must not slip through
        (8_000, 7_000),  # under Pillow's limits, over ours
    ],
)
def test_decompression_bomb_is_refused_from_the_header(
    tmp_path: Path, width: int, height: int
) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header_only(width, height))
    assert path.stat().st_size < 100
    assert width * height > MAX_PIXELS

    assert_input_error(path, "too large", "megapixels")


def test_absurd_side_is_refused_even_with_few_pixels(tmp_path: Path) -> None:
    path = tmp_path / "strip.png"
    path.write_bytes(png_header_only(30_000, 10))

    assert_input_error(path, "too large", "30000x10")


def test_pillow_warning_filters_are_left_as_they_were(tmp_path: Path) -> None:
    import warnings

    path = tmp_path / "bomb.png"
    path.write_bytes(png_header_only(10_000, 10_000))
    before = list(warnings.filters)

    assert_input_error(path, "too large")

    assert warnings.filters == before


def test_big_bomb_in_a_real_small_file(tmp_path: Path) -> None:
    # A genuine, fully decodable 1-bit PNG: all black compresses to almost nothing.
    path = tmp_path / "real_bomb.png"
    Image.new("1", (12_000, 6_000), 0).save(path, optimize=True)
    assert path.stat().st_size < 200_000

    assert_input_error(path, "too large", "12000x6000")
