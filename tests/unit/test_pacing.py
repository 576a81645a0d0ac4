"""The frame pacer: fewer transcript updates per stream as more users stream at once."""

from __future__ import annotations

import threading
import time

import pytest

from studio.ui.pacing import FramePacer


def test_interval_grows_with_active_streams_and_shrinks_when_they_end():
    pacer = FramePacer(budget=100)
    assert pacer.interval(0.05) == 0.05
    with pacer.streaming(), pacer.streaming():
        assert pacer.active == 2 and pacer.interval(0.05) == 0.05  # few streams: the tab's own rate
    streams = [pacer.streaming() for _ in range(32)]
    for s in streams:
        s.__enter__()
    assert pacer.interval(0.05) == pytest.approx(0.32)  # 32 streams share ~100 updates a second
    for s in streams:
        s.__exit__(None, None, None)
    assert pacer.active == 0 and pacer.interval(0.05) == 0.05


def test_a_stream_that_fails_or_is_closed_is_no_longer_counted():
    pacer = FramePacer()

    def reply():
        with pacer.streaming():
            yield "a"
            yield "b"

    gen = reply()
    next(gen)
    assert pacer.active == 1
    gen.close()  # the user pressed Stop / left: the generator is closed mid-stream
    assert pacer.active == 0
    with pytest.raises(RuntimeError), pacer.streaming():
        raise RuntimeError("engine failed")
    assert pacer.active == 0


def test_due_allows_the_first_update_at_once_and_spaces_the_rest():
    pacer = FramePacer(budget=100)
    assert pacer.due(0.0, 0.05)  # never shown: the first text goes out immediately
    now = time.monotonic()
    assert not pacer.due(now, 0.05)
    assert pacer.due(now - 0.06, 0.05)


def test_counting_is_safe_across_threads():
    pacer = FramePacer()

    def work():
        for _ in range(500):
            with pacer.streaming():
                pass

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert pacer.active == 0
