"""Chat use case: send, regenerate, undo, clear; history trimmed to the context window; saved as it goes."""

from __future__ import annotations

import threading
import time
from typing import Callable, Iterator, Optional, Union

from studio.core.session import ChatSession
from studio.core.text import cleaned
from studio.core.types import GenerationRequest, Message, Notice, TextDelta, TextPart
from studio.engines.base import Engine
from studio.errors import InputError, StudioError
from studio.services import Services

ChatEvent = Union[TextDelta, Notice]

LOAD_WAIT_S = 600.0  # how long a message sent during start-up waits for the model
LOAD_POLL_S = 1.0
CHECKPOINT_S = 2.0  # a streaming reply is saved this often, so a crash loses at most this much of it


def validate_prompt(services: Services, text: str) -> str:
    """The message to send (lone surrogates and NUL replaced), or InputError saying what is wrong with it."""
    if text is not None and not isinstance(text, str):
        raise InputError(f"The message must be text, not {type(text).__name__}.", "Send the message as a string.")
    text = cleaned(text or "")
    if not text.strip():
        raise InputError("The message is empty.", "Type something, then press Enter.")
    limit = services.config.ui.max_prompt_chars
    if len(text) > limit:
        raise InputError(
            f"The message is {len(text):,} characters; the limit is {limit:,}.",
            "Shorten it, or split it over several messages.",
        )
    return text


def ready_engine(services: Services, name: str, cancel: Optional[threading.Event] = None) -> Iterator[Notice]:
    """Yield loading notices until the engine is ready; returns it (`engine = yield from ready_engine(…)`),
    or None when `cancel` is set while it loads (Stop pressed during start-up)."""
    deadline = time.monotonic() + LOAD_WAIT_S
    pool = services.engines
    pool.start(name)
    while True:
        st = pool.state(name)
        if st.state in ("ready", "failed") or time.monotonic() > deadline:
            return pool.get(name)  # raises ModelNotReady when failed or still loading
        if cancel is not None and cancel.is_set():
            return None
        yield Notice(f"Waiting for the model to load ({st.progress:.0%}, {st.text})…")
        pool.wait(name, LOAD_POLL_S)


def trim_history(engine: Engine, messages: list[Message], reply_room: int,
                 count: Optional[Callable[[list[Message]], int]] = None) -> tuple[list[Message], int]:
    """Drop the oldest turns until the prompt fits; returns (messages, how many were dropped).

    `count` measures a prompt (default: engine.count_tokens), e.g. with a vision tile budget."""
    count = count or engine.count_tokens
    window = engine.info().context_window
    budget = window - reply_room
    system = [m for m in messages[:1] if m.role == "system"]
    turns = messages[len(system):]
    dropped = 0
    while turns and count(system + turns) > budget:
        if len(turns) == 1:
            need = count(system + turns)
            raise InputError(
                f"The message takes {need:,} tokens; this model's context window is {window:,} "
                f"tokens, {reply_room:,} of them kept for the reply.",
                "Shorten the message or the system prompt, or lower max new tokens.",
            )
        # Drop a whole exchange so the history never starts with an assistant turn.
        cut = 2 if len(turns) > 2 and turns[1].role == "assistant" else 1
        turns = turns[cut:]
        dropped += cut
    return system + turns, dropped


def merge_user_runs(messages: list[Message]) -> list[Message]:
    """Consecutive user messages as one turn (a blank line between), as chat templates expect turns to alternate."""
    out: list[Message] = []
    for m in messages:
        if out and m.role == "user" and out[-1].role == "user":
            out[-1] = Message("user", [*out[-1].content, TextPart("\n\n"), *m.content])
        else:
            out.append(m)
    return out


def _generate(services: Services, user_id: str, session: ChatSession, cancel: threading.Event) -> Iterator[ChatEvent]:
    """Stream the assistant's reply to the session's last user message, checkpointing it as it grows."""
    session.messages.append(Message.of("assistant", ""))
    try:
        engine = yield from ready_engine(services, session.engine, cancel)
        if engine is None:
            return  # stopped while the model loaded: the message stays, ready to regenerate
        window = engine.info().context_window
        reply_room = min(session.params.max_new_tokens, window // 2)
        prompt, dropped = trim_history(engine, merge_user_runs(session.prompt_messages()[:-1]), reply_room)
        if dropped:
            yield Notice(
                f"{dropped} earliest message(s) left out so the conversation fits the model's "
                f"{window:,}-token context window.",
                "warning",
            )
        params = session.params.model_copy(update={"max_new_tokens": min(session.params.max_new_tokens, reply_room)})
        text, saved = "", time.monotonic()
        for delta in engine.stream(GenerationRequest(prompt, params, cancel)):
            text += delta.text
            # An engine error ends the reply early: it stays labelled partial, ready to regenerate.
            session.messages[-1] = Message.of("assistant", text, partial=delta.finish_reason == "error")
            if text and time.monotonic() - saved >= CHECKPOINT_S:
                yield from _checkpoint(services, user_id, session)
                saved = time.monotonic()
            yield delta
    except Exception:
        # A failure cuts the reply: it stays partial. Stop, a closed tab (GeneratorExit) or Ctrl-C in the
        # terminal (KeyboardInterrupt) are the user's choice: that reply is kept as it stands.
        last = session.messages[-1]
        session.messages[-1] = Message(last.role, last.content, partial=True)
        raise
    finally:
        cancel.set()  # a closed generator (Stop, disconnect) must end the compute too
        if not session.messages[-1].text:
            session.messages.pop()  # never keep an empty assistant turn
        session.touch()
        services.store.save(user_id, session)


def _checkpoint(services: Services, user_id: str, session: ChatSession) -> Iterator[Notice]:
    """Save the reply so far, marked partial; a failed save is reported and the reply goes on."""
    session.touch()
    try:
        services.store.save(user_id, session.checkpoint())
    except StudioError as exc:
        yield Notice(f"The reply so far could not be saved: {exc}", "warning")


def _save(services: Services, user_id: str, session: ChatSession) -> None:
    """Store the session now; an emptied conversation is removed so the sidebar never lists it."""
    session.touch()
    if session.messages:
        services.store.save(user_id, session)
    else:
        services.store.delete(user_id, session.id)


def send(services: Services, user_id: str, session: ChatSession, text: str,
         cancel: Optional[threading.Event] = None) -> Iterator[ChatEvent]:
    """Add a user message, store it at once, and stream the reply."""
    text = validate_prompt(services, text)
    # An earlier message left without a reply (stopped before its first word, or a crash) is kept:
    # the prompt reads the two as one turn (see merge_user_runs).
    session.messages.append(Message.of("user", text))
    _save(services, user_id, session)  # before waiting for the model: a crash must not lose it
    yield from _generate(services, user_id, session, cancel or threading.Event())


def regenerate(services: Services, user_id: str, session: ChatSession,
               cancel: Optional[threading.Event] = None) -> Iterator[ChatEvent]:
    """Drop the last reply (complete or partial) and generate it again."""
    if session.messages and session.messages[-1].role == "assistant":
        session.messages.pop()
    if not session.messages:
        raise InputError("There is nothing to regenerate yet.", "Send a message first.")
    yield from _generate(services, user_id, session, cancel or threading.Event())


def undo(services: Services, user_id: str, session: ChatSession) -> str:
    """Remove the last exchange and return its user text (for editing)."""
    idx = session.last_user_index()
    if idx is None:
        raise InputError("There is nothing to undo.", "")
    text = session.messages[idx].text
    del session.messages[idx:]
    _save(services, user_id, session)
    return text


def clear(services: Services, user_id: str, session: ChatSession) -> None:
    """Empty the conversation; it leaves the store (and the sidebar) until something is sent again."""
    session.messages.clear()
    _save(services, user_id, session)


def new_session(services: Services, engine: str = "chat") -> ChatSession:
    """A fresh conversation with the engine's default system prompt and parameters."""
    cfg = services.config.engines[engine]
    return ChatSession(engine=engine, params=cfg.defaults, system_prompt=default_system_prompt(services, engine))


def default_system_prompt(services: Services, engine: str) -> str:
    """The configured system prompt, else the family's official default, else empty."""
    cfg = services.config.engines[engine]
    if cfg.system_prompt is not None:
        return cfg.system_prompt
    family = cfg.family
    if family == "auto":
        st = services.engines.state(engine)
        family = st.info.family if st.info else ""
    if family:
        from studio.families import FAMILIES

        if family in FAMILIES:
            return FAMILIES.get(family)().default_system_prompt or ""
    return ""
