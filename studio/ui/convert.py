"""Session objects ⇄ what Gradio components show."""

from __future__ import annotations

import re
from typing import Optional

from studio.core.session import ChatSession
from studio.core.text import cleaned
from studio.services import LoadState
from studio.store.conversations import ConversationSummary
from studio.ui.i18n import INTERRUPTED_NOTE, tr
from studio.ui.math_text import DOLLAR, protect_prices

STATS_CLASS = "reply-stats"
STATS_PATTERN = re.compile(rf'\n\n<span class="{STATS_CLASS}">[^<]*</span>$')  # a shown reply's stats line


def shown_text(content: str) -> str:
    """A shown message's text as stored: without its stats line, each price's `$` as typed."""
    return STATS_PATTERN.sub("", content).replace(DOLLAR, "$")


def user_of(uid: str, request) -> str:
    """The user key: the one /resume set, else this client session's own (API clients may skip /resume)."""
    return uid or f"session:{request.session_hash}"


def chatbot_messages(session: ChatSession, lang: str = "en") -> list[dict]:
    """The session's turns as messages-format Chatbot values: no empty reply bubble, partial replies labelled,
    each finished reply followed by its stats line in `lang`.

    Text is cleaned for showing: a conversation stored before input was cleaned may hold lone surrogates,
    which would break the event stream (the store keeps them exactly)."""
    shown = []
    for m in session.messages:
        if m.role == "user" or (m.role == "assistant" and m.text):
            note = f"\n\n*{INTERRUPTED_NOTE}*" if m.partial else stats_line(m.meta, lang)
            shown.append({"role": m.role, "content": protect_prices(cleaned(m.text)) + note})
    return shown


def stats_line(meta: Optional[dict], lang: str) -> str:
    """A finished reply's stats as a small muted line to append to its text ("" while it streams or unknown).

    The Chatbot has no per-message footer (metadata makes a collapsible "thought"), so the line is part of
    the content, in a span that assets/theme.css styles; `shown_text` takes it off again."""
    stats = (meta or {}).get("stats") or {}
    if not stats.get("finish_reason") or stats.get("completion_tokens") is None:
        return ""
    parts = [tr(lang, "stats_tokens", n=stats["completion_tokens"])]
    if stats.get("first_token_s") is not None:
        parts.append(tr(lang, "stats_first_token", s=f"{stats['first_token_s']:.2f}"))
    if stats.get("tokens_per_s") is not None:
        parts.append(tr(lang, "stats_speed", v=f"{stats['tokens_per_s']:.1f}"))
    if stats["finish_reason"] in ("cancelled", "length"):
        parts.append(tr(lang, "stats_stopped" if stats["finish_reason"] == "cancelled" else "stats_length"))
    return f'\n\n<span class="{STATS_CLASS}">{" · ".join(parts)}</span>'


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
