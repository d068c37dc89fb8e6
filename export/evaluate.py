"""`digits evaluate`: the model's accuracy on the official test set, beside its card's figure."""

import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from classify_batch import artifacts
from classify_batch.contract import ExitCode
from classify_batch.export.mnist_data import DataError, load_test_set
from classify_batch.jobs import model as model_loader

# The card's figure is printed with 4 decimals; anything further off is a different model or data.
TOLERANCE = 1e-4


@dataclass
class Evaluation:
    images: np.ndarray
    labels: np.ndarray
    digits: np.ndarray
    probabilities: np.ndarray

    @property
    def accuracy(self) -> float:
        return float((self.digits == self.labels).mean())

    def per_digit(self) -> dict[int, float]:
        """Accuracy for each digit that the evaluated images hold."""
        found = per_digit_accuracy(self.digits, self.labels)
        return {int(d): acc for d, acc in found.items() if acc is not None}


def per_digit_accuracy(digits: np.ndarray, labels: np.ndarray) -> dict[str, float | None]:
    """Per digit, as the model card records it: None for a digit the set lacks (never NaN)."""
    return {
        str(d): float((digits[labels == d] == d).mean()) if (labels == d).any() else None
        for d in range(10)
    }


def card_for(model_path: Path) -> dict | None:
    beside = model_path.with_name("model.json")
    candidates = [beside] if beside.exists() else []
    if model_path.resolve() == artifacts.model_path().resolve():
        candidates.append(artifacts.card_path())
    for path in candidates:
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            continue
    return None


def run(classifier: model_loader.Classifier, images: np.ndarray, labels: np.ndarray) -> Evaluation:
    probabilities, digits = classifier(images)
    return Evaluation(images, labels, digits, probabilities)


def evaluate_command(model_path: Path | None, report: Path | None) -> int:
    path = model_path or model_loader.default_model_path()
    if report is not None:
        # Before the model and the test set: a report that cannot be written is known at once.
        try:
            report.mkdir(parents=True, exist_ok=True)
            tempfile.TemporaryFile(dir=report).close()
        except OSError as e:
            print(f"digits evaluate: cannot write the report to {report}: {e}", file=sys.stderr)
            return ExitCode.NOTHING_DONE
    try:
        classifier = model_loader.load(path)
        images, labels, _ = load_test_set()
    except (model_loader.ModelError, DataError) as e:
        print(f"digits evaluate: {e}", file=sys.stderr)
        return ExitCode.NOTHING_DONE
    result = run(classifier, images, labels)
    card = card_for(path)
    print(f"model: {path} (sha256 {classifier.sha256[:12]}...)")
    print(f"official MNIST test set: {len(labels):,} images")
    print(f"accuracy: {result.accuracy:.4f}", end="")
    mismatch = False
    if card is not None:
        expected = float(card["test_accuracy"])
        mismatch = abs(expected - result.accuracy) > TOLERANCE
        note = card.get("test_accuracy_note", "")
        flag = "  MISMATCH: not the model or data the card describes" if mismatch else "  (matches)"
        print(f"   card: {expected:.4f} ({note}){flag}")
        if card.get("onnx_sha256") not in (None, classifier.sha256):
            print("warning: the card beside the model describes another file (sha256 differs)")
    else:
        print("   card: none found beside the model")
    per_card = (card or {}).get("test_accuracy_per_digit", {})
    print("digit  images  accuracy  card")
    for d, acc in result.per_digit().items():
        c = per_card.get(str(d))
        print(
            f"{d:>5}  {int((labels == d).sum()):>6}  {acc:>8.4f}  {'' if c is None else f'{c:.4f}'}"
        )
    if report is not None:
        try:
            from classify_batch.export.report import history_beside, write_report
        except ModuleNotFoundError as e:
            message = f"--report needs {e.name}: pip install 'classify-batch[train]'"
            print(f"digits evaluate: {message}", file=sys.stderr)
            return ExitCode.NOTHING_DONE
        try:
            index = write_report(result, card, report, history_beside(path))
        except OSError as e:
            print(f"digits evaluate: cannot write the report to {report}: {e}", file=sys.stderr)
            return ExitCode.NOTHING_DONE
        print(f"report: {index}")
    return ExitCode.NOTHING_DONE if mismatch else ExitCode.OK
