"""The terminal's lines: the status line redrawn in place on a TTY, plain lines otherwise, and the studio's
own log records only."""

from __future__ import annotations

import io
import logging

from studio.console import Console, ConsoleHandler, finished_text
from studio.services import LoadState


def test_on_a_tty_the_status_is_redrawn_in_place_and_lines_go_above_it():
    out = io.StringIO()
    console = Console(out, tty=True)
    console.status("Loading chat 10%")
    console.status("Loading chat 10%")  # unchanged: nothing written
    console.line("a studio line")
    console.status("Loading chat 50%")
    console.clear_status()
    assert out.getvalue() == ("\r\x1b[KLoading chat 10%" "\r\x1b[Ka studio line\nLoading chat 10%"
                              "\r\x1b[KLoading chat 50%" "\r\x1b[K")


def test_without_a_tty_each_new_status_is_one_plain_line():
    out = io.StringIO()
    console = Console(out, tty=False)
    for text in ("Loading chat 10%", "Loading chat 10%", "Loading chat 50%"):
        console.status(text)
    console.line("done")
    console.clear_status()
    assert out.getvalue() == "Loading chat 10%\nLoading chat 50%\ndone\n"


def test_only_the_studios_records_reach_the_terminal_without_tracebacks():
    out = io.StringIO()
    handler, root = ConsoleHandler(Console(out, tty=False)), logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        logging.getLogger("studio.services").info("moved %d", 2)
        logging.getLogger("transformers").warning("noise")  # a library's: the log file only
        logging.getLogger("studio.cli").debug("debug")
        logging.getLogger("studio").warning("careful")
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("studio.x").exception("failed")
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    assert out.getvalue() == "  moved 2\n  warning: careful\n  error: failed\n"


def test_the_ready_and_failed_lines():
    assert finished_text("chat", LoadState("ready", 1.0, seconds=9.4)) == "Model chat ready in 9 s"
    failed = LoadState("failed", 0.2, error="Model path not found: /x", seconds=2.6)
    assert finished_text("chat", failed) == "Model chat failed to load after 3 s: Model path not found: /x"
