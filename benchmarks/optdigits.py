"""How well does classify-batch read real handwriting by 30 other writers (UCI optdigits)?

Writes each of the 1,934 32x32 bitmaps of optdigits-orig.tra as a PNG, black ink on white, the
files a user would have; runs classify-batch on the folder and prints accuracy against the labels,
overall and per digit. Digits that classify-batch refuses (it writes them to OUT.errors.csv) count
as wrong and are reported separately.

    OPTDIGITS_FILE=.../optdigits-orig.tra python benchmarks/optdigits.py [--model PATH] [--pad N]

--pad N surrounds every bitmap with N white pixels first: optdigits digits touch the edge of their
box, which a normalizer that reads the paper colour from the border may take for a blank page.
"""

import argparse
import csv
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from classify_batch.export.optdigits import OPTDIGITS_ENV, as_scans, load_optdigits


def write_pngs(bitmaps: np.ndarray, folder: Path, pad: int) -> None:
    for i, bitmap in enumerate(bitmaps):
        pixels = as_scans(bitmap)
        if pad:
            pixels = np.pad(pixels, pad, constant_values=255)
        Image.fromarray(pixels).save(folder / f"{i:05d}.png")


def classify(folder: Path, model: Path | None) -> dict[int, int]:
    out = folder.parent / "out.csv"
    command = [str(Path(sys.executable).parent / "classify-batch"), str(folder), str(out), "-q"]
    if model is not None:
        command += ["--model", str(model)]
    subprocess.run(command, check=False)
    with open(out, newline="") as f:
        return {int(Path(r["source"]).stem): int(r["digit"]) for r in csv.DictReader(f)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="ONNX model [default: the committed one]")
    parser.add_argument("--pad", type=int, default=0, help="white pixels around each bitmap")
    args = parser.parse_args()
    bitmaps, labels = load_optdigits(Path(os.environ[OPTDIGITS_ENV]))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "digits"
        folder.mkdir()
        write_pngs(bitmaps, folder, args.pad)
        digits = classify(folder, args.model)
    predicted = np.array([digits.get(i, -1) for i in range(len(labels))])
    refused = int((predicted == -1).sum())
    right = predicted == labels
    print(
        f"optdigits: {right.mean():.2%} of {len(labels):,} digits right "
        f"({refused} refused, counted wrong); pad {args.pad}; model {args.model or 'committed'}"
    )
    print("digit      " + " ".join(f"{d:>6}" for d in range(10)))
    print("accuracy   " + " ".join(f"{right[labels == d].mean():6.1%}" for d in range(10)))
    print("refused    " + " ".join(f"{(predicted[labels == d] == -1).sum():>6}" for d in range(10)))


if __name__ == "__main__":
    main()
