"""What the terminal shows: the studio's own lines only (library output goes to a log file), and model
loading on one line that ends with "Model NAME ready in N s"."""

from __future__ import annotations

import logging
import os
import shutil
import sys
import threading
from pathlib import Path
from typing import Optional, TextIO

from studio.services import EnginePool, LoadState

# Set before the libraries are imported: huggingface_hub's switch also turns off transformers' bars.
QUIET_ENV = {"HF_HUB_DISABLE_PROGRESS_BARS": "1", "TQDM_DISABLE": "1", "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1"}
LOG_MAX_BYTES = 5 * 1024 * 1024
FILE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def quiet_libraries() -> None:
    """Progress bars of transformers, huggingface_hub and tqdm off (a user's own setting wins)."""
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)


class Console:
    """The terminal: whole lines, and one status line redrawn in place (\\r) on a TTY; without a TTY
    the status is printed as a plain line, and only when it changes."""

    def __init__(self, out: TextIO, tty: Optional[bool] = None) -> None:
        self.out = out
        self.err: TextIO = sys.stderr  # where errors go; route_output keeps the terminal's stderr here
        self.tty = out.isatty() if tty is None else tty
        self._lock = threading.Lock()
        self._status = ""

    def line(self, text: str) -> None:
        """Print one line (above the status line, which is drawn again under it)."""
        with self._lock:
            self._write(("\r\033[K" if self.tty and self._status else "") + text + "\n")
            if self.tty and self._status:
                self._write(self._fit(self._status))

    def status(self, text: str) -> None:
        """Show `text` as the current status."""
        with self._lock:
            if text == self._status:
                return
            self._status = text
            self._write("\r\033[K" + self._fit(text) if self.tty else text + "\n")

    def clear_status(self) -> None:
        """Remove the status line."""
        with self._lock:
            if self.tty and self._status:
                self._write("\r\033[K")
            self._status = ""

    def _fit(self, text: str) -> str:
        # A status longer than the terminal wraps, and \r would then redraw only its last row.
        width = shutil.get_terminal_size((100, 24)).columns
        return text if len(text) < width else text[: max(10, width - 2)] + "…"

    def _write(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()


class ConsoleHandler(logging.Handler):
    """The studio's own log records as short terminal lines (tracebacks stay in the log file)."""

    def __init__(self, console: Console) -> None:
        super().__init__(logging.INFO)
        self.console = console
        self.addFilter(lambda record: record.name == "studio" or record.name.startswith("studio."))

    def emit(self, record: logging.LogRecord) -> None:
        """Print the record's message, with its level when it is not plain information."""
        try:
            level = "" if record.levelno < logging.WARNING else f"{record.levelname.lower()}: "
            self.console.line(f"  {level}{record.getMessage()}")
        except Exception:  # a log line must never take the studio down
            self.handleError(record)


def open_log(folder: Path) -> Path:
    """The studio's log file in `folder` (0600), the previous one kept as .1 once it grows large."""
    path = folder / "studio.log"
    try:
        if path.stat().st_size > LOG_MAX_BYTES:
            os.replace(path, path.with_suffix(".log.1"))
    except FileNotFoundError:
        pass
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
    os.chmod(path, 0o600)
    return path


def route_output(console: Console, log_file: Path) -> None:
    """From now on the terminal gets the studio's lines only: the process's stderr (library warnings,
    progress bars, C++ messages) is appended to `log_file`, with every log record."""
    fd = os.open(log_file, os.O_WRONLY | os.O_APPEND)
    sys.stderr.flush()
    console.err = os.fdopen(os.dup(2), "w", buffering=1)
    os.dup2(fd, 2)  # the file descriptor, so output of native code and of handlers made earlier goes too
    os.close(fd)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    to_file = logging.StreamHandler(sys.stderr)
    to_file.setFormatter(logging.Formatter(FILE_FORMAT))
    root.addHandler(to_file)
    root.addHandler(ConsoleHandler(console))
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)  # warnings.warn(...) becomes a record of "py.warnings": the file only


def loading_text(name: str, st: LoadState) -> str:
    """One engine's loading progress in a few words."""
    return f"{name} {st.progress:.0%}" + (f" ({st.text})" if st.text else "")


def finished_text(name: str, st: LoadState) -> str:
    """The line that ends one engine's loading: ready in N s, or failed and why."""
    if st.state == "ready":
        return f"Model {name} ready in {st.seconds:.0f} s"
    return f"Model {name} failed to load after {st.seconds:.0f} s: {st.error}"


def report_loading(pool: EnginePool, console: Console, poll_s: float = 0.5) -> threading.Thread:
    """Show the pool's loading on the status line until every started engine is ready or has failed,
    with one line per engine as it finishes (a daemon thread; returned for tests)."""
    thread = threading.Thread(target=_report, args=(pool, console, poll_s), name="loading-line", daemon=True)
    thread.start()
    return thread


def _report(pool: EnginePool, console: Console, poll_s: float) -> None:
    pending = [n for n in pool.names() if pool.state(n).state != "idle"]
    while pending:
        for name in list(pending):
            st = pool.state(name)
            if st.state in ("ready", "failed"):
                pending.remove(name)
                console.line(f"  {finished_text(name, st)}")
        if pending:
            console.status("  Loading " + " · ".join(loading_text(n, pool.state(n)) for n in pending) + " …")
            pool.wait(pending[0], poll_s)
    console.clear_status()
