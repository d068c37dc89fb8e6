"""classify-batch against the scripts a user would write instead: time, memory and the same digits.

Builds the inputs from the MNIST test set (a folder of PNGs, the same as RGB PNGs, one PNG, .npy
files made by tiling the 10,000 test images; issue 17's cases: phone photos made by
benchmarks/photos.py, a float32 .npy, and trees of 300-file folders of hard links), runs every
tool as a subprocess, several times, interleaved, and prints a table, PASS/FAIL for each goal of
issues 5 and 17, and whether the digits agree with the plain script:

    MNIST_DATA_DIR=... python benchmarks/run.py [--quick] [--sizes 1000,10000] [--repeat 5]
                                                [--million-files]

Writes benchmarks/results.json and docs/benchmark.png. Wall times are medians; a ratio between
two tools is the median of the ratios of their paired runs (one of each, back to back), which a
machine whose speed drifts between repeats moves least; memory is the largest seen over the
repeats. Run nothing else heavy meanwhile: with two cores, anything else
running shows up in the ratios.
"""

import argparse
import csv
import gzip
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CLASSIFY = Path(sys.executable).parent / "classify-batch"
IO = ["{input}", "{out}"]
MIB = 1024 * 1024
# GNU time reports the command's own peak RSS from wait4. Measuring it from here would not do:
# Linux carries a process's peak over exec, so every child would start at this script's size.
GNU_TIME = "/usr/bin/time"
PAGE = os.sysconf("SC_PAGE_SIZE")
FULL_SIZES = [1_000, 10_000, 100_000, 1_000_000]
QUICK_SIZES = [1_000, 10_000, 100_000]

# The issues' goals, as ratios measured side by side on this machine.
PNG_VS_PLAIN = 0.5
PNG_VS_KERAS = 0.15
NPY_VS_PLAIN = 1.2
NPY_MAX_MIB = 400
SINGLE_VS_PLAIN = 1.5
# Issue 17's "hold" rows: what the job did before its cases were added.
NPY_HOLD_VS_PLAIN = 0.20
SINGLE_HOLD_VS_PLAIN = 1.3
# --precision int8 must give the float model's digit on 99.9% of the rows: the bar the int8
# copy is exported with (export/quantize.py).
INT8_AGREEMENT = 0.999
FLAT_GROWTH = 1.10
# Issue 17.
PHOTOS_VS_NAIVE = 0.5
FLOAT_MAX_MIB = 200
MANY_FILES_GROWTH = 1.15  # ten times the files, less than 15% more peak memory
MILLION_FILES_MAX_MIB = 200
FILES_PER_FOLDER = 300


@dataclass
class Run:
    wall: float
    main_mib: float  # the tool's own process: its peak from the kernel (wait4), exact
    tree_mib: float  # the process and its children, summed and sampled every 10 ms
    code: int


@dataclass
class Row:
    case: str
    tool: str
    images: int
    runs: list[Run] = field(default_factory=list)

    @property
    def wall(self) -> float:
        return statistics.median(r.wall for r in self.runs)

    def ratio_to(self, base: "Row") -> float:
        """The median of the paired runs' ratios: run i of each tool ran back to back."""
        return statistics.median(a.wall / b.wall for a, b in zip(self.runs, base.runs, strict=True))

    @property
    def main_mib(self) -> float:
        return max(r.main_mib for r in self.runs)

    @property
    def tree_mib(self) -> float:
        return max(r.tree_mib for r in self.runs)


def tools(case: str, png: str, big: str) -> dict[str, list[str]]:
    """The tools run on a case: classify-batch, and the script a user would write for it."""
    found = {"classify-batch": [str(CLASSIFY), *IO, "--quiet"]}
    if case == big:
        # Not the default, but what a user with a million rows and no time would try.
        found["classify-batch int8"] = [str(CLASSIFY), *IO, "--quiet", "--precision", "int8"]
    if case.startswith("photos-"):
        found["naive photos"] = [sys.executable, str(HERE / "naive_photos.py"), *IO]
    elif not case.startswith(("float32-", "files-")):
        # A plain script cannot feed floats to a uint8 model, and a tree of a million files
        # would only measure its list of paths: those cases hold classify-batch to its goals.
        found["plain onnxruntime"] = [sys.executable, str(HERE / "plain_onnxruntime.py"), *IO]
    if case == png:
        found["plain keras"] = [sys.executable, str(HERE / "plain_keras.py"), *IO]
    return found


# --- inputs ------------------------------------------------------------------------------------


def test_images() -> np.ndarray:
    folder = Path(os.environ["MNIST_DATA_DIR"])
    with gzip.open(folder / "t10k-images-idx3-ubyte.gz") as f:
        return np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)


def build_inputs(work: Path, png_count: int, sizes: list[int]) -> dict[str, tuple[Path, int]]:
    """Case name -> (input path, images); files already there from an earlier --work are kept."""
    images = test_images()
    cases: dict[str, tuple[Path, int]] = {}
    folder = work / f"png-{png_count}"
    if not folder.is_dir() or len(os.listdir(folder)) != png_count:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        for i in range(png_count):
            Image.fromarray(images[i % len(images)]).save(folder / f"{i:07d}.png")
    cases[f"png-{png_count}"] = (folder, png_count)
    # The same digits as RGB PNGs, as some tools save them: not a goal, but a user's folder.
    rgb = work / f"png-rgb-{png_count}"
    if not rgb.is_dir() or len(os.listdir(rgb)) != png_count:
        shutil.rmtree(rgb, ignore_errors=True)
        rgb.mkdir(parents=True)
        for i in range(png_count):
            Image.fromarray(images[i % len(images)]).convert("RGB").save(rgb / f"{i:07d}.png")
    cases[f"png-rgb-{png_count}"] = (rgb, png_count)
    single = work / "single.png"
    if not single.exists():
        Image.fromarray(images[0]).save(single)
    cases["single"] = (single, 1)
    for n in sizes:
        path = work / f"mnist-{n}.npy"
        if not path.exists():
            tiled = np.lib.format.open_memmap(path, "w+", np.uint8, (n, 28, 28))
            for lo in range(0, n, len(images)):
                tiled[lo : lo + len(images)] = images[: n - lo]
            tiled.flush()
            del tiled
        cases[f"npy-{n}"] = (path, n)
    return cases


def build_issue_17(
    work: Path, photos: int, float_rows: int, trees: list[int]
) -> dict[str, tuple[Path, int]]:
    """Photos, a float32 .npy, and trees of hard-linked PNGs (cheap to make at any size)."""
    from photos import make_photos

    images = test_images()
    cases: dict[str, tuple[Path, int]] = {}
    folder = work / f"photos-{photos}"
    if not (folder / "labels.json").exists():
        shutil.rmtree(folder, ignore_errors=True)
        make_photos(folder, photos)
    cases[f"photos-{photos}"] = (folder, photos)
    path = work / f"float32-{float_rows}.npy"
    if not path.exists():
        array = np.lib.format.open_memmap(path, "w+", np.float32, (float_rows, 28, 28))
        for lo in range(0, float_rows, len(images)):
            array[lo : lo + len(images)] = images[: float_rows - lo] / np.float32(255)
        array.flush()
        del array
    cases[f"float32-{float_rows}"] = (path, float_rows)
    originals = work / "tree-originals"
    if not originals.is_dir():
        originals.mkdir()
        for i in range(FILES_PER_FOLDER):
            Image.fromarray(images[i]).save(originals / f"{i:03d}.png")
    for files in trees:
        tree = work / f"files-{files}"
        if not (tree / "done").exists():
            shutil.rmtree(tree, ignore_errors=True)
            for k in range(files // FILES_PER_FOLDER):
                sub = tree / f"{k:05d}"
                sub.mkdir(parents=True)
                for i in range(FILES_PER_FOLDER):
                    os.link(originals / f"{i:03d}.png", sub / f"{i:03d}.png")
            (tree / "done").write_text("")  # not an input: skipped and counted
        cases[f"files-{files}"] = (tree, files // FILES_PER_FOLDER * FILES_PER_FOLDER)
    return cases


def warm(path: Path) -> None:
    # Every tool then reads from the page cache: the first one measured pays no disk time. Done
    # before every run, not once per case: this machine's kernel pages out file pages left
    # unread for about a minute (DAMON, action pageout); it once held only 574 of the 1M array's
    # 748 MB between runs. (The job's slower runs after the plain script's stayed slow.)
    # The trees of hard links share the originals' inodes: their listings are what to warm.
    if path.name.startswith("files-"):
        for _ in os.walk(path):
            pass
        return
    for file in sorted(path.iterdir()) if path.is_dir() else [path]:
        with open(file, "rb") as f:
            while f.read(1 << 24):
                pass


# --- measuring ---------------------------------------------------------------------------------


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            kids.setdefault(ppid, []).append(int(name))
    return kids


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * PAGE
    except (OSError, ValueError, IndexError):
        return 0


def measure(command: list[str]) -> Run:
    """Wall time and peak memory of one run of `command`, its children (decoders) included."""
    with tempfile.NamedTemporaryFile("r", suffix=".maxrss") as report:
        timed = [GNU_TIME, "-f", "%M", "-o", report.name, *command]
        started = time.perf_counter()
        proc = subprocess.Popen(timed, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        peak = 0
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            tree: list[int] = []
            rescanned = 0.0
            while not done.is_set():
                now = time.monotonic()
                if now - rescanned > 0.05:  # listing processes costs most: 20 times a second
                    kids, rescanned = _children(), now
                    tree = list(kids.get(proc.pid, []))  # below GNU time: the tool and its children
                    for pid in tree:
                        tree.extend(kids.get(pid, []))
                peak = max(peak, sum(_rss(pid) for pid in tree))
                done.wait(0.01)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        stderr = proc.stderr.read() if proc.stderr else b""
        code = proc.wait()
        wall = time.perf_counter() - started
        done.set()
        sampler.join()
        if code != 0:
            print(f"  ! {' '.join(command)} exited {code}: {stderr.decode()[-400:]}")
        main = int(report.read().split()[-1]) * 1024  # KiB
    return Run(wall, main / MIB, max(peak, main) / MIB, code)


def no_tensorflow(single: Path, out: Path) -> tuple[bool, int]:
    """Does a single-image run import TensorFlow or Keras? Also: how many modules it imports."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", str(CLASSIFY), str(single), str(out), "--quiet"],
        capture_output=True,
        text=True,
    )
    modules = [
        line.rsplit("|", 1)[1].strip()
        for line in result.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    ][1:]  # the first line is the header
    heavy = [m for m in modules if m.split(".")[0] in ("tensorflow", "keras", "tf_keras")]
    return not heavy and result.returncode == 0, len(modules)


# --- checking ----------------------------------------------------------------------------------


def compare(ours: Path, theirs: Path, differ_share: float = 0.0) -> dict:
    """Row by row: same sources and indices in the same order, the same digits (but for at most
    `differ_share` of the rows), close confidences."""
    with open(ours, newline="") as a, open(theirs, newline="") as b:
        ra, rb = csv.reader(a), csv.reader(b)
        header_a, header_b = next(ra), next(rb)
        rows = mismatched = misplaced = 0
        worst = 0.0
        for x, y in zip(ra, rb, strict=False):
            rows += 1
            misplaced += x[:2] != y[:2]
            mismatched += x[2] != y[2]
            worst = max(worst, abs(float(x[3]) - float(y[3])))
        extra = sum(1 for _ in ra) + sum(1 for _ in rb)
    return {
        "rows": rows,
        "same_header": header_a[:4] == header_b[:4],
        "digits_differ": mismatched,
        "rows_out_of_place": misplaced + extra,
        "max_confidence_diff": round(worst, 7),
        "ok": mismatched <= differ_share * rows
        and misplaced == 0
        and extra == 0
        and header_a[:4] == header_b[:4],
    }


def accuracy(csv_path: Path, labels: dict[str, int]) -> float:
    """The share of the photos whose digit is the one drawn (a photo without a row is wrong)."""
    with open(csv_path, newline="") as f:
        digits = {Path(r["source"]).name: int(r["digit"]) for r in csv.DictReader(f)}
    return sum(digits.get(name) == label for name, label in labels.items()) / len(labels)


def base_tool(case: str) -> str:
    return "naive photos" if case.startswith("photos-") else "plain onnxruntime"


def goals(
    rows: dict[tuple[str, str], Row],
    png: str,
    sizes: list[int],
    tf_free: bool,
    issue_17: dict[str, str | list[str]],
) -> list:
    def ratio(case: str, tool: str, base: str = "plain onnxruntime") -> float | None:
        if (case, tool) in rows and (case, base) in rows:
            return rows[case, tool].ratio_to(rows[case, base])
        return None

    checks: list[tuple[str, float | None, str, float]] = []
    cb = "classify-batch"
    checks.append((f"{png}: time vs plain onnxruntime", ratio(png, cb), "<=", PNG_VS_PLAIN))
    keras = ratio(png, cb, "plain keras")
    checks.append((f"{png}: time vs plain keras", keras, "<=", PNG_VS_KERAS))
    big = f"npy-{max(sizes)}"
    checks.append((f"{big}: time vs plain onnxruntime", ratio(big, cb), "<=", NPY_VS_PLAIN))
    if big == "npy-1000000":
        name = f"{big}: time vs plain, hold (issue 17)"
        checks.append((name, ratio(big, cb), "<=", NPY_HOLD_VS_PLAIN))
    peak = rows[big, cb].tree_mib if (big, cb) in rows else None
    checks.append((f"{big}: classify-batch peak RSS, MiB", peak, "<=", NPY_MAX_MIB))
    checks.append(("single: time vs plain onnxruntime", ratio("single", cb), "<=", SINGLE_VS_PLAIN))
    name = "single: time vs plain, hold (issue 17)"
    checks.append((name, ratio("single", cb), "<=", SINGLE_HOLD_VS_PLAIN))
    checks.append(("single: no TensorFlow/Keras imported", 0.0 if tf_free else 1.0, "<=", 0.0))
    ordered = sorted(sizes)
    for small, large in zip(ordered, ordered[1:], strict=False):
        if large == 10 * small and (f"npy-{small}", cb) in rows:
            growth = rows[f"npy-{large}", cb].tree_mib / rows[f"npy-{small}", cb].tree_mib
            name = f"flat memory: peak RSS npy-{large} / npy-{small}"
            checks.append((name, growth, "<", FLAT_GROWTH))

    def peak(case: str) -> float | None:
        return rows[case, cb].tree_mib if (case, cb) in rows else None

    photos, floats, trees = issue_17["photos"], issue_17["float"], issue_17["trees"]
    assert isinstance(photos, str) and isinstance(floats, str) and isinstance(trees, list)
    checks.append(
        (
            f"{photos}: time vs naive photos",
            ratio(photos, cb, "naive photos"),
            "<=",
            PHOTOS_VS_NAIVE,
        )
    )
    checks.append((f"{floats}: classify-batch peak RSS, MiB", peak(floats), "<=", FLOAT_MAX_MIB))
    small_tree, large_tree = trees[0], trees[1]
    small_peak, large_peak = peak(small_tree), peak(large_tree)
    growth = large_peak / small_peak if small_peak and large_peak else None
    name = f"many files: peak RSS {large_tree} / {small_tree}"
    checks.append((name, growth, "<", MANY_FILES_GROWTH))
    if len(trees) > 2:
        checks.append((f"{trees[2]}: peak RSS, MiB", peak(trees[2]), "<=", MILLION_FILES_MAX_MIB))
    results = []
    for name, value, op, bound in checks:
        if value is None:
            verdict = "n/a"
        else:
            verdict = "PASS" if (value <= bound if op == "<=" else value < bound) else "FAIL"
        results.append({"goal": name, "value": value, "bound": f"{op} {bound}", "result": verdict})
    return results


def compile_job() -> None:
    """Compile the job's bytecode, as pip does when it installs the package (the container does).

    A checkout may run with PYTHONDONTWRITEBYTECODE set (this workplace does): then every run
    would compile the job's modules from source again, about 40 ms that no installed job pays,
    while the plain scripts import only compiled site-packages.
    """
    import importlib.util

    spec = importlib.util.find_spec("classify_batch")
    assert spec is not None and spec.submodule_search_locations is not None
    root = Path(next(iter(spec.submodule_search_locations)))
    # compileall does not follow the package's links to jobs/, export/ and artifacts/.
    folders = [root, *(p.resolve() for p in root.iterdir() if p.is_symlink() and p.is_dir())]
    command = [sys.executable, "-m", "compileall", "-q", *map(str, folders)]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)


# --- reporting ---------------------------------------------------------------------------------


def machine() -> dict:
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    import onnxruntime

    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "numpy": np.__version__,
        "load_average": os.getloadavg(),
    }


def table(rows: dict[tuple[str, str], Row]) -> str:
    lines = [
        f"{'case':<14} {'tool':<18} {'wall s':>8} {'images/s':>11} {'main MiB':>9} "
        f"{'tree MiB':>9} {'vs plain':>9}"
    ]
    for (case, tool), row in rows.items():
        plain = rows.get((case, base_tool(case)))
        ratio = f"{row.ratio_to(plain):.2f}x" if plain else ""
        lines.append(
            f"{case:<14} {tool:<18} {row.wall:>8.3f} {row.images / row.wall:>11,.0f} "
            f"{row.main_mib:>9.0f} {row.tree_mib:>9.0f} {ratio:>9}"
        )
    return "\n".join(lines)


def plot(rows: dict[tuple[str, str], Row], sizes: list[int], path: Path) -> None:
    """Time and peak memory against input size, for each kind of input the benchmark has."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def ours(prefix: str) -> list[tuple[int, Row | None]]:
        """classify-batch's rows of the cases named prefix-N, by input size."""
        found = [r for (c, t), r in rows.items() if c.startswith(prefix) and t == "classify-batch"]
        return [(r.images, r) for r in sorted(found, key=lambda r: r.images)]

    series = [
        (".npy, classify-batch", "o-", ours("npy-")),
        (
            ".npy, plain onnxruntime",
            "s--",
            [(n, rows.get((f"npy-{n}", "plain onnxruntime"))) for n in sizes],
        ),
        ("tree of PNG files, classify-batch", "^-", ours("files-")),
        ("float32 .npy, classify-batch", "D", ours("float32-")),
        ("PNGs, classify-batch", "v", ours("png-")),
        ("photos, classify-batch", "P", ours("photos-")),
        (
            ".npy, classify-batch --precision int8",
            "x",
            [(n, rows.get((f"npy-{n}", "classify-batch int8"))) for n in sizes],
        ),
    ]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 6), dpi=100)
    for label, style, points in series:
        points = [(n, row) for n, row in points if row is not None]
        if points:
            left.plot([n for n, _ in points], [r.wall for _, r in points], style, label=label)
            right.plot([n for n, _ in points], [r.tree_mib for _, r in points], style, label=label)
    left.set(title="Wall time", xlabel="images (files or array rows)", ylabel="seconds (median)")
    right.set(
        title="Peak memory",
        xlabel="images (files or array rows)",
        ylabel="peak RSS, MiB (with children)",
    )
    right.axhline(
        FLOAT_MAX_MIB,
        color="grey",
        linestyle=":",
        label=f"goal for float32 and 1M files: {FLOAT_MAX_MIB} MiB",
    )
    for ax in (left, right):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle(f"classify-batch against input size, {os.cpu_count()} cores")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def replot(results: Path, path: Path) -> None:
    """Draw the plot again from a results file, without running anything."""
    report = json.loads(results.read_text())
    rows: dict[tuple[str, str], Row] = {}
    for r in report["results"]:
        row = Row(r["case"], r["tool"], r["images"])
        row.runs = [Run(w, r["main_mib"], r["tree_mib"], 0) for w in r["walls"]]
        rows[r["case"], r["tool"]] = row
    sizes = sorted(int(c.split("-")[1]) for c, _ in rows if c.startswith("npy-"))
    plot(rows, sorted(set(sizes)), path)


# --- main --------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2,000 PNGs and .npy up to 100k")
    parser.add_argument("--sizes", help="comma-separated .npy sizes, e.g. 1000,10000")
    parser.add_argument("--repeat", type=int, default=5, help="runs per tool and case (median)")
    parser.add_argument("--work", type=Path, help="keep the inputs here and reuse them")
    parser.add_argument("--json", type=Path, default=HERE / "results.json")
    parser.add_argument("--plot", type=Path, default=ROOT / "docs" / "benchmark.png")
    parser.add_argument(
        "--million-files", action="store_true", help="also a tree of 1,000,000 files (~5 min)"
    )
    parser.add_argument(
        "--only", help="run only the cases whose names start so, e.g. photos,float32,files"
    )
    parser.add_argument(
        "--replot", action="store_true", help="only draw --plot again from --json's results"
    )
    args = parser.parse_args()
    if args.replot:
        replot(args.json, args.plot)
        return 0
    if "MNIST_DATA_DIR" not in os.environ:
        parser.error("set MNIST_DATA_DIR to the folder with the MNIST .gz files")
    sizes = (
        [int(s) for s in args.sizes.split(",")]
        if args.sizes
        else (QUICK_SIZES if args.quick else FULL_SIZES)
    )
    png_count = 2_000 if args.quick else 10_000

    work = args.work or Path(tempfile.mkdtemp(prefix="classify-batch-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        return _bench(args, work, sizes, png_count)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


def _bench(args: argparse.Namespace, work: Path, sizes: list[int], png_count: int) -> int:
    info = machine()
    compile_job()
    print(
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {info['nproc']} cores, {info['cpu']}, "
        f"onnxruntime {info['onnxruntime']}, load average {info['load_average'][0]:.2f}"
    )
    print(f"building inputs in {work} ...")
    cases = build_inputs(work, png_count, sizes)
    photos = 30 if args.quick else 100
    float_rows = 30_000 if args.quick else 300_000
    trees = [3_000, 30_000] if args.quick else [30_000, 300_000]
    if args.million_files:
        trees.append(1_002_000)  # whole folders of 300
    cases.update(build_issue_17(work, photos, float_rows, trees))
    issue_17: dict[str, str | list[str]] = {
        "photos": f"photos-{photos}",
        "float": f"float32-{float_rows}",
        "trees": [f"files-{n // FILES_PER_FOLDER * FILES_PER_FOLDER}" for n in trees],
    }
    out = work / "out"
    out.mkdir(exist_ok=True)
    png = f"png-{png_count}"
    rows: dict[tuple[str, str], Row] = {}
    checks: dict[str, dict] = {}
    accuracies: dict[str, float] = {}
    for case, (path, images) in cases.items():
        if args.only and not case.startswith(tuple(args.only.split(","))):
            continue
        commands = tools(case, png, f"npy-{max(sizes)}")
        for repeat in range(args.repeat):
            for tool, template in commands.items():
                csv_path = out / f"{case}.{tool.replace(' ', '-')}.csv"
                command = [a.format(input=path, out=csv_path) for a in template]
                warm(path)
                run = measure(command)
                rows.setdefault((case, tool), Row(case, tool, images)).runs.append(run)
                print(f"  {case:<14} {tool:<18} #{repeat + 1}: {run.wall:7.3f} s")
        if case.startswith("photos-"):
            # The naive script does not normalize, so its digits are no reference: both are
            # held to the digits drawn.
            labels = json.loads((path / "labels.json").read_text())
            for tool in commands:
                csv_path = out / f"{case}.{tool.replace(' ', '-')}.csv"
                accuracies[f"{case}: {tool}"] = round(accuracy(csv_path, labels), 4)
            continue
        if "plain onnxruntime" not in commands:
            continue
        base = out / f"{case}.plain-onnxruntime.csv"
        for tool in commands:
            if tool != "plain onnxruntime":
                ours = out / f"{case}.{tool.replace(' ', '-')}.csv"
                share = 1 - INT8_AGREEMENT if tool.endswith("int8") else 0.0
                checks[f"{case}: {tool}"] = compare(ours, base, share)
    tf_free, modules = no_tensorflow(cases["single"][0], out / "importtime.csv")

    print()
    print(table(rows))
    print()
    results = goals(rows, png, sizes, tf_free, issue_17)
    for g in results:
        value = "-" if g["value"] is None else f"{g['value']:.3f}"
        print(f"{g['result']:<5} {g['goal']:<46} {value:>9}  (goal {g['bound']})")
    print(f"      (a single-image run imports {modules} modules)")
    for name, value in accuracies.items():
        print(f"      accuracy on the digits drawn, {name}: {value:.1%}")
    print()
    agree = True
    for name, c in checks.items():
        agree &= c["ok"] or name.endswith("keras")
        print(
            f"{'same' if c['ok'] else 'DIFFER':<6} digits vs plain onnxruntime, {name}: "
            f"{c['rows']:,} rows, {c['digits_differ']} digits differ, "
            f"{c['rows_out_of_place']} rows out of place, "
            f"max |confidence diff| {c['max_confidence_diff']}"
        )
    info["load_average_after"] = os.getloadavg()

    args.json.write_text(
        json.dumps(
            {
                "date": datetime.now(UTC).isoformat(timespec="seconds"),
                "machine": info,
                "repeat": args.repeat,
                "measured": (
                    "wall: median of the repeats; ratios: median of the paired runs' ratios; "
                    "main_mib: the tool's own process peak RSS "
                    "(wait4); tree_mib: process plus children, RSS summed, sampled every 10 ms "
                    "(pages shared after fork count once per process, so an upper bound); "
                    "both memory figures are the largest over the repeats"
                ),
                "results": [
                    {
                        **{k: v for k, v in asdict(row).items() if k != "runs"},
                        "wall_s": round(row.wall, 4),
                        "images_per_s": round(row.images / row.wall),
                        "main_mib": round(row.main_mib, 1),
                        "tree_mib": round(row.tree_mib, 1),
                        "walls": [round(r.wall, 4) for r in row.runs],
                    }
                    for row in rows.values()
                ],
                "goals": results,
                "digits_vs_plain": checks,
                "photo_accuracy": accuracies,
                "single_image_modules": modules,
            },
            indent=2,
        )
        + "\n"
    )
    if any(case.startswith("npy-") for case, _ in rows):
        plot(rows, sizes, args.plot)
    print(f"\nwrote {args.json} and {args.plot}")
    failed = any(g["result"] == "FAIL" for g in results) or not agree
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
