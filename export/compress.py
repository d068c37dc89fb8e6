"""The first hidden layer as a low-rank product, fitted to the inputs the model was trained on.

The first layer holds two thirds of the committed model's multiply-adds (784x384 of 452k per
image), and a batch job on two cores is bound by them: 1M array rows cost 12 s of CPU. Its
weights W are replaced by A @ B of rank r (784xr, rxW's width), chosen to keep what the layer
computes on real inputs, not the weights themselves: with X the training inputs and C = X'X, the
best rank-r product for ||XW - XAB|| is C^-1/2 times the truncated SVD of C^1/2 W (Eckart-Young
on the whitened problem). Plain SVD of W, which ignores where the inputs lie, kept fewer digits
at the same rank (measured on the committed model, rank 128: 99.90% vs 99.98% of the test
digits, 99.69% vs 99.90% of optdigits).

The inputs are the preset's own augmentation (two epochs), not the bare training images: fitted
to those, the product kept 99.53% of the digits of test images shifted by up to 5 px, against
99.90% when fitted to the augmentation, so it would treat an off-centre array row differently.

The product is used only when its digits agree with the whole model's on at least 99.9% of the
test images, the same bar as the int8 copy.
"""

from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from classify_batch.export.augment import augmented_batches
from classify_batch.export.mnist_data import MnistData
from classify_batch.export.onnx_export import ExportGateError
from classify_batch.export.presets import Preset
from classify_batch.export.quantize import AGREEMENT_BAR
from classify_batch.export.train import BASIS_LAYER, build_model, preprocess

FIT_EPOCHS = 2


@dataclass(frozen=True)
class Factored:
    model: keras.Model
    card: dict[str, Any]  # the model card's "low_rank" section


def is_factored(model: keras.Model) -> bool:
    return any(layer.name == BASIS_LAYER for layer in model.layers)


def factor(
    model: keras.Model,
    preset: Preset,
    data: MnistData,
    whole_figures: dict[str, Any],
) -> Factored:
    """`model` (whole) with its first hidden layer's weights as a rank-`preset.rank` product.

    Raises ExportGateError when the product changes more than 0.1% of the test digits.
    `whole_figures` are the whole model's own accuracy figures, for the card.
    """
    width = preset.hidden[0]
    if not 0 < preset.rank < width * 784 // (width + 784):
        raise ExportGateError(
            f"rank {preset.rank} would not make the 784x{width} first layer cheaper"
        )
    weights = model.get_weights()
    whole = weights[0].astype(np.float64)
    basis, mix = _fit(whole, _inputs(preset, data.train_images), preset.rank)
    factored = build_model(preset, factored=True)
    factored.set_weights([basis.astype(np.float32), mix.astype(np.float32), *weights[1:]])

    x_test = preprocess(data.test_images)
    before = model.predict(x_test, batch_size=1024, verbose=0).argmax(axis=1)
    after = factored.predict(x_test, batch_size=1024, verbose=0).argmax(axis=1)
    agreement = float((before == after).mean())
    if agreement < AGREEMENT_BAR:
        raise ExportGateError(
            f"the rank-{preset.rank} first layer keeps only {agreement:.2%} of the whole model's "
            f"digits on the test set (at least {AGREEMENT_BAR:.1%} needed); nothing written"
        )
    card = {
        "rank": preset.rank,
        "layer": f"784x{width} as 784x{preset.rank} @ {preset.rank}x{width}",
        "fitted_to": f"{FIT_EPOCHS} epochs of the preset's augmentation of the training images"
        if preset.augments
        else "the training images",
        "test_agreement": agreement,
        "whole_model": {
            "parameters": int(model.count_params()),
            **whole_figures,
        },
    }
    return Factored(factored, card)


def _inputs(preset: Preset, train_images: np.ndarray) -> np.ndarray:
    if not preset.augments:
        return preprocess(train_images)
    images = tf.constant(train_images, tf.float32)
    targets = tf.zeros((len(train_images), 10), tf.float32)  # unused by the fit
    return np.concatenate(
        [
            x.numpy()
            for epoch in range(FIT_EPOCHS)
            for x, _ in augmented_batches(images, targets, preset, epoch)
        ]
    )


def _fit(whole: np.ndarray, inputs: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """(A, B) with A @ B of rank `rank` closest to `whole` in what it computes on `inputs`."""
    moments = np.zeros((784, 784))
    for start in range(0, len(inputs), 8192):  # float64 sums without a float64 copy of all
        chunk = inputs[start : start + 8192].astype(np.float64)
        moments += chunk.T @ chunk
    moments /= len(inputs)
    # A pixel that is always background still has a second moment (0.25): C is positive
    # definite on these inputs; the floor only guards a degenerate training set.
    values, vectors = np.linalg.eigh(moments)
    values = np.maximum(values, values.max() * 1e-9)
    root = (vectors * np.sqrt(values)) @ vectors.T
    inverse_root = (vectors / np.sqrt(values)) @ vectors.T
    u, s, vt = np.linalg.svd(root @ whole, full_matrices=False)
    return inverse_root @ (u[:, :rank] * s[:rank]), vt[:rank]
