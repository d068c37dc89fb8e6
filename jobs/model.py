"""Load the ONNX model with onnxruntime and refuse one that does not keep the job's contract."""

import hashlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from classify_batch import artifacts
from classify_batch.contract import (
    DIGIT,
    INPUT_NAME,
    MODEL_ENV,
    NUM_CLASSES,
    OUTPUT_NAMES,
    OUTPUT_TYPES,
    PROBABILITIES,
)
from classify_batch.jobs.cpus import usable_cpus

if TYPE_CHECKING:
    import onnxruntime as ort


# The committed model is 1 MB; 800 units wide it would be 10. Far above any model for this job,
# far below what would exhaust a 512 MiB pod.
MAX_MODEL_BYTES = 128 * 2**20


class ModelError(Exception):
    """The model cannot be used; str(error) is one line for the user."""


def default_model_path() -> Path:
    """--model, else $CLASSIFY_MODEL, else the model installed with the package."""
    env = os.environ.get(MODEL_ENV)
    return Path(env) if env else artifacts.model_path()


@dataclass
class Classifier:
    path: Path
    sha256: str
    metadata: dict[str, str]
    version: int
    session: "ort.InferenceSession" = field(repr=False)

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """uint8 (n, 28, 28) -> probabilities float32 (n, 10), digits int64 (n,).

        Raises ModelError when the model does not answer as the contract says: a digit 99 or a
        NaN confidence must never reach the CSV.
        """
        try:
            probabilities, digits = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: images})
        except Exception as e:  # onnxruntime's own types
            raise ModelError(
                f"{self.path}: the model failed on a batch ({_first_line(e)})"
            ) from None
        problem = _answer_problem(len(images), probabilities, digits)
        if problem:
            raise ModelError(f"{self.path}: {problem}")
        return probabilities, digits


def _answer_problem(n: int, probabilities: Any, digits: Any) -> str | None:
    """What is wrong with a model's answer for n images, or None."""
    if not isinstance(probabilities, np.ndarray) or probabilities.shape != (n, NUM_CLASSES):
        shape = getattr(probabilities, "shape", None)
        return f"'{PROBABILITIES}' must be [batch, {NUM_CLASSES}] (got {shape} for {n} images)"
    if not isinstance(digits, np.ndarray) or digits.shape != (n,) or digits.dtype.kind not in "iu":
        shape = getattr(digits, "shape", None)
        return f"'{DIGIT}' must be int64 [batch] (got {shape} for {n} images)"
    if n == 0:
        return None
    with np.errstate(invalid="ignore"):
        bad = (
            not np.isfinite(probabilities).all()
            or (probabilities < 0).any()
            or (probabilities > 1).any()
            or (np.abs(probabilities.sum(axis=1, dtype=np.float64) - 1) > 1e-3).any()
        )
    if bad:
        return f"'{PROBABILITIES}' are not probabilities over {NUM_CLASSES} classes"
    if ((digits < 0) | (digits >= NUM_CLASSES)).any():
        return f"'{DIGIT}' holds values outside 0..{NUM_CLASSES - 1}"
    picked = probabilities[np.arange(n), digits]
    if (picked < probabilities.max(axis=1)).any():
        return f"'{DIGIT}' is not the most probable class"
    return None


def load(path: Path, threads: int | None = None) -> Classifier:
    """The model at `path`, checked against the job's contract; `threads`: onnxruntime's threads
    for one run (default: the usable CPUs)."""
    data = _read_model(path)

    # Imported here, not at the top: the decode pool forks before this, into children that
    # need none of onnxruntime, and a run that fails earlier never pays for it.
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads or usable_cpus()
    options.inter_op_num_threads = 1
    # Threads that busy-wait between batches take the cores from whatever else runs.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # Batches are all one size: planning memory per shape only adds a second copy of the
    # buffers the arena already holds (7 MB), which broke "flat memory" between 1k and 10k rows.
    options.enable_mem_pattern = False
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own types, all meaning "not a usable model"
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelError(f"{path}: not a loadable ONNX model ({reason[:200]})") from None

    _check_contract(path, session)
    meta = session.get_modelmeta()
    classifier = Classifier(
        path=path,
        sha256=hashlib.sha256(data).hexdigest(),
        metadata=dict(meta.custom_metadata_map),
        version=int(meta.version),
        session=session,
    )
    # Declared types say little about what a graph computes: two images (a batch above one)
    # show whether it answers with probabilities and digits.
    probe = np.zeros((2, 28, 28), np.uint8)
    probe[1, 6:22, 13:15] = 255  # a "1"
    classifier(probe)
    return classifier


def _read_model(path: Path) -> bytes:
    """The model's bytes: only from a regular file of a sane size (a FIFO would hang the read,
    /dev/zero never end)."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise ModelError(f"{path}: model file not found") from None
    except OSError as e:
        raise ModelError(f"{path}: cannot read model: {e.strerror or e}") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise ModelError(f"{path}: is a folder, not a model file")
        if not stat.S_ISREG(st.st_mode):
            raise ModelError(f"{path}: not a regular file (device, FIFO or socket)")
        if st.st_size > MAX_MODEL_BYTES:
            raise ModelError(
                f"{path}: {st.st_size / 2**20:,.0f} MiB is too large for this job's model "
                f"(limit {MAX_MODEL_BYTES // 2**20} MiB)"
            )
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(MAX_MODEL_BYTES + 1)
    except OSError as e:
        raise ModelError(f"{path}: cannot read model: {e.strerror or e}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_MODEL_BYTES:
        raise ModelError(f"{path}: grew while read, beyond {MAX_MODEL_BYTES // 2**20} MiB")
    return data


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:200] if text else type(e).__name__


def _check_contract(path: Path, session: Any) -> None:
    inputs = {i.name: i for i in session.get_inputs()}
    outputs = {o.name: o for o in session.get_outputs()}
    image = inputs.get(INPUT_NAME)
    if image is None or len(inputs) != 1:
        found = ", ".join(inputs) or "none"
        raise ModelError(f"{path}: model must have one input '{INPUT_NAME}' (found: {found})")
    if image.type != "tensor(uint8)" or list(image.shape[1:]) != [28, 28]:
        raise ModelError(
            f"{path}: input '{INPUT_NAME}' must be uint8 [batch, 28, 28] "
            f"(found {image.type} {image.shape})"
        )
    if not isinstance(image.shape[0], str | None):
        # onnxruntime would fail on the first batch of another size, with its own traceback.
        raise ModelError(
            f"{path}: input '{INPUT_NAME}' has a fixed batch size of {image.shape[0]}: "
            f"need a free batch dimension"
        )
    missing = [name for name in OUTPUT_NAMES if name not in outputs]
    if missing:
        raise ModelError(
            f"{path}: model lacks output(s) {', '.join(missing)} "
            f"(needs {', '.join(OUTPUT_NAMES)}; found {', '.join(outputs) or 'none'})"
        )
    for name, wanted in ((PROBABILITIES, "tensor(float)"), (DIGIT, "tensor(int64)")):
        if outputs[name].type != wanted:
            raise ModelError(
                f"{path}: output '{name}' must be {OUTPUT_TYPES[name]} (found {outputs[name].type})"
            )
