"""Session objects ⇄ what Gradio components show."""

from __future__ import annotations

from studio.core.session import ChatSession
from studio.core.text import cleaned
from studio.services import LoadState
from studio.store.conversations import ConversationSummary
from studio.ui.i18n import INTERRUPTED_NOTE


def user_of(uid: str, request) -> str:
    """The user key: the one /resume set, else this client session's own (API clients may skip /resume)."""
    return uid or f"session:{request.session_hash}"


def chatbot_messages(session: ChatSession) -> list[dict]:
    """The session's turns as messages-format Chatbot values: no empty reply bubble, partial replies labelled.

    Text is cleaned for showing: a conversation stored before input was cleaned may hold lone surrogates,
    which would break the event stream (the store keeps them exactly)."""
    shown = []
    for m in session.messages:
        if m.role == "user" or (m.role == "assistant" and m.text):
            note = f"\n\n*{INTERRUPTED_NOTE}*" if m.partial else ""
            shown.append({"role": m.role, "content": cleaned(m.text) + note})
    return shown


def conversation_choices(summaries: list[ConversationSummary], untitled: str) -> list[tuple[str, str]]:
    """(label, id) pairs for the sidebar list."""
    return [(s.title or untitled, s.id) for s in summaries]


def status_markdown(label: str, state: LoadState) -> str:
    """The header line: model, engine, device, dtype and loading progress."""
    if state.state == "ready" and state.info:
        i = state.info
        return f"🟢 **{label}** · {i.engine} · {i.device} · {i.dtype} · {i.context_window:,} ctx"
    if state.state == "failed":
        return f"🔴 **{label}** · failed to load: {state.error}"
    if state.state == "loading":
        filled = int(state.progress * 10)
        bar = "▰" * filled + "▱" * (10 - filled)
        return f"🟡 **{label}** · loading {bar} {state.progress:.0%} · {state.text}"
    return f"⚪ **{label}** · not loaded"
