"""Chat use case: send, edit, regenerate, switch versions, undo, clear; history trimmed to the context window;
saved as it goes."""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import Iterator, Optional, Union

from studio.core.session import ChatSession
from studio.core.types import Message, Notice, TextDelta, TextPart
from studio.errors import InputError
from studio.services import Services
from studio.tasks import turn
from studio.tasks.user_text import validate_prompt, validate_system_prompt  # noqa: F401  (the chat tab's)

ChatEvent = Union[TextDelta, Notice]


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

    def show(reply: turn.Reply) -> None:
        # An engine error ends the reply early: it stays labelled partial, ready to regenerate.
        session.messages[-1] = with_stats(Message.of("assistant", reply.text, partial=reply.failed),
                                          reply, session.messages[-1].meta)

    def checkpoint(reply: turn.Reply) -> None:
        session.touch()
        services.store.save(user_id, session.checkpoint())

    try:
        with services.store.held():  # the reply's checkpoints share one open connection
            yield from turn.shown(turn.run(services, session.engine, merge_user_runs(session.prompt_messages()[:-1]),
                                        session.params, cancel, fit="trim", on_text=show, checkpoint=checkpoint))
        # stopped while the model loaded: the message stays, ready to regenerate
    except Exception:
        # A failure cuts the reply: it stays partial. Stop, a closed tab (GeneratorExit) or Ctrl-C in the
        # terminal (KeyboardInterrupt) are the user's choice: that reply is kept as it stands.
        session.messages[-1] = replace(session.messages[-1], partial=True)
        raise
    finally:
        cancel.set()  # a closed generator (Stop, disconnect) must end the compute too
        if not session.messages[-1].text:
            session.messages.pop()  # never keep an empty assistant turn
        session.touch()
        services.store.save(user_id, session)


def with_stats(message: Message, reply: turn.Reply, meta: Optional[dict] = None) -> Message:
    """`message` carrying the reply's stats in `meta["stats"]` (other keys of `meta` kept): the final ones once
    the engine has ended the reply, those known so far (for a checkpoint) while it streams."""
    message.meta = {**(meta or {}), "stats": reply.stats()}
    return message


def _save(services: Services, user_id: str, session: ChatSession) -> None:
    """Store the session now; an emptied conversation is removed so the sidebar never lists it (one that
    still holds other versions stays: undoing its only exchange must not lose them)."""
    session.touch()
    if session.messages or session.forks:
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


def edit(services: Services, user_id: str, session: ChatSession, index: int, text: str,
         cancel: Optional[threading.Event] = None) -> Iterator[ChatEvent]:
    """Replace user message `index` with `text` and stream a reply from there; what followed it is kept as
    an earlier version."""
    text = validate_prompt(services, text)
    if not 0 <= index < len(session.messages) or session.messages[index].role != "user":
        raise InputError(f"Message {index} is not one of your messages in this conversation.",
                         "Pick a message you wrote (the numbers count from 0, as the transcript lists them).")
    session.branch(index)
    session.messages.append(Message.of("user", text))
    _save(services, user_id, session)  # the edit is stored before the model runs, as a sent message is
    yield from _generate(services, user_id, session, cancel or threading.Event())


def switch_version(services: Services, user_id: str, session: ChatSession, index: int, version: int) -> None:
    """Show version `version` (1-based) of the conversation from message `index` on, and store that choice."""
    shown = session.version_of(index)
    if shown is None:
        raise InputError(f"Message {index} has no other versions.",
                         "Edit a message or regenerate a reply first; each keeps the earlier version.")
    if not 1 <= version <= shown[1]:
        raise InputError(f"Message {index} has versions 1 to {shown[1]}; there is no version {version}.",
                         "Pick a version in that range.")
    session.switch_version(index, version)
    _save(services, user_id, session)


def regenerate(services: Services, user_id: str, session: ChatSession,
               cancel: Optional[threading.Event] = None) -> Iterator[ChatEvent]:
    """Generate the last reply again; the earlier one (complete or partial) is kept as a version."""
    at, earlier = None, None
    if session.messages and session.messages[-1].role == "assistant":
        at = len(session.messages) - 1
        earlier = (session.version_of(at) or (1, 1))[0]
        session.branch(at)
    if not session.messages:
        raise InputError("There is nothing to regenerate yet.", "Send a message first.",
                         key="err_nothing_to_regenerate")
    try:
        yield from _generate(services, user_id, session, cancel or threading.Event())
    finally:
        if at is not None and len(session.messages) == at:
            # Stopped before its first word: no new version, the earlier reply is shown again.
            session.switch_version(at, earlier)
            _save(services, user_id, session)


def undo(services: Services, user_id: str, session: ChatSession) -> str:
    """Remove the last exchange and return its user text (for editing)."""
    idx = session.last_user_index()
    if idx is None:
        raise InputError("There is nothing to undo.", "", key="err_nothing_to_undo")
    text = session.messages[idx].text
    del session.messages[idx:]
    # The exchange goes with its reply's versions; other versions of the message itself stay, and the
    # next message sent becomes one more of them.
    session.forget_versions_after(idx)
    _save(services, user_id, session)
    return text


def clear(services: Services, user_id: str, session: ChatSession) -> None:
    """Empty the conversation; it leaves the store (and the sidebar) until something is sent again."""
    session.messages.clear()
    session.forks.clear()
    _save(services, user_id, session)


def new_session(services: Services, engine: str = "chat") -> ChatSession:
    """A fresh conversation on `engine`, with its default parameters and system prompt (None while unknown)."""
    cfg = services.config.engines[engine]
    return ChatSession(engine=engine, params=cfg.defaults, system_prompt=default_system_prompt(services, engine))


def default_system_prompt(services: Services, engine: str) -> Optional[str]:
    """What the model gets when a conversation sets no system prompt: the configured one, else the model's
    own (its family's, or its chat template's once loaded); None when there is none known (a template
    without one, a remote server's, or a model still loading whose family is not given)."""
    cfg = services.config.engines[engine]
    if cfg.system_prompt is not None:
        return cfg.system_prompt
    st = services.engines.state(engine)
    if st.state == "ready" and st.info is not None:
        return st.info.system_prompt
    return cfg.expected_system_prompt()


def resolve_system_prompt(services: Services, session: ChatSession) -> bool:
    """Fill a session's unknown system prompt (None) with the model's default once it is known; True if it changed."""
    if session.system_prompt is not None:
        return False
    default = default_system_prompt(services, session.engine)
    if default is None:
        return False
    session.system_prompt = default
    return True
