"""`digits evaluate --report DIR`: the test-set evaluation as PNG figures and an index.html.

Figures are drawn on bare matplotlib Figure objects, never through pyplot: no window, no global
figure registry to leak between figures, and the Agg backend is forced for anything else that
imports pyplot in the same process.
"""

import html
import io
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from classify_batch import artifacts
from classify_batch.export.evaluate import TOLERANCE, Evaluation
from classify_batch.jobs.atomic import write_bytes, write_text

import matplotlib  # isort: skip

matplotlib.use("Agg")  # headless, whatever $DISPLAY or MPLBACKEND say
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

HISTORY_NAME = "history.json"
FIRST_IMAGES = 20  # the same test images as samples/, so the README shows what ships
MISTAKES = 16
DPI = 120
MISTAKE_COLOUR = "#c62828"
CORRECT_COLOUR = "#1b1b1b"
HISTORY_KEYS = ("epoch", "loss", "accuracy")


@dataclass
class Section:
    file: str
    title: str
    caption: str
    figure: Figure | None  # None: nothing to draw, the caption says why


def history_beside(model_path: Path) -> Path:
    """The training history that belongs to model_path: the file beside it, as with the card."""
    beside = model_path.with_name(HISTORY_NAME)
    if beside.exists() or model_path.resolve() != artifacts.model_path().resolve():
        return beside
    return default_history_path()


def default_history_path() -> Path:
    return artifacts.card_path().with_name(HISTORY_NAME)


def write_report(
    result: Evaluation, card: dict | None, out_dir: Path, history_path: Path | None = None
) -> Path:
    """Write the figures and index.html into out_dir (created if needed); return index.html.

    Raises OSError when out_dir cannot be written.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    sections = [
        first_images_section(result),
        confusion_section(result),
        mistakes_section(result),
        curves_section(history_path or default_history_path()),
    ]
    for section in sections:
        if section.figure is not None:
            write_bytes(out_dir / section.file, png_bytes(section.figure))
    index = out_dir / "index.html"
    write_text(index, page(result, card, sections))
    return index


def png_bytes(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    # Tight bounding box: titles and colour bar labels are never cut off at the edge.
    figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight", pad_inches=0.15)
    return buffer.getvalue()


# --- figures ---------------------------------------------------------------------------------


def first_images_section(result: Evaluation) -> Section:
    count = min(FIRST_IMAGES, len(result.labels))
    wrong = int((result.digits[:count] != result.labels[:count]).sum())
    figure = image_grid(
        [int(i) for i in range(count)],
        result,
        columns=5,
        title=f"The first {count} test images: predicted digit, confidence and true digit",
        label=first_image_label,
    )
    caption = (
        f"The first {count} images of the official test set with the model's answer; "
        f"mistakes in red ({wrong} here)."
    )
    return Section("first-test-images.png", "First test images", caption, figure)


def first_image_label(result: Evaluation, i: int) -> tuple[str, str]:
    predicted, true = int(result.digits[i]), int(result.labels[i])
    confidence = float(result.probabilities[i, predicted])
    colour = CORRECT_COLOUR if predicted == true else MISTAKE_COLOUR
    return f"predicted {predicted} ({percent(confidence)})\ntrue {true}", colour


def mistakes_section(result: Evaluation) -> Section:
    wrong = np.flatnonzero(result.digits != result.labels)
    confidence = result.probabilities[wrong, result.digits[wrong]]
    order = wrong[np.argsort(-confidence, kind="stable")][:MISTAKES]
    title = f"The {len(order)} most confident mistakes (of {len(wrong):,})"
    if len(order) == 0:
        figure = message_figure("No mistakes: every test image is classified correctly.")
    else:
        figure = image_grid(
            order.tolist(), result, columns=4, title=title, label=mistake_label, rows=4
        )
    caption = (
        f"The mistakes the model was surest of: true and predicted digit, the confidence in the "
        f"wrong answer, and the image's position in the test set. {len(wrong):,} test images "
        f"are misclassified in all."
    )
    return Section("confident-mistakes.png", "Most confident mistakes", caption, figure)


def mistake_label(result: Evaluation, i: int) -> tuple[str, str]:
    predicted, true = int(result.digits[i]), int(result.labels[i])
    confidence = float(result.probabilities[i, predicted])
    return f"true {true}, predicted {predicted}\n{percent(confidence)} sure  (#{i})", MISTAKE_COLOUR


def image_grid(
    indices: list[int],
    result: Evaluation,
    *,
    columns: int,
    title: str,
    label: Callable[[Evaluation, int], tuple[str, str]],
    rows: int | None = None,
) -> Figure:
    # A fixed cell size, so every grid comes out well over 600 px whatever the count.
    rows = rows or max(1, math.ceil(len(indices) / columns))
    figure = Figure(figsize=(1.75 * columns, 2.0 * rows + 0.5), layout="constrained")
    figure.suptitle(title, fontsize=12)
    axes = figure.subplots(rows, columns, squeeze=False)
    for cell, ax in enumerate(axes.flat):
        if cell >= len(indices):
            ax.set_axis_off()
            continue
        i = indices[cell]
        # Dark ink on white, as the TensorFlow tutorial draws MNIST (the model sees white on black).
        ax.imshow(result.images[i], cmap="binary", vmin=0, vmax=255, interpolation="nearest")
        text, colour = label(result, i)
        ax.set_title(text, fontsize=9, color=colour)
        frame(ax, colour)
    return figure


def frame(ax: Axes, colour: str) -> None:
    # A thin frame shows the 28x28 field, so neighbouring digits do not run into each other.
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_edgecolor("#bbbbbb" if colour == CORRECT_COLOUR else colour)


def percent(p: float) -> str:
    # 99.96% is not 100%: a rounded-up certainty would claim more than the model does.
    return ">99.9%" if p >= 0.9995 else f"{p:.1%}"


def message_figure(text: str) -> Figure:
    figure = Figure(figsize=(7, 6))
    figure.text(0.5, 0.5, text, ha="center", va="center", fontsize=13)
    return figure


def confusion_section(result: Evaluation) -> Section:
    matrix = confusion_matrix(result.labels, result.digits)
    figure = Figure(figsize=(7.8, 6.6), layout="constrained")
    ax = figure.subplots()
    draw_confusion(ax, figure, matrix)
    caption = (
        "Rows are the true digit, columns the model's answer: the diagonal holds the correct "
        "answers, every other cell a kind of mistake. The colour scale is logarithmic so that "
        "single mistakes still show; empty cells are white."
    )
    return Section("confusion-matrix.png", "Confusion matrix", caption, figure)


def confusion_matrix(labels: np.ndarray, digits: np.ndarray) -> np.ndarray:
    matrix = np.zeros((10, 10), dtype=np.int64)
    np.add.at(matrix, (labels.astype(np.int64), digits.astype(np.int64)), 1)
    return matrix


def draw_confusion(ax: Axes, figure: Figure, matrix: np.ndarray) -> None:
    top = max(2, int(matrix.max()))
    # vmin below 1 gives a single mistake a visible tint, so it never looks like an empty cell.
    norm = LogNorm(vmin=0.5, vmax=top)
    cmap = matplotlib.colormaps["Blues"].with_extremes(bad="white")
    shown = np.ma.masked_equal(matrix, 0)
    image = ax.imshow(shown, cmap=cmap, norm=norm)
    colourbar = figure.colorbar(image, ax=ax, shrink=0.85)
    colourbar.set_label("test images (log scale)")
    colourbar.ax.yaxis.set_major_formatter(lambda value, _: f"{value:,.0f}")
    for (row, col), count in np.ndenumerate(matrix):
        # White text on the dark cells, dark text on the light ones.
        dark = count > 0 and norm(count) > 0.55
        colour = "white" if dark else ("#b0b0b0" if count == 0 else "#1b1b1b")
        ax.text(col, row, f"{count}", ha="center", va="center", fontsize=9, color=colour)
    ax.set_xticks(range(10))
    ax.set_yticks(range(10))
    ax.set_xlabel("predicted digit")
    ax.set_ylabel("true digit")
    ax.xaxis.set_label_position("top")
    ax.xaxis.tick_top()
    total, right = int(matrix.sum()), int(np.trace(matrix))
    ax.set_title(
        f"Confusion matrix: {right:,} of {total:,} test images correct", fontsize=12, pad=12
    )


def curves_section(history_path: Path) -> Section:
    file, title = "training-curves.png", "Training curves"
    try:
        history = read_history(history_path)
    except (OSError, ValueError) as e:
        note = f"No training curves: no usable training history at {history_path} ({e})."
        return Section(file, title, note, None)
    figure = Figure(figsize=(8, 7.5), layout="constrained")
    loss_ax, accuracy_ax = figure.subplots(2, 1, sharex=True)
    draw_curves(loss_ax, accuracy_ax, history)
    caption = (
        "Loss and accuracy per epoch while training. Training accuracy is measured on augmented "
        "images with dropout active, so it sits below the test accuracy. The test curve is for "
        "information only: training runs a fixed number of epochs and keeps the last."
    )
    return Section(file, title, caption, figure)


def read_history(path: Path) -> dict[str, list[float]]:
    """The history as lists of floats; ValueError says what is wrong with a malformed one."""
    raw = json.loads(path.read_text())
    if not isinstance(raw, dict):
        raise ValueError("not a JSON object")
    missing = [key for key in HISTORY_KEYS if key not in raw]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    keys = [*HISTORY_KEYS, *(["test_accuracy"] if "test_accuracy" in raw else [])]
    history = {key: [float(v) for v in raw[key]] for key in keys}
    lengths = {len(values) for values in history.values()}
    if len(lengths) != 1 or 0 in lengths:
        raise ValueError("its lists are empty or of different lengths")
    return history


def draw_curves(loss_ax: Axes, accuracy_ax: Axes, history: dict[str, list[float]]) -> None:
    epochs = history["epoch"]
    loss_ax.plot(epochs, history["loss"], color="#1f77b4", label="training loss")
    loss_ax.set_ylim(bottom=0)
    loss_ax.set_ylabel("loss (cross-entropy)")
    loss_ax.set_title("Training loss per epoch", fontsize=12)
    loss_ax.legend(loc="upper right")
    last = history["accuracy"][-1]
    accuracy_ax.plot(
        epochs, history["accuracy"], color="#1f77b4", label=f"training, augmented (last {last:.2%})"
    )
    if "test_accuracy" in history:
        test = history["test_accuracy"]
        accuracy_ax.plot(epochs, test, color="#d62728", label=f"test set (last {test[-1]:.2%})")
    accuracy_ax.set_ylim(top=1.0)
    accuracy_ax.set_ylabel("accuracy")
    accuracy_ax.set_xlabel("epoch")
    accuracy_ax.set_title("Accuracy per epoch", fontsize=12)
    accuracy_ax.yaxis.set_major_formatter(lambda value, _: f"{value:.0%}")
    accuracy_ax.legend(loc="lower right")
    for ax in (loss_ax, accuracy_ax):
        ax.grid(alpha=0.3)


# --- the page --------------------------------------------------------------------------------

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 980px; margin: 2em auto; padding: 0 1em;
       color: #1b1b1b; }
.accuracy { font-size: 1.15em; }
.mismatch { color: #c62828; font-weight: bold; }
table { border-collapse: collapse; }
td, th { padding: 0.2em 0.8em; text-align: right; border-bottom: 1px solid #ddd; }
figure { margin: 2em 0; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #444; margin-top: 0.4em; }
"""


def page(result: Evaluation, card: dict | None, sections: list[Section]) -> str:
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>Digit classifier: test-set report</title>",
        f"<style>{STYLE}</style></head><body>",
        "<h1>Digit classifier: test-set report</h1>",
        accuracy_paragraph(result, card),
        model_paragraph(card),
        per_digit_table(result, card),
        *(figure_html(section) for section in sections),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def accuracy_paragraph(result: Evaluation, card: dict | None) -> str:
    right, total = int((result.digits == result.labels).sum()), len(result.labels)
    measured = (
        f"Accuracy on the official MNIST test set: <b>{result.accuracy:.2%}</b> "
        f"({right:,} of {total:,} images)."
    )
    if card is None:
        return f'<p class="accuracy">{measured} No model card was found beside the model.</p>'
    expected = float(card["test_accuracy"])
    note = html.escape(str(card.get("test_accuracy_note", "")))
    claim = f"The model card says {expected:.2%}" + (f": {note}." if note else ".")
    if abs(expected - result.accuracy) > TOLERANCE:
        warning = "MISMATCH: not the model or data the card describes."
        claim += f' <span class="mismatch">{warning}</span>'
    return f'<p class="accuracy">{measured} {claim}</p>'


def model_paragraph(card: dict | None) -> str:
    if card is None:
        return ""
    facts = [
        ("Preset", card.get("preset")),
        ("Architecture", card.get("architecture")),
        ("Training data", (card.get("data") or {}).get("description")),
        ("ONNX sha256", card.get("onnx_sha256")),
    ]
    items = "".join(
        f"<li>{name}: {html.escape(str(value))}</li>" for name, value in facts if value is not None
    )
    return f"<ul>{items}</ul>" if items else ""


def per_digit_table(result: Evaluation, card: dict | None) -> str:
    per_card = (card or {}).get("test_accuracy_per_digit", {})
    rows = ["<tr><th>digit</th><th>images</th><th>accuracy</th><th>card</th></tr>"]
    for digit, accuracy in result.per_digit().items():
        expected = per_card.get(str(digit))
        shown = "" if expected is None else f"{float(expected):.2%}"
        count = int((result.labels == digit).sum())
        rows.append(
            f"<tr><td>{digit}</td><td>{count:,}</td><td>{accuracy:.2%}</td><td>{shown}</td></tr>"
        )
    return "<h2>Per digit</h2><table>" + "".join(rows) + "</table>"


def figure_html(section: Section) -> str:
    caption = html.escape(section.caption)
    heading = f"<h2>{html.escape(section.title)}</h2>"
    if section.figure is None:
        return f"{heading}<p>{caption}</p>"
    alt = html.escape(section.title)
    return (
        f'{heading}<figure><img src="{section.file}" alt="{alt}">'
        f"<figcaption>{caption}</figcaption></figure>"
    )
