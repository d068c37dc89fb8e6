"""The tutorial's recipe, reproducible training, and the export that is gated on Keras parity."""

import hashlib
import json

import numpy as np
import onnx
import pytest

pytest.importorskip("tensorflow", reason="needs the train extra: pip install '.[train]'")

from conftest import tiled, varied  # noqa: E402

from classify_batch.export import onnx_export  # noqa: E402
from classify_batch.export.augment import augmented_batches, distort  # noqa: E402
from classify_batch.export.mnist_data import MnistData  # noqa: E402
from classify_batch.export.presets import PRESETS  # noqa: E402
from classify_batch.export.publish import publish  # noqa: E402
from classify_batch.export.train import History, build_model, preprocess, train  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def small(samples) -> MnistData:
    """A stand-in for MNIST made from the 20 samples: the training and export mechanics (shapes,
    seeds, the gate, the metadata) in seconds, without MNIST_DATA_DIR. Accuracy and parity on
    the real test set are tested on the committed model (test_committed_model.py)."""
    images, labels = samples
    return MnistData(
        varied(images, 400, seed=1),
        tiled(labels, 400),
        varied(images, 200, seed=2),
        tiled(labels, 200),
        "samples/",
        {"samples": "not a download: the 20 committed sample images"},
    )


def _short(preset_name: str, **overrides):
    return PRESETS[preset_name].with_overrides(**{"epochs": 1, **overrides})


def test_tutorial_preset_is_the_tutorial_recipe():
    p = PRESETS["tutorial"]
    assert (p.hidden, p.dropout, p.epochs, p.batch_size) == ((64, 64), 0.0, 5, 32)
    assert (p.learning_rate, p.cosine_decay, p.augments) == (1e-3, False, False)


def test_tutorial_model_is_784_64_64_10_relu_softmax(small):
    model, _ = train(
        _short("tutorial"),
        small.train_images[:256],
        small.train_labels[:256],
        small.test_images[:100],
        small.test_labels[:100],
        log=lambda _: None,
    )
    dense = [layer for layer in model.layers if layer.__class__.__name__ == "Dense"]
    assert [layer.units for layer in dense] == [64, 64, 10]
    assert [layer.activation.__name__ for layer in dense] == ["relu", "relu", "softmax"]
    assert model.input_shape == (None, 784)
    assert model.optimizer.__class__.__name__ == "Adam"
    assert model.loss == "categorical_crossentropy"


def test_preprocess_scales_pixels_to_minus_half_plus_half():
    x = preprocess(np.array([[[0] * 28] * 27 + [[255] * 28]], dtype=np.uint8))
    assert x.shape == (1, 784)
    assert x.min() == -0.5 and x.max() == 0.5


def _distorted(images, seed, **overrides):
    import tensorflow as tf

    preset = PRESETS["best"].with_overrides(**overrides)
    return distort(tf.constant(images, tf.float32), preset, tf.constant(seed, tf.int64)).numpy()


def test_distortion_is_fixed_by_its_seed_and_keeps_shape_and_range(small):
    images = small.train_images[:64]
    a = _distorted(images, [0, 7], elastic_alpha=34.0, elastic_sigma=5.0)
    assert a.shape == (64, 28, 28) and a.dtype == np.float32
    assert a.min() >= 0.0 and a.max() <= 255.0
    assert np.array_equal(a, _distorted(images, [0, 7], elastic_alpha=34.0, elastic_sigma=5.0))
    assert not np.array_equal(a, _distorted(images, [0, 8], elastic_alpha=34.0, elastic_sigma=5.0))


def test_distortion_changes_images_but_keeps_the_ink(test_set):
    images = test_set[0][:64]  # real digits: the bounds below are MNIST's, thin 1s included
    still = _distorted(
        images, [0, 0], rotate_degrees=0.0, shift_pixels=0.0, zoom=0.0, elastic_alpha=0.0
    )
    assert np.allclose(still, images)  # no movement at all: the identity
    elastic = _distorted(
        images,
        [0, 0],
        rotate_degrees=0.0,
        shift_pixels=0.0,
        zoom=0.0,
        elastic_alpha=34.0,
        elastic_sigma=5.0,
    )
    moved = np.abs(elastic - images).mean(axis=(1, 2))
    assert (moved > 5).all()  # every image changed, by more than rounding
    ink = elastic.sum(axis=(1, 2)) / images.astype(np.float32).sum(axis=(1, 2))
    assert ((ink > 0.5) & (ink < 1.5)).all()  # distorted, not erased nor smeared


def test_augmented_epoch_is_every_image_once_in_a_seeded_order(small):
    import tensorflow as tf

    preset = _short("best", batch_size=500, elastic_alpha=34.0, elastic_sigma=5.0)
    images = tf.constant(small.train_images, tf.float32)
    targets = tf.constant(np.eye(10, dtype=np.float32)[small.train_labels])

    def epoch(number):
        batches = list(augmented_batches(images, targets, preset, number))
        x = np.concatenate([b[0].numpy() for b in batches])
        y = np.concatenate([b[1].numpy() for b in batches])
        return x, y

    (x0, y0), (again, _), (x1, y1) = epoch(0), epoch(0), epoch(1)
    assert x0.shape == (len(small.train_images), 784) and x0.min() >= -0.5 and x0.max() <= 0.5
    assert np.array_equal(x0, again)
    assert not np.array_equal(x0, x1)
    counts = np.bincount(small.train_labels, minlength=10)
    assert (y0.sum(axis=0) == counts).all() and (y1.sum(axis=0) == counts).all()


def test_best_preset_is_a_fully_connected_ann():
    model = build_model(PRESETS["best"])
    kinds = {layer.__class__.__name__ for layer in model.layers}
    assert kinds <= {"Dense", "Dropout"}
    assert model.count_params() <= 2 * 269_322  # at most twice the inference cost of 784-256-256


def test_same_seed_gives_same_weights_and_same_onnx_bytes(small, tmp_path):
    preset = _short("best", hidden=(64, 64), ranks=(), tune_epochs=0)
    runs = []
    for name in ("a", "b"):
        model, _ = train(
            preset,
            small.train_images,
            small.train_labels,
            small.test_images[:500],
            small.test_labels[:500],
            log=lambda _: None,
        )
        publish(model, preset, small, tmp_path / name)
        runs.append((model.get_weights(), (tmp_path / name / "model.onnx").read_bytes()))
    (wa, oa), (wb, ob) = runs
    assert all(np.array_equal(x, y) for x, y in zip(wa, wb, strict=True))
    assert hashlib.sha256(oa).hexdigest() == hashlib.sha256(ob).hexdigest()


def test_different_seed_gives_different_weights(small):
    weights = []
    for seed in (0, 1):
        model, _ = train(
            _short("tutorial", seed=seed),
            small.train_images[:512],
            small.train_labels[:512],
            small.test_images[:10],
            small.test_labels[:10],
            log=lambda _: None,
        )
        weights.append(model.get_weights()[0])
    assert not np.array_equal(*weights)


@pytest.fixture(scope="module")
def tiny_model(small):
    model, _ = train(
        _short("tutorial"),
        small.train_images,
        small.train_labels,
        small.test_images[:10],
        small.test_labels[:10],
        log=lambda _: None,
    )
    return model


def test_exported_graph_takes_raw_pixels_and_names_its_outputs(tiny_model):
    proto = onnx_export.to_onnx(tiny_model)
    onnx.checker.check_model(proto, full_check=True)
    (image,) = proto.graph.input
    assert image.name == "images"
    assert image.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    dims = image.type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [28, 28]
    outputs = {o.name: o.type.tensor_type.elem_type for o in proto.graph.output}
    assert outputs == {"probabilities": onnx.TensorProto.FLOAT, "digit": onnx.TensorProto.INT64}


def test_gate_passes_an_honest_export(tiny_model, small):
    result = onnx_export.gate(
        tiny_model, onnx_export.to_onnx(tiny_model).SerializeToString(), small.test_images
    )
    assert result.images == len(small.test_images) and result.digit_mismatches == 0


def _tampered(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Nudge the largest weight matrix: a graph that still runs, but is not the Keras model."""
    weights = max(proto.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    values = onnx.numpy_helper.to_array(weights).copy()
    values *= 1.5
    weights.CopyFrom(onnx.numpy_helper.from_array(values, weights.name))
    return proto


def test_gate_refuses_a_tampered_graph(tiny_model, small):
    tampered = _tampered(onnx_export.to_onnx(tiny_model)).SerializeToString()
    with pytest.raises(onnx_export.ExportGateError, match="digit mismatches"):
        onnx_export.gate(tiny_model, tampered, small.test_images)


def test_failed_gate_writes_nothing(tiny_model, small, tmp_path, monkeypatch):
    honest = onnx_export.to_onnx
    monkeypatch.setattr(onnx_export, "to_onnx", lambda model: _tampered(honest(model)))
    out = tmp_path / "out"
    with pytest.raises(onnx_export.ExportGateError):
        publish(tiny_model, _short("tutorial"), small, out)
    assert not out.exists() or not any(out.iterdir())


def test_metadata_tells_another_runtime_the_contract(tiny_model, small, tmp_path):
    publish(tiny_model, _short("tutorial"), small, tmp_path)
    meta = {p.key: p.value for p in onnx.load(tmp_path / "model.onnx").metadata_props}
    for key in (
        "preset",
        "recipe",
        "input_name",
        "input_dtype",
        "input_shape",
        "outputs",
        "input_contract",
        "labels",
        "test_accuracy",
        "data",
        "versions",
        "input_ink",
    ):
        assert key in meta, key
    assert meta["input_ink"] == "white-on-black"
    assert json.loads(meta["recipe"])["seed"] == 0
    assert json.loads(meta["data"])["sha256"] == small.sha256
    assert "white ink" in meta["input_contract"] and "28" in meta["input_contract"]


@pytest.fixture(scope="module")
def rank_16_model(small):
    """The tutorial's model (5 epochs, on the stand-in) with both hidden layers' weights cut to
    rank 16: layers that rank-16 products can hold exactly, whatever inputs they are fitted to."""
    model, _ = train(
        _short("tutorial", epochs=5),
        small.train_images,
        small.train_labels,
        small.test_images[:10],
        small.test_labels[:10],
        log=lambda _: None,
    )
    weights = model.get_weights()
    for kernel in (0, 2):
        u, s, vt = np.linalg.svd(weights[kernel].astype(np.float64), full_matrices=False)
        weights[kernel] = ((u[:, :16] * s[:16]) @ vt[:16]).astype(np.float32)
    model.set_weights(weights)
    return model


def test_published_first_layer_is_the_low_rank_product_the_card_names(
    rank_16_model, small, tmp_path
):
    preset = _short("tutorial", ranks=(16,))
    publish(rank_16_model, preset, small, tmp_path / "a")
    card = json.loads((tmp_path / "a" / "model.json").read_text())
    assert card["low_rank"]["ranks"] == [16]
    assert card["low_rank"]["fitted_test_agreement"] == 1.0
    assert card["low_rank"]["whole_model"]["parameters"] == rank_16_model.count_params()
    graph = onnx.load(tmp_path / "a" / "model.onnx").graph
    shapes = {tuple(t.dims) for t in graph.initializer if t.dims}
    assert {(784, 16), (16, 64)} <= shapes and (784, 64) not in shapes
    assert card["parameters"] == 784 * 16 + 16 * 64 + 64 + 64 * 64 + 64 + 64 * 10 + 10
    # The Keras twin is the factored model, so the ONNX file was gated on parity with it.
    import keras

    saved = keras.models.load_model(tmp_path / "a" / "model.keras", compile=False)
    assert saved.count_params() == card["parameters"]
    publish(rank_16_model, preset, small, tmp_path / "b")
    assert (tmp_path / "a" / "model.onnx").read_bytes() == (
        tmp_path / "b" / "model.onnx"
    ).read_bytes()


def test_a_rank_that_changes_digits_is_refused_and_nothing_written(rank_16_model, small, tmp_path):
    with pytest.raises(onnx_export.ExportGateError, match=r"ranks \[1\] keep only"):
        publish(rank_16_model, _short("tutorial", ranks=(1,)), small, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_both_layers_factored_and_tuned_are_published_with_their_tuning(
    rank_16_model, small, tmp_path
):
    """The mechanics of the best preset's publishing on the stand-in: each hidden layer a
    product, then more epochs (at learning rate 0 here, so the accuracy gate sees the exact
    products and must pass), the int8 copy keeping both second halves in float."""
    preset = _short("tutorial", ranks=(16, 16), tune_epochs=1, tune_learning_rate=0.0)
    trained = History([{"epoch": 1.0, "loss": 0.5, "accuracy": 0.9, "test_accuracy": 0.9}])
    publish(rank_16_model, preset, small, tmp_path, trained)
    assert json.loads((tmp_path / "history.json").read_text())["epoch"] == [1.0, 2.0]
    card = json.loads((tmp_path / "model.json").read_text())
    assert card["low_rank"]["layers"] == ["784x64 as 784x16 @ 16x64", "64x64 as 64x16 @ 16x64"]
    assert card["low_rank"]["tuned"]["epochs"] == 1
    assert card["low_rank"]["tuned"]["test"]["accuracy"] == card["test_accuracy"]
    assert "rank 16 and 16" in card["architecture"] and "1 more epochs" in card["architecture"]
    shapes = [tuple(t.dims) for t in onnx.load(tmp_path / "model.onnx").graph.initializer]
    assert {(784, 16), (16, 64), (64, 16)} <= set(shapes) and (64, 64) not in shapes
    # The int8 copy (made here whether or not the stand-in's 200 test images let it be offered).
    from classify_batch.export.quantize import quantize

    quantized = quantize(onnx.load(tmp_path / "model.onnx"), small.test_images, small.test_labels)
    int8 = onnx.load_from_string(quantized.model_bytes).graph
    floats = {t.name for t in int8.initializer if t.data_type == onnx.TensorProto.FLOAT}
    float_matrices = {tuple(t.dims) for t in int8.initializer if t.name in floats}
    assert (16, 64) in float_matrices  # both second halves; the first halves are int8
    assert (784, 16) not in float_matrices and (64, 16) not in float_matrices


def test_a_tuned_factoring_that_reads_fewer_digits_right_is_refused(
    rank_16_model, small, tmp_path, monkeypatch
):
    """Refused on the test set alone (no optdigits, as the README's test command runs): here the
    stand-in's training images, which its 5-epoch model reads far better than new ones."""
    monkeypatch.delenv("OPTDIGITS_FILE", raising=False)
    seen = MnistData(
        small.train_images,
        small.train_labels,
        small.train_images,
        small.train_labels,
        small.source,
        small.sha256,
    )
    preset = _short("tutorial", ranks=(1, 1), tune_epochs=1)
    with pytest.raises(onnx_export.ExportGateError, match=r"test: \d+ digits lost"):
        publish(rank_16_model, preset, seen, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_low_rank_fit_keeps_what_the_layer_computes_on_its_inputs(tiny_model, small):
    """Fitted to the inputs, the product is closer on them than the plain SVD of the weights:
    Eckart-Young on the whitened problem, which no other rank-r product can beat."""
    from classify_batch.export.compress import _fit

    whole = tiny_model.get_weights()[0].astype(np.float64)
    inputs = preprocess(small.train_images)
    basis, mix = _fit(whole, inputs, 8)
    u, s, vt = np.linalg.svd(whole, full_matrices=False)
    plain = (u[:, :8] * s[:8]) @ vt[:8]

    def error(product):
        return np.linalg.norm(inputs @ (whole - product))

    assert basis.shape == (784, 8) and mix.shape == (8, 64)
    assert error(basis @ mix) < 0.9 * error(plain)
