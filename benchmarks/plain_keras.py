"""The same twenty-line script with Keras, as the tutorial does it: the trained model's predict.

python benchmarks/plain_keras.py INPUT OUT.csv   (INPUT: a folder of PNGs, or a .npy)
"""

import csv
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter off stderr

import keras  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

MODEL = Path(__file__).resolve().parent.parent / "artifacts" / "model.keras"

source, out = sys.argv[1], sys.argv[2]
if source.endswith(".npy"):
    images = np.load(source)
    names, indices = [source] * len(images), range(len(images))
else:
    paths = sorted(Path(source).rglob("*.png")) if Path(source).is_dir() else [Path(source)]
    images = np.stack([np.array(Image.open(p).convert("L")) for p in paths])
    names, indices = [str(p) for p in paths], [""] * len(paths)

# The tutorial's preprocessing: pixels scaled to [-0.5, 0.5], flattened to 784.
x = (images.astype(np.float32) / 255.0 - 0.5).reshape(len(images), 784)
model = keras.models.load_model(MODEL, compile=False)
probabilities = model.predict(x, verbose=0)
digits = probabilities.argmax(axis=1)

with open(out, "w", newline="") as f:
    writer = csv.writer(f, lineterminator="\n")
    writer.writerow(["source", "index", "digit", "confidence"])
    confidence = (f"{c:.6f}" for c in probabilities.max(axis=1))
    writer.writerows(zip(names, indices, digits.tolist(), confidence, strict=True))
