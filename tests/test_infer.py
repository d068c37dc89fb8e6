"""Inference on several threads: the answers and their order are those of one thread, and a model
that fails on a batch in a thread stops the run as it would on the main one."""

from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import run_program, tiled, varied
from onnx import TensorProto, helper

from classify_batch.contract import ExitCode
from classify_batch.jobs import model as model_loader
from classify_batch.jobs.decode import Decoded
from classify_batch.jobs.infer import MAX_BATCH, classified


def pieces(images: np.ndarray, size: int) -> list[Decoded]:
    return [
        Decoded(sources=["x.npy"] * len(chunk), indices=[""] * len(chunk), images=chunk)
        for chunk in (images[lo : lo + size] for lo in range(0, len(images), size))
    ]


def test_batches_on_two_threads_give_one_threads_answers_in_order(committed_model, samples):
    images = varied(samples[0], 3 * 2048 + 500)
    classifier = model_loader.load(committed_model, threads=1)
    one = list(classified(pieces(images, 2048), classifier, threads=1))
    two = list(classified(pieces(images, 2048), classifier, threads=2))
    assert [len(p.images) for p, _, _ in two] == [len(p.images) for p, _, _ in one]
    for (piece, p_one, d_one), (_, p_two, d_two) in zip(one, two, strict=True):
        assert len(d_two) == len(piece.images)
        np.testing.assert_array_equal(p_one, p_two)
        np.testing.assert_array_equal(d_one, d_two)


def nan_on_a_marked_image(committed: Path) -> onnx.ModelProto:
    """The committed model, but its probabilities are NaN for an image whose top-left pixel is
    255: a model that fails on one batch deep into a run."""
    model = onnx.load(committed)
    graph = model.graph
    for node in graph.node:
        node.output[:] = ["p_inner" if o == "probabilities" else o for o in node.output]
        node.input[:] = ["p_inner" if i == "probabilities" else i for i in node.input]
    graph.initializer.extend(
        [
            helper.make_tensor("starts", TensorProto.INT64, [3], [0, 0, 0]),
            helper.make_tensor("ends", TensorProto.INT64, [3], [2**62, 1, 1]),
            helper.make_tensor("axes", TensorProto.INT64, [3], [0, 1, 2]),
            helper.make_tensor("shape", TensorProto.INT64, [2], [-1, 1]),
            helper.make_tensor("white", TensorProto.UINT8, [], [255]),
            helper.make_tensor("nan", TensorProto.FLOAT, [], [float("nan")]),
            helper.make_tensor("one", TensorProto.FLOAT, [], [1.0]),
        ]
    )
    graph.node.extend(
        [
            helper.make_node("Slice", ["images", "starts", "ends", "axes"], ["corner"]),
            helper.make_node("Reshape", ["corner", "shape"], ["corner2"]),
            helper.make_node("Equal", ["corner2", "white"], ["marked"]),
            helper.make_node("Where", ["marked", "nan", "one"], ["factor"]),
            helper.make_node("Mul", ["p_inner", "factor"], ["probabilities"]),
        ]
    )
    onnx.checker.check_model(model)
    return model


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_model_failing_on_a_batch_in_a_thread_stops_the_run_with_nothing_written(
    tmp_path, committed_model, samples, workers
):
    onnx.save(nan_on_a_marked_image(committed_model), tmp_path / "flaky.onnx")
    images = tiled(samples[0], 3 * MAX_BATCH + 100)
    images[2 * MAX_BATCH + 7, 0, 0] = 255  # the third batch, the second chunk's
    np.save(tmp_path / "rows.npy", images)
    out = tmp_path / "out.csv"
    result = run_program(
        "classify-batch",
        str(tmp_path / "rows.npy"),
        str(out),
        "--model",
        str(tmp_path / "flaky.onnx"),
        "--workers",
        workers,
    )
    assert result.returncode == ExitCode.NOTHING_DONE, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "flaky.onnx" in lines[0] and "not probabilities" in lines[0]
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flaky.onnx", "out.lock", "rows.npy"]
