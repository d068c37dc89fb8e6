"""Export a trained Keras model, gate it on parity, write the artifacts and their model card."""

import hashlib
import json
import platform
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import onnx
import tensorflow as tf
import tf2onnx

from classify_batch.contract import (
    INK,
    INPUT_CONTRACT,
    INPUT_DTYPE,
    INPUT_NAME,
    INPUT_SHAPE,
    LABELS,
    OUTPUT_NAMES,
    OUTPUT_TYPES,
)
from classify_batch.export import compress, onnx_export, optdigits
from classify_batch.export.evaluate import per_digit_accuracy
from classify_batch.export.mnist_data import FULL_TRAIN_COUNT, MnistData
from classify_batch.export.presets import Preset
from classify_batch.export.quantize import AGREEMENT_BAR, quantize
from classify_batch.export.train import History, build_model, preprocess
from classify_batch.jobs import atomic


@dataclass(frozen=True)
class Published:
    onnx_path: Path
    onnx_sha256: str
    test_accuracy: float
    parity: onnx_export.Parity
    optdigits_accuracy: float | None  # None without OPTDIGITS_FILE


def versions() -> dict[str, str]:
    return {
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "tf2onnx": tf2onnx.__version__,
        "onnx": onnx.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def data_card(data: MnistData) -> dict[str, Any]:
    return {
        "description": data.describe(),
        "train_images": int(len(data.train_images)),
        "full_train_images": FULL_TRAIN_COUNT,
        "test_images": int(len(data.test_images)),
        "source": data.source,
        "sha256": dict(sorted(data.sha256.items())),
    }


def model_card(
    model: keras.Model,
    preset: Preset,
    data: MnistData,
    accuracy: float,
    per_digit: dict[str, float | None],
) -> dict[str, Any]:
    """The model card: what the model is, how it was made, what it was measured to do."""
    train_count = f"{len(data.train_images):,} of {FULL_TRAIN_COUNT:,}"
    return {
        "name": "classify-batch digits ANN",
        "model": "model.onnx",
        "keras_model": "model.keras",
        "preset": preset.name,
        "recipe": preset.as_dict(),
        "architecture": f"784-{'-'.join(map(str, preset.hidden))}-10 ANN, ReLU, softmax"
        + (f", dropout {preset.dropout}" if preset.dropout else "")
        + (_factoring(preset) if compress.is_factored(model) else ""),
        "parameters": int(model.count_params()),
        "input": {
            "name": INPUT_NAME,
            "dtype": INPUT_DTYPE,
            "shape": list(INPUT_SHAPE),
            "ink": INK,
            "contract": INPUT_CONTRACT,
        },
        "outputs": list(OUTPUT_NAMES),
        "output_types": dict(OUTPUT_TYPES),
        "labels": list(LABELS),
        "test_accuracy": accuracy,
        "test_accuracy_per_digit": per_digit,
        "test_accuracy_note": f"official MNIST test set (10,000), trained on {train_count} images",
        "data": data_card(data),
        "versions": versions(),
    }


def _factoring(preset: Preset) -> str:
    inputs = (784, *preset.hidden)
    products = [
        f"{inputs[i]}x{preset.rank(i)} @ {preset.rank(i)}x{width}"
        for i, width in enumerate(preset.hidden)
        if preset.rank(i)
    ]
    ranks = " and ".join(str(r) for r in preset.ranks if r)
    return f"; hidden weights of rank {ranks} ({', '.join(products)})" + (
        f", trained {preset.tune_epochs} more epochs as factored" if preset.tune_epochs else ""
    )


def card_metadata(card: dict[str, Any]) -> dict[str, str]:
    """ONNX metadata_props from the card: its input section flattened to input_name, input_dtype,
    input_shape, input_ink and input_contract (what another runtime reads first), every other
    field under its own name; values that are not strings as JSON."""
    fields = {f"input_{key}": value for key, value in card["input"].items()}
    fields.update((key, value) for key, value in card.items() if key != "input")
    return {
        key: value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        for key, value in sorted(fields.items())
    }


def publish(
    model: keras.Model,
    preset: Preset,
    data: MnistData,
    out_dir: Path,
    history: History | None = None,
    training_seconds: float | None = None,
    low_rank: dict[str, Any] | None = None,
    log: Callable[[str], None] = lambda _: None,
) -> Published:
    """Export, gate and write model.onnx, model.keras, model.json (and history.json).

    A preset with ranks publishes `model` with those layers factored (export/compress.py),
    unless it already is; `low_rank` is then the card section of that earlier factoring.
    Nothing is written unless the ONNX model gives Keras' digit on every test image.
    """
    if preset.factors and not compress.is_factored(model):
        factored = compress.factor(model, preset, data, _right_on_optdigits, log)
        model, low_rank = factored.model, factored.card
        if history is not None:  # the tuning's epochs follow the training's in the curves
            history = History(history.epochs + factored.history.epochs)
    proto = onnx_export.to_onnx(model)
    check = onnx_export.gate(model, proto.SerializeToString(), data.test_images)
    digits = check.digits
    accuracy = float((digits == data.test_labels).mean())
    card = model_card(model, preset, data, accuracy, per_digit_accuracy(digits, data.test_labels))
    card["low_rank"] = low_rank
    card["parity"] = {
        "images": check.images,
        "digit_mismatches": check.digit_mismatches,
        "max_probability_diff": check.max_probability_diff,
        "tolerance": onnx_export.PROBABILITY_TOLERANCE,
    }
    # The ONNX file describes itself with the card, as it stands before the file's own bytes
    # (and what depends on them) exist.
    onnx_export.describe(proto, card_metadata(card))
    onnx.checker.check_model(proto, full_check=True)
    model_bytes = proto.SerializeToString()
    sha = hashlib.sha256(model_bytes).hexdigest()
    int8 = quantize(proto, data.test_images, data.test_labels)
    card["onnx_sha256"] = sha
    card["int8"] = {
        "model": "model.int8.onnx" if int8.offered else None,
        "sha256": hashlib.sha256(int8.model_bytes).hexdigest() if int8.offered else None,
        "agreement_with_fp32": int8.agreement,
        "agreement_bar": AGREEMENT_BAR,
        "test_accuracy": int8.accuracy,
    }
    # Wall-clock time differs between identical trainings, and optdigits may be absent where
    # MNIST is present: both stay out of the ONNX bytes, which depend on the weights alone.
    card["training_seconds"] = None if training_seconds is None else round(training_seconds, 1)
    card["optdigits"] = optdigits.figures(lambda x: onnx_export.onnx_predict(model_bytes, x)[1])

    out_dir.mkdir(parents=True, exist_ok=True)
    if history is not None:
        atomic.write_text(out_dir / "history.json", json.dumps(history.as_dict(), indent=1) + "\n")
    _save_keras(model, preset, out_dir / "model.keras", compress.is_factored(model))
    atomic.write_text(out_dir / "model.json", json.dumps(card, indent=2) + "\n")
    if int8.offered:
        atomic.write_bytes(out_dir / "model.int8.onnx", int8.model_bytes)
    else:
        # An int8 copy of an earlier model must not outlive it.
        (out_dir / "model.int8.onnx").unlink(missing_ok=True)
    # The ONNX file goes last: the job loads only it, and its card is already in place.
    atomic.write_bytes(out_dir / "model.onnx", model_bytes)
    real = card["optdigits"]
    return Published(
        out_dir / "model.onnx", sha, accuracy, check, None if real is None else real["accuracy"]
    )


def _right_on_optdigits(model: keras.Model) -> np.ndarray | None:
    return optdigits.right(lambda images: _keras_digits(model, images))


def _keras_digits(model: keras.Model, images: np.ndarray) -> np.ndarray:
    return np.asarray(model.predict(preprocess(images), batch_size=1024, verbose=0).argmax(1))


def _save_keras(model: keras.Model, preset: Preset, target: Path, factored: bool) -> None:
    # A fresh, never-compiled twin carries the weights without Adam's state (3x smaller);
    # clone_model would copy the compiled optimizer along.
    bare = build_model(preset, factored)
    bare.set_weights(model.get_weights())
    tmp = target.with_name(f".{target.name}.tmp.keras")
    try:
        bare.save(tmp)
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
