"""Terminal chat on the same Services: streaming, multi-turn history, line editing, /reset, /system, /exit.

Conversations are stored as the local user's (the web's user without --auth) or as the --user given."""

from __future__ import annotations

import sys
import threading
from typing import Optional, TextIO

from studio.console import Console, finished_text, loading_text
from studio.core.types import Notice, TextDelta
from studio.errors import StudioError
from studio.line_input import LineReader
from studio.services import Services
from studio.tasks import chat as chat_task
from studio.tasks.users import local_user

HELP = "Commands: /reset (new conversation), /system <text> (set the system prompt), /help, /exit"
ENGINE = "chat"
HISTORY_FILE = "cli_history"


def run_cli(services: Services, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout,
            user_id: Optional[str] = None) -> int:
    """Read messages line by line and stream the replies; returns the exit status."""
    user_id = user_id or local_user()
    services.engines.start(ENGINE)
    reader = LineReader(services.data_dir / HISTORY_FILE, stdin, stdout)
    console = Console(stdout, tty=reader.interactive)
    session = chat_task.new_session(services)
    console.line(f"Puyu Studio — {services.engines.label(ENGINE)}. {HELP}")
    if services.engines.state(ENGINE).state == "loading":
        console.line("(The model is loading in the background; you can type your first message now.)")
    while True:
        console.line("")
        try:
            text = reader.read("User  > ")
        except KeyboardInterrupt:  # Ctrl-C at the prompt: leave, without a traceback
            text = None
        if text is None:
            console.line("")
            return 0
        command = text.strip()
        if command in ("/exit", "/quit", "exit"):
            return 0
        if command == "/help":
            console.line(HELP)
        elif command == "/reset":
            session = chat_task.new_session(services)
            console.line("(new conversation)")
        elif command.startswith("/system"):
            session.system_prompt = command[len("/system"):].strip()
            console.line(f"(system prompt set: {session.system_prompt!r})")
        elif _model_ready(services, console):
            _reply(services, user_id, session, text, console)


def _model_ready(services: Services, console: Console) -> bool:
    """Wait for the model on a line of its own (so the reply's label is never overwritten); False when the
    user pressed Ctrl-C meanwhile. A failed load is left for the reply to report."""
    pool = services.engines
    if pool.state(ENGINE).state in ("ready", "failed"):
        return True
    if not console.tty:
        console.line("")  # a piped line is not echoed: the prompt still ends this line
    try:
        while (st := pool.state(ENGINE)).state not in ("ready", "failed"):
            console.status(f"[Waiting for the model to load: {loading_text(ENGINE, st)}…]")
            pool.wait(ENGINE, 0.5)
    except KeyboardInterrupt:
        console.clear_status()
        console.line("[stopped waiting; the message was not sent — press Up to get it back]")
        return False
    console.clear_status()
    console.line(f"[{finished_text(ENGINE, pool.state(ENGINE))}]")
    return True


def _reply(services: Services, user_id: str, session, text: str, console: Console) -> None:
    """Stream one reply under its label; Ctrl-C stops it (what was written is kept)."""
    cancel = threading.Event()
    out = console.out
    events = chat_task.send(services, user_id, session, text, cancel)
    labelled = False
    try:
        for ev in events:
            if isinstance(ev, Notice):
                console.line(("\n" if labelled else "") + f"[{ev.text}]")
            elif isinstance(ev, TextDelta):
                if not labelled:
                    out.write("Model > ")
                    labelled = True
                out.write(ev.text)
                out.flush()
                if ev.finish_reason == "error":
                    console.line(f"\n[generation failed: {ev.error}]")
                elif ev.finish_reason == "length":
                    console.line("\n[reply cut at max new tokens]")
    except StudioError as exc:
        console.line(f"\n[{exc}]")
    except KeyboardInterrupt:
        cancel.set()
        events.close()  # ends the compute and keeps the reply so far in the conversation
        console.line("\n[stopped]")
    console.line("")
