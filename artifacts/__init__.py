"""The committed model, shipped as package data so the job finds it from any working directory."""

from importlib.resources import files
from pathlib import Path


def model_path() -> Path:
    return Path(str(files(__name__).joinpath("model.onnx")))


def card_path() -> Path:
    return Path(str(files(__name__).joinpath("model.json")))


def int8_model_path() -> Path:
    return Path(str(files(__name__).joinpath("model.int8.onnx")))
