"""How well does classify-batch read digits that look like scans and photos, not like MNIST?

Three tables, each from folders of image files handed to classify-batch as a user would:
- variants of the official test images (rescaled, shifted, inverted, RGB, JPEG, all at once);
- the stress sets of benchmarks/stress.py (tight binarized crops, 16x16 scans, grid cells,
  photographed cells, hairlines, markers), beside the same digits as plain MNIST PNGs;
- real handwriting from other writers and another scanner: UCI optdigits (OPTDIGITS_FILE), each
  32x32 bitmap written as a 1-bit PNG, black ink on white.
Beside the stress sets and optdigits, Tesseract (Debian's tesseract-ocr, `--psm 10`, digits only)
reads the same files, when it is installed:

    MNIST_DATA_DIR=... OPTDIGITS_FILE=... python benchmarks/realworld.py [--json out.json]
"""

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stress import STRESS_SETS  # noqa: E402

from classify_batch.export.mnist_data import load_test_set  # noqa: E402
from classify_batch.export.optdigits import OPTDIGITS_ENV, load_optdigits  # noqa: E402

Variant = Callable[[np.ndarray, np.random.Generator], tuple[Image.Image, str]]


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


def classify(folder: Path, preprocess: str) -> tuple[dict[str, int], int]:
    """classify-batch's digit for each file stem, and how many files it refused as blank."""
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
    with open(out.with_suffix(".errors.csv"), newline="") as f:
        blank = sum("blank" in r["error"] for r in csv.DictReader(f))
    return digits, blank


def score(digits: dict[str, int], labels: np.ndarray) -> float:
    return sum(digits.get(f"{i:05d}") == label for i, label in enumerate(labels)) / len(labels)


def accuracy(folder: Path, labels: np.ndarray, preprocess: str) -> tuple[float, int]:
    digits, _ = classify(folder, preprocess)
    return score(digits, labels), len(labels) - len(digits)


def tesseract(folder: Path, labels: np.ndarray, count: int) -> float | None:
    """Tesseract's accuracy on the first `count` files, as given; None when it is not installed."""
    program = shutil.which("tesseract")
    if program is None or count <= 0:
        return None
    files = sorted(folder.iterdir())[:count]

    def read(path: Path) -> str:
        result = subprocess.run(
            [
                program,
                str(path),
                "stdout",
                "--psm",
                "10",
                "-c",
                "tessedit_char_whitelist=0123456789",
            ],
            capture_output=True,
            text=True,
            env={**os.environ, "OMP_THREAD_LIMIT": "1"},
        )
        return result.stdout.strip()

    with ThreadPoolExecutor(max_workers=2) as pool:
        texts = list(pool.map(read, files))
    right = sum(
        text == str(labels[int(path.stem)]) for path, text in zip(files, texts, strict=True)
    )
    return right / len(files)


def percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2%}"


def variants(images: np.ndarray, labels: np.ndarray, tmp: Path) -> dict:
    results = {}
    print(f"{'variant':28} {'auto':>8} {'none':>8}   (accuracy on {len(labels):,} test images)")
    for name, make in VARIANTS.items():
        rng = np.random.default_rng(0)
        folder = tmp / name.split()[0].lower()
        folder.mkdir()
        for i, image in enumerate(images):
            picture, fmt = make(image, rng)
            picture.save(folder / f"{i:05d}.{fmt}", quality=75)
        auto, _ = accuracy(folder, labels, "auto")
        none, refused = accuracy(folder, labels, "none")
        none_text = f"{none:8.2%}" if not refused else f"{'refused':>8}"
        print(f"{name:28} {auto:8.2%} {none_text}")
        results[name] = {"auto": auto, "none": None if refused else none}
    return results


def stress(images: np.ndarray, labels: np.ndarray, tmp: Path, ocr_count: int) -> dict:
    plain_folder = tmp / "stress-plain"
    plain_folder.mkdir()
    for i, image in enumerate(images):
        Image.fromarray(image).save(plain_folder / f"{i:05d}.png")
    plain = score(classify(plain_folder, "auto")[0], labels)
    ocr_plain = tesseract(plain_folder, labels, ocr_count)
    print(f"\n{'stress set':34} {'plain MNIST':>11} {'job':>8} {'blank':>6} {'tesseract':>10}")
    name = "(the same digits as MNIST PNGs)"
    print(f"{name:34} {plain:11.2%} {'':>8} {'':>6} {percent(ocr_plain):>10}")
    results = {"plain MNIST": {"job": plain, "tesseract": ocr_plain}}
    for k, (name, make) in enumerate(STRESS_SETS.items()):
        rng = np.random.default_rng(0)
        folder = tmp / f"stress-{k}"
        folder.mkdir()
        for i, image in enumerate(images):
            Image.fromarray(make(image, rng)).save(folder / f"{i:05d}.png")
        digits, blank = classify(folder, "auto")
        job = score(digits, labels)
        ocr = tesseract(folder, labels, ocr_count)
        print(f"{name:34} {plain:11.2%} {job:8.2%} {blank:6d} {percent(ocr):>10}")
        results[name] = {"plain": plain, "job": job, "blank": blank, "tesseract": ocr}
    return results


def optdigits(tmp: Path, ocr_count: int) -> dict | None:
    path = os.environ.get(OPTDIGITS_ENV)
    if not path:
        print("\noptdigits: skipped (set OPTDIGITS_FILE to optdigits-orig.tra)")
        return None
    bitmaps, labels = load_optdigits(Path(path))
    folder = tmp / "optdigits"
    folder.mkdir()
    for i, bitmap in enumerate(bitmaps):
        Image.fromarray(~bitmap).save(folder / f"{i:05d}.png")  # mode "1": 1-bit, ink black
    digits, blank = classify(folder, "auto")
    job = score(digits, labels)
    ocr = tesseract(folder, labels, ocr_count)
    print(f"\noptdigits ({len(labels):,} digits): job {job:.2%}, refused as blank {blank},")
    print(f"  tesseract {percent(ocr)} on the first {min(ocr_count, len(labels))}")
    return {"count": len(labels), "job": job, "blank": blank, "tesseract": ocr}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000, help="test images per variant")
    parser.add_argument("--stress-count", type=int, default=500, help="test images per stress set")
    parser.add_argument(
        "--ocr-count",
        type=int,
        default=500,
        help="images per set Tesseract reads (it is slow; 0: none)",
    )
    parser.add_argument("--skip-variants", action="store_true", help="only stress and optdigits")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if shutil.which("tesseract") is None:
        print("tesseract is not installed (apt-get install tesseract-ocr): its column is n/a\n")
    images, labels, _ = load_test_set()  # MNIST_DATA_DIR, else the cache
    count = max(args.count, args.stress_count)
    images, labels = images[:count], labels[:count]
    report: dict = {"count": args.count, "stress_count": args.stress_count}
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_variants:
            report["accuracy"] = variants(images[: args.count], labels[: args.count], Path(tmp))
        report["stress"] = stress(
            images[: args.stress_count], labels[: args.stress_count], Path(tmp), args.ocr_count
        )
        report["optdigits"] = optdigits(Path(tmp), args.ocr_count)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
