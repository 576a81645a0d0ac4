"""Stop signals for streaming replies, keyed by browser session.

Stop does not use Gradio's `cancels=`: cancelling a running event makes the server send a completion
without data, and when that message reaches the page after the cancel request returns, the page's
handler fails on it and leaves a blank red "Error" badge on the outputs (about one Stop in four).
Instead Stop sets the run's cancel event; the engine ends within a token, and the reply's own
generator sends its last, complete update, so the page, the state and the store agree.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any, Iterator

import gradio as gr

# Stop listeners run outside the queue, or they would wait behind the very run they stop.
_AT_ONCE = dict(queue=False, api_visibility="private", show_progress="hidden")


def run_key(request: Any) -> str:
    """Whose Stop stops a run: the browser tab's session (a client without one cannot be stopped by others)."""
    return getattr(request, "session_hash", None) or f"anonymous:{id(request)}"


class StopSignals:
    """The cancel events of the runs of each browser session (one object per app)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: dict[str, list[threading.Event]] = {}
        self._pending: set[str] = set()  # Stop pressed while the run still waited in the queue

    @contextlib.contextmanager
    def run(self, key: str) -> Iterator[threading.Event]:
        """Register a run of `key` for as long as the block lasts; yields its cancel event."""
        cancel = threading.Event()
        with self._lock:
            if key in self._pending:
                self._pending.discard(key)
                cancel.set()
            self._runs.setdefault(key, []).append(cancel)
        try:
            yield cancel
        finally:
            with self._lock:
                runs = self._runs.get(key, [])
                if cancel in runs:
                    runs.remove(cancel)
                if not runs:
                    self._runs.pop(key, None)

    def running(self, key: str) -> bool:
        """Whether a run of `key` is under way now."""
        with self._lock:
            return bool(self._runs.get(key))

    def submitted(self, key: str) -> None:
        """A new run of `key` was submitted: a Stop pressed before it no longer applies."""
        with self._lock:
            self._pending.discard(key)

    def forget_on(self, *triggers) -> None:
        """Each trigger (e.g. `button.click`) that starts a run first forgets a Stop pressed while none ran.

        Attach these before the run's own listener; queue=False, so they are never held behind a run."""
        def on_submitted(request: gr.Request):
            self.submitted(run_key(request))

        for trigger in triggers:
            trigger(on_submitted, None, None, **_AT_ONCE)

    def stop_on(self, *triggers) -> None:
        """Each trigger (a Stop button's click, a textbox's stop) stops the session's runs at once."""
        def on_stop(request: gr.Request):
            self.stop(run_key(request))

        for trigger in triggers:
            trigger(on_stop, None, None, **_AT_ONCE)

    def stop(self, key: str) -> bool:
        """Stop the runs of `key`; with none running yet, stop the one waiting in the queue."""
        with self._lock:
            runs = self._runs.get(key, [])
            for cancel in runs:
                cancel.set()
            if not runs:
                self._pending.add(key)
            return bool(runs)
