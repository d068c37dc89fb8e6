"""The memory bound is the job's (issue 15): decoders share a few slots for big images, sized from
the container's memory limit, so two 50 MP images never decode at once in a 512 Mi pod."""

import io
import threading

import numpy as np
import pytest
from PIL import Image

from classify_batch.jobs import images, memory, pipeline
from classify_batch.jobs.discover import find_inputs

MIB = 1024 * 1024


@pytest.fixture(autouse=True)
def no_override(monkeypatch):
    monkeypatch.delenv(memory.LIMIT_VARIABLE, raising=False)


def cgroup(tmp_path, v2: str | None = None, v1: str | None = None):
    tmp_path.mkdir()
    if v2 is not None:
        (tmp_path / "memory.max").write_text(v2 + "\n")
    if v1 is not None:
        (tmp_path / "memory").mkdir()
        (tmp_path / "memory" / "memory.limit_in_bytes").write_text(v1 + "\n")
    return tmp_path


def test_the_limit_is_read_from_cgroup_v2_and_v1(tmp_path, monkeypatch):
    assert memory.memory_limit(cgroup(tmp_path / "a", v2="max")) is None
    assert memory.memory_limit(cgroup(tmp_path / "b", v2=str(512 * MIB))) == 512 * MIB
    assert memory.memory_limit(cgroup(tmp_path / "c", v1="9223372036854771712")) is None
    assert memory.memory_limit(cgroup(tmp_path / "d", v1=str(2048 * MIB))) == 2048 * MIB
    assert memory.memory_limit(tmp_path / "nothing") is None
    monkeypatch.setenv(memory.LIMIT_VARIABLE, "512M")
    assert memory.memory_limit(tmp_path / "nothing") == 512 * MIB


def test_a_512_mi_pod_decodes_one_big_image_at_a_time():
    assert memory.big_image_slots(2, 512 * MIB) == 1
    assert memory.big_image_slots(4, 512 * MIB) == 1
    assert memory.big_image_slots(2, None) is None  # no limit: no gate
    assert memory.big_image_slots(2, 8192 * MIB) is None  # room for both: no gate
    assert memory.big_image_slots(8, 2048 * MIB) == 2


class RecordingGate:
    def __init__(self):
        self.entered = 0
        self.lock = threading.Lock()

    def __enter__(self):
        self.lock.acquire()
        self.entered += 1

    def __exit__(self, *exc):
        self.lock.release()


@pytest.fixture
def gate():
    recording = RecordingGate()
    images.set_big_image_gate(recording)
    yield recording
    images.set_big_image_gate(None)


def test_big_images_take_the_gate_and_small_ones_do_not(tmp_path, gate):
    Image.new("L", (5000, 4000), 255).save(tmp_path / "blank-20mp.png")  # kilobytes on disk
    Image.new("RGB", (5000, 4000), (250, 250, 240)).save(tmp_path / "scan.tiff")
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(tmp_path / "mnist.png")
    assert images.read_image(tmp_path / "mnist.png").shape == (28, 28)
    assert gate.entered == 0
    assert images.read_image(tmp_path / "blank-20mp.png").shape == (4000, 5000)
    assert gate.entered == 1
    assert images.read_image(tmp_path / "scan.tiff").shape == (4000, 5000)
    assert gate.entered == 2


def test_a_drafted_phone_jpeg_is_small_and_passes_without_the_gate(tmp_path, gate):
    buffer = io.BytesIO()
    Image.new("RGB", (6000, 4000), (240, 240, 230)).save(buffer, "JPEG", quality=90)
    (tmp_path / "photo.jpg").write_bytes(buffer.getvalue())
    assert max(images.read_image(tmp_path / "photo.jpg", draft_side=512).shape) < 1000
    assert gate.entered == 0
    images.read_image(tmp_path / "photo.jpg")  # full size: 24 MP
    assert gate.entered == 1


def test_a_pool_under_a_tight_limit_still_decodes_every_big_image(tmp_path, monkeypatch):
    monkeypatch.setenv(memory.LIMIT_VARIABLE, "512M")
    monkeypatch.setattr(pipeline, "POOL_MIN_BYTES", 1)  # blank scans are small files
    for i in range(4):
        canvas = np.full((3000, 6000), 255, np.uint8)  # 18 MP: gated
        canvas[1000:2000, 2800 + 50 * i : 3000 + 50 * i] = 0
        Image.fromarray(canvas).save(tmp_path / f"{i}.png")
    sources = find_inputs([str(tmp_path)]).sources
    pool = pipeline.start_pool(2, [s.path for s in sources])
    assert pool is not None
    try:
        pieces = list(pipeline.stream(sources, "auto", pool, None, 2, 1))
    finally:
        pool.close()
    assert [e for piece in pieces for e in piece.errors] == []
    assert sum(len(piece.images) for piece in pieces) == 4
