"""`digits show`: one picture of what the model makes of some inputs.

Each cell holds an input as given (fitted into a square) beside the 28x28 image the model saw after
normalization, with the answer below. Inputs are found and decoded by the same code as
classify-batch, so the picture explains the CSV. Runtime side: Pillow and numpy only.
"""

import io
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps

from classify_batch.contract import PREPROCESS_MODES, ExitCode
from classify_batch.jobs import model as model_loader
from classify_batch.jobs.arrays import ArrayFile, IdxFile, NpyFile
from classify_batch.jobs.atomic import write_bytes
from classify_batch.jobs.decode import decode_files, decode_rows
from classify_batch.jobs.discover import Source, find_inputs
from classify_batch.jobs.errors import InputError
from classify_batch.jobs.images import PILLOW_FORMATS, read_image

FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}

SIDE = 140  # each of the two pictures in a cell; the 28x28 is enlarged 5x exactly
INNER = 10  # padding inside a cell
GAP = 10  # between the two pictures
CELL_WIDTH = 2 * INNER + 2 * SIDE + GAP
CELL_HEIGHT = INNER + SIDE + 22 + 64 + INNER  # pictures, their sizes, then name and answer
SPACING = 12  # between cells
MARGIN = 16
COLUMNS = 4
HEADER = 64
# Modes that convert to RGB faithfully; 16-bit and float images would be clipped, so those show
# the grayscale the job itself reads.
COLOUR_MODES = frozenset({"1", "L", "LA", "P", "PA", "RGB", "RGBA", "CMYK", "YCbCr"})
LOW_CONFIDENCE = 0.5

INK = (27, 27, 27)
MUTED = (110, 110, 110)
FRAME = (200, 200, 200)
FAILED_INK = (183, 28, 28)
FAILED_FILL = (253, 236, 234)
UNSURE_INK = (191, 102, 0)


@dataclass
class Cell:
    name: str
    given: Image.Image | None = None  # the input as given, already fitted into SIDE x SIDE
    given_size: tuple[int, int] | None = None  # its width and height before fitting
    seen: np.ndarray | None = None  # the 28x28 the model got
    digit: int | None = None
    confidence: float | None = None
    error: str | None = None


def show_command(
    inputs: list[str], out: Path, model: Path | None, preprocess: str, limit: int
) -> int:
    def fail(message: str, code: int = ExitCode.NOTHING_DONE) -> int:
        print(f"digits show: {message}", file=sys.stderr)
        return code

    if preprocess not in PREPROCESS_MODES:
        modes = ", ".join(PREPROCESS_MODES)
        return fail(f"--preprocess must be one of {modes} (got {preprocess!r})", ExitCode.USAGE)
    image_format = FORMATS.get(out.suffix.lower())
    if image_format is None:
        return fail(f"--out {out}: name a .png, .jpg or .webp file", ExitCode.USAGE)
    if not out.parent.is_dir() or out.is_dir():
        return fail(f"--out {out}: need a file in an existing folder")

    found = find_inputs(inputs)
    if not found.sources:
        return fail(f"no inputs found in {', '.join(inputs)} ({len(found.skipped)} skipped)")
    try:
        classifier = model_loader.load(model or model_loader.default_model_path())
    except model_loader.ModelError as e:
        return fail(str(e))

    cells, more = collect(found.sources, preprocess, limit)
    classify(cells, classifier)
    picture = render(cells, header_lines(classifier, preprocess, limit, more))
    try:
        write_bytes(out, encode(picture, image_format))
    except OSError as e:
        return fail(f"cannot write {out}: {e.strerror or e}")
    failed = sum(cell.error is not None for cell in cells)
    shown = f"{len(cells)} input{'' if len(cells) == 1 else 's'}" + (" (--limit)" if more else "")
    print(f"digits show: {shown}, {failed} failed -> {out}", file=sys.stderr)
    return ExitCode.OK


# --- gathering the cells ---------------------------------------------------------------------


def collect(sources: list[Source], preprocess: str, limit: int) -> tuple[list[Cell], bool]:
    """Up to `limit` cells in the job's order; True when inputs were left out."""
    cells: list[Cell] = []
    for source in sources:
        if len(cells) >= limit:
            return cells, True
        if source.kind == "error":  # found but unusable: a broken link, an unreadable folder
            cells.append(Cell(source.shown, error=source.reason))
        elif source.kind == "image":
            cells.append(image_cell(source, preprocess))
        else:
            # One row more than there is room for tells whether the array had more.
            cells.extend(array_cells(source, preprocess, limit + 1 - len(cells)))
    return cells[:limit], len(cells) > limit


def image_cell(source: Source, preprocess: str) -> Cell:
    decoded = decode_files([(source.path, source.shown)], preprocess)
    cell = Cell(source.shown)
    cell.given, cell.given_size = preview(source.path)
    if decoded.errors:
        cell.error = decoded.errors[0][2]
    else:
        cell.seen = decoded.images[0]
    return cell


def preview(path: str | Path) -> tuple[Image.Image | None, tuple[int, int] | None]:
    """The file as given, fitted into SIDE x SIDE; (None, None) when it cannot be read."""
    try:
        # The job's own reader vets the file first (size limits, formats, decompression bombs).
        gray = read_image(path, draft_side=2 * SIDE)
    except InputError:
        return None, None
    colour = colour_preview(path)
    if colour is not None:
        return colour
    image = Image.fromarray(gray)
    return fit(image), image.size


def colour_preview(path: str | Path) -> tuple[Image.Image, tuple[int, int]] | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path, formats=PILLOW_FORMATS) as im:
                if im.mode not in COLOUR_MODES:
                    return None
                width, height = im.size
                im.draft("RGB", (2 * SIDE, 2 * SIDE))  # JPEG only: decode at a reduced scale
                upright = ImageOps.exif_transpose(im)
                if (upright.width > upright.height) != (width > height):
                    width, height = height, width  # EXIF turned it by 90 degrees
                return fit(on_white(upright)), (width, height)
    except Exception:  # any decoder trouble: fall back to the grayscale the job read
        return None


def on_white(im: Image.Image) -> Image.Image:
    # Transparent areas become paper, as the job reads them.
    rgba = im.convert("RGBA")
    paper = Image.new("RGBA", rgba.size, "white")
    paper.alpha_composite(rgba)
    return paper.convert("RGB")


def fit(image: Image.Image) -> Image.Image:
    """Scale into SIDE x SIDE keeping the aspect: small inputs by whole pixels, so they stay
    crisp, big ones smoothly."""
    width, height = image.size
    if max(width, height) <= SIDE:
        factor = SIDE // max(width, height)
        return image.resize((width * factor, height * factor), Image.Resampling.NEAREST)
    scale = SIDE / max(width, height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def array_cells(source: Source, preprocess: str, limit: int) -> Iterator[Cell]:
    """Cells for the first `limit` rows of a .npy or IDX file, bad rows included."""
    try:
        array: ArrayFile = NpyFile(source.path) if source.kind == "npy" else IdxFile(source.path)
    except InputError as e:
        yield Cell(source.shown, error=str(e))
        return
    try:
        for rows in array.chunks(0, min(array.count, limit), limit):
            yield from row_cells(source.shown, rows.indices, rows.images, rows.errors, preprocess)
    except InputError as e:
        yield Cell(source.shown, error=str(e))


def row_cells(
    shown: str,
    indices: np.ndarray,
    images: np.ndarray,
    errors: list[tuple[int, str]],
    preprocess: str,
) -> list[Cell]:
    decoded = decode_rows(shown, indices, images, preprocess)
    seen = dict(zip(np.asarray(decoded.indices).tolist(), decoded.images, strict=True))
    failed = {index: reason for _, index, reason in decoded.errors}
    cells = []
    for index, image in zip(indices.tolist(), images, strict=True):
        cell = Cell(f"{shown}[{index}]", given=fit(Image.fromarray(image)), given_size=(28, 28))
        cell.seen = seen.get(index)
        cell.error = failed.get(index)
        cells.append((index, cell))
    # Rows the array reader refused never became images: their cells hold the reason only.
    cells += [(index, Cell(f"{shown}[{index}]", error=reason)) for index, reason in errors]
    return [cell for _, cell in sorted(cells, key=lambda pair: pair[0])]


def classify(cells: list[Cell], classifier: model_loader.Classifier) -> None:
    ready = [(cell, cell.seen) for cell in cells if cell.seen is not None]
    if not ready:
        return
    probabilities, digits = classifier(np.stack([seen for _, seen in ready]))
    for (cell, _), p, digit in zip(ready, probabilities, digits, strict=True):
        cell.digit = int(digit)
        cell.confidence = float(p[digit])


# --- drawing ---------------------------------------------------------------------------------


Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


@dataclass(frozen=True)
class Fonts:
    title: Font
    text: Font
    small: Font
    digit: Font

    @classmethod
    def load(cls) -> "Fonts":
        # Pillow's own scalable font: the same look on every machine, no font files to find.
        return cls(*(ImageFont.load_default(size=size) for size in (17, 14, 12, 26)))


def header_lines(
    classifier: model_loader.Classifier, preprocess: str, limit: int, more: bool
) -> list[str]:
    first = (
        f"digits show    model: {classifier.path.name} (sha256 {classifier.sha256[:12]})    "
        f"preprocessing: {preprocess}"
        + (f"   only the first {limit} inputs (--limit)" if more else "")
    )
    second = "Left: the input as given. Right: the 28x28 image the model saw. Below: its answer."
    return [first, second]


def render(cells: list[Cell], header: list[str]) -> Image.Image:
    fonts = Fonts.load()
    columns = max(2, min(COLUMNS, len(cells)))  # two at least: the picture stays >= 600 px wide
    rows = max(1, -(-len(cells) // columns))
    width = 2 * MARGIN + columns * CELL_WIDTH + (columns - 1) * SPACING
    title = wrap(header[0], fonts.title, width - 2 * MARGIN)
    legend = wrap(header[1], fonts.text, width - 2 * MARGIN)
    top = MARGIN + 22 * len(title) + 18 * len(legend) + SPACING
    height = top + rows * (CELL_HEIGHT + SPACING) - SPACING + MARGIN
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    y = MARGIN
    for line in title:
        draw.text((MARGIN, y), line, font=fonts.title, fill=INK)
        y += 22
    for line in legend:
        draw.text((MARGIN, y), line, font=fonts.text, fill=MUTED)
        y += 18
    for n, cell in enumerate(cells):
        row, column = divmod(n, columns)
        x = MARGIN + column * (CELL_WIDTH + SPACING)
        draw_cell(canvas, draw, fonts, cell, x, top + row * (CELL_HEIGHT + SPACING))
    return canvas


def draw_cell(
    canvas: Image.Image, draw: ImageDraw.ImageDraw, fonts: Fonts, cell: Cell, x: int, y: int
) -> None:
    failed = cell.error is not None
    draw.rectangle(
        (x, y, x + CELL_WIDTH - 1, y + CELL_HEIGHT - 1),
        fill=FAILED_FILL if failed else "white",
        outline=FAILED_INK if failed else FRAME,
    )
    left, right, top = x + INNER, x + INNER + SIDE + GAP, y + INNER
    draw_picture(canvas, draw, fonts, cell.given, left, top)
    seen = None
    if cell.seen is not None:
        seen = Image.fromarray(cell.seen).resize((SIDE, SIDE), Image.Resampling.NEAREST)
    draw_picture(canvas, draw, fonts, seen, right, top)
    below = top + SIDE + 4
    if cell.given_size is not None:
        size = "as given, {}x{}".format(*cell.given_size)
        draw.text((left, below), size, font=fonts.small, fill=MUTED)
    if seen is not None:
        draw.text((right, below), "model input, 28x28", font=fonts.small, fill=MUTED)
    text_top = below + 22
    name = shorten(cell.name, fonts.text, CELL_WIDTH - 2 * INNER)
    draw.text((left, text_top), name, font=fonts.text, fill=INK)
    if failed:
        draw_reason(draw, fonts, cell.error or "", left, text_top + 20)
    elif cell.digit is not None and cell.confidence is not None:
        draw_answer(draw, fonts, cell.digit, cell.confidence, left, text_top + 20)


def draw_picture(
    canvas: Image.Image,
    draw: ImageDraw.ImageDraw,
    fonts: Fonts,
    picture: Image.Image | None,
    x: int,
    y: int,
) -> None:
    draw.rectangle((x - 1, y - 1, x + SIDE, y + SIDE), fill=(238, 238, 238), outline=FRAME)
    if picture is None:
        draw.text(
            (x + SIDE // 2, y + SIDE // 2), "no image", font=fonts.small, fill=MUTED, anchor="mm"
        )
        return
    # Centred, so a tall or wide input keeps its shape inside the square; the outline shows its
    # edge even when it is as pale as the box behind it (a blank page).
    left, top = x + (SIDE - picture.width) // 2, y + (SIDE - picture.height) // 2
    canvas.paste(picture, (left, top))
    draw.rectangle((left, top, left + picture.width - 1, top + picture.height - 1), outline=FRAME)


def draw_answer(
    draw: ImageDraw.ImageDraw, fonts: Fonts, digit: int, confidence: float, x: int, y: int
) -> None:
    unsure = confidence < LOW_CONFIDENCE
    draw.text((x, y), str(digit), font=fonts.digit, fill=UNSURE_INK if unsure else INK)
    sure = ">99.9%" if confidence >= 0.9995 else f"{confidence:.1%}"
    note = f"{sure} sure" + ("  (unsure)" if unsure else "")
    draw.text((x + 26, y + 9), note, font=fonts.text, fill=UNSURE_INK if unsure else MUTED)


def draw_reason(draw: ImageDraw.ImageDraw, fonts: Fonts, reason: str, x: int, y: int) -> None:
    lines = wrap(f"failed: {reason}", fonts.small, CELL_WIDTH - 2 * INNER)
    if len(lines) > 3:
        lines = [*lines[:2], shorten_end(" ".join(lines[2:]), fonts.small, CELL_WIDTH - 2 * INNER)]
    for n, line in enumerate(lines):
        draw.text((x, y + 15 * n), line, font=fonts.small, fill=FAILED_INK)


def wrap(text: str, font: Font, width: int) -> list[str]:
    """Words on lines no wider than `width` pixels (a single overlong word keeps its line)."""
    lines: list[str] = []
    for word in text.split(" "):
        if lines and font.getlength(f"{lines[-1]} {word}") <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return [line.strip() for line in lines]


def shorten_end(text: str, font: Font, width: int) -> str:
    while text and font.getlength(text + "...") > width:
        text = text[:-1]
    return text + "..."


def shorten(text: str, font: Font, width: int) -> str:
    """The end of a long path, which names the file, cut to fit `width` pixels."""
    if font.getlength(text) <= width:
        return text
    # Whole folders go first, so what is left still reads as a path.
    parts = text.split("/")
    for start in range(1, len(parts)):
        candidate = ".../" + "/".join(parts[start:])
        if font.getlength(candidate) <= width:
            return candidate
    for start in range(1, len(text)):
        candidate = "..." + text[start:]
        if font.getlength(candidate) <= width:
            return candidate
    return "..."


def encode(picture: Image.Image, image_format: str) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, image_format, **({"optimize": True} if image_format == "PNG" else {}))
    return buffer.getvalue()
