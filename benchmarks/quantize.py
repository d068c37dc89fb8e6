"""Would an int8 model be worth offering? Quantize the committed model dynamically and measure.

onnxruntime's dynamic quantization stores the MatMul weights as int8 and quantizes activations
per batch at run time. This script measures what that buys and what it costs:

- agreement: each int8 model's digits against the float model's on all 10,000 test images
  (the bar for offering one is 99.9%), and every model's accuracy against the labels;
- speed: onnxruntime alone on the test images, batch 1024, and classify-batch end to end on a
  .npy of N images (default 1,000,000, the test set tiled), median of --repeat runs.

    MNIST_DATA_DIR=... python benchmarks/quantize.py [--rows 1000000] [--out model.int8.onnx]

Needs the onnx package (the train extra) to quantize; the int8 model itself runs on the slim
runtime. Writes benchmarks/quantize.json.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from onnxruntime.quantization import QuantType, quantize_dynamic

from classify_batch.export.mnist_data import load_test_set
from classify_batch.jobs import model as model_loader

HERE = Path(__file__).resolve().parent
FLOAT_MODEL = HERE.parent / "artifacts" / "model.onnx"
CLASSIFY = Path(sys.executable).parent / "classify-batch"
AGREEMENT_BAR = 0.999
BATCH = 1024


def classify(classifier: model_loader.Classifier, images: np.ndarray) -> np.ndarray:
    return np.concatenate(
        [classifier(images[lo : lo + BATCH])[1] for lo in range(0, len(images), BATCH)]
    )


def throughput(classifier: model_loader.Classifier, images: np.ndarray, repeat: int) -> float:
    """Images per second through onnxruntime alone, best of `repeat` passes."""
    classify(classifier, images[:BATCH])  # first run allocates
    best = min(_timed(lambda: classify(classifier, images)) for _ in range(repeat))
    return len(images) / best


def end_to_end(model: Path, npy: Path, out: Path, repeat: int) -> float:
    """Median wall seconds of classify-batch on `npy` with `model`."""
    command = [str(CLASSIFY), str(npy), str(out), "--quiet", "--model", str(model)]
    return statistics.median(
        _timed(lambda: subprocess.run(command, check=True)) for _ in range(repeat)
    )


def _timed(work) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def tiled(images: np.ndarray, rows: int, path: Path) -> Path:
    array = np.lib.format.open_memmap(path, "w+", np.uint8, (rows, 28, 28))
    for lo in range(0, rows, len(images)):
        array[lo : lo + len(images)] = images[: rows - lo]
    array.flush()
    return path


# Per-tensor is quantize_dynamic's default; per-channel scales fit each output neuron's weights.
# 7-bit weights (reduce_range) keep u8 x s8 products from saturating on CPUs without VNNI, so the
# digits measured here hold on older x86 too.
VARIANTS = {
    "int8 per-tensor (default)": {},
    "int8 per-channel, 7-bit": {"per_channel": True, "reduce_range": True},
}


def stamp(path: Path, name: str, result: dict) -> None:
    """Metadata for the kept model: quantize_dynamic copies the float model's test accuracy."""
    import onnx

    model = onnx.load(path)
    props = {p.key: p.value for p in model.metadata_props}
    props["test_accuracy"] = f"{result['accuracy']:.4f}"
    props["quantization"] = f"{name}: onnxruntime quantize_dynamic, QInt8 weights"
    props["agreement_with_fp32"] = f"{result['agreement_with_fp32']:.4f}"
    onnx.helper.set_model_props(model, props)
    onnx.save(model, path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help=".npy size for end to end")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, help="keep the per-channel int8 model here")
    parser.add_argument("--json", type=Path, default=HERE / "quantize.json")
    args = parser.parse_args()
    if "MNIST_DATA_DIR" not in os.environ:
        parser.error("set MNIST_DATA_DIR to the folder with the MNIST .gz files")

    images, labels, _ = load_test_set()  # MNIST_DATA_DIR, else the cache
    fp32 = model_loader.load(FLOAT_MODEL)
    digits32 = classify(fp32, images)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="classify-batch-int8-") as tmp:
        work = Path(tmp)
        npy = tiled(images, args.rows, work / f"mnist-{args.rows}.npy")
        paths = {"fp32": FLOAT_MODEL}
        for i, (name, options) in enumerate(VARIANTS.items()):
            last = i == len(VARIANTS) - 1
            paths[name] = args.out if last and args.out else work / f"int8-{i}.onnx"
            quantize_dynamic(FLOAT_MODEL, paths[name], weight_type=QuantType.QInt8, **options)
        for name, path in paths.items():
            classifier = model_loader.load(path)
            digits = classify(classifier, images)
            results[name] = {
                "model_bytes": path.stat().st_size,
                "agreement_with_fp32": float((digits == digits32).mean()),
                "images_differing": int((digits != digits32).sum()),
                "accuracy": float((digits == labels).mean()),
                "onnxruntime_images_per_s": round(throughput(classifier, images, args.repeat)),
                "classify_batch_s": round(end_to_end(path, npy, work / "out.csv", args.repeat), 3),
            }
            results[name]["meets_bar"] = results[name]["agreement_with_fp32"] >= AGREEMENT_BAR
        if args.out:
            kept = list(VARIANTS)[-1]
            stamp(args.out, kept, results[kept])

    args.json.write_text(
        json.dumps(
            {
                "date": datetime.now(UTC).isoformat(timespec="seconds"),
                "nproc": os.cpu_count(),
                "test_images": len(images),
                "classify_batch_rows": args.rows,
                "agreement_bar": AGREEMENT_BAR,
                "models": results,
            },
            indent=2,
        )
        + "\n"
    )
    base = results["fp32"]["classify_batch_s"]
    print(
        f"{'model':<28} {'MB':>5} {'agree':>8} {'differ':>6} {'accuracy':>8} "
        f"{'ORT img/s':>10} {f'{args.rows:,} rows s':>14} {'speed-up':>8}"
    )
    for name, r in results.items():
        print(
            f"{name:<28} {r['model_bytes'] / 1e6:>5.2f} {r['agreement_with_fp32']:>8.2%} "
            f"{r['images_differing']:>6} {r['accuracy']:>8.2%} "
            f"{r['onnxruntime_images_per_s']:>10,} {r['classify_batch_s']:>14.2f} "
            f"{base / r['classify_batch_s']:>7.2f}x"
            + ("" if name == "fp32" else ("  meets" if r["meets_bar"] else "  FAILS") + " the bar")
        )
    print(f"(bar: agreement with fp32 >= {AGREEMENT_BAR:.1%}; wrote {args.json})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
