"""The model's contract with everything around it, defined once.

The ONNX export, the job's model loader, the model card and its metadata_props, the command line
and every exit path read their names, shapes, labels, modes and exit codes from here.
"""

from enum import IntEnum, StrEnum

# --- the model's input and outputs ---------------------------------------------------------------
INPUT_NAME = "images"
INPUT_DTYPE = "uint8"
IMAGE_SIDE = 28
# MNIST fits each digit into a 20x20 box inside the 28x28 field; so does jobs/normalize.py.
DIGIT_BOX = 20
INPUT_SHAPE: tuple[str | int, ...] = ("batch", IMAGE_SIDE, IMAGE_SIDE)
PROBABILITIES = "probabilities"
DIGIT = "digit"
OUTPUT_NAMES = (PROBABILITIES, DIGIT)
OUTPUT_TYPES = {PROBABILITIES: "float32 [batch, 10]", DIGIT: "int64 [batch]"}
LABELS = tuple(str(d) for d in range(10))
NUM_CLASSES = len(LABELS)
INK = "white-on-black"
INPUT_CONTRACT = (
    "uint8 [batch, 28, 28], grayscale, white ink (255) on black (0), the digit scaled to fit "
    "20x20 and centred by centre of mass, as MNIST; preprocessing (cast, /255 - 0.5, flatten) is "
    "inside the graph"
)

# The environment variable that names another model for the job.
MODEL_ENV = "CLASSIFY_MODEL"


class Preprocess(StrEnum):
    """How an input image is brought to the model's input (see jobs/normalize.py)."""

    AUTO = "auto"  # normalize anything that does not already look like MNIST
    MNIST = "mnist"  # always normalize
    NONE = "none"  # never: inputs must be 28x28, white ink on black


PREPROCESS_MODES: tuple[str, ...] = tuple(mode.value for mode in Preprocess)


class Precision(StrEnum):
    """Which copy of the committed model runs: the float one, or its quantized twin."""

    FP32 = "fp32"
    INT8 = "int8"


class ExitCode(IntEnum):
    """What every command's exit status means; the README's table says the same."""

    OK = 0  # everything asked for was done
    NOTHING_DONE = 1  # nothing could be done: no model, no inputs, unwritable output, a failed gate
    USAGE = 2  # the command line is wrong
    SOME_FAILED = 3  # done, but some inputs failed: the outputs hold the good ones


# The package's version: pyproject.toml reads it from here, and the job needs no
# importlib.metadata (10 ms of a one-image run) to put it in run records and --version.
VERSION = "0.1.0"


def package_version() -> str:
    return VERSION
