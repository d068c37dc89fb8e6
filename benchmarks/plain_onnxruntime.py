"""The twenty-line script a user would write instead of classify-batch: onnxruntime, no pipeline.

python benchmarks/plain_onnxruntime.py INPUT OUT.csv   (INPUT: a folder of PNGs, or a .npy)
"""

import csv
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

MODEL = Path(__file__).resolve().parent.parent / "artifacts" / "model.onnx"

source, out = sys.argv[1], sys.argv[2]
if source.endswith(".npy"):
    images = np.load(source)
    names, indices = [source] * len(images), range(len(images))
else:
    paths = sorted(Path(source).rglob("*.png")) if Path(source).is_dir() else [Path(source)]
    images = np.stack([np.array(Image.open(p).convert("L")) for p in paths])
    names, indices = [str(p) for p in paths], [""] * len(paths)

session = ort.InferenceSession(str(MODEL))
probabilities, digits = session.run(["probabilities", "digit"], {"images": images})

with open(out, "w", newline="") as f:
    writer = csv.writer(f, lineterminator="\n")
    writer.writerow(["source", "index", "digit", "confidence"])
    confidence = (f"{c:.6f}" for c in probabilities.max(axis=1))
    writer.writerows(zip(names, indices, digits.tolist(), confidence, strict=True))
