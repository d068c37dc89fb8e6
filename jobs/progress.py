"""A progress line on stderr for people at a terminal, and nothing for schedulers' logs.

Hand-written rather than tqdm or rich: importing rich.progress costs ~80 ms (measured with
`python -X importtime`), this module ~1 ms, on a job that may run once per file.
"""

import sys
import time
from collections.abc import Callable
from typing import TextIO

# Before this long, a rate (and so an ETA) would mostly measure start-up.
RATE_AFTER_SECONDS = 0.5


class Progress:
    """Images done out of the images to do (image files plus array rows), the rate and an ETA.

    `total_images` is called only when the line is shown, so a run with no terminal never reads
    the arrays' headers to count their rows.
    """

    def __init__(
        self,
        total_files: int,
        enabled: bool,
        stream: TextIO = sys.stderr,
        total_images: Callable[[], int] | None = None,
    ) -> None:
        self.total_files = total_files
        self.enabled = enabled and stream.isatty()
        self.stream = stream
        self.files = 0
        self.images = 0
        self.total = 0
        if self.enabled:
            self.total = total_images() if total_images is not None else total_files
        self.started = time.monotonic()
        self._shown = 0.0

    def update(self, files: int, images: int) -> None:
        self.files += files
        self.images += images
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._shown < 0.1 and self.files < self.total_files:
            return
        self._shown = now
        self.stream.write("\r" + self.line(now - self.started) + "\x1b[K")
        self.stream.flush()

    def line(self, seconds: float) -> str:
        # Failed rows count as done work too, so the bar reaches its end.
        done = min(self.images, self.total) if self.files < self.total_files else self.total
        width = 24
        filled = int(width * done / self.total) if self.total else width
        text = (
            f"[{'#' * filled}{'-' * (width - filled)}] {done:,}/{self.total:,} images, "
            f"{self.files:,}/{self.total_files:,} files"
        )
        if seconds >= RATE_AFTER_SECONDS and self.images:
            rate = self.images / seconds
            left = max(self.total - done, 0) / rate
            text += f"  {rate:,.0f} images/s  ETA {_clock(left)}"
        return text

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


def _clock(seconds: float) -> str:
    s = int(seconds + 0.5)
    return (
        f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"
    )
