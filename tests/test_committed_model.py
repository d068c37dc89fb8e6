"""The committed model is what its card says, and its ONNX file is its Keras model (design card)."""

import hashlib
import json
import math

import numpy as np
import onnx
import pytest

from classify_batch.jobs import model as model_loader


@pytest.fixture(scope="module")
def card(committed_model):
    return json.loads(committed_model.with_name("model.json").read_text())


def test_card_names_the_committed_onnx_file(committed_model, card):
    assert card["onnx_sha256"] == hashlib.sha256(committed_model.read_bytes()).hexdigest()


def test_onnx_and_keras_predictions_match_on_all_10000_test_images(committed_model, test_set):
    keras = pytest.importorskip("keras", reason="needs the train extra: pip install '.[train]'")
    from classify_batch.export.onnx_export import PROBABILITY_TOLERANCE
    from classify_batch.export.train import preprocess

    images = test_set[0]
    assert len(images) == 10_000
    reference = keras.models.load_model(committed_model.with_name("model.keras"), compile=False)
    expected = reference.predict(preprocess(images), batch_size=1024, verbose=0)
    probabilities, digits = model_loader.load(committed_model)(images)
    assert np.array_equal(digits, expected.argmax(axis=1))
    assert np.abs(probabilities - expected).max() <= PROBABILITY_TOLERANCE


def test_committed_model_reaches_the_cards_accuracy(committed_model, card, test_set):
    images, labels = test_set
    _, digits = model_loader.load(committed_model)(images)
    accuracy = float((digits == labels).mean())
    assert accuracy == pytest.approx(card["test_accuracy"], abs=1e-9)
    assert accuracy >= 0.990  # the best preset's promise, on 24,345 of 60,000 training images


def test_onnx_weights_are_the_cards_architecture(committed_model, card):
    """784-384-384-10, both hidden layers published as low-rank products (export/compress.py)."""
    graph = onnx.load(committed_model).graph
    matrices = [tuple(t.dims) for t in graph.initializer if len(t.dims) == 2]
    first, second = card["low_rank"]["ranks"]
    assert sorted(matrices) == sorted(
        [(784, first), (first, 384), (384, second), (second, 384), (384, 10)]
    )
    weights = sum(int(np.prod(t.dims)) for t in graph.initializer if len(t.dims) >= 1)
    # Less the Reshape's shape (two numbers) and the bias that the first layer, which has none
    # in Keras, takes raw pixels with (onnx_export._raw_pixel_weights).
    assert weights - 2 - first == card["parameters"]


def test_card_records_the_tuned_factoring_gate_it_passed(card):
    """Tuned, the factored model is a new model: it passed export/compress.py's gate against
    the whole one on both sets, and its card's figures are the published model's."""
    tuned, whole = card["low_rank"]["tuned"], card["low_rank"]["whole_model"]
    assert tuned["test"]["accuracy"] == card["test_accuracy"]
    assert tuned["optdigits"]["accuracy"] == card["optdigits"]["accuracy"]
    for name in ("test", "optdigits"):
        got = tuned[name]
        assert got["accuracy"] - whole[f"{name}_accuracy"] == pytest.approx(
            (got["gained"] - got["lost"]) / (10_000 if name == "test" else 1_934)
        )
        assert got["lost"] - got["gained"] <= 2 * math.sqrt(got["lost"] + got["gained"])


def test_metadata_carries_the_input_contract(committed_model):
    meta = {p.key: p.value for p in onnx.load(committed_model).metadata_props}
    assert meta["input_name"] == "images" and meta["input_dtype"] == "uint8"
    assert json.loads(meta["input_shape"]) == ["batch", 28, 28]
    assert json.loads(meta["labels"]) == [str(d) for d in range(10)]
    assert meta["preset"] == "best"
    assert set(json.loads(meta["versions"])) >= {"tensorflow", "tf2onnx", "onnx"}
    assert len(json.loads(meta["data"])["sha256"]) == 4


def test_metadata_is_the_cards_own_fields(committed_model, card):
    meta = {p.key: p.value for p in onnx.load(committed_model).metadata_props}
    assert {"recipe", "test_accuracy", "parameters"} <= set(meta)
    for key, value in meta.items():
        expected = card["input"][key[len("input_") :]] if key.startswith("input_") else card[key]
        assert value == (
            expected if isinstance(expected, str) else json.dumps(expected, sort_keys=True)
        )


def test_committed_model_reads_other_writers_as_its_card_says(committed_model, card):
    """optdigits (OPTDIGITS_FILE): 1,934 digits by 30 writers, through the job's normalization."""
    optdigits = pytest.importorskip("classify_batch.export.optdigits")
    classifier = model_loader.load(committed_model)
    measured = optdigits.figures(lambda images: classifier(images)[1])
    if measured is None:
        pytest.skip(f"set {optdigits.OPTDIGITS_ENV} to UCI optdigits' optdigits-orig.tra")
    assert measured["accuracy"] == pytest.approx(card["optdigits"]["accuracy"], abs=1e-9)
    assert measured["refused_as_blank"] == 0
    assert measured["accuracy"] >= 0.96  # the best preset's goal


def test_int8_copy_keeps_the_float_models_digits(committed_model, card, test_set):
    int8 = committed_model.with_name("model.int8.onnx")
    assert card["int8"]["sha256"] == hashlib.sha256(int8.read_bytes()).hexdigest()
    images = test_set[0]
    _, fp32_digits = model_loader.load(committed_model)(images)
    _, int8_digits = model_loader.load(int8)(images)
    assert (int8_digits == fp32_digits).mean() >= card["int8"]["agreement_bar"] == 0.999


def test_int8_copy_names_the_layers_it_keeps_in_float(committed_model, card):
    """Its metadata says which weights stayed float: the float MatMuls in its graph, by shape,
    one for each factored layer."""
    proto = onnx.load(committed_model.with_name("model.int8.onnx"))
    dims = {t.name: "x".join(map(str, t.dims)) for t in proto.graph.initializer}
    in_float = [dims[n.input[1]] for n in proto.graph.node if n.op_type == "MatMul"]
    assert len(in_float) == sum(1 for rank in card["low_rank"]["ranks"] if rank)
    text = {p.key: p.value for p in proto.metadata_props}["quantization"]
    assert text.endswith(f"each factored layer's second half kept in float: {', '.join(in_float)}")
