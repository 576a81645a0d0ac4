"""The "python" tool: a stateful, sandboxed Python interpreter per conversation (variables survive calls)."""

from __future__ import annotations

import base64
import os
import re
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from studio.errors import InputError, StudioError
from studio.tools.base import ToolResult, ToolSpec
from studio.tools.sandbox import Limits, Outcome, Sandbox

MAX_CODE_CHARS = 1 << 20
LOST = "The interpreter was restarted, so variables from earlier calls are lost."
FRESH = "(A fresh interpreter: variables from earlier calls were lost.)"
SPEC = ToolSpec(
    name="python",
    description=("Run Python code in a Jupyter-like interpreter that keeps variables between calls. "
                 "Print results or end with an expression to see its value. Uploaded files are in the "
                 "current folder. No network access and no other programs."),
    parameters={"type": "object", "properties": {"code": {"type": "string", "description": "Python code to run"}},
                "required": ["code"]})


def code_of(arguments: Any) -> str:
    """The code in a call: the raw string, or the "code" field of a JSON object; InputError otherwise."""
    code = arguments.get("code") if isinstance(arguments, dict) else arguments
    if not isinstance(code, str) or not code.strip():
        raise InputError("The python tool needs code to run.", 'Call it with {"code": "<Python code>"}.')
    if len(code) > MAX_CODE_CHARS:
        raise InputError(f"The code is {len(code)} characters long, over the {MAX_CODE_CHARS} limit.",
                         "Send shorter code, or write data to a file first.")
    return code


def capped(text: str, cap: int, dropped: int = 0) -> str:
    """`text` cut to `cap` characters, saying how much was left out."""
    dropped += max(len(text) - cap, 0)
    if not dropped:
        return text
    return f"{text[:cap]}\n… [output truncated: {dropped} more characters not shown]"


def safe_name(name: str) -> str:
    """A plain file name (no folders, no leading dots) for an uploaded file."""
    base = re.sub(r"[^\w.\-]+", "_", Path(name).name).lstrip(".")
    return base or "upload"


class Interpreter:
    """The python tool for one conversation: one long-lived sandboxed child, restarted after a stop or crash."""

    spec = SPEC

    def __init__(self, folder: Path, limits: Limits | None = None) -> None:
        self.sandbox = Sandbox(Path(folder), limits)
        self.lost = False

    @property
    def folder(self) -> Path:
        """The interpreter's working folder (0700)."""
        return self.sandbox.folder

    def protections(self) -> list[str]:
        """The protections active on the running child (started if needed); SandboxUnavailable when unsafe."""
        if not self.sandbox.alive:
            self.sandbox.start()
        return list(self.sandbox.protections)

    def missing(self) -> dict[str, str]:
        """The protections this machine could not apply, each with the reason (after `protections()`)."""
        return dict(self.sandbox.missing)

    def run(self, arguments: Any, cancel: threading.Event) -> ToolResult:
        """Run one cell; never raises: problems come back as an error result."""
        started = time.monotonic()
        try:
            code = code_of(arguments)
            fresh = self.ensure_started(cancel)
            outcome = self.sandbox.request({"code": code}, cancel)
        except StudioError as exc:
            return ToolResult(error=str(exc), seconds=time.monotonic() - started)
        except OSError as exc:  # the folder cannot be made, Python cannot be started, ...
            return ToolResult(error=f"The Python interpreter could not start: {exc}. Check the studio's data "
                                    "folder is writable.", seconds=time.monotonic() - started)
        result = self.result(outcome, fresh)
        return ToolResult(result.text, result.images, result.error, time.monotonic() - started)

    def ensure_started(self, cancel: threading.Event) -> bool:
        """Start the child when none runs; True when that lost the variables of an earlier one."""
        if self.sandbox.alive:
            return False
        fresh = self.lost or self.sandbox.child is not None  # a child that died between calls lost them too
        self.sandbox.start(cancel)
        self.lost = False
        return fresh

    def result(self, outcome: Outcome, fresh: bool) -> ToolResult:
        """The ToolResult for a reply, or for a stop, limit or crash (which lose the variables)."""
        cap = self.sandbox.limits.output_chars
        if outcome.reply is None:
            self.lost = True
            what = "Stopped" if outcome.ended in ("cancelled", "timeout") else "The interpreter ended"
            return ToolResult(error=f"{what}: {outcome.detail}. {LOST}")
        reply = outcome.reply
        parts = [FRESH] if fresh else []
        parts += [p for p in (reply["stdout"], reply["stderr"], reply["value"]) if p]
        text = capped("\n".join(p.rstrip("\n") for p in parts), cap, reply.get("dropped", 0))
        images = tuple(base64.b64decode(i) for i in reply.get("images", ()))
        return ToolResult(text=text, images=images, error=capped(reply["error"], cap))

    def add_file(self, path: Path | str, name: str = "") -> str:
        """Copy an uploaded file into the working folder; returns the name the code should open it by."""
        source = Path(path)
        if not source.is_file():
            raise InputError(f"The file {source} does not exist.", "Upload the file again.")
        self.folder.mkdir(parents=True, exist_ok=True)
        self.folder.chmod(0o700)
        target = self.folder / safe_name(name or source.name)
        stem, suffix, n = target.stem, target.suffix, 1
        while os.path.lexists(target):
            n += 1
            target = self.folder / f"{stem}_{n}{suffix}"
        # O_EXCL|O_NOFOLLOW: never write through a link the code may have planted in its folder
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with open(source, "rb") as reader, os.fdopen(fd, "wb") as writer:
            shutil.copyfileobj(reader, writer)
        return target.name

    def close(self) -> None:
        """Kill the child; the working folder and its files stay."""
        self.sandbox.kill()
