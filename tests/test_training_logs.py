"""Issue 16, training logs: a default `digits train` shows only its own lines. The noise came
from TensorFlow being imported before its log level was set, and from the lines its native
libraries write while they load."""

import subprocess
import sys

import pytest

pytest.importorskip("classify_batch.export.commands", reason="needs the train extra")


def python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def test_the_training_workflow_does_not_import_tensorflow_before_quieting_it():
    result = python(
        "import sys\nimport classify_batch.export.workflow\nprint('tensorflow' in sys.modules)\n"
    )
    assert result.stdout.split() == ["False"], result.stderr


def test_tensorflow_loads_silently_once_logs_are_quiet():
    result = python(
        "from classify_batch.export.logs import quiet_logs\n"
        "quiet_logs(verbose=False)\n"
        "import tensorflow, tf2onnx\n"
    )
    assert result.returncode == 0
    assert result.stderr == ""
