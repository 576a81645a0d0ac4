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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

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
           "MPLCONFIGDIR": str(folder / ".matplotlib"), "LANG": "C.UTF-8"}
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


@dataclass
class Child:
    """One running child: its process, the two pipe ends the parent keeps, its stderr log."""

    process: subprocess.Popen
    requests: int  # parent writes requests here
    replies: int  # parent reads replies here
    log: Any
    decoder: wire.Decoder = field(default_factory=wire.Decoder)
    cpu_used: float = 0.0

    def end(self) -> None:
        """Kill the whole process group, reap it, close the pipes and the log."""
        with_suppressed(os.killpg, self.process.pid, signal.SIGKILL)
        with_suppressed(self.process.wait, 30)
        for fd in (self.requests, self.replies):
            with_suppressed(os.close, fd)
        self.log.close()

    def stderr_tail(self) -> str:
        """The last of what the child wrote to its stderr (startup errors land there)."""
        try:
            self.log.seek(0)
            return self.log.read()[-2000:].decode("utf-8", "replace").strip()
        except (OSError, ValueError):
            return ""


class Sandbox:
    """One confined child process; `request` sends a message and waits for the reply, a stop or a limit."""

    def __init__(self, folder: Path, limits: Limits | None = None) -> None:
        self.folder, self.limits = Path(folder), limits or Limits()
        self.child: Child | None = None
        self.protections: list[str] = []
        self.missing: dict[str, str] = {}
        self.lock = threading.Lock()  # one request at a time; kill() from elsewhere only signals

    @property
    def alive(self) -> bool:
        """True while the child runs."""
        return self.child is not None and self.child.process.poll() is None

    @property
    def pid(self) -> int | None:
        """The child's process id (also its process group's)."""
        return self.child.process.pid if self.child else None

    def start(self, cancel: threading.Event | None = None) -> list[str]:
        """Start the child and check its protections; SandboxUnavailable when the essential ones are missing."""
        if not sys.platform.startswith("linux"):
            raise SandboxUnavailable("The Python interpreter's sandbox needs Linux (seccomp, rlimits).",
                                     "Run the studio on Linux to use the interpreter.")
        with self.lock:
            self.end()
            self.folder.mkdir(parents=True, exist_ok=True)
            self.folder.chmod(0o700)
            self.child = self.spawn()
            hello = self.wait_reply(self.child, cancel or threading.Event(), self.limits.start_s)
        if hello.ended == "cancelled":
            raise StudioError("Stopped while the Python interpreter was starting.", "Run the code again.")
        if hello.reply is None:
            raise SandboxUnavailable(f"The Python interpreter did not start: {hello.detail}.",
                                     "Check that the studio's Python can run; the details are above.")
        self.protections, self.missing = hello.reply["protections"], hello.reply["missing"]
        self.refuse_if_unsafe()
        return self.protections

    def spawn(self) -> Child:
        """Launch the child in its own session with two pipes (requests in, replies out)."""
        req_r, req_w = os.pipe()
        rep_r, rep_w = os.pipe()
        log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the child; Child.end closes it
        try:
            process = subprocess.Popen(
                [sys.executable, "-I", "-c", BOOT, str(ROOT), str(req_r), str(rep_w), str(self.folder),
                 json.dumps(asdict(self.limits))],
                cwd=self.folder, env=child_env(self.folder), pass_fds=(req_r, rep_w), stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
        except OSError:
            for fd in (req_w, rep_r):
                os.close(fd)
            log.close()
            raise
        finally:
            os.close(req_r)
            os.close(rep_w)
        return Child(process, req_w, rep_r, log)

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
            child = self.child
            if child is None:
                return Outcome(None, "crashed", "it was closed")
            self.budget_cpu(child)
            try:
                wire.send(child.requests, message)
            except OSError:
                return self.crashed(child)
            return self.wait_reply(child, cancel, self.limits.wall_s)

    def budget_cpu(self, child: Child) -> None:
        """Give the child `cpu_s` more CPU seconds than it has used (it cannot change its own limits)."""
        import resource  # Linux only: imported here so the module loads anywhere

        soft = math.ceil(child.cpu_used) + self.limits.cpu_s
        with_suppressed(resource.prlimit, child.process.pid, resource.RLIMIT_CPU, (soft, resource.RLIM_INFINITY))

    def wait_reply(self, child: Child, cancel: threading.Event, limit_s: float) -> Outcome:
        """Read the reply, polling for a stop, the deadline and the child's end."""
        deadline = time.monotonic() + limit_s
        while True:
            if cancel.is_set():
                self.end()
                return Outcome(None, "cancelled", "the run was cancelled")
            if time.monotonic() > deadline:
                self.end()
                return Outcome(None, "timeout", f"it ran past the {limit_s:g} s time limit")
            ready, _, _ = select.select([child.replies], [], [], POLL_S)
            data = os.read(child.replies, 1 << 20) if ready else None
            if data == b"":
                return self.crashed(child)
            try:
                reply = child.decoder.feed(data) if data else None
            except ValueError as exc:  # too large or not JSON: the code wrote on the pipe or made huge images
                self.end()
                return Outcome(None, "crashed", f"its reply could not be read ({exc})")
            if reply is not None:
                child.cpu_used = reply.get("cpu", 0.0)
                return Outcome(reply)

    def crashed(self, child: Child) -> Outcome:
        """The child ended on its own (or was killed from outside): say how, with its stderr's last words."""
        try:
            code = child.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            code = None
        tail = child.stderr_tail()
        self.end()
        return Outcome(None, "crashed", f"{death(code, self.limits)}{': ' + tail if tail else ''}")

    def end(self) -> None:
        """End the child (the caller holds the lock)."""
        child, self.child = self.child, None
        if child is not None:
            child.end()

    def kill(self) -> None:
        """Kill the child's process group; removes no files. During a request it only signals: the request
        thread then sees the end and cleans up."""
        if self.lock.acquire(blocking=False):
            try:
                self.end()
            finally:
                self.lock.release()
        elif (child := self.child) is not None:
            with_suppressed(os.killpg, child.process.pid, signal.SIGKILL)


def with_suppressed(function, *args) -> None:
    """Call `function`, ignoring the errors of an already-gone process or fd."""
    try:
        function(*args)
    except (OSError, subprocess.TimeoutExpired):
        pass
