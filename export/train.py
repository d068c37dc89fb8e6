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


BASIS_LAYER = "hidden_1_basis"


def build_model(preset: Preset, factored: bool = False) -> keras.Model:
    """The ANN as trained; `factored`: as published when the preset has a rank, its first hidden
    layer's weights a product of two (export/compress.py), the first of them without bias."""
    # Layer names are fixed so two runs in one process give the same graph names, hence the same
    # ONNX bytes (Keras would otherwise number them dense_1, dense_2... per process).
    layers: list[keras.layers.Layer] = [keras.Input((784,), name="pixels")]
    if factored:
        layers.append(keras.layers.Dense(preset.rank, use_bias=False, name=BASIS_LAYER))
    for i, width in enumerate(preset.hidden, start=1):
        layers.append(keras.layers.Dense(width, activation="relu", name=f"hidden_{i}"))
        if preset.dropout:
            layers.append(keras.layers.Dropout(preset.dropout, name=f"dropout_{i}"))
    layers.append(keras.layers.Dense(10, activation="softmax", name="output"))
    return keras.Sequential(layers, name="digits_ann")


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
    keras.utils.set_random_seed(preset.seed)
    tf.config.experimental.enable_op_determinism()

    model = build_model(preset)
    steps = preset.epochs * -(-len(train_images) // preset.batch_size)
    lr = (
        keras.optimizers.schedules.CosineDecay(preset.learning_rate, steps)
        if preset.cosine_decay
        else preset.learning_rate
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
    for epoch in range(preset.epochs):
        started = time.perf_counter()
        if preset.augments:
            batches = augmented_batches(pixels, labels, preset, epoch)
            # The batches come shuffled; shuffle=False only silences Keras' warning about it.
            fit = model.fit(
                batches, epochs=epoch + 1, initial_epoch=epoch, shuffle=False, verbose=0
            )
        else:
            fit = model.fit(
                preprocess(train_images),
                targets,
                batch_size=preset.batch_size,
                epochs=epoch + 1,
                initial_epoch=epoch,
                shuffle=True,
                verbose=0,
            )
        # Test accuracy per epoch is recorded for the curves only; nothing is chosen by it.
        predicted = model.predict(x_test, batch_size=1024, verbose=0).argmax(axis=1)
        row = {
            "epoch": float(epoch + 1),
            "loss": float(fit.history["loss"][0]),
            "accuracy": float(fit.history["accuracy"][0]),
            "test_accuracy": float((predicted == test_labels).mean()),
            "seconds": time.perf_counter() - started,
        }
        history.epochs.append(row)
        log(
            f"epoch {epoch + 1:>3}/{preset.epochs}  loss {row['loss']:.4f}  "
            f"accuracy {row['accuracy']:.4f}  test accuracy {row['test_accuracy']:.4f}  "
            f"{row['seconds']:.1f}s"
        )
    return model, history
