"""`digits train`, `digits export` and `digits evaluate`, registered by the command line only when
the train extra is importable. Importing this module costs no TensorFlow: each command imports
what it needs once its arguments are known to be good."""

from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from classify_batch.contract import MODEL_ENV
from classify_batch.export.presets import PRESETS

# The choices --preset offers, from the recipes themselves: an unknown name is a usage error
# before anything heavy is imported.
PresetName = Enum("PresetName", {name.upper(): name for name in PRESETS}, type=str)  # type: ignore[misc]


# Shared by train and export: how the trained model is published (export/compress.py).
RankOption = Annotated[
    list[int] | None,
    typer.Option(
        min=0,
        help="Publish hidden layer N's weights as a product of this rank, fitted to the training "
        "inputs; once per hidden layer, in order (0: whole) [default: the recipe's].",
    ),
]
TuneEpochsOption = Annotated[
    int | None,
    typer.Option(
        min=0,
        help="Then train the factored model this many more epochs; refused if it reads fewer "
        "digits right than the whole model by more than chance [default: the recipe's].",
    ),
]


def train(
    preset: Annotated[
        PresetName,
        typer.Option(
            help="Recipe: best (the committed model) or tutorial (the tutorial, exactly)."
        ),
    ] = PresetName("best"),  # noqa: B008
    epochs: Annotated[int | None, typer.Option(min=1, help="Override the preset's epochs.")] = None,
    batch_size: Annotated[
        int | None, typer.Option(min=1, help="Override the preset's batch size.")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Override the preset's seed (0).")] = None,
    rank: RankOption = None,
    tune_epochs: TuneEpochsOption = None,
    out: Annotated[Path, typer.Option(help="Folder for the model files.")] = Path("artifacts"),
    verbose: Annotated[
        bool,
        typer.Option("--verbose", help="Also show TensorFlow's, tf2onnx's and onnxruntime's logs."),
    ] = False,
) -> None:
    """Train the ANN on MNIST ($MNIST_DATA_DIR, else the cache, else a verified download), export
    it to ONNX gated on parity with Keras, and write its model card."""
    from classify_batch.export import workflow

    raise typer.Exit(
        workflow.train_command(
            preset.value,
            out,
            epochs=epochs,
            batch_size=batch_size,
            seed=seed,
            ranks=None if rank is None else tuple(rank),
            tune_epochs=tune_epochs,
            verbose=verbose,
        )
    )


def export(
    keras_model: Annotated[
        Path, typer.Option("--keras", help="Trained Keras model to export.")
    ] = Path("artifacts/model.keras"),
    out: Annotated[Path, typer.Option(help="Folder for the model files.")] = Path("artifacts"),
    rank: RankOption = None,
    tune_epochs: TuneEpochsOption = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", help="Also show TensorFlow's and tf2onnx's logs.")
    ] = False,
) -> None:
    """Export a trained Keras model to ONNX, gated on parity with Keras on all test images
    ($MNIST_DATA_DIR)."""
    from classify_batch.export import workflow

    raise typer.Exit(
        workflow.export_command(
            keras_model,
            out,
            ranks=None if rank is None else tuple(rank),
            tune_epochs=tune_epochs,
            verbose=verbose,
        )
    )


def evaluate(
    model: Annotated[
        Path | None,
        typer.Option(
            envvar=MODEL_ENV, show_envvar=True, help="ONNX model [default: the committed one]."
        ),
    ] = None,
    report: Annotated[
        Path | None, typer.Option(help="Also write PNG figures and index.html to this folder.")
    ] = None,
) -> None:
    """Accuracy on the official MNIST test set ($MNIST_DATA_DIR), overall and per digit, beside
    the model card's figure."""
    from classify_batch.export.evaluate import evaluate_command

    raise typer.Exit(evaluate_command(model, report))


def register(app: typer.Typer, context: dict[str, Any]) -> None:
    for command in (train, export, evaluate):
        app.command(context_settings=context)(command)
