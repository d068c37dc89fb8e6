"""Train the fully connected ANN, readable top to bottom: data in, Keras model and history out."""

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import keras
import numpy as np
import tensorflow as tf

from classify_batch.export.augment import augmented_batches
from classify_batch.export.presets import Preset


def preprocess(images: np.ndarray) -> np.ndarray:
    """The tutorial's input: pixels scaled to [-0.5, 0.5], flattened to 784."""
    x = images.astype(np.float32) / np.float32(255.0) - np.float32(0.5)
    return x.reshape(len(images), 784)


BASIS_SUFFIX = "_basis"


def build_model(preset: Preset, factored: bool = False) -> keras.Model:
    """The ANN as trained; `factored`: as published when the preset has ranks, each hidden layer
    with a rank taking its weights as a product of two (export/compress.py), the first of them a
    Dense layer without bias or activation."""
    # Layer names are fixed so two runs in one process give the same graph names, hence the same
    # ONNX bytes (Keras would otherwise number them dense_1, dense_2... per process).
    layers: list[keras.layers.Layer] = [keras.Input((784,), name="pixels")]
    for i, width in enumerate(preset.hidden, start=1):
        if factored and preset.rank(i - 1):
            layers.append(
                keras.layers.Dense(
                    preset.rank(i - 1), use_bias=False, name=f"hidden_{i}{BASIS_SUFFIX}"
                )
            )
        layers.append(keras.layers.Dense(width, activation="relu", name=f"hidden_{i}"))
        if preset.dropout:
            layers.append(keras.layers.Dropout(preset.dropout, name=f"dropout_{i}"))
    layers.append(keras.layers.Dense(10, activation="softmax", name="output"))
    return keras.Sequential(layers, name="digits_ann")


def reproducible(seed: int) -> None:
    """Make what follows give the same weights in every run: Keras draws each new layer's
    initial weights and Dropout seeds from the global seed, and TensorFlow's ops and tf.data
    otherwise pick the fastest kernel or order, not a fixed one."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


@dataclass
class History:
    epochs: list[dict[str, float]] = field(default_factory=list)

    def as_dict(self) -> dict[str, list[float]]:
        keys = self.epochs[0].keys() if self.epochs else []
        return {k: [e[k] for e in self.epochs] for k in keys}


def train(
    preset: Preset,
    train_images: np.ndarray,
    train_labels: np.ndarray,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    log: Callable[[str], None] = print,
) -> tuple[keras.Model, History]:
    reproducible(preset.seed)
    model = build_model(preset)
    data = (train_images, train_labels, test_images, test_labels)
    history = fit(model, preset, range(preset.epochs), preset.learning_rate, data, log)
    return model, history


def fit(
    model: keras.Model,
    preset: Preset,
    epochs: range,
    learning_rate: float,
    data: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    log: Callable[[str], None],
) -> History:
    """Train `model` for `epochs` (their numbers pick each epoch's augmentation, so the epochs
    that fine-tune a factored model after training see new draws), Adam from `learning_rate`."""
    train_images, train_labels, test_images, test_labels = data
    steps = len(epochs) * -(-len(train_images) // preset.batch_size)
    lr = (
        keras.optimizers.schedules.CosineDecay(learning_rate, steps)
        if preset.cosine_decay
        else learning_rate
    )
    model.compile(
        optimizer=keras.optimizers.Adam(lr),
        loss="categorical_crossentropy",
        metrics=["accuracy"],
    )
    targets = keras.utils.to_categorical(train_labels, 10)
    x_test = preprocess(test_images)
    if preset.augments:
        pixels = tf.constant(train_images, tf.float32)
        labels = tf.constant(targets, tf.float32)

    history = History()
    for i, epoch in enumerate(epochs):
        started = time.perf_counter()
        if preset.augments:
            batches = augmented_batches(pixels, labels, preset, epoch)
            # The batches come shuffled; shuffle=False only silences Keras' warning about it.
            result = model.fit(batches, epochs=i + 1, initial_epoch=i, shuffle=False, verbose=0)
        else:
            result = model.fit(
                preprocess(train_images),
                targets,
                batch_size=preset.batch_size,
                epochs=i + 1,
                initial_epoch=i,
                shuffle=True,
                verbose=0,
            )
        # Test accuracy per epoch is recorded for the curves only; nothing is chosen by it.
        predicted = model.predict(x_test, batch_size=1024, verbose=0).argmax(axis=1)
        row = {
            "epoch": float(epoch + 1),
            "loss": float(result.history["loss"][0]),
            "accuracy": float(result.history["accuracy"][0]),
            "test_accuracy": float((predicted == test_labels).mean()),
            "seconds": time.perf_counter() - started,
        }
        history.epochs.append(row)
        log(
            f"epoch {epoch + 1:>3}/{epochs.stop}  loss {row['loss']:.4f}  "
            f"accuracy {row['accuracy']:.4f}  test accuracy {row['test_accuracy']:.4f}  "
            f"{row['seconds']:.1f}s"
        )
    return history
