"""The committed model outside onnxruntime-python: the ONNX reference evaluator, Node.js
(examples/node) and the browser demo (examples/web) must all read digits the same way.

The Node and browser tests need `npm ci --ignore-scripts` in examples/node and examples/web, and
the browser test Debian's chromium; each skips with the reason when its part is missing.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import almost_filled_bar, corner_lit_bar, one_sided_grid_cell, tight_zero, varied
from PIL import Image, ImageDraw, ImageFilter

from classify_batch.jobs.errors import InputError
from classify_batch.jobs.model import load
from classify_batch.jobs.normalize import WORK_SIDE, to_mnist

ROOT = Path(__file__).resolve().parent.parent
NODE_DIR = ROOT / "examples" / "node"
WEB_DIR = ROOT / "examples" / "web"
SCREENSHOT = ROOT / "docs" / "web-demo.png"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


def node() -> str:
    path = shutil.which("node")
    if path is None:
        pytest.skip("node is not installed (Node.js 18+ runs examples/node and examples/web)")
    return path


def npm_package(folder: Path, package: str) -> None:
    if not (folder / "node_modules" / package).is_dir():
        rel = folder.relative_to(ROOT)
        pytest.skip(f"{package} is not installed: run `npm ci --ignore-scripts --prefix {rel}`")


# --- ONNX reference evaluator ------------------------------------------------------------------


def test_reference_evaluator_agrees_with_onnxruntime(samples, committed_model: Path) -> None:
    ReferenceEvaluator = pytest.importorskip("onnx.reference").ReferenceEvaluator

    images = varied(samples[0], 500)
    probabilities, digits = load(committed_model)(images)
    ref_probabilities, ref_digits = ReferenceEvaluator(str(committed_model)).run(
        ["probabilities", "digit"], {"images": images}
    )
    np.testing.assert_array_equal(ref_digits, digits)
    np.testing.assert_allclose(np.asarray(ref_probabilities), probabilities, atol=1e-5)


# --- Node.js ------------------------------------------------------------------------------------


def run_classify(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [node(), str(NODE_DIR / "classify.js"), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_node_digits_equal_python(samples, committed_model: Path, tmp_path: Path) -> None:
    npm_package(NODE_DIR, "onnxruntime-node")
    images = varied(samples[0], 2000)
    probabilities, digits = load(committed_model)(images)
    np.save(tmp_path / "x.npy", images)

    # A batch size that leaves a short last batch.
    result = run_classify(committed_model, tmp_path / "x.npy", "--batch", "512")
    assert result.returncode == 0, result.stderr
    np.testing.assert_array_equal(np.array(result.stdout.split(), dtype=np.int64), digits)

    # (N, 784) rows as a raw file, with confidences.
    images[:50].tofile(tmp_path / "x.raw")
    result = run_classify(committed_model, tmp_path / "x.raw", "--json")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [row["digit"] for row in rows] == digits[:50].tolist()
    np.testing.assert_allclose(
        [row["confidence"] for row in rows], probabilities[:50].max(axis=1), atol=1e-5
    )


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((3, 28, 28), np.float32), "dtype '<f4' is not uint8"),
        (np.asfortranarray(np.zeros((3, 28, 28), np.uint8)), "Fortran-order"),
        (np.zeros((3, 20, 20), np.uint8), "shape (3,20,20) is not"),
    ],
    ids=["float32", "fortran", "wrong-shape"],
)
def test_node_refuses_bad_npy(
    array: np.ndarray, message: str, committed_model: Path, tmp_path: Path
) -> None:
    npm_package(NODE_DIR, "onnxruntime-node")
    np.save(tmp_path / "bad.npy", array)
    result = run_classify(committed_model, tmp_path / "bad.npy")
    assert result.returncode == 1
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and message in result.stderr, result.stderr


# --- browser ------------------------------------------------------------------------------------

# Reads [{w, h, pixels(base64)}] from a file, prints normalize.js's 28x28 result for each.
NORMALIZE_JS = """
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
const { toMnist, BlankError } = await import(pathToFileURL(process.argv[1]).href);
const out = JSON.parse(readFileSync(process.argv[2], 'utf8')).map(({ w, h, pixels }) => {
  try {
    const image = toMnist(new Uint8Array(Buffer.from(pixels, 'base64')), w, h);
    return Buffer.from(image).toString('base64');
  } catch (e) {
    if (e instanceof BlankError) return null;
    throw e;
  }
});
process.stdout.write(JSON.stringify(out));
"""


def drawings(count: int) -> list[np.ndarray]:
    """Random pen strokes on canvases up to 400 px (the page's pad is 280; the job only reduces
    images above 512 px, a step the page leaves out): thin and thick, big and tiny, light and
    dark paper, grey backgrounds, plus a blank one."""
    rng = np.random.default_rng(7)
    out = [np.zeros((280, 280), np.uint8)]
    for _ in range(count):
        width, height = (int(v) for v in rng.integers(12, 400, 2))
        image = Image.new("L", (width, height), int(rng.integers(0, 60)))
        draw = ImageDraw.Draw(image)
        scale = rng.uniform(0.05, 1.0)
        x0, y0 = rng.uniform(0, 1 - scale, 2)
        for _ in range(int(rng.integers(1, 4))):
            points = [
                (float((x0 + scale * px) * width), float((y0 + scale * py) * height))
                for px, py in rng.uniform(0, 1, (int(rng.integers(2, 6)), 2))
            ]
            draw.line(points, fill=int(rng.integers(120, 256)), width=int(rng.integers(1, 30)))
        gray = np.asarray(image)
        out.append(255 - gray if rng.random() < 0.3 else gray)
    return out


def stress_drawings(per_kind: int) -> list[np.ndarray]:
    """Random 28x28 pen strokes handed over the ways benchmarks/stress.py makes them: tight
    binarized crops, 16x16 scans, grid cells (plain and photographed), hairlines, markers (not
    the 1000 px tablet canvases); plus empty cells and noise, which both must find blank."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from stress import STRESS_SETS, blank_cell

    rng = np.random.default_rng(11)
    out = []
    for make in STRESS_SETS.values():
        for _ in range(per_kind):
            image = Image.new("L", (28, 28), 0)
            points = [
                (float(x), float(y)) for x, y in rng.uniform(4, 24, (int(rng.integers(3, 7)), 2))
            ]
            ImageDraw.Draw(image).line(points, fill=255, width=int(rng.integers(2, 4)))
            picture = make(np.asarray(image), rng)
            # The page leaves out the job's reduction of bigger images (its pad is 280 px): the
            # tablet set's 1000 px canvases are the job's alone.
            if max(picture.shape) <= WORK_SIDE:
                out.append(picture)
    out += [blank_cell(rng) for _ in range(5)]
    out += [rng.integers(0, 256, (40, 40), dtype=np.uint8) for _ in range(3)]
    return out


def rule_drawings() -> list[np.ndarray]:
    """One drawing for each rule that only some shapes reach: a square tight crop (given
    handwriting's shape), a bold bar that leaves only light corners (a tight binary crop), a
    cell with a grid line on one side only, sharp and blurred (a frame piece), and a box almost
    all ink (not noise)."""
    cell = one_sided_grid_cell()
    blurred = cell.rotate(90).filter(ImageFilter.GaussianBlur(1.0))
    sharp, soft = np.asarray(cell), np.asarray(blurred)
    return [tight_zero(), corner_lit_bar(), sharp, soft, almost_filled_bar()]


def test_web_normalization_matches_job(tmp_path: Path) -> None:
    images = drawings(150) + stress_drawings(25) + rule_drawings()
    cases = [
        {"w": im.shape[1], "h": im.shape[0], "pixels": base64.b64encode(im.tobytes()).decode()}
        for im in images
    ]
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    result = subprocess.run(
        [node(), "--input-type=module", "-e", NORMALIZE_JS, "--",
         str(WEB_DIR / "normalize.js"), str(tmp_path / "cases.json")],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    blanks = 0
    for i, (image, got) in enumerate(zip(images, json.loads(result.stdout), strict=True)):
        try:
            expected = to_mnist(image, "mnist")
        except InputError:
            blanks += 1
            assert got is None, f"drawing {i}: the job finds it blank, the page does not"
            continue
        assert got is not None, f"drawing {i}: the page finds it blank, the job does not"
        page = np.frombuffer(base64.b64decode(got), np.uint8).reshape(28, 28)
        np.testing.assert_array_equal(page, expected, err_msg=f"drawing {i} ({image.shape})")
    assert 9 <= blanks < len(images) // 10


@pytest.fixture
def web_server(tmp_path: Path):
    npm_package(WEB_DIR, "onnxruntime-web")
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(
        [sys.executable, str(WEB_DIR / "serve.py"), "--port", "0", "--quiet"],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    assert server.stdout is not None
    try:
        url = server.stdout.readline().strip()  # serve.py prints its URL once it listens
        assert url.startswith("http://127.0.0.1:"), (tmp_path / "serve.log").read_text()
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)
        log.close()


@pytest.fixture
def browser() -> str:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"no Chromium at {CHROMIUM}: `apt-get install -y chromium` (or set CHROMIUM)")
    npm_package(WEB_DIR, "playwright-core")
    return CHROMIUM


def test_web_page_reads_drawn_digits(browser: str, web_server: str, committed_model: Path) -> None:
    SCREENSHOT.parent.mkdir(exist_ok=True)
    result = subprocess.run(
        [node(), str(WEB_DIR / "e2e.mjs"), web_server, str(SCREENSHOT)],
        env={**os.environ, "CHROMIUM": browser},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["problems"] == []

    classifier = load(committed_model)
    for drawing in report["results"]:
        name = drawing["name"]
        assert drawing["shown"] == str(drawing["expect"]), f"{name}: page shows {drawing['shown']}"
        # What the page fed the model is what the Python job makes of the same pixels ...
        gray = np.frombuffer(base64.b64decode(drawing["gray"]), np.uint8)
        gray = gray.reshape(drawing["height"], drawing["width"])
        fed = np.array(drawing["prediction"]["input"], np.uint8).reshape(28, 28)
        np.testing.assert_array_equal(fed, to_mnist(gray, "mnist"), err_msg=name)
        # ... and onnxruntime-web answers like onnxruntime-python.
        probabilities, digits = classifier(fed[None])
        assert drawing["prediction"]["digit"] == int(digits[0]), name
        np.testing.assert_allclose(
            drawing["prediction"]["probabilities"], probabilities[0], atol=1e-4
        )

    assert 0 < SCREENSHOT.stat().st_size < 200_000
