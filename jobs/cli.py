"""The command line: `digits` (train, export, evaluate, classify, show) and `classify-batch`.

Commands only parse, call and map outcomes to exit codes. Training commands import TensorFlow
lazily, so the slim runtime never pays for it and says how to get it when it is missing.
"""

import importlib
from pathlib import Path
from types import ModuleType
from typing import Annotated, NoReturn

import typer

import artifacts
from jobs.cpus import usable_cpus
from jobs.normalize import PREPROCESS_MODES
from jobs.pipeline import Shard
from jobs.run import EXIT_NOTHING_DONE, EXIT_USAGE, Options, run

TRAIN_EXTRA_MODULES = {"tensorflow", "tf2onnx", "onnx", "mnist", "keras", "matplotlib"}

CLASSIFY_HELP = "\n\n".join(
    [
        ("Classify handwritten digit images and write the digits to OUT.csv."),
        (
            "INPUT is any mix of: folders (walked recursively in sorted order; image, .npy and "
            "IDX files in them are read, other files are skipped and counted), image files (PNG, "
            "JPEG, BMP, GIF, TIFF, WebP), .npy arrays and IDX files (*-idx3-ubyte, optionally "
            ".gz, as MNIST ships)."
        ),
        (
            ".npy arrays may be (N, 28, 28), (28, 28) or (N, 784), white ink on black like MNIST. "
            "uint8 and other integer arrays are read as pixel values 0..255. Float arrays are "
            "read as 0..1 when no value exceeds 1 (then scaled by 255), else as 0..255; rows with "
            "NaN, infinities or values outside the range are reported as failed. Arrays are never "
            "unpickled: object arrays are refused."
        ),
        (
            "OUT.csv has the columns source,index,digit,confidence (index: the position inside an "
            "array or IDX file, empty for an image file). Beside it: OUT.errors.csv "
            "(source,index,error) for inputs that failed, OUT.review.csv with --min-confidence, "
            "and OUT.json, the run record, written last. Each file is written atomically. OUT may "
            "be - for stdout (errors then go to stderr)."
        ),
        (
            "Exit codes: 0 all inputs classified; 3 some inputs failed (OUT.csv holds the good "
            "ones); 1 nothing could be done (no model, unwritable output, no inputs found, "
            "--max-errors exceeded); 2 usage error."
        ),
    ]
)


def _usage(message: str) -> NoReturn:
    typer.echo(f"classify-batch: {message}", err=True)
    raise typer.Exit(EXIT_USAGE)


def classify(
    paths: Annotated[
        list[str],
        typer.Argument(
            metavar="INPUT... OUT.csv",
            help="Folders, image files, .npy or IDX files, then the CSV to write (- for stdout).",
            show_default=False,
        ),
    ],
    model: Annotated[
        Path | None,
        typer.Option(help="ONNX model to use [default: $CLASSIFY_MODEL, else the committed one]"),
    ] = None,
    preprocess: Annotated[
        str,
        typer.Option(
            help="auto: normalize photos and scans the way MNIST was made (grayscale, white ink "
            "on black, cropped, 20 px, centred by mass), pass 28x28 MNIST-style images untouched; "
            "mnist: always normalize; none: never (inputs must be 28x28)."
        ),
    ] = "auto",
    precision: Annotated[
        str,
        typer.Option(
            help="fp32: the committed model; int8: its quantized copy, about 1.7x faster on "
            "large arrays, the same digit on 99.92% of the MNIST test images."
        ),
    ] = "fp32",
    probabilities: Annotated[bool, typer.Option(help="Add columns p0..p9.")] = False,
    min_confidence: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            help="List predictions below this confidence in OUT.review.csv (still in OUT.csv).",
        ),
    ] = None,
    max_errors: Annotated[
        int | None,
        typer.Option(min=0, help="Stop, write nothing and exit 1 when more inputs than this fail."),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Processes decoding images [default: the CPUs this process may use, "
            "container CPU limit included].",
        ),
    ] = None,
    shard: Annotated[
        str | None,
        typer.Option(help="I/N: process only share I (0-based) of N; see `digits merge`."),
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bar or summary.")
    ] = False,
) -> None:
    if len(paths) < 2:
        _usage("need at least one INPUT and the OUT.csv to write")
    if preprocess not in PREPROCESS_MODES:
        _usage(f"--preprocess must be one of {', '.join(PREPROCESS_MODES)} (got {preprocess!r})")
    if precision not in ("fp32", "int8"):
        _usage(f"--precision must be fp32 or int8 (got {precision!r})")
    if precision == "int8":
        if model is not None:
            _usage("--precision int8 picks the committed model's int8 copy: leave out --model")
        model = artifacts.int8_model_path()
    try:
        parsed_shard = Shard.parse(shard) if shard else None
    except ValueError as e:
        _usage(str(e))
    *inputs, out = paths
    options = Options(
        inputs=inputs,
        out=out,
        model=model,
        preprocess=preprocess,
        probabilities=probabilities,
        min_confidence=min_confidence,
        max_errors=max_errors,
        workers=workers or usable_cpus(),
        quiet=quiet,
        shard=parsed_shard,
    )
    raise typer.Exit(run(options))


classify.__doc__ = CLASSIFY_HELP

app = typer.Typer(
    name="digits",
    help="Train, export, evaluate and run the handwritten digit classifier.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("classify", help=CLASSIFY_HELP)(classify)

batch_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
batch_app.command(help=CLASSIFY_HELP)(classify)


def _training_module(name: str, command: str) -> ModuleType:
    """Import an `export` module, or end with one line on how to get the training extra."""
    try:
        return importlib.import_module(f"export.{name}")
    except ModuleNotFoundError as e:
        if (e.name or "").split(".")[0] not in TRAIN_EXTRA_MODULES:
            raise
        typer.echo(
            f"digits {command}: needs the training extra ({e.name} is not installed): "
            "pip install 'classify-batch[train]'",
            err=True,
        )
        raise typer.Exit(EXIT_NOTHING_DONE) from None


@app.command()
def train(
    preset: Annotated[str, typer.Option(help="Recipe: best (committed) or tutorial.")] = "best",
    epochs: Annotated[int | None, typer.Option(min=1, help="Override the preset's epochs.")] = None,
    batch_size: Annotated[
        int | None, typer.Option(min=1, help="Override the preset's batch size.")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Override the preset's seed (0).")] = None,
    out: Annotated[Path, typer.Option(help="Folder for the model files.")] = Path("artifacts"),
) -> None:
    """Train the ANN on MNIST, export it to ONNX (gated on Keras parity) and write its card."""
    workflow = _training_module("workflow", "train")
    raise typer.Exit(
        workflow.train_command(preset, out, epochs=epochs, batch_size=batch_size, seed=seed)
    )


@app.command("export")
def export_(
    keras_model: Annotated[
        Path, typer.Option("--keras", help="Trained Keras model to export.")
    ] = Path("artifacts/model.keras"),
    out: Annotated[Path, typer.Option(help="Folder for the model files.")] = Path("artifacts"),
) -> None:
    """Export a trained Keras model to ONNX, gated on parity with Keras on all test images."""
    workflow = _training_module("workflow", "export")
    raise typer.Exit(workflow.export_command(keras_model, out))


@app.command()
def evaluate(
    model: Annotated[
        Path | None, typer.Option(help="ONNX model [default: the committed one].")
    ] = None,
    report: Annotated[
        Path | None, typer.Option(help="Also write PNG figures and index.html to this folder.")
    ] = None,
) -> None:
    """Accuracy on the official MNIST test set, overall and per digit, beside the model card's."""
    evaluation = _training_module("evaluate", "evaluate")
    raise typer.Exit(evaluation.evaluate_command(model, report))


@app.command()
def show(
    inputs: Annotated[
        list[str],
        typer.Argument(
            metavar="INPUT...",
            help="Folders, image files, .npy or IDX files, as classify-batch reads them.",
            show_default=False,
        ),
    ],
    out: Annotated[Path, typer.Option(help="Picture to write (.png, .jpg or .webp).")] = Path(
        "show.png"
    ),
    model: Annotated[
        Path | None,
        typer.Option(help="ONNX model to use [default: $CLASSIFY_MODEL, else the committed one]"),
    ] = None,
    preprocess: Annotated[
        str, typer.Option(help="auto, mnist or none, as for classify-batch.")
    ] = "auto",
    limit: Annotated[int, typer.Option(min=1, help="Show at most this many inputs.")] = 100,
) -> None:
    """Draw a grid: each input as given, the 28x28 image the model saw, its digit and confidence.

    Inputs that fail get a cell with the reason; the picture is written atomically.
    """
    from jobs.show import show_command

    raise typer.Exit(show_command(inputs, out, model, preprocess, limit))


@app.command()
def merge(
    paths: Annotated[
        list[Path],
        typer.Argument(
            metavar="PART.csv... OUT.csv",
            help="The part CSVs of a run split with --shard I/N, then the CSV to write.",
            show_default=False,
        ),
    ],
) -> None:
    """Join the parts of a sharded classify-batch run into the files one run would write.

    Every part must be there and complete (its run record present, its row counts matching),
    with the same header, inputs and model; otherwise nothing is written and the exit code is 1.
    """
    if len(paths) < 2:
        _usage("need at least one PART.csv and the OUT.csv to write")
    from jobs.merge import merge as merge_parts

    *parts, out = paths
    raise typer.Exit(merge_parts(parts, out))


def main() -> None:
    app(prog_name="digits")


def classify_batch_main() -> None:
    batch_app(prog_name="classify-batch")


if __name__ == "__main__":
    main()
