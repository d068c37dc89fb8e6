"""classify-batch as a scheduler runs it: real files in temporary folders, the committed model."""

import csv
import gzip
import json
import os
import signal
import struct
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import BIN, run_program, tiled
from PIL import Image

from classify_batch.jobs import model as model_loader

CLASSIFY = str(BIN / "classify-batch")


def run(*args, **kwargs):
    return run_program("classify-batch", *args, **kwargs)


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def assert_clean_stderr(stderr: str) -> None:
    assert "Traceback" not in stderr, stderr


@pytest.fixture(scope="module")
def classifier(committed_model):
    return model_loader.load(committed_model)


@pytest.fixture(scope="module")
def images(samples) -> np.ndarray:
    return tiled(samples[0], 60)


@pytest.fixture(scope="module")
def expected(classifier, images) -> list[int]:
    return classifier(images)[1].tolist()


def write_pngs(folder: Path, images: np.ndarray) -> list[Path]:
    paths = []
    for i, image in enumerate(images):
        # Two levels of folders, so the walk's order is tested too.
        path = folder / f"batch{i // 25}" / f"img{i:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(path)
        paths.append(path)
    return paths


def write_idx(path: Path, images: np.ndarray, gz: bool = False) -> None:
    data = struct.pack(">IIII", 0x803, len(images), 28, 28) + images.tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)


# --- what a user gets right ---------------------------------------------------------------


def test_png_folder_gives_the_models_digits_for_the_arrays(tmp_path, images, expected):
    write_pngs(tmp_path / "in", images)
    result = run(tmp_path / "in", tmp_path / "out.csv", "--quiet")
    assert result.returncode == 0, result.stderr
    got = rows(tmp_path / "out.csv")
    assert [r["source"] for r in got] == sorted(r["source"] for r in got)
    assert [int(r["digit"]) for r in got] == expected
    assert all(r["index"] == "" for r in got)
    assert all(0.0 <= float(r["confidence"]) <= 1.0 for r in got)


def test_relative_inputs_stay_relative_in_the_csv(tmp_path, images):
    write_pngs(tmp_path / "in", images[:3])
    result = run("in", "out.csv", "-q", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert [r["source"] for r in rows(tmp_path / "out.csv")] == [
        "in/batch0/img000.png",
        "in/batch0/img001.png",
        "in/batch0/img002.png",
    ]


@pytest.mark.parametrize(
    "name,make",
    [
        ("uint8 N,28,28", lambda x: x),
        ("uint8 N,784", lambda x: x.reshape(len(x), 784)),
        ("float 0..1", lambda x: x.astype(np.float32) / 255),
        ("float 0..255", lambda x: x.astype(np.float64)),
        ("int64", lambda x: x.astype(np.int64)),
        ("fortran order", lambda x: np.asfortranarray(x.reshape(len(x), 784))),
        ("keras channels last", lambda x: x[..., None]),
        ("big-endian float", lambda x: (x / 255).astype(">f8")),
    ],
)
def test_npy_in_every_accepted_form(tmp_path, images, expected, name, make):
    np.save(tmp_path / "x.npy", make(images))
    result = run(tmp_path / "x.npy", tmp_path / "out.csv", "-q")
    assert result.returncode == 0, result.stderr
    got = rows(tmp_path / "out.csv")
    assert [int(r["digit"]) for r in got] == expected
    assert [r["index"] for r in got] == [str(i) for i in range(len(images))]


def test_single_28x28_npy(tmp_path, images, expected):
    np.save(tmp_path / "one.npy", images[0])
    result = run(tmp_path / "one.npy", tmp_path / "out.csv", "-q")
    assert result.returncode == 0, result.stderr
    assert [(r["index"], int(r["digit"])) for r in rows(tmp_path / "out.csv")] == [
        ("0", expected[0])
    ]


@pytest.mark.parametrize("gz", [False, True])
def test_idx_files_as_mnist_ships_them(tmp_path, images, expected, gz):
    name = "t10k-images-idx3-ubyte" + (".gz" if gz else "")
    write_idx(tmp_path / name, images, gz=gz)
    result = run(tmp_path / name, tmp_path / "out.csv", "-q")
    assert result.returncode == 0, result.stderr
    assert [int(r["digit"]) for r in rows(tmp_path / "out.csv")] == expected


def test_mixed_inputs_keep_the_order_given(tmp_path, images, expected):
    write_pngs(tmp_path / "pngs", images[:10])
    np.save(tmp_path / "arr.npy", images[10:20])
    Image.fromarray(images[20]).save(tmp_path / "single.png")
    result = run(
        tmp_path / "single.png", tmp_path / "arr.npy", tmp_path / "pngs", tmp_path / "out.csv", "-q"
    )
    assert result.returncode == 0, result.stderr
    got = [int(r["digit"]) for r in rows(tmp_path / "out.csv")]
    assert got == [expected[20], *expected[10:20], *expected[:10]]


def test_dash_writes_the_csv_to_stdout(tmp_path, images, expected):
    np.save(tmp_path / "x.npy", images[:5])
    result = run(tmp_path / "x.npy", "-", "-q")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "source,index,digit,confidence"
    assert [int(line.split(",")[2]) for line in lines[1:]] == expected[:5]
    assert not list(tmp_path.glob("*.csv"))


def test_probabilities_add_p0_to_p9(tmp_path, images):
    np.save(tmp_path / "x.npy", images[:5])
    result = run(tmp_path / "x.npy", tmp_path / "out.csv", "--probabilities", "-q")
    assert result.returncode == 0, result.stderr
    for r in rows(tmp_path / "out.csv"):
        p = [float(r[f"p{d}"]) for d in range(10)]
        assert abs(sum(p) - 1) < 1e-4
        assert int(r["digit"]) == int(np.argmax(p))
        assert float(r["confidence"]) == max(p)


def test_low_confidence_goes_to_review_and_is_counted(tmp_path, images):
    np.save(tmp_path / "x.npy", images)
    result = run(tmp_path / "x.npy", tmp_path / "out.csv", "--min-confidence", "0.9999")
    assert result.returncode == 0, result.stderr
    written = rows(tmp_path / "out.csv")
    review = rows(tmp_path / "out.review.csv")
    low = [r for r in written if float(r["confidence"]) < 0.9999]
    assert review == low and len(low) > 0
    assert json.loads((tmp_path / "out.json").read_text())["counts"]["for_review"] == len(low)
    assert f"for review {len(low)}" in result.stderr


def test_run_record_names_the_model_and_the_counts(tmp_path, images, committed_model):
    write_pngs(tmp_path / "in", images[:4])
    (tmp_path / "in" / "notes.txt").write_text("not a digit")
    result = run(tmp_path / "in", tmp_path / "out.csv", "-q")
    assert result.returncode == 0, result.stderr
    record = json.loads((tmp_path / "out.json").read_text())
    import hashlib

    assert record["model"]["sha256"] == hashlib.sha256(committed_model.read_bytes()).hexdigest()
    assert record["counts"] == {"classified": 4, "failed": 0, "skipped": 1, "for_review": 0}
    assert record["status"] == "complete" and record["started"] <= record["finished"]
    assert rows(tmp_path / "out.errors.csv") == []


def test_summary_line_on_stderr_and_quiet_silences_it(tmp_path, images):
    np.save(tmp_path / "x.npy", images[:3])
    loud = run(tmp_path / "x.npy", tmp_path / "out.csv")
    assert "classified 3, failed 0, skipped 0" in loud.stderr
    assert run(tmp_path / "x.npy", tmp_path / "out.csv", "--quiet").stderr == ""


def test_committed_model_is_found_from_any_working_directory(tmp_path, images, expected):
    np.save(tmp_path / "x.npy", images[:5])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = run("../x.npy", "out.csv", "-q", cwd=elsewhere, env={"CLASSIFY_MODEL": ""})
    assert result.returncode == 0, result.stderr
    assert [int(r["digit"]) for r in rows(elsewhere / "out.csv")] == expected[:5]


def test_streaming_with_a_pool_gives_the_same_rows_as_one_process(tmp_path, samples):
    paths = write_pngs(tmp_path / "in", tiled(samples[0], 2100))  # enough to start a pool
    paths[7].write_bytes(paths[7].read_bytes()[:60])  # and a failure in the middle
    one = run(tmp_path / "in", tmp_path / "one.csv", "--workers", "1", "-q")
    two = run(tmp_path / "in", tmp_path / "two.csv", "--workers", "2", "-q")
    assert one.returncode == two.returncode == 3, one.stderr + two.stderr
    assert json.loads((tmp_path / "one.json").read_text())["decoder_processes"] == 0
    assert json.loads((tmp_path / "two.json").read_text())["decoder_processes"] == 2
    assert (tmp_path / "one.csv").read_bytes() == (tmp_path / "two.csv").read_bytes()
    assert (tmp_path / "one.errors.csv").read_bytes() == (tmp_path / "two.errors.csv").read_bytes()


# --- what goes wrong, and how it is reported -------------------------------------------------


def make_zoo(folder: Path, images: np.ndarray) -> dict[str, str]:
    """Broken and hostile files among good ones; returns {file name: words its error must hold}."""
    folder.mkdir()
    good = folder / "good.png"
    Image.fromarray(images[0]).save(good)
    data = good.read_bytes()
    (folder / "truncated.png").write_bytes(data[: len(data) // 2])
    (folder / "random.png").write_bytes(os.urandom(2000))
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "text.png").write_text("hello, I am not a picture\n")
    np.save(folder / "objects.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    np.save(folder / "nan.npy", np.full((2, 28, 28), np.nan, dtype=np.float32))
    np.save(folder / "shape.npy", np.zeros((3, 32, 32), np.uint8))
    (folder / "fake.npy").write_bytes(b"\x93NUMPY garbage")
    write_idx(folder / "cut-idx3-ubyte", images[:5])
    with open(folder / "cut-idx3-ubyte", "r+b") as f:
        f.truncate(16 + 784 * 2 + 100)
    # A decompression bomb: a tiny file whose header promises 100,000 x 100,000 pixels.
    Image.new("1", (1, 1)).save(folder / "bomb.png")
    raw = bytearray((folder / "bomb.png").read_bytes())
    raw[16:24] = struct.pack(">II", 100_000, 100_000)
    import zlib

    raw[29:33] = struct.pack(">I", zlib.crc32(bytes(raw[12:29])))
    (folder / "bomb.png").write_bytes(bytes(raw))
    (folder / "notes.txt").write_text("skipped, not an error")
    np.savez(folder / "archive.npz", x=images[:2])
    os.symlink(folder / "missing.png", folder / "dangling.png")
    os.symlink(folder, folder / "loop")
    os.mkfifo(folder / "pipe.png")
    return {
        "truncated.png": "truncat",
        "random.png": "not an image",
        "empty.jpg": "empty",
        "text.png": "not an image",
        "objects.npy": "object",
        "nan.npy": "NaN",
        "shape.npy": "shape",
        "fake.npy": ".npy",
        "cut-idx3-ubyte": "truncated",
        "bomb.png": "too large",
        "dangling.png": "broken symbolic link",
        "archive.npz": "numpy.save",
    }


def test_a_zoo_of_bad_files_is_reported_and_the_good_ones_classified(tmp_path, images, expected):
    bad = make_zoo(tmp_path / "zoo", images)
    result = run(tmp_path / "zoo", tmp_path / "out.csv")  # a hang (FIFO, loop) times out
    assert result.returncode == 3, result.stderr
    assert_clean_stderr(result.stderr)
    good = rows(tmp_path / "out.csv")
    by_file = {Path(r["source"]).name: r for r in good}
    assert int(by_file["good.png"]["digit"]) == expected[0]
    # The truncated IDX file still gives the two whole images it holds.
    idx_rows = [r for r in good if r["source"].endswith("cut-idx3-ubyte")]
    assert [int(r["digit"]) for r in idx_rows] == expected[:2]
    errors = rows(tmp_path / "out.errors.csv")
    reasons = {Path(e["source"]).name: e["error"] for e in errors}
    for name, words in bad.items():
        assert name in reasons, f"{name} not reported; errors: {reasons}"
        assert words.lower() in reasons[name].lower(), (name, reasons[name])
    assert all("\n" not in e["error"] for e in errors)
    assert f"{len(errors)} inputs failed" in result.stderr
    assert "notes.txt" not in reasons and "pipe.png" not in reasons
    record = json.loads((tmp_path / "out.json").read_text())
    assert record["counts"]["failed"] == len(errors)
    assert record["counts"]["skipped"] >= 2  # notes.txt and the FIFO


def test_object_array_is_never_unpickled(tmp_path):
    witness = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.write_text, (witness, "unpickled!"))

    np.save(tmp_path / "evil.npy", np.array([Payload()], dtype=object), allow_pickle=True)
    assert not witness.exists()
    result = run(tmp_path / "evil.npy", tmp_path / "out.csv")
    assert result.returncode == 3
    assert not witness.exists()
    assert "object array" in rows(tmp_path / "out.errors.csv")[0]["error"]


def test_missing_input_is_a_failed_input_not_a_crash(tmp_path, images):
    np.save(tmp_path / "x.npy", images[:2])
    result = run(tmp_path / "x.npy", tmp_path / "nope", tmp_path / "out.csv", "-q")
    assert result.returncode == 3
    assert len(rows(tmp_path / "out.csv")) == 2
    assert rows(tmp_path / "out.errors.csv")[0]["error"] == "no such file or directory"


def test_max_errors_stops_and_writes_nothing(tmp_path, images):
    make_zoo(tmp_path / "zoo", images)
    result = run(tmp_path / "zoo", tmp_path / "out.csv", "--max-errors", "2")
    assert result.returncode == 1
    assert_clean_stderr(result.stderr)
    assert "--max-errors" in result.stderr
    # Only the run's lock file, which stays by design (see NOTES-outputs.md, "One run at a time").
    assert [p.name for p in tmp_path.glob("out*")] == ["out.lock"]
    assert not list(tmp_path.glob(".out*"))


def test_killed_run_leaves_the_previous_complete_csv(tmp_path, samples):
    previous = "source,index,digit,confidence\nold.png,,7,0.990000\n"
    (tmp_path / "out.csv").write_text(previous)
    big = tiled(samples[0], 1_000_000)  # seconds of work
    np.save(tmp_path / "big.npy", big)
    proc = subprocess.Popen([CLASSIFY, tmp_path / "big.npy", tmp_path / "out.csv", "-q"])
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".out.csv.*.tmp")) and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)  # well into writing rows
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "finished before it could be killed: use a bigger input"
    assert (tmp_path / "out.csv").read_text() == previous
    assert not (tmp_path / "out.json").exists()


def test_sigterm_removes_its_temporary_files(tmp_path, samples):
    np.save(tmp_path / "big.npy", tiled(samples[0], 300_000))
    proc = subprocess.Popen([CLASSIFY, tmp_path / "big.npy", tmp_path / "out.csv", "-q"])
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".out.csv.*.tmp")) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait() != 0
    assert not list(tmp_path.glob(".out*")) and not (tmp_path / "out.csv").exists()


@pytest.mark.parametrize("where", ["missing/out.csv", "afile/out.csv"])
def test_unwritable_output_is_refused_before_any_work(tmp_path, images, where):
    np.save(tmp_path / "x.npy", images[:2])
    (tmp_path / "afile").write_text("a file, not a folder")
    result = run(tmp_path / "x.npy", tmp_path / where)
    assert result.returncode == 1
    assert_clean_stderr(result.stderr)
    assert len(result.stderr.strip().splitlines()) == 1
    assert "out.csv" in result.stderr


def test_no_inputs_found_exits_1(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "notes.txt").write_text("nothing to classify")
    result = run(tmp_path / "in", tmp_path / "out.csv")
    assert result.returncode == 1
    assert "no inputs found" in result.stderr
    assert not (tmp_path / "out.csv").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["only-one-arg.csv"],
        ["in", "out.csv", "--preprocess", "fancy"],
        ["in", "o.csv", "--shard", "4/4"],
    ],
)
def test_usage_errors_exit_2(tmp_path, args):
    result = run(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert_clean_stderr(result.stderr)


def test_a_model_without_the_contract_is_refused(tmp_path, images):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "wrong",
        [helper.make_tensor_value_info("x", TensorProto.UINT8, ["n", 28, 28])],
        [helper.make_tensor_value_info("y", TensorProto.UINT8, ["n", 28, 28])],
    )
    onnx.save(helper.make_model(graph), tmp_path / "wrong.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    np.save(tmp_path / "x.npy", images[:2])
    for model, words in [
        ("wrong.onnx", "images"),
        ("junk.onnx", "not a loadable"),
        ("absent.onnx", "not found"),
    ]:
        result = run(tmp_path / "x.npy", tmp_path / "out.csv", "--model", tmp_path / model)
        assert result.returncode == 1, result.stderr
        assert words in result.stderr and len(result.stderr.strip().splitlines()) == 1
        assert not (tmp_path / "out.csv").exists()


# --- images from the real world --------------------------------------------------------------


def photo_like(image: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """An MNIST digit as a scan might hold it: dark ink on light paper, big, off-centre, RGB."""
    ink = 255 - image  # dark on white
    big = Image.fromarray(ink).resize((140, 140), Image.Resampling.BICUBIC)
    canvas = Image.new("L", (400, 300), 235)
    canvas.paste(big, (int(rng.integers(0, 260)), int(rng.integers(0, 160))))
    return canvas.convert("RGB")


def test_scanned_looking_digits_are_normalized_and_read(tmp_path, samples, classifier):
    images, labels = tiled(samples[0], 200), tiled(samples[1], 200)
    rng = np.random.default_rng(0)
    folder = tmp_path / "scans"
    folder.mkdir()
    for i, image in enumerate(images):
        photo_like(image, rng).save(folder / f"{i:03d}.jpg", quality=85)
    result = run(folder, tmp_path / "out.csv", "-q")
    assert result.returncode == 0, result.stderr
    digits = np.array([int(r["digit"]) for r in rows(tmp_path / "out.csv")])
    assert (digits == labels).mean() >= 0.95


def test_preprocess_none_refuses_images_that_are_not_28x28(tmp_path, samples):
    photo_like(samples[0][0], np.random.default_rng(0)).save(tmp_path / "scan.png")
    result = run(tmp_path / "scan.png", tmp_path / "out.csv", "--preprocess", "none")
    assert result.returncode == 3
    assert "not 28x28" in rows(tmp_path / "out.errors.csv")[0]["error"]


def test_awkward_file_names_survive_into_the_csv(tmp_path, images, expected):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(images[0]).save(folder / 'a, "quoted" ünïcode.png')
    Image.fromarray(images[1]).save(os.fsdecode(bytes(folder) + b"/b-not-utf8-\xff.png"))
    result = run(folder, tmp_path / "out.csv", "-q")
    assert result.returncode == 0, result.stderr
    with open(tmp_path / "out.csv", newline="", encoding="utf-8", errors="surrogateescape") as f:
        got = {r["source"]: int(r["digit"]) for r in csv.DictReader(f)}
    assert got == {
        str(folder / 'a, "quoted" ünïcode.png'): expected[0],
        os.fsdecode(bytes(folder) + b"/b-not-utf8-\xff.png"): expected[1],
    }


def test_precision_int8_uses_the_quantized_copy(tmp_path, images, expected):
    np.save(tmp_path / "x.npy", images)
    result = run(tmp_path / "x.npy", tmp_path / "out.csv", "--precision", "int8", "-q")
    assert result.returncode == 0, result.stderr
    record = json.loads((tmp_path / "out.json").read_text())
    assert record["model"]["path"].endswith("model.int8.onnx")
    digits = [int(r["digit"]) for r in rows(tmp_path / "out.csv")]
    assert np.mean(np.array(digits) == np.array(expected)) >= 0.95
    clash = run(tmp_path / "x.npy", tmp_path / "o.csv", "--precision", "int8", "--model", "m.onnx")
    assert clash.returncode == 2
