"""StopSignals: Stop sets the running reply's cancel event, or the next one still waiting in the queue."""

from __future__ import annotations

from studio.ui.stops import StopSignals


def test_stop_sets_the_running_runs_of_that_session_only():
    stops = StopSignals()
    with stops.run("tab-a") as a, stops.run("tab-b") as b:
        assert stops.stop("tab-a") is True
        assert a.is_set() and not b.is_set()
    with stops.run("tab-a") as again:
        assert not again.is_set()  # a finished run's Stop does not reach the next one


def test_stop_while_queued_stops_the_run_when_it_starts():
    stops = StopSignals()
    stops.submitted("tab-a")
    assert stops.stop("tab-a") is False  # nothing runs yet: the request still waits in the queue
    with stops.run("tab-a") as cancel:
        assert cancel.is_set()
    with stops.run("tab-a") as later:
        assert not later.is_set()  # used once


def test_a_stop_pressed_while_idle_does_not_stop_the_next_message():
    stops = StopSignals()
    stops.stop("tab-a")  # nothing running, nothing queued
    stops.submitted("tab-a")  # the user sends a message
    with stops.run("tab-a") as cancel:
        assert not cancel.is_set()
