"""A studio process on a pseudo-terminal, as a user's terminal runs it: keys in, screen bytes out."""

from __future__ import annotations

import fcntl
import os
import select
import signal
import struct
import subprocess
import sys
import termios
from pathlib import Path
from typing import Optional

from tests.support.apps import REPO
from tests.support.waits import wait_until

UP = b"\x1b[A"
CTRL_C = b"\x03"


def _controlling_tty() -> None:
    # In the child, after setsid: the pty becomes its terminal, so Ctrl-C there sends it SIGINT.
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Terminal:
    """`python -m tests.support.launch_scripted ARGS` (launch.py with the scripted engine) on a pty."""

    def __init__(self, args: list[str], env: Optional[dict] = None) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.support.launch_scripted", *args], cwd=REPO,
                                     stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
                                     preexec_fn=_controlling_tty, env=dict(os.environ, TERM="xterm", **(env or {})))
        os.close(slave)
        self.master, self.screen, self._mark = master, b"", 0

    def send(self, keys: bytes) -> None:
        """Type `keys`."""
        os.write(self.master, keys)

    def expect(self, needle: str) -> str:
        """Wait until `needle` is shown after what the previous expect matched; returns the text between."""
        data = needle.encode()

        def shown() -> bool:
            self._read()
            return self.screen.find(data, self._mark) >= 0 or self._ended()

        wait_until(shown, f"{needle!r} on the terminal", progress=lambda: len(self.screen), step=0.05)
        at = self.screen.find(data, self._mark)
        if at < 0:
            raise AssertionError(f"{needle!r} never shown; the studio exited with {self.proc.returncode}:\n"
                                 f"{self.text(self._mark)}")
        between, self._mark = self.screen[self._mark:at], at + len(data)
        return between.decode("utf-8", "replace")

    def text(self, start: int = 0) -> str:
        """What was shown from byte `start` on."""
        return self.screen[start:].decode("utf-8", "replace")

    def wait_exit(self) -> int:
        """The exit status, once the process has ended (reading its last output meanwhile)."""
        wait_until(lambda: self._read() is None and self.proc.poll() is not None, "the studio to exit",
                   progress=lambda: len(self.screen), step=0.05)
        self._read()
        return self.proc.returncode

    def close(self) -> None:
        """Kill the process if it still runs and close the pty."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        os.close(self.master)

    def _read(self) -> None:
        while select.select([self.master], [], [], 0.05)[0]:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # the other end closed (the process ended)
                break
            if not chunk:
                break
            self.screen += chunk

    def _ended(self) -> bool:
        return self.proc.poll() is not None and not select.select([self.master], [], [], 0)[0]


def history_file(data_dir: Path) -> Path:
    """Where the terminal chat keeps what was typed."""
    return Path(data_dir) / "cli_history"
