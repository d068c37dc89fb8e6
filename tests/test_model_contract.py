"""Issue 15, the model path: anything that is not a model keeping the contract is refused with
one line before any work, never a hang, a traceback, a digit 99 or a NaN confidence."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
CLASSIFY = str(Path(sys.executable).parent / "classify-batch")
onnx = pytest.importorskip("onnx", reason="building test models needs onnx (the train extra)")


def classify(model: Path | str, tmp_path: Path) -> subprocess.CompletedProcess:
    # Real digits: blank images would fail before they reached the model.
    digits = [np.asarray(Image.open(p)) for p in sorted((ROOT / "samples").glob("*.png"))[:3]]
    np.save(tmp_path / "x.npy", np.stack(digits))
    return subprocess.run(
        [CLASSIFY, tmp_path / "x.npy", tmp_path / "out.csv", "--model", model],
        capture_output=True,
        text=True,
        timeout=120,  # a hang would otherwise block the suite: this bounds it, it times nothing
    )


def assert_refused(result: subprocess.CompletedProcess, words: str, tmp_path: Path) -> None:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], result.stderr
    assert not (tmp_path / "out.csv").exists()


def committed() -> "onnx.ModelProto":
    return onnx.load(ROOT / "artifacts" / "model.onnx")


def test_a_fifo_as_model_is_refused_not_waited_on(tmp_path: Path):
    os.mkfifo(tmp_path / "model.onnx")
    assert_refused(classify(tmp_path / "model.onnx", tmp_path), "not a regular file", tmp_path)


def test_dev_zero_as_model_is_refused(tmp_path: Path):
    assert_refused(classify("/dev/zero", tmp_path), "not a regular file", tmp_path)


def test_a_model_with_a_fixed_batch_of_one_is_refused(tmp_path: Path):
    model = committed()
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    onnx.save(model, tmp_path / "batch1.onnx")
    assert_refused(classify(tmp_path / "batch1.onnx", tmp_path), "fixed batch", tmp_path)


def _with_outputs(probabilities_op: str, digit_offset: int) -> "onnx.ModelProto":
    """The committed graph, its outputs passed through one more operation each."""
    from onnx import TensorProto, helper

    model = committed()
    graph = model.graph
    for out in graph.output:
        for node in graph.node:
            node.output[:] = [f"{o}_inner" if o == out.name else o for o in node.output]
    three = helper.make_tensor("three", TensorProto.FLOAT, [], [3.0])
    offset = helper.make_tensor("offset", TensorProto.INT64, [], [digit_offset])
    graph.initializer.extend([three, offset])
    op = [probabilities_op, "probabilities_inner"]
    graph.node.extend(
        [
            helper.make_node(op[0], [op[1], "three"], ["probabilities"]),
            helper.make_node("Add", ["digit_inner", "offset"], ["digit"]),
        ]
    )
    return model


@pytest.mark.parametrize(
    ("op", "offset", "words"),
    [
        ("Mul", 0, "not probabilities"),
        ("Div", 90, "not probabilities"),
        ("Pow", 0, "not probabilities"),
    ],
    ids=["scaled", "digit-99", "cubed"],
)
def test_a_model_that_does_not_answer_with_probabilities_is_refused(tmp_path, op, offset, words):
    onnx.save(_with_outputs(op, offset), tmp_path / "odd.onnx")
    result = classify(tmp_path / "odd.onnx", tmp_path)
    assert_refused(result, words, tmp_path)


def test_a_model_giving_digits_outside_0_to_9_is_refused(tmp_path: Path):
    model = _with_outputs("Div", 90)  # probabilities / 3 ...
    for node in model.graph.node:
        if node.op_type == "Div" and "probabilities" in node.output:
            node.op_type = "Identity"  # ... undone: only the digit is wrong
            del node.input[1:]
    onnx.save(model, tmp_path / "digit99.onnx")
    assert_refused(classify(tmp_path / "digit99.onnx", tmp_path), "outside 0..9", tmp_path)
