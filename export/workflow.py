"""What `digits train` and `digits export` do, from data to committed artifacts."""

import json
import sys
import time
from pathlib import Path

from classify_batch.contract import ExitCode
from classify_batch.export.logs import quiet_logs
from classify_batch.export.mnist_data import DataError, MnistData, load_mnist
from classify_batch.export.optdigits import OPTDIGITS_ENV
from classify_batch.export.presets import PRESETS, Preset


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _load_data() -> MnistData | None:
    try:
        data = load_mnist()
    except DataError as e:
        _say(f"digits: {e}")
        return None
    _say(data.describe())
    return data


def train_command(
    preset_name: str,
    out: Path,
    *,
    epochs: int | None = None,
    batch_size: int | None = None,
    seed: int | None = None,
    ranks: tuple[int, ...] | None = None,
    tune_epochs: int | None = None,
    verbose: bool = False,
) -> int:
    if preset_name not in PRESETS:
        _say(f"digits train: unknown preset {preset_name!r} (choose from {', '.join(PRESETS)})")
        return ExitCode.USAGE
    quiet_logs(verbose)
    preset = PRESETS[preset_name].with_overrides(
        epochs=epochs, batch_size=batch_size, seed=seed, ranks=ranks, tune_epochs=tune_epochs
    )
    if problem := preset.problem():
        _say(f"digits train: {problem}")
        return ExitCode.USAGE
    data = _load_data()
    if data is None:
        return ExitCode.NOTHING_DONE
    # Imported here, not at the top (onnx_export imports TensorFlow): its start-up is paid only
    # once the data is known to be there, and after quiet_logs() has set its log level.
    from classify_batch.export.onnx_export import ExportGateError
    from classify_batch.export.publish import publish
    from classify_batch.export.train import train

    _say(f"training preset {preset.name}: {preset.as_dict()}")
    started = time.perf_counter()
    model, history = train(
        preset, data.train_images, data.train_labels, data.test_images, data.test_labels, _say
    )
    seconds = time.perf_counter() - started
    try:
        published = publish(model, preset, data, out, history, training_seconds=seconds, log=_say)
    except ExportGateError as e:
        _say(f"digits train: {e}")
        return ExitCode.NOTHING_DONE
    _say(
        f"trained {preset.name} in {seconds:.0f}s: test accuracy {published.test_accuracy:.2%} "
        f"on the official test set (trained on {len(data.train_images):,} of 60,000 images); "
        + (
            f"optdigits {published.optdigits_accuracy:.2%}; "
            if published.optdigits_accuracy is not None
            else f"optdigits not measured (set {OPTDIGITS_ENV}); "
        )
        + f"ONNX parity: {published.parity.summary()}; wrote {published.onnx_path} "
        f"(sha256 {published.onnx_sha256[:12]}...)"
    )
    return ExitCode.OK


def export_command(
    keras_path: Path,
    out: Path,
    ranks: tuple[int, ...] | None = None,
    tune_epochs: int | None = None,
    verbose: bool = False,
) -> int:
    quiet_logs(verbose)
    card_path = keras_path.with_name("model.json")
    try:
        card = json.loads(card_path.read_text())
        recipe = card["recipe"]
        preset = Preset.from_dict(recipe).with_overrides(ranks=ranks, tune_epochs=tune_epochs)
    except (OSError, KeyError, TypeError, ValueError) as e:
        _say(f"digits export: {card_path}: need the model card (with its recipe) beside it ({e})")
        return ExitCode.NOTHING_DONE
    if problem := preset.problem():
        _say(f"digits export: {problem}")
        return ExitCode.USAGE
    data = _load_data()
    if data is None:
        return ExitCode.NOTHING_DONE
    import keras

    from classify_batch.export.onnx_export import ExportGateError
    from classify_batch.export.publish import publish

    try:
        model = keras.models.load_model(keras_path, compile=False)
    except (OSError, ValueError) as e:
        _say(f"digits export: {keras_path}: cannot load the Keras model ({e})")
        return ExitCode.NOTHING_DONE
    from classify_batch.export.compress import is_factored

    if is_factored(model) and (ranks, tune_epochs) != (None, None):
        _say(f"digits export: {keras_path}: already factored; export it as is")
        return ExitCode.USAGE
    try:
        published = publish(
            model,
            preset,
            data,
            out,
            training_seconds=card.get("training_seconds"),
            low_rank=card.get("low_rank") if is_factored(model) else None,
            log=_say,
        )
    except ExportGateError as e:
        _say(f"digits export: {e}")
        return ExitCode.NOTHING_DONE
    _say(f"exported {published.onnx_path}: {published.parity.summary()}")
    return ExitCode.OK
