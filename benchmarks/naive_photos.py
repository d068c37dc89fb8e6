"""The naive script a user would write for a folder of photos: Pillow, grey, 28x28, one call.

python benchmarks/naive_photos.py FOLDER OUT.csv

No normalization (ink colour, cropping, centring), so its digits for photos are mostly wrong: it
is the floor for time, not for accuracy.
"""

import csv
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

MODEL = Path(__file__).resolve().parent.parent / "artifacts" / "model.onnx"
SUFFIXES = {".jpg", ".jpeg", ".png"}

source, out = Path(sys.argv[1]), sys.argv[2]
paths = sorted(p for p in source.rglob("*") if p.suffix.lower() in SUFFIXES)
images = np.stack([np.array(Image.open(p).convert("L").resize((28, 28))) for p in paths])

session = ort.InferenceSession(str(MODEL))
probabilities, digits = session.run(["probabilities", "digit"], {"images": images})

with open(out, "w", newline="") as f:
    writer = csv.writer(f, lineterminator="\n")
    writer.writerow(["source", "index", "digit", "confidence"])
    confidence = (f"{c:.6f}" for c in probabilities.max(axis=1))
    writer.writerows(
        zip([str(p) for p in paths], [""] * len(paths), digits.tolist(), confidence, strict=True)
    )
