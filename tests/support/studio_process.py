"""A real studio process for crash tests: `python -m tests.support.launch_scripted …` (launch.py with
the scripted engine registered) on a data dir and port, started, `kill -9`ed and started again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

from tests.support.apps import REPO, free_port
from tests.support.waits import wait_until


class StudioProcess:
    """One studio on `data_dir` and a fixed port; its output is appended to `log`."""

    def __init__(self, config: Path, data_dir: Path, log: Path, port: Optional[int] = None) -> None:
        self.config, self.data_dir, self.log = Path(config), Path(data_dir), Path(log)
        self.port = port or free_port()
        self.proc: Optional[subprocess.Popen] = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self) -> float:
        """Start it and wait until it serves; returns the seconds that took."""
        started = time.monotonic()
        with self.log.open("a", encoding="utf-8") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.support.launch_scripted", "--config", str(self.config),
                 "--data-dir", str(self.data_dir), "--port", str(self.port)],
                cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED="1"))
        wait_until(self._serving, "the studio to serve", progress=lambda: self.log.stat().st_size, step=0.25)
        return time.monotonic() - started

    def _serving(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"the studio exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{self.url}gradio_api/info", timeout=30) as r:
                return r.status == 200
        except OSError:
            return False

    def kill(self) -> None:
        """`kill -9`, as a crash or the OOM killer would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait()


@contextmanager
def running_studio(config: Path, data_dir: Path, log: Path, port: Optional[int] = None) -> Iterator[StudioProcess]:
    """A started StudioProcess, killed when the block ends (if it still runs)."""
    studio = StudioProcess(config, data_dir, log, port)
    try:
        studio.start()
        yield studio
    finally:
        studio.kill()
