"""Session objects ⇄ what Gradio components show."""

from __future__ import annotations

from studio.core.session import ChatSession
from studio.core.text import cleaned
from studio.services import LoadState
from studio.store.conversations import ConversationSummary
from studio.ui.i18n import INTERRUPTED_NOTE, tr


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


def status_dot(state: str) -> str:
    """The state as a coloured dot drawn by theme.css (an emoji dot needs an emoji font)."""
    return f'<span class="status-dot status-{state}"></span>'


def status_markdown(label: str, state: LoadState, lang: str = "en") -> str:
    """The header line in `lang`: model, engine, device, dtype and loading progress."""
    shown = state.state
    if state.state == "ready" and state.info:
        i = state.info
        line = tr(lang, "status_ready", label=label, engine=i.engine, device=i.device, dtype=i.dtype,
                  ctx=i.context_window)
    elif state.state == "failed":
        line = tr(lang, "status_failed", label=label, error=state.error)
    elif state.state == "loading":
        filled = int(state.progress * 10)
        bar = "▰" * filled + "▱" * (10 - filled)
        line = tr(lang, "status_loading", label=label, bar=bar, progress=state.progress, detail=state.text)
    else:
        shown, line = "idle", tr(lang, "status_idle", label=label)
    return f"{status_dot(shown)} {line}"
