"""A progress line on stderr for people at a terminal, and nothing for schedulers' logs."""

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, total_files: int, enabled: bool, stream: TextIO = sys.stderr) -> None:
        self.total = total_files
        self.enabled = enabled and stream.isatty()
        self.stream = stream
        self.files = 0
        self.images = 0
        self.started = time.monotonic()
        self._shown = 0.0

    def update(self, files: int, images: int) -> None:
        self.files += files
        self.images += images
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._shown < 0.1 and self.files < self.total:
            return
        self._shown = now
        secs = max(now - self.started, 1e-9)
        width = 24
        done = int(width * self.files / self.total) if self.total else width
        bar = "#" * done + "-" * (width - done)
        self.stream.write(
            f"\r[{bar}] {self.files:,}/{self.total:,} files  {self.images:,} images  "
            f"{self.files / secs:,.0f} files/s  {self.images / secs:,.0f} images/s "
        )
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
