"""The committed model, shipped as package data so the job finds it from any working directory."""

from pathlib import Path

# The files sit beside this module in every install this job supports (a checkout, a wheel in a
# venv): onnxruntime needs a real path anyway, and importlib.resources would add 3 ms to a run.
HERE = Path(__file__).resolve().parent


def model_path() -> Path:
    return HERE / "model.onnx"


def card_path() -> Path:
    return HERE / "model.json"


def int8_model_path() -> Path:
    return HERE / "model.int8.onnx"
