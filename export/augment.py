"""Training augmentation: randomly moved and elastically distorted copies of MNIST digits.

Every image gets one sampling grid, an affine map (rotation, zoom and shift about the centre) plus
an elastic displacement field (Simard et al. 2003: uniform noise in [-1, 1] per pixel and axis,
smoothed by a Gaussian of `elastic_sigma` px, scaled by `elastic_alpha` px), and is resampled once,
bilinearly, with black (0) outside the image. Pure TensorFlow ops on whole batches, with stateless
random numbers drawn from an explicit seed: a tf.data map may run them in parallel and a seed still
fixes every image. None of this is in the exported graph.
"""

import math

import numpy as np
import tensorflow as tf

from classify_batch.export.presets import Preset

SIDE = 28
CENTRE = (SIDE - 1) / 2


def _gaussian_matrix(sigma: float) -> tf.Tensor:
    """[28, 28] matrix that blurs along one axis with a Gaussian, zero beyond the image's edge.

    Multiplying every row of the noise by it, then every column, is the separable Gaussian blur:
    two plain matrix products, far faster on a CPU than one-channel convolutions.
    """
    total = sum(math.exp(-0.5 * (d / sigma) ** 2) for d in range(-4 * SIDE, 4 * SIDE + 1))
    offsets = tf.range(SIDE, dtype=tf.float32)
    distance = offsets[:, None] - offsets[None, :]
    return tf.exp(-0.5 * tf.square(distance / sigma)) / total


def _elastic_field(shape: tf.Tensor, preset: Preset, seed: tf.Tensor) -> tf.Tensor:
    """[batch, 28, 28, 2] displacements in pixels (dx, dy): smoothed noise times alpha."""
    noise = tf.random.stateless_uniform(
        tf.stack([shape[0] * 2 * SIDE, SIDE]), seed, minval=-1.0, maxval=1.0
    )  # rows (image, axis, y), columns x
    blur = _gaussian_matrix(preset.elastic_sigma)  # symmetric
    along_x = tf.reshape(tf.matmul(noise, blur), tf.stack([shape[0], 2, SIDE, SIDE]))
    by_x = tf.reshape(tf.transpose(along_x, [0, 1, 3, 2]), [-1, SIDE])  # rows (image, axis, x)
    smooth = tf.reshape(tf.matmul(by_x, blur), tf.stack([shape[0], 2, SIDE, SIDE]))
    return preset.elastic_alpha * tf.transpose(smooth, [0, 3, 2, 1])  # [image, y, x, axis]


def _bilinear(images: tf.Tensor, x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
    """images [batch, 28, 28] sampled at float coordinates x, y [batch, 28, 28]; 0 outside."""
    batch = tf.shape(images)[0]
    # One black pixel of border, and coordinates clamped onto it: outside reads 0.
    padded = tf.reshape(tf.pad(images, [[0, 0], [1, 1], [1, 1]]), [-1])
    x = tf.clip_by_value(x + 1.0, 0.0, SIDE + 1.0)
    y = tf.clip_by_value(y + 1.0, 0.0, SIDE + 1.0)
    x0, y0 = tf.floor(x), tf.floor(y)
    wx, wy = x - x0, y - y0
    x0 = tf.cast(x0, tf.int32)
    y0 = tf.cast(y0, tf.int32)
    x1 = tf.minimum(x0 + 1, SIDE + 1)
    y1 = tf.minimum(y0 + 1, SIDE + 1)
    first = tf.range(batch)[:, None, None] * (SIDE + 2) ** 2  # where each image starts in padded

    def at(yy: tf.Tensor, xx: tf.Tensor) -> tf.Tensor:
        return tf.gather(padded, first + yy * (SIDE + 2) + xx)

    top = at(y0, x0) * (1 - wx) + at(y0, x1) * wx
    bottom = at(y1, x0) * (1 - wx) + at(y1, x1) * wx
    return top * (1 - wy) + bottom * wy


def distort(images: tf.Tensor, preset: Preset, seed: tf.Tensor) -> tf.Tensor:
    """A randomly moved and distorted copy of a batch of float images [batch, 28, 28].

    `seed` is a shape [2] int tensor; the same seed and images give the same output.
    """
    shape = tf.shape(images)
    n = shape[:1]
    seeds = tf.random.experimental.stateless_split(seed, 5)

    def uniform(i: int, limit: float) -> tf.Tensor:
        return tf.random.stateless_uniform(n, seeds[i], -limit, limit)[:, None, None]

    angle = uniform(0, math.radians(preset.rotate_degrees))
    scale = 1.0 + uniform(1, preset.zoom)
    tx, ty = uniform(2, preset.shift_pixels), uniform(3, preset.shift_pixels)
    # Each output pixel reads the input at the inverse transform of its position, about the centre.
    grid = tf.range(SIDE, dtype=tf.float32) - CENTRE
    gy, gx = grid[None, :, None], grid[None, None, :]
    cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
    x = CENTRE + cos * gx - sin * gy - tx
    y = CENTRE + sin * gx + cos * gy - ty
    if preset.elastic_alpha:
        field = _elastic_field(shape, preset, seeds[4])
        x, y = x + field[..., 0], y + field[..., 1]
    return _bilinear(images, x, y)


def augmented_batches(
    images: tf.Tensor, targets: tf.Tensor, preset: Preset, epoch: int
) -> tf.data.Dataset:
    """One epoch of shuffled, augmented, preprocessed (x/255 - 0.5, flat 784) training batches.

    The order and every distortion depend on (preset.seed, epoch) alone; batches are distorted
    in parallel and delivered in order.
    """
    order = np.random.default_rng([preset.seed, epoch]).permutation(int(images.shape[0]))
    dataset = tf.data.Dataset.from_tensor_slices(order).batch(preset.batch_size).enumerate()

    def make(step: tf.Tensor, index: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        seed = tf.stack([tf.constant(preset.seed, tf.int64), epoch * 1_000_000 + step])
        moved = distort(tf.gather(images, index), preset, seed)
        x = tf.reshape(tf.clip_by_value(moved, 0.0, 255.0) / 255.0 - 0.5, [-1, SIDE * SIDE])
        return x, tf.gather(targets, index)

    return dataset.map(make, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(
        tf.data.AUTOTUNE
    )
