"""The command lines: `classify-batch`, and `digits` with its classify, show, merge, train,
export and evaluate.

Commands only declare their parameters, call the library and turn outcomes into exit codes.
Every usage error, Click's own or ours, is printed the same way: one `command: message` line on
stderr and exit code 2. Training commands exist only as stubs that say how to install the train
extra when it is not importable, so the slim runtime never loads TensorFlow or the export code.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer

from classify_batch import artifacts
from classify_batch.contract import MODEL_ENV, ExitCode, Precision, Preprocess, package_version

# Typer ships its own copy of Click; its exception types are reached through the public ones.
UsageError: type[Exception] = typer.BadParameter.__mro__[1]
ClickException: type[Exception] = typer.BadParameter.__mro__[2]

if TYPE_CHECKING:
    from classify_batch.jobs.pipeline import Shard

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 80}
TRAIN_EXTRA = "pip install 'classify-batch[train]'"
# What the training commands import; find_spec looks without importing.
TRAIN_MODULES = ("tensorflow", "tf2onnx", "onnx", "mnist", "matplotlib", "classify_batch.export")


def _version(value: bool) -> None:
    if value:
        typer.echo(package_version())
        raise typer.Exit(ExitCode.OK)


VersionOption = Annotated[
    bool,
    typer.Option(
        "--version",
        callback=_version,
        is_eager=True,
        help="Print the version and exit.",
    ),
]


ModelOption = Annotated[
    Path | None,
    typer.Option(
        envvar=MODEL_ENV,
        show_envvar=True,
        help="ONNX model to use [default: the committed one].",
    ),
]


@functools.cache  # the help text of three commands, built at every start
def _int8_note() -> str:
    """The int8 copy's agreement with fp32, as the model card records it."""
    try:
        card = json.loads(artifacts.card_path().read_text())
        agreement = float(card["int8"]["agreement_with_fp32"])
    except (OSError, ValueError, KeyError, TypeError):
        return "the quantized copy of the committed model, when the card offers one"
    return (
        f"the quantized copy of the committed model, the same digit as fp32 on "
        f"{agreement:.2%} of the MNIST test images (model card)"
    )


def _finite(value: float | None) -> float | None:
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"must be a number from 0 to 1, not {value}")
    return value


def _shard(value: str | None) -> Any:
    if value is None:
        return None
    from classify_batch.jobs.pipeline import Shard

    try:
        return Shard.parse(value)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None


CLASSIFY_HELP = """Classify handwritten digit images and write the digits to OUT.csv.

INPUT is any mix of folders (walked recursively, in sorted order), image files (PNG, JPEG, BMP,
GIF, TIFF, WebP, PNM), .npy arrays ((N, 28, 28), (28, 28) or (N, 784); never unpickled) and IDX
files as MNIST ships them. Files in folders that are plainly not inputs are skipped and counted.

OUT.csv gets source,index,digit,confidence; beside it OUT.errors.csv lists what failed and why,
OUT.review.csv the rows under --min-confidence, and OUT.json, the run record, is written last.
OUT must end in .csv, or be - for stdout; an existing OUT is replaced only if this job wrote it,
and a second run on the same OUT refuses while the first holds OUT.lock.

Exit codes: 0 all inputs classified; 3 some failed (OUT.csv holds the rest); 1 nothing could be
done; 2 usage error.
"""


def classify(
    ctx: typer.Context,
    inputs: Annotated[
        list[str],
        typer.Argument(
            metavar="INPUT...",
            help="Folders, image files, .npy or IDX files.",
            show_default=False,
        ),
    ],
    out: Annotated[
        str,
        typer.Argument(metavar="OUT", help="The CSV to write (.csv), or - for stdout."),
    ],
    model: ModelOption = None,
    preprocess: Annotated[
        Preprocess,
        typer.Option(
            help="auto: bring scans and photos to MNIST's form (grey, white ink on black, "
            "cropped, 20 px, centred), pass MNIST-style 28x28 through; mnist: always; "
            "none: never (inputs must be 28x28).",
        ),
    ] = Preprocess.AUTO,
    precision: Annotated[Precision, typer.Option(help=f"fp32, or int8: {_int8_note()}.")] = (
        Precision.FP32
    ),
    probabilities: Annotated[
        bool, typer.Option("--probabilities", help="Add the columns p0..p9.")
    ] = False,
    min_confidence: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            callback=_finite,
            metavar="P",
            help="List rows under this confidence in OUT.review.csv (they stay in OUT.csv).",
        ),
    ] = None,
    max_errors: Annotated[
        int | None,
        typer.Option(
            min=0,
            metavar="N",
            help="Stop once more than N inputs fail (exit 1): no output file is written "
            "(with -, rows already sent stay sent).",
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            metavar="N",
            help="Decoder processes for image files, inference threads for arrays [default: "
            "the CPUs this process may use, container CPU limit included; more are capped to "
            "that].",
            show_default=False,
        ),
    ] = None,
    shard: Annotated[
        str | None,
        typer.Option(
            metavar="I/N",
            callback=_shard,
            help="Process only share I (0-based) of N; join the parts with `digits merge`.",
        ),
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bar and no summary line.")
    ] = False,
    version: VersionOption = False,
) -> None:
    from classify_batch.jobs.run import Options, run

    if precision is Precision.INT8:
        if model is not None:
            raise typer.BadParameter("picks the committed model's int8 copy: leave out --model")
        model = artifacts.int8_model_path()
    options = Options(
        inputs=inputs,
        out=out,
        model=model,
        preprocess=preprocess.value,
        precision=precision.value,
        probabilities=probabilities,
        min_confidence=min_confidence,
        max_errors=max_errors,
        workers=workers,
        quiet=quiet,
        shard=cast("Shard | None", shard),  # parsed by the option's callback
        command=ctx.command_path,
    )
    raise typer.Exit(run(options))


classify.__doc__ = CLASSIFY_HELP


def show(
    inputs: Annotated[
        list[str],
        typer.Argument(
            metavar="INPUT...",
            help="Folders, image files, .npy or IDX files, as classify-batch reads them.",
            show_default=False,
        ),
    ],
    out: Annotated[Path, typer.Option(help="Picture to write: .png, .jpg or .webp.")] = Path(
        "show.png"
    ),
    model: ModelOption = None,
    preprocess: Annotated[
        Preprocess, typer.Option(help="As for classify-batch.")
    ] = Preprocess.AUTO,
    limit: Annotated[int, typer.Option(min=1, help="Show at most this many inputs.")] = 100,
) -> None:
    """Draw each input as given beside the 28x28 the model saw, its digit and confidence.

    Inputs that fail get a cell with the reason. The picture is written atomically.
    """
    from classify_batch.jobs.show import show_command

    raise typer.Exit(show_command(inputs, out, model, preprocess.value, limit))


def merge(
    parts: Annotated[
        list[Path],
        typer.Argument(
            metavar="PART.csv...",
            help="The part CSVs of a run split with --shard I/N (a glob such as parts/part-*.csv "
            "may also match their .errors.csv, .review.csv and .json files: those are ignored).",
            show_default=False,
        ),
    ],
    out: Annotated[Path, typer.Argument(metavar="OUT", help="The CSV to write (.csv).")],
) -> None:
    """Join the parts of a sharded classify-batch run into the files one run would write.

    Every part must be there and complete, made with the same options, inputs and model;
    otherwise nothing is written and the exit code is 1.
    """
    from classify_batch.jobs.merge import merge as merge_parts

    raise typer.Exit(merge_parts(parts, out))


# --- training commands: real ones with the train extra, one-line stubs without it ----------------


def _train_extra_missing() -> str | None:
    for name in TRAIN_MODULES:
        try:
            found = find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            return name
    return None


def _register_training(app: typer.Typer) -> None:
    missing = _train_extra_missing()
    if missing is not None:
        for name, summary in (
            ("train", "Train the ANN on MNIST and export it (needs the train extra)."),
            ("export", "Export a trained Keras model to ONNX (needs the train extra)."),
            ("evaluate", "Accuracy on the MNIST test set (needs the train extra)."),
        ):
            app.command(
                name,
                help=summary,
                context_settings={
                    **CONTEXT,
                    "ignore_unknown_options": True,
                    "allow_extra_args": True,
                },
            )(_stub(name, missing))
        return
    # Registration is the one place outside export/ that imports it (tests/test_layout.py).
    from classify_batch.export import commands

    commands.register(app, CONTEXT)


def _stub(name: str, missing: str) -> Callable[[typer.Context], None]:
    def command(ctx: typer.Context) -> None:
        typer.echo(
            f"digits {name}: needs the training extra ({missing} is not installed): {TRAIN_EXTRA}",
            err=True,
        )
        raise typer.Exit(ExitCode.NOTHING_DONE)

    return command


# --- the two programs ----------------------------------------------------------------------------


def _digits_callback(version: VersionOption = False) -> None:
    """Train, export, evaluate and run the handwritten digit classifier."""


def build_digits() -> typer.Typer:
    app = typer.Typer(
        name="digits",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
        context_settings=CONTEXT,
        callback=_digits_callback,
    )
    app.command("classify", help=CLASSIFY_HELP)(classify)
    app.command("show")(show)
    app.command("merge")(merge)
    _register_training(app)
    return app


def build_classify_batch() -> typer.Typer:
    app = typer.Typer(
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
        context_settings=CONTEXT,
    )
    app.command(help=CLASSIFY_HELP)(classify)
    return app


def run_app(app: typer.Typer, prog_name: str, args: list[str] | None = None) -> int:
    """Run a Typer app; usage errors of every kind become one `command: message` line, exit 2."""
    command = typer.main.get_command(app)
    try:
        result = command.main(args=args, prog_name=prog_name, standalone_mode=False)
    except UsageError as e:
        ctx = getattr(e, "ctx", None)
        if type(e).__name__ == "NoArgsIsHelpError" and ctx is not None:
            typer.echo(ctx.get_help(), err=True)
            return ExitCode.USAGE
        where = ctx.command_path if ctx is not None else prog_name
        typer.echo(f"{where}: {_message(e)}", err=True)
        return ExitCode.USAGE
    except typer.Abort:
        typer.echo(f"{prog_name}: aborted", err=True)
        return 130
    except ClickException as e:
        typer.echo(f"{prog_name}: {_message(e)}", err=True)
        return int(getattr(e, "exit_code", ExitCode.NOTHING_DONE))
    return result if isinstance(result, int) else ExitCode.OK


def _message(error: Exception) -> str:
    text = getattr(error, "format_message", lambda: str(error))()
    return " ".join(str(text).split())


if __name__ == "__main__":
    from classify_batch.entry import digits_main

    digits_main()
