"""How often a streaming reply repaints its transcript, shared by every stream of one app.

Each update re-sends the transcript, and the server does its work (postprocess, diff, JSON, SSE) on
one interpreter. With many users streaming at once (lmdeploy batches 32+), per-user frame rates
that are fine for one user saturate the server and slow everyone's first token. The pacer keeps
the total near `budget` updates a second: each stream waits `max(min_interval, active / budget)`
between updates. The first text and the final update are never held back.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Iterator

FRAMES_PER_S = 100.0  # all streams of the app together


class FramePacer:
    """Counts the app's active streams and says when a stream may send its next update."""

    def __init__(self, budget: float = FRAMES_PER_S) -> None:
        self.budget = budget
        self._active = 0
        self._lock = threading.Lock()

    @property
    def active(self) -> int:
        """Streams running now."""
        return self._active

    @contextlib.contextmanager
    def streaming(self) -> Iterator[None]:
        """Hold this while a reply streams (a closed generator leaves it too)."""
        with self._lock:
            self._active += 1
        try:
            yield
        finally:
            with self._lock:
                self._active -= 1

    def interval(self, min_interval: float) -> float:
        """Seconds between two updates of one stream right now."""
        return max(min_interval, self._active / self.budget)

    def due(self, shown: float, min_interval: float) -> bool:
        """True when a stream that last updated at `shown` (monotonic) should update now."""
        return time.monotonic() - shown >= self.interval(min_interval)
