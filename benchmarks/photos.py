"""Realistic phone photos and scans of handwritten digits, made from MNIST test images.

Each digit is drawn large in dark ink on textured, unevenly lit paper, 0.04 to 12 megapixels;
some are portrait photos stored landscape with an EXIF rotation, as phones write them; most are
JPEG at quality 85-95, some PNG. Used by benchmarks/run.py (the photo case):

    python benchmarks/photos.py OUT_FOLDER [--count 100]   (with MNIST_DATA_DIR set)

Writes labels.json beside the pictures (file name -> the digit drawn).
"""

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from classify_batch.export.mnist_data import load_test_set

ORIENTATION = 0x0112
ROTATE_90_CW = 6  # EXIF: the stored pixels must be turned 90 degrees clockwise to be upright


def paper(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Float32 (H, W, 3) paper: a tint, fibre texture and light falling off across the sheet."""
    tint = rng.uniform(205, 250) * np.array(
        [1.0, rng.uniform(0.96, 1.0), rng.uniform(0.88, 1.0)], np.float32
    )
    coarse = rng.normal(0, 6, (max(2, height // 64), max(2, width // 64))).astype(np.float32)
    texture = np.asarray(Image.fromarray(coarse, "F").resize((width, height), Image.BILINEAR))
    y = np.linspace(-1, 1, height, dtype=np.float32)[:, None]
    x = np.linspace(-1, 1, width, dtype=np.float32)[None, :]
    gx, gy = rng.uniform(-0.25, 0.25, 2)
    light = 1.0 + gx * x + gy * y - rng.uniform(0.05, 0.25) * (x * x + y * y)
    grain = rng.normal(0, 3, (height, width)).astype(np.float32)
    base = (texture + grain)[..., None] + tint[None, None, :]
    return base * light[..., None]


def photo(
    rng: np.random.Generator, digit: np.ndarray, megapixels: float, portrait: bool
) -> Image.Image:
    width = max(200, int((megapixels * 1e6 * 4 / 3) ** 0.5))
    height = max(150, width * 3 // 4)
    if portrait:
        width, height = height, width
    sheet = paper(rng, height, width)
    side = int(min(height, width) * rng.uniform(0.3, 0.7))
    ink = np.asarray(Image.fromarray(digit).resize((side, side), Image.BICUBIC), np.float32)
    ink = ink[..., None] / 255.0
    top = rng.integers(0, height - side + 1)
    left = rng.integers(0, width - side + 1)
    colour = np.array(rng.choice([[25, 25, 30], [20, 30, 90], [30, 30, 30]]), np.float32)
    region = sheet[top : top + side, left : left + side]
    sheet[top : top + side, left : left + side] = region * (1 - ink) + colour * ink
    return Image.fromarray(np.clip(sheet, 0, 255).astype(np.uint8), "RGB")


def make_photos(folder: Path, count: int, seed: int = 0) -> dict[str, int]:
    images, labels, _ = load_test_set()  # MNIST_DATA_DIR, else the cache
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    truth: dict[str, int] = {}
    for i in range(count):
        index = int(rng.integers(0, len(images)))
        # A fifth are small scans and crops (0.04-1 MP), the rest phone photos (1-12 MP).
        megapixels = rng.uniform(0.04, 1.0) if rng.random() < 0.2 else rng.uniform(1.0, 12.0)
        portrait = bool(rng.random() < 0.25)
        picture = photo(rng, images[index], megapixels, portrait)
        exif = Image.Exif()
        if portrait:
            # Held upright, stored as the sensor reads it (turned a quarter counter-clockwise),
            # with the turn back in EXIF, as phones write them.
            picture = picture.transpose(Image.Transpose.ROTATE_90)
            exif[ORIENTATION] = ROTATE_90_CW
        if rng.random() < 0.2:
            name = f"{i:04d}.png"
            picture.save(folder / name, exif=exif)
        else:
            name = f"{i:04d}.jpg"
            picture.save(folder / name, quality=int(rng.integers(85, 96)), exif=exif)
        truth[name] = int(labels[index])
    (folder / "labels.json").write_text(json.dumps(truth, indent=0) + "\n")
    return truth


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--count", type=int, default=100)
    args = parser.parse_args()
    if "MNIST_DATA_DIR" not in os.environ:
        parser.error("set MNIST_DATA_DIR to the folder with the MNIST .gz files")
    make_photos(args.out, args.count)
    return 0


if __name__ == "__main__":
    sys.exit(main())
