"""Issue 16: the command line a person expects. In-process through run_app, the function the
installed commands call, so the one-line usage errors are tested as users see them."""

import io
import json
import os
import pty
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
from conftest import copy_samples, one_line, run_in_process
from PIL import Image

from classify_batch.contract import package_version
from classify_batch.jobs.progress import Progress

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
BIN = Path(sys.executable).parent


def cli(prog: str, *args: str | Path, cwd: Path | None = None) -> tuple[int, str, str]:
    return run_in_process(prog, *args, cwd=cwd)


@pytest.fixture
def pngs(tmp_path: Path) -> Path:
    return copy_samples(tmp_path / "in", 4)


# --- conventions ----------------------------------------------------------------------------


@pytest.mark.parametrize("prog", ["classify-batch", "digits"])
def test_version_and_short_help(prog: str):
    code, out, _ = cli(prog, "--version")
    assert code == 0 and out.strip() == package_version() == metadata.version("classify-batch")
    code, out, _ = cli(prog, "-h")
    assert code == 0 and out.startswith("Usage:")


def test_help_shows_choices_and_reads_at_80_columns():
    code, out, _ = cli("classify-batch", "--help")
    assert code == 0
    assert "auto|mnist|none" in out and "fp32|int8" in out
    assert "--no-probabilities" not in out
    words = " ".join(out.split())
    assert "CLASSIFY_MODEL" in words and "the CPUs this process may use" in words
    assert all(len(line) <= 80 for line in out.splitlines()), out
    assert all(line.strip() != "." for line in out.splitlines()), out
    card = json.loads((ROOT / "artifacts" / "model.json").read_text())
    agreement = f"{float(card['int8']['agreement_with_fp32']):.2%}"
    assert agreement in words


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["only-one.csv"],
        ["in", "out.csv", "--preprocess", "fancy"],
        ["in", "out.csv", "--precision", "fp16"],
        ["in", "out.csv", "--shard", "4/4"],
        ["in", "out.csv", "--shard="],
        ["in", "out.csv", "--min-confidence", "nan"],
        ["in", "out.csv", "--workers", "0"],
        ["in", "out.csv", "--no-probabilities"],
    ],
)
def test_usage_errors_are_one_line_and_exit_2(tmp_path: Path, args: list[str]):
    code, out, err = cli("classify-batch", *args, cwd=tmp_path)
    assert code == 2
    if args:
        assert one_line(err).startswith("classify-batch: ")
    assert not list(tmp_path.iterdir())


def test_usage_errors_name_the_right_command(tmp_path: Path):
    code, _, err = cli("digits", "merge", "only.csv", cwd=tmp_path)
    assert code == 2 and one_line(err).startswith("digits merge: ")
    code, _, err = cli("digits", "classify", "only.csv", cwd=tmp_path)
    assert code == 2 and one_line(err).startswith("digits classify: ")


def test_workers_above_the_cpus_are_capped_with_a_note(tmp_path: Path, pngs: Path):
    code, _, err = cli("classify-batch", pngs, tmp_path / "out.csv", "--workers", "100000")
    assert code == 0, err
    assert "--workers 100000 capped" in err
    record = json.loads((tmp_path / "out.json").read_text())
    assert record["options"]["workers"] < 100000


def test_show_prints_data_nowhere_and_its_summary_on_stderr(tmp_path: Path, pngs: Path):
    code, out, err = cli("digits", "show", pngs, "--out", tmp_path / "grid.png")
    assert code == 0, err
    assert out == "" and err.strip()
    assert (tmp_path / "grid.png").exists()


# --- exit codes -----------------------------------------------------------------------------


def test_inputs_that_do_not_exist_exit_1_and_write_nothing(tmp_path: Path):
    code, _, err = cli("classify-batch", tmp_path / "nosuchdir/", tmp_path / "out.csv")
    assert code == 1 and "nosuchdir" in one_line(err)
    assert [p.name for p in tmp_path.iterdir()] in ([], ["out.lock"])


def test_some_missing_inputs_are_errors_and_exit_3(tmp_path: Path, pngs: Path):
    code, _, err = cli("classify-batch", pngs, tmp_path / "nope", tmp_path / "out.csv", "-q")
    assert code == 3, err
    errors = (tmp_path / "out.errors.csv").read_text()
    assert "nope" in errors and "no such file or directory" in errors
    assert "classify-batch: 1 input failed:" in err  # and not "1 inputs"


def test_unknown_preset_is_refused_before_tensorflow_is_imported():
    pytest.importorskip("classify_batch.export.commands", reason="needs the train extra")
    probe = (
        "import sys\n"
        "from classify_batch.cli import build_digits, run_app\n"
        "code = run_app(build_digits(), 'digits', ['train', '--preset', 'fast'])\n"
        "print(code, 'tensorflow' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120
    )
    assert result.stdout.split() == ["2", "False"], result.stderr
    assert "fast" in one_line(result.stderr)


@pytest.mark.parametrize(
    ("command", "options", "reason"),
    [
        ("export", ["--rank", "64", "--rank", "128", "--rank", "32"], "3 ranks for 2 hidden"),
        ("export", ["--rank", "0", "--tune-epochs", "5"], "give a rank too"),
        ("train", ["--rank", "0", "--tune-epochs", "5"], "give a rank too"),
    ],
)
def test_low_rank_settings_that_cannot_be_followed_are_usage_errors(
    tmp_path: Path, command, options, reason
):
    pytest.importorskip("classify_batch.export.commands", reason="needs the train extra")
    # export reads the recipe from the card beside the model: the committed 384-384 one
    (tmp_path / "model.json").write_text((ROOT / "artifacts" / "model.json").read_text())
    where = ["--keras", tmp_path / "model.keras"] if command == "export" else []
    code, _, err = cli("digits", command, *where, "--out", tmp_path, *options)
    assert code == 2 and reason in one_line(err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json"]  # nothing read or made


def test_programs_collect_garbage_again_once_started(tmp_path: Path, pngs: Path):
    """entry.py turns the cyclic collector off for start-up only: a run that left it off would
    keep every reference cycle it makes, over millions of inputs."""
    probe = (
        "import atexit, gc, sys\n"
        "from classify_batch import entry\n"
        "atexit.register(lambda: print(gc.isenabled(), gc.get_freeze_count() > 0))\n"
        "sys.argv = ['classify-batch', *sys.argv[1:]]\n"
        "entry.classify_batch_main()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, str(pngs), str(tmp_path / "out.csv"), "-q"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "True"]


# --- outputs that do not mislead -----------------------------------------------------------


def test_the_run_record_holds_numbers_precision_and_workers(tmp_path: Path, pngs: Path):
    code, _, err = cli("classify-batch", pngs, tmp_path / "out.csv", "-q")
    assert code == 0, err
    record = json.loads((tmp_path / "out.json").read_text())
    assert isinstance(record["model"]["test_accuracy"], float)
    assert record["options"]["precision"] == "fp32"
    assert isinstance(record["options"]["workers"], int)


def test_the_quick_start_outputs_are_ignored_by_git():
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs git and a checkout")
    names = ["out.csv", "out.errors.csv", "out.json", "out.review.csv", "out.lock"]
    result = subprocess.run(
        ["git", "check-ignore", *names], cwd=ROOT, capture_output=True, text=True
    )
    assert result.stdout.split() == names


# --- progress -------------------------------------------------------------------------------


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_counts_images_with_a_rate_and_an_eta():
    progress = Progress(3, enabled=True, stream=Terminal(), total_images=lambda: 20_001)
    progress.update(1, 1)
    progress.update(0, 4_999)  # rows of a big array: no file finished yet
    line = progress.line(seconds=2.0)
    assert "5,000/20,001 images" in line
    assert "2,500 images/s" in line and "ETA 0:06" in line
    assert "ETA" not in progress.line(seconds=0.01)  # no rate to speak of yet


def test_progress_on_a_terminal_counts_the_rows_of_an_array(tmp_path: Path):
    images = np.stack([np.asarray(Image.open(p)) for p in sorted(SAMPLES.glob("*.png"))])
    np.save(tmp_path / "big.npy", np.tile(images, (1_000, 1, 1)))  # 20,000 rows, one file
    leader, follower = pty.openpty()
    try:
        result = subprocess.run(
            [BIN / "classify-batch", tmp_path / "big.npy", tmp_path / "out.csv"],
            stderr=follower,
            timeout=300,
        )
        os.close(follower)
        shown = b""
        while True:
            try:
                piece = os.read(leader, 65536)
            except OSError:
                break
            if not piece:
                break
            shown += piece
    finally:
        os.close(leader)
    assert result.returncode == 0
    assert b"20,000/20,000 images" in shown, shown


# --- examples -------------------------------------------------------------------------------


def test_node_example_without_arguments_prints_its_usage():
    node = shutil.which("node")
    if node is None:
        pytest.skip("needs Node.js")
    result = subprocess.run(
        [node, str(ROOT / "examples" / "node" / "classify.js")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("usage: node classify.js MODEL.onnx INPUT")
    assert "Error" not in result.stderr


def test_messages_of_digits_classify_name_digits_classify(tmp_path: Path, pngs: Path):
    files = sorted(pngs.glob("*.png"))
    code, _, err = cli("digits", "classify", *files)  # OUT forgotten
    assert code == 2 and one_line(err).startswith("digits classify: ")
    code, _, err = cli("digits", "classify", tmp_path / "nope", tmp_path / "out.csv")
    assert code == 1 and one_line(err).startswith("digits classify: ")
