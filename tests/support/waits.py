"""Waits that pass on a busy machine: they give up only when nothing has moved for a long time
(never because a loaded 2-core machine is slower than a fixed deadline), and they say what they
waited for and what they last saw."""

from __future__ import annotations

import os
import time
from subprocess import CompletedProcess
from typing import Any, Callable, Optional

# How long a wait may see no progress at all before it fails: a hang guard, not a speed target.
STALL_S = float(os.environ.get("PUYU_TEST_STALL_S", "600"))
_NOTHING = object()


def wait_until(done: Callable[[], Any], what: str, progress: Optional[Callable[[], Any]] = None,
               stall_s: float = STALL_S, step: float = 0.1) -> Any:
    """Poll `done()` until it is truthy and return its value.

    Fails only when `progress()` (default: `done()`'s own value) has not changed for `stall_s`
    seconds, naming `what` and the last value seen."""
    last, moved = _NOTHING, time.monotonic()
    while True:
        value = done()
        if value:
            return value
        mark = progress() if progress is not None else value
        now = time.monotonic()
        if mark != last:
            last, moved = mark, now
        elif now - moved > stall_s:
            raise AssertionError(f"gave up waiting for {what}: nothing changed for {stall_s:.0f} s "
                                 f"(last seen: {_excerpt(mark)})")
        time.sleep(step)


def page_text(page) -> str:
    """Everything the page shows as text: changes whenever the app streams or updates."""
    try:
        return page.locator("body").inner_text(timeout=60_000)
    except Exception as exc:  # a page mid-navigation: report it as a state of its own
        return f"<{type(exc).__name__}>"


def wait_in_page(page, locator, what: str, text: Optional[str] = None, visible: bool = False,
                 empty: Optional[bool] = None, stall_s: float = STALL_S) -> None:
    """Wait until `locator` contains `text` / is visible / is (not) empty, while the page keeps changing."""
    def done() -> bool:
        try:
            if visible and not locator.first.is_visible():
                return False
            content = locator.first.inner_text(timeout=1000) if (text is not None or empty is not None) else ""
        except Exception:
            return False
        if text is not None and text not in content:
            return False
        if empty is not None and (not content.strip()) != empty:
            return False
        return True

    wait_until(done, what, progress=lambda: page_text(page), stall_s=stall_s, step=0.25)


def _excerpt(value: Any, limit: int = 300) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + f"… ({len(text):,} chars)"


def run_until_quiet(cmd: list, stall_s: float = STALL_S, stdin: Optional[str] = None, **popen) -> "CompletedProcess":
    """subprocess.run for a command that prints as it works: killed (and reported with its output so
    far) only when it prints nothing for `stall_s` seconds, however long it takes in all."""
    import subprocess
    import threading

    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **popen)
    out: dict[str, list[str]] = {"stdout": [], "stderr": []}
    moved = [time.monotonic()]

    def pump(stream, sink):
        for chunk in iter(lambda: stream.read(1), ""):
            sink.append(chunk)
            moved[0] = time.monotonic()

    threads = [threading.Thread(target=pump, args=(proc.stdout, out["stdout"]), daemon=True),
               threading.Thread(target=pump, args=(proc.stderr, out["stderr"]), daemon=True)]
    for t in threads:
        t.start()
    if stdin:
        proc.stdin.write(stdin)
    proc.stdin.close()
    while proc.poll() is None:
        if time.monotonic() - moved[0] > stall_s:
            proc.kill()
            proc.wait()
            raise AssertionError(f"{cmd!r} printed nothing for {stall_s:.0f} s and was killed; output so far:\n"
                                 + _excerpt("".join(out["stdout"]) + "".join(out["stderr"]), 4000))
        time.sleep(0.1)
    for t in threads:
        t.join()
    return subprocess.CompletedProcess(cmd, proc.returncode, "".join(out["stdout"]), "".join(out["stderr"]))
