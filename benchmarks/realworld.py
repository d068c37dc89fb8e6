"""How well does classify-batch read digits that look like scans and photos, not like MNIST?

Makes variants of the official test images (rescaled, shifted, inverted, RGB, JPEG, and all of
them at once), runs classify-batch on each folder, and prints accuracy against the labels:

    MNIST_DATA_DIR=... python benchmarks/realworld.py [--count 2000] [--json out.json]
"""

import argparse
import csv
import gzip
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

Variant = Callable[[np.ndarray, np.random.Generator], tuple[Image.Image, str]]


def load_test_set(count: int) -> tuple[np.ndarray, np.ndarray]:
    folder = Path(os.environ["MNIST_DATA_DIR"])
    with gzip.open(folder / "t10k-images-idx3-ubyte.gz") as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(folder / "t10k-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)
    return images[:count], labels[:count]


def _big(image: np.ndarray, rng: np.random.Generator) -> Image.Image:
    side = int(rng.integers(60, 320))
    return Image.fromarray(image).resize((side, side), Image.Resampling.BICUBIC)


def as_is(image, rng):
    return Image.fromarray(image), "png"


def rescaled(image, rng):
    return _big(image, rng), "png"


def shifted(image, rng):
    canvas = Image.new("L", (56, 56), 0)
    canvas.paste(Image.fromarray(image), (int(rng.integers(0, 29)), int(rng.integers(0, 29))))
    return canvas, "png"


def inverted(image, rng):
    return Image.fromarray(255 - image), "png"


def rgb(image, rng):
    ink = np.array(rng.integers(0, 90, 3), dtype=np.float32)  # dark blue/black pen
    paper = np.array(rng.integers(200, 256, 3), dtype=np.float32)
    alpha = (image.astype(np.float32) / 255)[..., None]
    pixels = paper * (1 - alpha) + ink * alpha
    return Image.fromarray(pixels.astype(np.uint8), "RGB"), "png"


def jpeg(image, rng):
    return Image.fromarray(image), "jpg"


def scan(image, rng):
    """All at once: pen on paper, bigger, off-centre, uneven light, noise, blur, RGB, JPEG."""
    digit = np.asarray(_big(image, rng), dtype=np.float32) / 255
    h, w = digit.shape
    canvas_h, canvas_w = h + int(rng.integers(20, 200)), w + int(rng.integers(20, 200))
    top, left = int(rng.integers(0, canvas_h - h)), int(rng.integers(0, canvas_w - w))
    alpha = np.zeros((canvas_h, canvas_w), np.float32)
    alpha[top : top + h, left : left + w] = digit
    light = np.linspace(rng.uniform(0.8, 1.0), rng.uniform(0.8, 1.0), canvas_w)[None, :, None]
    paper = np.array(rng.integers(200, 256, 3), np.float32) * light
    ink = np.array(rng.integers(0, 90, 3), np.float32)
    pixels = paper * (1 - alpha[..., None]) + ink * alpha[..., None]
    pixels += rng.normal(0, 6, pixels.shape)
    photo = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    return photo.filter(ImageFilter.GaussianBlur(rng.uniform(0, 1.2))), "jpg"


VARIANTS: dict[str, Variant] = {
    "MNIST as PNG": as_is,
    "rescaled 60-320 px": rescaled,
    "shifted in 56x56": shifted,
    "inverted (dark on light)": inverted,
    "RGB pen on paper": rgb,
    "JPEG q75": jpeg,
    "scan-like (all of these)": scan,
}


def accuracy(folder: Path, labels: np.ndarray, preprocess: str) -> tuple[float, int]:
    out = folder.with_suffix(f".{preprocess}.csv")
    subprocess.run(
        [
            str(Path(sys.executable).parent / "classify-batch"),
            str(folder),
            str(out),
            "--preprocess",
            preprocess,
            "-q",
        ],
        check=False,
    )
    with open(out, newline="") as f:
        digits = {Path(r["source"]).stem: int(r["digit"]) for r in csv.DictReader(f)}
    right = sum(digits.get(f"{i:05d}") == label for i, label in enumerate(labels))
    return right / len(labels), len(labels) - len(digits)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000, help="test images per variant")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    images, labels = load_test_set(args.count)
    results = {}
    print(f"{'variant':28} {'auto':>8} {'none':>8}   (accuracy on {len(labels):,} test images)")
    with tempfile.TemporaryDirectory() as tmp:
        for name, make in VARIANTS.items():
            rng = np.random.default_rng(0)
            folder = Path(tmp) / name.split()[0].lower()
            folder.mkdir()
            for i, image in enumerate(images):
                picture, fmt = make(image, rng)
                picture.save(folder / f"{i:05d}.{fmt}", quality=75)
            auto, _ = accuracy(folder, labels, "auto")
            none, refused = accuracy(folder, labels, "none")
            none_text = f"{none:8.2%}" if not refused else f"{'refused':>8}"
            print(f"{name:28} {auto:8.2%} {none_text}")
            results[name] = {"auto": auto, "none": None if refused else none}
    if args.json:
        args.json.write_text(json.dumps({"count": len(labels), "accuracy": results}, indent=2))


if __name__ == "__main__":
    main()
