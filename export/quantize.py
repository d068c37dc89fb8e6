"""The int8 copy of an exported model, offered only if it keeps the float model's digits.

onnxruntime's dynamic quantization stores the MatMul weights as int8 (per output channel, 7-bit
so CPUs without VNNI do not saturate) and quantizes activations per batch at run time: about 1.7x
faster on large arrays here. It is written only when its digits agree with the float model's on
at least 99.9% of the test images; benchmarks/quantize.py measures the alternatives.
"""

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import QuantType, quantize_dynamic

from classify_batch.export import onnx_export

AGREEMENT_BAR = 0.999


@dataclass(frozen=True)
class Quantized:
    model_bytes: bytes
    agreement: float  # share of test images given the float model's digit
    accuracy: float

    @property
    def offered(self) -> bool:
        return self.agreement >= AGREEMENT_BAR


def _fed_by_matmul(proto: onnx.ModelProto) -> list[str]:
    """MatMuls whose input is another MatMul's product (plus a constant, for the first layer,
    which takes raw pixels: onnx_export._raw_pixel_weights): a factored layer's second half.

    Its input's channels follow the first half's singular values (on the test images the
    largest reaches 96 times the smallest's peak), and dynamic quantization gives the whole
    tensor one scale: in int8, the rank-128 model's digits agreed with fp32 on 99.88% of the
    test images (below the bar); with this MatMul kept in float, on 99.97%, and onnxruntime
    still runs it 1.5x faster than fp32 (5.5 against 8.3 us a row, one thread).
    """
    made_by = {out: node for node in proto.graph.node for out in node.output}

    def product(name: str) -> bool:
        node = made_by.get(name)
        if node is not None and node.op_type == "Add":
            return any(product(i) for i in node.input)
        return node is not None and node.op_type == "MatMul"

    return [
        node.name
        for node in proto.graph.node
        if node.op_type == "MatMul" and product(node.input[0])
    ]


def _kept_float_text(proto: onnx.ModelProto, kept_float: list[str]) -> str:
    # Every such MatMul is named with its weights' shape: the copy says exactly what stayed
    # float (it said "a factored layer's second half" while both of the model's two were).
    if not kept_float:
        return ""
    dims = {t.name: "x".join(map(str, t.dims)) for t in proto.graph.initializer}
    shapes = [dims[n.input[1]] for n in proto.graph.node if n.name in kept_float]
    return f"; each factored layer's second half kept in float: {', '.join(shapes)}"


def quantize(proto: onnx.ModelProto, images: np.ndarray, labels: np.ndarray) -> Quantized:
    float_bytes = proto.SerializeToString()
    kept_float = _fed_by_matmul(proto)
    with tempfile.TemporaryDirectory(prefix="classify-batch-int8-") as tmp:
        source, target = Path(tmp) / "model.onnx", Path(tmp) / "model.int8.onnx"
        source.write_bytes(float_bytes)
        quantize_dynamic(
            source,
            target,
            weight_type=QuantType.QInt8,
            per_channel=True,
            reduce_range=True,
            nodes_to_exclude=kept_float,
        )
        quantized = onnx.load(target)
    _, reference = onnx_export.onnx_predict(float_bytes, images)
    _, digits = onnx_export.onnx_predict(quantized.SerializeToString(), images)
    agreement = float((digits == reference).mean())
    accuracy = float((digits == labels).mean())
    # quantize_dynamic copies the float model's metadata: correct what differs.
    props = {p.key: p.value for p in quantized.metadata_props}
    props.update(
        precision="int8",
        test_accuracy=f"{accuracy:.4f}",
        agreement_with_fp32=f"{agreement:.4f}",
        quantization="onnxruntime quantize_dynamic: QInt8 weights, per channel, 7-bit range"
        + _kept_float_text(proto, kept_float),
    )
    del quantized.metadata_props[:]
    for key in sorted(props):
        quantized.metadata_props.add(key=key, value=props[key])
    return Quantized(quantized.SerializeToString(), agreement, accuracy)
