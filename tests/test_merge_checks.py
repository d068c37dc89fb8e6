"""Issue 15 and 16, shards and merge: N parts merged are byte for byte the single run, whatever
the inputs; merge refuses, in one line, parts that do not belong together; the README's glob
works."""

import gzip
import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SHARDS = 3


def run(tool: str, *args: str | Path, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / tool), *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def one_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


def digits() -> np.ndarray:
    return np.stack([np.asarray(Image.open(p)) for p in sorted((ROOT / "samples").glob("*.png"))])


def idx(images: np.ndarray, count: int) -> bytes:
    return struct.pack(">IIII", 0x803, count, 28, 28) + images.tobytes()


@pytest.fixture
def hostile(tmp_path: Path) -> Path:
    """Images in subfolders, arrays, and inputs that fail as whole files or end early."""
    images = digits()
    folder = tmp_path / "in"
    for i, image in enumerate(images):
        path = folder / f"sub{i % 3}" / f"{i:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(path)
    (folder / "sub1" / "broken.png").write_bytes(b"not a png")
    np.save(folder / "bools.npy", np.zeros((4, 28, 28), bool))  # refused as a whole file
    np.save(folder / "good.npy", np.tile(images, (3, 1, 1)))
    many = np.tile(images, (5, 1, 1))  # 100 images
    # Headers promise 100; the data ends after 37 (plain) and mid-stream (gzip).
    (folder / "cut-idx3-ubyte").write_bytes(idx(many, 100)[: 16 + 37 * 784 + 100])
    whole = gzip.compress(idx(many, 100))
    (folder / "gzcut-idx3-ubyte.gz").write_bytes(whole[: len(whole) * 2 // 3])
    (folder / "short-idx3-ubyte.gz").write_bytes(gzip.compress(idx(many[:10], 100)))
    return tmp_path


def sharded(cwd: Path, *args: str, count: int = SHARDS) -> list[Path]:
    (cwd / "parts").mkdir(exist_ok=True)
    parts = []
    for i in range(count):
        part = Path("parts") / f"part-{i}.csv"
        result = run("classify-batch", *args, part, "--shard", f"{i}/{count}", "-q", cwd=cwd)
        assert result.returncode in (0, 3), result.stderr
        parts.append(part)
    return parts


@pytest.mark.parametrize(
    "inputs", [["in"], ["in", "in/sub1"], ["in/sub2", "in", "in/good.npy", "in"]]
)
def test_merged_parts_are_the_single_run_byte_for_byte(hostile: Path, inputs: list[str]):
    single = run("classify-batch", *inputs, "single.csv", "-q", cwd=hostile)
    assert single.returncode == 3, single.stderr
    parts = sharded(hostile, *inputs)
    merged = run("digits", "merge", *parts, "merged.csv", cwd=hostile)
    assert merged.returncode == 3, merged.stderr
    for name in ("csv", "errors.csv"):
        single_bytes = (hostile / f"single.{name}").read_bytes()
        assert (hostile / f"merged.{name}").read_bytes() == single_bytes, name
    errors = (hostile / "single.errors.csv").read_text()
    assert errors.count("bools.npy") == len([i for i in inputs if i == "in"])
    record = json.loads((hostile / "merged.json").read_text())
    assert record["counts"] == json.loads((hostile / "single.json").read_text())["counts"]


def test_the_readme_glob_merges_and_ignores_the_side_files(hostile: Path):
    sharded(hostile, "in")
    # As README and merge-job.yaml write it, expanded by a shell.
    result = subprocess.run(
        "digits merge parts/part-*.csv merged.csv",
        shell=True,
        capture_output=True,
        text=True,
        cwd=hostile,
        env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"},
    )
    assert result.returncode == 3, result.stderr
    assert f"{SHARDS} parts" in result.stderr


def test_an_argument_that_is_not_a_part_is_named(hostile: Path):
    parts = sharded(hostile, "in")
    result = run("digits", "merge", *parts[1:], "parts/part-0.errors.csv", "m.csv", cwd=hostile)
    assert result.returncode == 1
    assert "parts/part-0.errors.csv: not a part" in one_line(result.stderr)
    assert [p.name for p in hostile.glob("m.*")] in ([], ["m.lock"])


@pytest.mark.parametrize(
    "other", [["--preprocess", "none"], ["--min-confidence", "0.5"], ["--precision", "int8"]]
)
def test_parts_made_with_other_options_are_refused(hostile: Path, other: list[str]):
    parts = sharded(hostile, "in")
    result = run(
        "classify-batch", "in", "parts/other.csv", "--shard", f"1/{SHARDS}", "-q", *other,
        cwd=hostile,
    )  # fmt: skip
    assert result.returncode in (0, 3), result.stderr
    result = run("digits", "merge", parts[0], "parts/other.csv", parts[2], "m.csv", cwd=hostile)
    assert result.returncode == 1
    assert other[0] in one_line(result.stderr)
    assert [p.name for p in hostile.glob("m.*")] in ([], ["m.lock"])


def test_parts_made_from_different_folder_contents_are_refused(hostile: Path):
    parts = sharded(hostile, "in", count=2)
    shutil.copy(hostile / "in" / "sub0" / "000.png", hostile / "in" / "sub0" / "new.png")
    result = run("classify-batch", "in", "parts/part-1.csv", "--shard", "1/2", "-q", cwd=hostile)
    assert result.returncode in (0, 3), result.stderr
    result = run("digits", "merge", *parts, "m.csv", cwd=hostile)
    assert result.returncode == 1 and "other files" in one_line(result.stderr)


def test_a_copy_of_part_0_relabelled_as_part_1_is_refused(hostile: Path):
    parts = sharded(hostile, "in")
    for suffix in (".csv", ".errors.csv", ".json"):
        shutil.copy(hostile / f"parts/part-0{suffix}", hostile / f"parts/part-1{suffix}")
    record = json.loads((hostile / "parts/part-1.json").read_text())
    record["options"]["shard"] = f"1/{SHARDS}"
    (hostile / "parts/part-1.json").write_text(json.dumps(record))
    result = run("digits", "merge", *parts, "m.csv", cwd=hostile)
    assert result.returncode == 1 and one_line(result.stderr)
    # Relabelled all the way, seal included, its rows still belong to shard 0.
    record["part"]["shard"] = f"1/{SHARDS}"
    from classify_batch.jobs.output import part_seal

    record["part"]["seal"] = part_seal(record["part"])
    (hostile / "parts/part-1.json").write_text(json.dumps(record))
    result = run("digits", "merge", *parts, "m.csv", cwd=hostile)
    assert result.returncode == 1 and "shard" in one_line(result.stderr)
    assert [p.name for p in hostile.glob("m.*")] in ([], ["m.lock"])


def test_a_part_changed_after_its_run_is_refused(hostile: Path):
    parts = sharded(hostile, "in")
    text = (hostile / parts[1]).read_text().replace(",7,", ",1,", 1)
    (hostile / parts[1]).write_text(text)
    result = run("digits", "merge", *parts, "m.csv", cwd=hostile)
    assert result.returncode == 1 and "changed" in one_line(result.stderr)


def test_merge_will_not_write_over_a_part(hostile: Path):
    parts = sharded(hostile, "in")
    before = (hostile / parts[0]).read_bytes()
    result = run("digits", "merge", *parts, parts[0], cwd=hostile)
    assert result.returncode == 2 and "is also an input" in one_line(result.stderr)
    assert (hostile / parts[0]).read_bytes() == before
