"""Keras model -> self-describing ONNX model, trusted only after it matches Keras on real data."""

from dataclasses import dataclass, field

import keras
import numpy as np
import onnx
import onnxruntime as ort
import tensorflow as tf
import tf2onnx

from classify_batch.contract import (
    DIGIT,
    IMAGE_SIDE,
    INPUT_CONTRACT,
    INPUT_NAME,
    OUTPUT_NAMES,
    PROBABILITIES,
)
from classify_batch.export.train import preprocess

OPSET = 17
PROBABILITY_TOLERANCE = 1e-4


class ExportGateError(Exception):
    """The ONNX model disagrees with the Keras model: nothing may be written."""


def to_onnx(model: keras.Model) -> onnx.ModelProto:
    # from_keras breaks on Keras 3 (KeyError 'keras_tensor_N'); a tf.function over the model works
    # and lets the tutorial's preprocessing and the argmax travel inside the graph.
    signature = [tf.TensorSpec([None, IMAGE_SIDE, IMAGE_SIDE], tf.uint8, name=INPUT_NAME)]

    first, rest = model.layers[0], model.layers[1:]
    kernel, bias = _raw_pixel_weights(first)

    @tf.function(input_signature=signature)
    def serve(images: tf.Tensor) -> dict[str, tf.Tensor]:
        x = tf.cast(tf.reshape(images, [-1, 784]), tf.float32)
        # Made here, not outside: a tensor captured from outside would become a graph input.
        x = first.activation(tf.matmul(x, tf.constant(kernel)) + tf.constant(bias))
        for layer in rest:
            x = layer(x, training=False)
        probabilities = x
        return {
            PROBABILITIES: tf.identity(probabilities, name=PROBABILITIES),
            DIGIT: tf.argmax(probabilities, axis=1, output_type=tf.int64, name=DIGIT),
        }

    proto, _ = tf2onnx.convert.from_function(serve, input_signature=signature, opset=OPSET)
    _canonicalize(proto)
    onnx.checker.check_model(proto, full_check=True)
    return proto


def _raw_pixel_weights(first: keras.layers.Dense) -> tuple[np.ndarray, np.ndarray]:
    """The first layer's kernel and bias for raw pixels (0..255) in place of the tutorial's
    x / 255 - 0.5: K / 255, and b - 0.5 * (the column sums of K).

    The same layer without the two elementwise passes over every pixel: in onnxruntime the Mul
    and Sub took 6% of the model's time on large arrays (profiled, one thread, 100k rows).
    """
    weights = first.get_weights()
    kernel = weights[0].astype(np.float64)
    bias = weights[1].astype(np.float64) if first.use_bias else np.zeros(kernel.shape[1])
    return (kernel / 255.0).astype(np.float32), (bias - 0.5 * kernel.sum(axis=0)).astype(np.float32)


def _canonicalize(proto: onnx.ModelProto) -> None:
    """Rename everything internal by position, so the bytes depend on the weights alone.

    tf2onnx names nodes after TensorFlow's per-process counters (ann_1, ann_2, ...), which would
    make two identical trainings in one process export different files.
    """
    graph = proto.graph
    keep = {i.name for i in graph.input} | {o.name for o in graph.output}
    names: dict[str, str] = {}
    for k, init in enumerate(graph.initializer):
        names[init.name] = f"const_{k}"
    for i, node in enumerate(graph.node):
        node.name = f"{node.op_type.lower()}_{i}"
        for j, out in enumerate(node.output):
            if out not in keep:
                names[out] = f"{node.name}_out{j}" if len(node.output) > 1 else node.name
    for init in graph.initializer:
        init.name = names[init.name]
    for node in graph.node:
        node.input[:] = [names.get(n, n) for n in node.input]
        node.output[:] = [names.get(n, n) for n in node.output]
    del graph.value_info[:]
    outputs = {o.name: o for o in graph.output}
    ordered = [outputs[name] for name in OUTPUT_NAMES]
    del graph.output[:]
    graph.output.extend(ordered)
    graph.name = "digits_ann"
    # tf2onnx writes the traced function's name here, numbered per process.
    graph.doc_string = "tf2onnx export of the Keras model, preprocessing and argmax included"
    # The symbolic batch dimension gets one readable name for every runtime's type checker.
    for value in (*graph.input, *graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = "batch"


def describe(proto: onnx.ModelProto, metadata: dict[str, str]) -> None:
    """Attach what a runtime in another language needs, as string metadata_props."""
    proto.doc_string = "Handwritten digit classifier (MNIST), a fully connected ANN. " + (
        "Input: " + INPUT_CONTRACT
    )
    proto.model_version = 1
    del proto.metadata_props[:]
    for key in sorted(metadata):
        proto.metadata_props.add(key=key, value=metadata[key])


@dataclass(frozen=True)
class Parity:
    images: int
    digit_mismatches: int
    max_probability_diff: float
    # The ONNX model's digits in the run that was compared: the card's accuracy comes from the
    # same run that passed the gate, not from a second one.
    digits: np.ndarray = field(compare=False, repr=False)

    @property
    def ok(self) -> bool:
        return self.digit_mismatches == 0 and self.max_probability_diff <= PROBABILITY_TOLERANCE

    def summary(self) -> str:
        return (
            f"{self.images:,} test images: {self.digit_mismatches} digit mismatches, "
            f"max probability difference {self.max_probability_diff:.2e} "
            f"(allowed: 0 and {PROBABILITY_TOLERANCE:.0e})"
        )


def onnx_predict(model_bytes: bytes, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    probabilities, digits = session.run(list(OUTPUT_NAMES), {INPUT_NAME: images})
    return probabilities, digits


def parity(model: keras.Model, model_bytes: bytes, images: np.ndarray) -> Parity:
    reference = model.predict(preprocess(images), batch_size=1024, verbose=0)
    probabilities, digits = onnx_predict(model_bytes, images)
    return Parity(
        images=len(images),
        digit_mismatches=int((digits != reference.argmax(axis=1)).sum()),
        max_probability_diff=float(np.abs(probabilities - reference).max()),
        digits=digits,
    )


def gate(model: keras.Model, model_bytes: bytes, images: np.ndarray) -> Parity:
    result = parity(model, model_bytes, images)
    if not result.ok:
        raise ExportGateError(
            f"ONNX model disagrees with Keras, nothing written: {result.summary()}"
        )
    return result
