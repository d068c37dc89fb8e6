"""Load the ONNX model with onnxruntime and refuse one that does not keep the job's contract."""

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from classify_batch import artifacts
from classify_batch.contract import INPUT_NAME, MODEL_ENV, OUTPUT_NAMES
from classify_batch.jobs.cpus import usable_cpus

if TYPE_CHECKING:
    import onnxruntime as ort


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
        """uint8 (n, 28, 28) -> probabilities float32 (n, 10), digits int64 (n,)."""
        probabilities, digits = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: images})
        return probabilities, digits


def load(path: Path, threads: int | None = None, spinning: bool = False) -> Classifier:
    """The model at `path`, checked against the job's contract.

    `spinning` lets onnxruntime's threads busy-wait between batches: about 10% more throughput
    when nothing else needs the cores (arrays), a loss when decoder processes share them.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ModelError(f"{path}: model file not found") from None
    except (IsADirectoryError, PermissionError, OSError) as e:
        raise ModelError(f"{path}: cannot read model: {e.strerror or e}") from None

    # Imported here, not at the top: the decode pool forks before this, into children that
    # need none of onnxruntime, and a run that fails earlier never pays for it.
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads or usable_cpus()
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
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
    return Classifier(
        path=path,
        sha256=hashlib.sha256(data).hexdigest(),
        metadata=dict(meta.custom_metadata_map),
        version=int(meta.version),
        session=session,
    )


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
    missing = [name for name in OUTPUT_NAMES if name not in outputs]
    if missing:
        raise ModelError(
            f"{path}: model lacks output(s) {', '.join(missing)} "
            f"(needs {', '.join(OUTPUT_NAMES)}; found {', '.join(outputs) or 'none'})"
        )
