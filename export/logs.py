"""Keep TensorFlow's, absl's, tf2onnx's and onnxruntime's log lines off a training run's stderr.

Left alone they print some twenty lines, most of them error-level and all harmless on a CPU-only
machine (CUDA probing, grappler notes, the quantizer's advice), mixed in with the epoch lines.
`digits train --verbose` keeps them.
"""

import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Iterator


def quiet_logs(verbose: bool) -> None:
    if verbose:
        return
    # Read by TensorFlow's C++ logging when it is first imported: callers run this before that.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")
    # No GPU here: without this, TensorFlow probes CUDA and logs the failure as an error.
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")
    for name in ("tensorflow", "absl", "tf2onnx", "onnx", "onnxruntime", "h5py"):
        logging.getLogger(name).setLevel(logging.ERROR)
    # onnxruntime's quantizer gives this advice through the root logger on every call.
    logging.getLogger().addFilter(_NotQuantizerAdvice())
    warnings.filterwarnings("ignore", module=r"(tensorflow|keras|tf2onnx|onnx|onnxruntime)\b")
    # TensorFlow's native libraries write a few lines while they load, before its log level is
    # read ("All log messages before absl::InitializeLog()", "Could not find cuda drivers"): the
    # import happens here with stderr pointed at /dev/null, so later imports find it loaded.
    with _native_stderr_silenced():
        import tensorflow  # noqa: F401
        import tf2onnx  # noqa: F401


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    sys.stderr.flush()
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


class _NotQuantizerAdvice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()
