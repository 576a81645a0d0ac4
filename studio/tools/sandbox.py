"""Parent side of the sandbox: one confined child Python per conversation, spoken to over two pipes."""

from __future__ import annotations

import json
import math
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from studio.errors import StudioError
from studio.tools import wire

ROOT = Path(__file__).resolve().parents[2]
BOOT = "import sys; sys.path.insert(0, sys.argv[1]); from studio.tools.child import main; main(sys.argv[2:])"
ESSENTIAL = ("separate process", "rlimits", "no programs (seccomp)")
NETWORK = ("no network (seccomp)", "no network (namespace)")
POLL_S = 0.05


class SandboxUnavailable(StudioError):
    """The essential protections cannot be applied on this machine, so the interpreter does not start."""


@dataclass(frozen=True)
class Limits:
    """What one call and the child may use."""

    wall_s: float = 30.0  # per call, wall clock
    cpu_s: int = 30  # per call, CPU time (RLIMIT_CPU)
    memory_bytes: int = 1 << 30  # RLIMIT_AS
    file_bytes: int = 10 << 20  # RLIMIT_FSIZE
    open_files: int = 256  # RLIMIT_NOFILE
    output_chars: int = 16 << 10  # what comes back of stdout, stderr and the value
    start_s: float = 120.0  # a loaded machine may take long to start Python


@dataclass(frozen=True)
class Outcome:
    """How one request ended: `reply` when the child answered, else why it did not ("timeout", ...)."""

    reply: dict | None
    ended: str = ""  # "", "timeout", "cancelled", "crashed"
    detail: str = ""


def child_env(folder: Path) -> dict[str, str]:
    """A minimal environment: nothing of the server's (it may hold tokens), one thread per math library."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(folder), "TMPDIR": str(folder), "MPLBACKEND": "Agg",
           "MPLCONFIGDIR": str(folder / ".matplotlib"), "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}
    env.update({k: "1" for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")})
    return env


def death(returncode: int | None, limits: Limits) -> str:
    """Words for how the child ended."""
    if returncode is None:
        return "it stopped answering"
    if returncode == -signal.SIGXCPU:
        return f"it used more than its {limits.cpu_s} s of CPU time"
    if returncode == -signal.SIGKILL:
        return "it was killed (most likely out of memory)"
    if returncode < 0:
        return f"it crashed ({signal.Signals(-returncode).name})"
    return f"it exited with status {returncode}"


class Sandbox:
    """One confined child process; `request` sends a message and waits for the reply, a stop or a limit."""

    def __init__(self, folder: Path, limits: Limits = Limits()) -> None:
        self.folder, self.limits = Path(folder), limits
        self.process: subprocess.Popen | None = None
        self.protections: list[str] = []
        self.missing: dict[str, str] = {}
        self.lock = threading.Lock()

    @property
    def alive(self) -> bool:
        """True while the child runs."""
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int | None:
        """The child's process id (also its process group's)."""
        return self.process.pid if self.process else None

    def start(self, cancel: threading.Event | None = None) -> list[str]:
        """Start the child and check its protections; SandboxUnavailable when the essential ones are missing."""
        if not sys.platform.startswith("linux"):
            raise SandboxUnavailable("The Python interpreter's sandbox needs Linux (seccomp, rlimits).",
                                     "Run the studio on Linux to use the interpreter.")
        self.kill()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.folder.chmod(0o700)
        self.spawn()
        hello = self.wait_reply(cancel or threading.Event(), self.limits.start_s)
        if hello.reply is None:
            self.kill()
            raise SandboxUnavailable(f"The Python interpreter did not start: {hello.detail}.",
                                     "Check that the studio's Python can run; the details are above.")
        self.protections, self.missing = hello.reply["protections"], hello.reply["missing"]
        self.refuse_if_unsafe()
        return self.protections

    def spawn(self) -> None:
        """Launch the child in its own session with two pipes (requests in, replies out)."""
        req_r, self.req_w = os.pipe()
        self.rep_r, rep_w = os.pipe()
        config = json.dumps({k: v for k, v in asdict(self.limits).items()})
        self.log = tempfile.TemporaryFile()
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-I", "-c", BOOT, str(ROOT), str(req_r), str(rep_w), str(self.folder), config],
                cwd=self.folder, env=child_env(self.folder), pass_fds=(req_r, rep_w), stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=self.log, start_new_session=True)
        finally:
            os.close(req_r)
            os.close(rep_w)
        self.decoder = wire.Decoder()

    def refuse_if_unsafe(self) -> None:
        """SandboxUnavailable naming what is missing and why, unless the essential protections are active."""
        lacking = [p for p in ESSENTIAL if p not in self.protections]
        if not any(p in self.protections for p in NETWORK):
            lacking.append("no network")
        if not lacking:
            return
        self.kill()
        reasons = "; ".join(f"{k}: {v}" for k, v in self.missing.items())
        raise SandboxUnavailable(
            f"The Python interpreter cannot be confined on this machine (missing: {', '.join(lacking)}; {reasons}).",
            "It needs Linux with seccomp and the libseccomp2 library (Debian/Ubuntu: apt install libseccomp2).")

    def request(self, message: dict, cancel: threading.Event) -> Outcome:
        """Send one message within the per-call CPU budget; wait for the reply, a stop or the wall-clock limit."""
        with self.lock:
            self.budget_cpu()
            try:
                wire.send(self.req_w, message)
            except OSError:
                return self.crashed()
            return self.wait_reply(cancel, self.limits.wall_s)

    def budget_cpu(self) -> None:
        """Give the child `cpu_s` more CPU seconds than it has used (it cannot change its own limits)."""
        used = getattr(self, "cpu_used", 0.0)
        soft = math.ceil(used) + self.limits.cpu_s
        try:
            import resource

            resource.prlimit(self.process.pid, resource.RLIMIT_CPU, (soft, resource.RLIM_INFINITY))
        except (OSError, ProcessLookupError):
            pass  # the child is gone: the send that follows reports it

    def wait_reply(self, cancel: threading.Event, limit_s: float) -> Outcome:
        """Read the reply, polling for a stop, the deadline and the child's end."""
        deadline = time.monotonic() + limit_s
        while True:
            if cancel.is_set():
                self.kill()
                return Outcome(None, "cancelled", "the run was cancelled")
            if time.monotonic() > deadline:
                self.kill()
                return Outcome(None, "timeout", f"it ran past the {limit_s:g} s time limit")
            ready, _, _ = select.select([self.rep_r], [], [], POLL_S)
            if not ready:
                continue
            data = os.read(self.rep_r, 1 << 20)
            if not data:
                return self.crashed()
            reply = self.decoder.feed(data)
            if reply is not None:
                self.cpu_used = reply.get("cpu", 0.0)
                return Outcome(reply)

    def crashed(self) -> Outcome:
        """The child ended on its own: say how (and keep what it wrote to stderr for the details)."""
        try:
            code = self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            code = None
        detail = death(code, self.limits)
        tail = self.stderr_tail()
        self.kill()
        return Outcome(None, "crashed", f"{detail}{': ' + tail if tail else ''}")

    def stderr_tail(self) -> str:
        """The last lines the child wrote to its stderr (startup errors land there)."""
        try:
            self.log.seek(0)
            return self.log.read()[-2000:].decode("utf-8", "replace").strip()
        except (OSError, ValueError, AttributeError):
            return ""

    def kill(self) -> None:
        """Kill the child's whole process group and close the pipes; removes no files."""
        process, self.process = self.process, None
        if process is not None:
            with_suppressed(os.killpg, process.pid, signal.SIGKILL)
            with_suppressed(process.wait, 30)
        for name in ("req_w", "rep_r"):
            fd = self.__dict__.pop(name, None)
            if fd is not None:
                with_suppressed(os.close, fd)
        log = self.__dict__.pop("log", None)
        if log is not None:
            log.close()
        self.cpu_used = 0.0


def with_suppressed(function, *args) -> None:
    """Call `function`, ignoring the errors of an already-gone process or fd."""
    try:
        function(*args)
    except (OSError, subprocess.TimeoutExpired):
        pass
