"""Photos (issue 17): JPEGs decode at a reduced DCT scale wherever the job reads them, and a folder
of photos is split into tasks by bytes, so the decoders share the work evenly."""

import numpy as np
import pytest
from PIL import Image

from classify_batch.jobs import decode, images, pipeline
from classify_batch.jobs.normalize import WORK_SIDE, to_mnist

ORIENTATION = 0x0112


def phone_photo(path, size=(4000, 3000), orientation=None):
    rng = np.random.default_rng(1)
    pixels = np.full((size[1], size[0], 3), 235, np.uint8)
    pixels += rng.integers(0, 12, pixels.shape, dtype=np.uint8)
    pixels[900:2100, 1800:2100] = 30  # a "1"
    exif = Image.Exif()
    if orientation:
        exif[ORIENTATION] = orientation
    Image.fromarray(pixels).save(path, quality=90, exif=exif)


@pytest.fixture
def drafts(monkeypatch):
    seen = []
    real = images._draft_jpeg

    def spy(im, draft_side):
        real(im, draft_side)
        seen.append(im.size)

    monkeypatch.setattr(images, "_draft_jpeg", spy)
    return seen


def test_a_photo_batch_decodes_jpegs_at_a_reduced_scale(tmp_path, drafts):
    files = []
    for i in range(3):
        phone_photo(tmp_path / f"{i}.jpg")
        files.append((str(tmp_path / f"{i}.jpg"), f"{i}.jpg"))
    out = decode.decode_files(files, "auto")
    assert out.errors == [] and len(out.images) == 3
    assert drafts == [(1000, 750)] * 3  # 1/4 scale: the smallest that keeps 512 px
    gray = images.read_image(files[0][0], draft_side=WORK_SIDE)
    assert np.array_equal(out.images[0], to_mnist(gray, "auto"))


def test_an_exif_rotated_photo_is_drafted_then_turned_upright(tmp_path, drafts):
    phone_photo(tmp_path / "portrait.jpg", orientation=6)
    gray = images.read_image(tmp_path / "portrait.jpg", draft_side=WORK_SIDE)
    assert drafts == [(1000, 750)]
    assert gray.shape == (1000, 750)  # (rows, columns): portrait, at 1/4 scale


def test_the_normalizer_gets_the_drafted_size_not_the_full_photo(tmp_path):
    phone_photo(tmp_path / "big.jpg", size=(6000, 4500))
    gray = images.read_image(tmp_path / "big.jpg", draft_side=WORK_SIDE)
    assert WORK_SIDE <= max(gray.shape) < 2 * WORK_SIDE  # 1/8 scale: 750 x 562


def test_photos_go_one_per_task_and_mnist_pngs_by_the_hundred(tmp_path):
    photos = []
    for i in range(100):
        path = tmp_path / f"{i}.bin"
        path.write_bytes(bytes(1_500_000))  # only the size is looked at
        photos.append(str(path))
    assert pipeline.files_per_task(100, 2, photos) == 1
    small = []
    for i in range(100):
        path = tmp_path / f"{i}.png"
        path.write_bytes(bytes(300))
        small.append(str(path))
    assert pipeline.files_per_task(100, 2, small) == 13  # four tasks a worker, as before
    assert pipeline.files_per_task(10_000, 2, small) == pipeline.FILES_PER_TASK


def test_a_big_png_is_reduced_as_a_jpeg_draft_would_be_and_keeps_its_rotation(tmp_path):
    rng = np.random.default_rng(2)
    pixels = rng.integers(200, 256, (3000, 4000, 3), dtype=np.uint8)
    pixels[900:2100, 1800:2100] = 30
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    Image.fromarray(pixels).save(tmp_path / "portrait.png", exif=exif)
    gray = images.read_image(tmp_path / "portrait.png", draft_side=WORK_SIDE)
    assert gray.shape == (1000, 750)  # upright, at 1/4 (box-reduced after decoding)
    full = images.read_image(tmp_path / "portrait.png")
    assert full.shape == (4000, 3000)
    # The same grey levels as reducing the full-size grey image, give or take rounding.
    reduced = np.asarray(Image.fromarray(full).reduce(4), np.int16)
    assert np.abs(reduced - gray).max() <= 1
