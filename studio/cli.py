"""Terminal chat on the same Services: streaming, multi-turn history, /reset, /system, /exit."""

from __future__ import annotations

import getpass
import sys
import threading
from typing import TextIO

from studio.core.types import Notice, TextDelta
from studio.errors import StudioError
from studio.services import Services
from studio.tasks import chat as chat_task

HELP = "Commands: /reset (new conversation), /system <text> (set the system prompt), /help, /exit"


def run_cli(services: Services, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout) -> int:
    """Read messages line by line and stream the replies; returns the exit status."""
    user_id = f"cli:{getpass.getuser()}"
    services.engines.start("chat")
    session = chat_task.new_session(services)
    print(f"Puyu Studio — {services.engines.label('chat')}. {HELP}", file=stdout, flush=True)
    while True:
        print("\nUser  > ", end="", file=stdout, flush=True)
        line = stdin.readline()
        if not line:  # EOF
            print("", file=stdout)
            return 0
        text = line.rstrip("\r\n")  # keep inner and leading spaces exactly as typed
        command = text.strip()
        if command in ("/exit", "/quit", "exit"):
            return 0
        if command == "/help":
            print(HELP, file=stdout)
            continue
        if command == "/reset":
            session = chat_task.new_session(services)
            print("(new conversation)", file=stdout)
            continue
        if command.startswith("/system"):
            session.system_prompt = command[len("/system"):].strip()
            print(f"(system prompt set: {session.system_prompt!r})", file=stdout)
            continue
        _reply(services, user_id, session, text, stdout)


def _reply(services: Services, user_id: str, session, text: str, stdout: TextIO) -> None:
    cancel = threading.Event()
    print("Model > ", end="", file=stdout, flush=True)
    try:
        for ev in chat_task.send(services, user_id, session, text, cancel):
            if isinstance(ev, Notice):
                print(f"\r[{ev.text}]", end="", file=sys.stderr, flush=True)
            elif isinstance(ev, TextDelta):
                stdout.write(ev.text)
                stdout.flush()
                if ev.finish_reason == "error":
                    print(f"\n[generation failed: {ev.error}]", file=stdout)
                elif ev.finish_reason == "length":
                    print("\n[reply cut at max new tokens]", file=stdout)
    except StudioError as exc:
        print(f"\n[{exc}]", file=stdout)
    except KeyboardInterrupt:
        cancel.set()
        print("\n[stopped]", file=stdout)
    print("", file=stdout, flush=True)
