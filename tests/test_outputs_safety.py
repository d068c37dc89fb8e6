"""Issue 15, the output side: nothing a user or a file can do destroys data, hangs the job, or
leaves outputs that contradict each other. Usage errors run in-process through the real
run_app; signals, kills and full disks use real processes."""

import fcntl
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import copy_samples, one_line, run_in_process
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
BIN = Path(sys.executable).parent
CLASSIFY = str(BIN / "classify-batch")
PREVIOUS = "source,index,digit,confidence\nold.png,,7,0.990000\n"


def cli(*args: str | Path, cwd: Path | None = None) -> tuple[int, str, str]:
    return run_in_process("classify-batch", *args, cwd=cwd)


@pytest.fixture
def pngs(tmp_path: Path) -> Path:
    return copy_samples(tmp_path / "in", 5)


def big_npy(path: Path, copies: int) -> Path:
    """Sample digits repeated: seconds of work to interrupt."""
    digits = np.stack([np.asarray(Image.open(p)) for p in sorted(SAMPLES.glob("*.png"))])
    np.save(path, np.tile(digits, (copies, 1, 1)))
    return path


# --- the output path: OUT validation --------------------------------------------------------


def test_a_forgotten_out_does_not_overwrite_the_last_image(pngs: Path):
    files = sorted(pngs.glob("*.png"))
    before = files[-1].read_bytes()
    code, _, err = cli(*files)
    assert code == 2
    assert ".csv" in one_line(err) and str(files[-1]) in err
    assert files[-1].read_bytes() == before
    assert sorted(pngs.iterdir()) == files  # no .errors.csv or .json beside it


def test_a_forgotten_out_does_not_overwrite_an_array(tmp_path: Path):
    a, b = tmp_path / "a.npy", tmp_path / "b.npy"
    np.save(a, np.zeros((2, 28, 28), np.uint8))
    np.save(b, np.zeros((3, 28, 28), np.uint8))
    before = b.read_bytes()
    code, _, err = cli(a, b)
    assert code == 2 and one_line(err)
    assert b.read_bytes() == before and sorted(tmp_path.iterdir()) == [a, b]


def test_a_csv_that_is_not_ours_is_not_replaced(tmp_path: Path, pngs: Path):
    old = tmp_path / "old.csv"
    old.write_text("name,amount\nrent,900\n")
    code, _, err = cli(old, pngs / "t10k-0000-label-7.png")
    assert code == 2 and ".csv" in one_line(err)
    code, _, err = cli(pngs, old)
    assert code == 2 and "not an output of classify-batch" in one_line(err)
    assert old.read_text() == "name,amount\nrent,900\n"
    assert not (tmp_path / "old.json").exists()


def test_out_may_not_be_an_input(tmp_path: Path, pngs: Path):
    previous = tmp_path / "out.csv"
    previous.write_text(PREVIOUS)
    code, _, err = cli(previous, pngs, previous)
    assert code == 2 and "is also an input" in one_line(err)
    assert previous.read_text() == PREVIOUS


@pytest.mark.parametrize("where", ["in/out.csv", "in/deeper/out.csv"])
def test_out_inside_an_input_folder_is_refused(tmp_path: Path, pngs: Path, where: str):
    (tmp_path / "in" / "deeper").mkdir()
    code, _, err = cli("in", where, cwd=tmp_path)
    assert code == 2 and "inside the input folder in" in one_line(err)
    assert sorted(p.name for p in pngs.iterdir()) == sorted(
        [p.name for p in pngs.glob("*.png")] + ["deeper"]
    )


def test_a_previous_output_is_replaced(tmp_path: Path, pngs: Path):
    (tmp_path / "out.csv").write_text(PREVIOUS)
    code, _, err = cli(pngs, tmp_path / "out.csv", "-q")
    assert code == 0, err
    assert "old.png" not in (tmp_path / "out.csv").read_text()


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_out_that_is_a_fifo_or_device_is_refused_and_left_alone(tmp_path: Path, pngs: Path, kind):
    out = tmp_path / "out.csv"
    if kind == "fifo":
        os.mkfifo(out)
    else:
        if os.geteuid() != 0:
            pytest.skip("making a device node needs root")
        os.mknod(out, 0o666 | 0o020000, os.makedev(1, 3))  # a character device: /dev/null's
    code, _, err = cli(pngs, out)
    assert code == 1 and "not a regular file" in one_line(err)
    assert not out.is_file() and (out.is_fifo() or out.is_char_device())


# --- outputs committed as one unit ------------------------------------------------------------


@pytest.mark.parametrize("side", ["out.errors.csv", "out.json"])
def test_a_side_file_that_is_a_folder_leaves_the_previous_outputs(tmp_path: Path, pngs, side):
    (tmp_path / "out.csv").write_text(PREVIOUS)
    (tmp_path / side).mkdir()
    code, _, err = cli(pngs, tmp_path / "out.csv")
    assert code == 1 and side in one_line(err)
    assert (tmp_path / "out.csv").read_text() == PREVIOUS
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def _file_size_limit(limit: int):
    def apply() -> None:
        # Ignored, SIGXFSZ turns a write past the limit into EFBIG: a full disk, as a process
        # sees it, without needing one.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_a_write_failure_mid_run_gives_one_line_and_keeps_the_previous_outputs(tmp_path: Path):
    big_npy(tmp_path / "big.npy", 2_000)  # 40,000 rows: far more CSV than the limit
    (tmp_path / "out.csv").write_text(PREVIOUS)
    record = {"status": "complete", "counts": {"classified": 1}}
    (tmp_path / "out.json").write_text(json.dumps(record))
    result = subprocess.run(
        [CLASSIFY, tmp_path / "big.npy", tmp_path / "out.csv", "-q"],
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=_file_size_limit(256 * 1024),
    )
    assert result.returncode == 1
    assert "cannot write" in one_line(result.stderr)
    assert (tmp_path / "out.csv").read_text() == PREVIOUS
    assert json.loads((tmp_path / "out.json").read_text()) == record
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_a_second_run_on_the_same_out_refuses(tmp_path: Path, pngs: Path):
    (tmp_path / "out.csv").write_text(PREVIOUS)
    with open(tmp_path / "out.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # as a first run holds it
        code, _, err = cli(pngs, tmp_path / "out.csv")
    assert code == 1 and "another run" in one_line(err)
    assert (tmp_path / "out.csv").read_text() == PREVIOUS
    code, _, err = cli(pngs, tmp_path / "out.csv", "-q")  # released: runs
    assert code == 0, err


def test_a_run_without_min_confidence_removes_an_old_review_list(tmp_path: Path, pngs: Path):
    out = tmp_path / "out.csv"
    code, _, err = cli(pngs, out, "--min-confidence", "1", "-q")
    assert code == 0, err and (tmp_path / "out.review.csv").exists()
    code, _, err = cli(pngs, out, "-q")
    assert code == 0, err
    assert not (tmp_path / "out.review.csv").exists()


def test_the_run_record_is_strict_json(tmp_path: Path, pngs: Path):
    code, _, err = cli(pngs, tmp_path / "out.csv", "--min-confidence", "0.5", "-q")
    assert code == 0, err

    def refuse(word: str) -> None:
        raise AssertionError(f"{word} in the run record")

    record = json.loads((tmp_path / "out.json").read_text(), parse_constant=refuse)
    assert record["options"]["min_confidence"] == 0.5


# --- stdout mode ----------------------------------------------------------------------------


def test_stdout_closed_early_ends_quietly_with_exit_0(tmp_path: Path):
    big_npy(tmp_path / "big.npy", 1_000)
    proc = subprocess.Popen(
        [CLASSIFY, tmp_path / "big.npy", "-", "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.readline()
    proc.stdout.close()  # what `| head -1` does
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 0, stderr
    assert stderr == ""


def test_stdout_on_a_full_device_gives_one_line_and_exit_1(pngs: Path):
    with open("/dev/full", "w") as full:
        result = subprocess.run(
            [CLASSIFY, pngs, "-", "-q"], stdout=full, stderr=subprocess.PIPE, text=True
        )
    assert result.returncode == 1
    assert "No space left" in one_line(result.stderr)


def test_max_errors_after_rows_went_to_stdout_does_not_say_nothing_was_written(tmp_path: Path):
    big_npy(tmp_path / "a.npy", 150)  # 3,000 rows, more than one batch
    for name in ("x.png", "y.png"):
        (tmp_path / name).write_bytes(b"not a png")
    result = subprocess.run(
        [CLASSIFY, tmp_path / "a.npy", tmp_path / "x.png", tmp_path / "y.png", "-"]
        + ["--max-errors", "1", "-q"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert len(result.stdout.splitlines()) == 3001
    assert "nothing written" not in result.stderr
    assert "incomplete" in result.stderr.splitlines()[-1]


# --- processes and signals ----------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGUSR1, signal.SIGTERM])
def test_hup_and_usr1_end_the_run_as_term_does(tmp_path: Path, signum: int):
    big_npy(tmp_path / "big.npy", 15_000)
    proc = subprocess.Popen(
        [CLASSIFY, tmp_path / "big.npy", tmp_path / "out.csv", "-q"], stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".out.csv.*.tmp")) and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signum)
    assert proc.wait(timeout=300) == 128 + signum
    assert proc.stderr is not None and "Traceback" not in proc.stderr.read().decode()
    assert not list(tmp_path.glob(".out*")) and not (tmp_path / "out.csv").exists()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"  # a zombie has exited; only its parent's bookkeeping is left


POOL_SCRIPT = """
import sys, time
from classify_batch.jobs.workers import Pool
pool = Pool(3, time.sleep)
pool.submit(600)  # one busy worker, two idle ones
print(*pool.pids(), flush=True)
time.sleep(600)
"""


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc to see the workers")
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGHUP, signal.SIGUSR1])
def test_decoders_do_not_outlive_their_main_process(signum: int):
    proc = subprocess.Popen([sys.executable, "-c", POOL_SCRIPT], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    pids = [int(p) for p in proc.stdout.readline().split()]
    assert len(pids) == 3 and all(_alive(p) for p in pids)
    proc.send_signal(signum)
    proc.wait(timeout=60)
    deadline = time.monotonic() + 30  # a bound for a hang, not a speed requirement
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    survivors = [p for p in pids if _alive(p)]
    for pid in survivors:
        os.kill(pid, signal.SIGKILL)
    assert survivors == []


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc to see file descriptors")
def test_a_decoder_holds_no_other_pipe_end_and_not_the_lock(tmp_path: Path):
    script = f"""
import fcntl, os, time
from classify_batch.jobs.inherit import keep_from_workers
from classify_batch.jobs.workers import Pool
lock = os.open({str(tmp_path / "x.lock")!r}, os.O_RDWR | os.O_CREAT)
fcntl.flock(lock, fcntl.LOCK_EX)
keep_from_workers(lock)
pool = Pool(2, time.sleep)
print(*pool.pids(), flush=True)
time.sleep(600)
"""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        pids = [int(p) for p in proc.stdout.readline().split()]

        def targets_of(pid: int) -> list[str]:
            # The worker closes what it inherited while we look: an fd listed a moment
            # ago may be gone before its link is read, which is the very thing awaited.
            targets = []
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                try:
                    targets.append(os.readlink(fd))
                except FileNotFoundError:
                    continue
            return targets

        def holds_too_much(pid: int) -> list[str]:
            targets = targets_of(pid)
            sockets = sum(t.startswith("socket:") for t in targets)
            return targets if sockets != 1 or str(tmp_path / "x.lock") in targets else []

        # A worker drops what it inherited as it starts: wait for that, with a bound for a hang.
        deadline = time.monotonic() + 30
        while any(holds_too_much(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [holds_too_much(p) for p in pids] == [[], []]
    finally:
        proc.kill()
        proc.wait()
