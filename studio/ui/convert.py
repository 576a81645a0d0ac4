"""Session objects ⇄ what Gradio components show."""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from typing import Optional

from studio.core.session import ChatSession
from studio.core.text import cleaned
from studio.services import LoadState
from studio.store.conversations import ConversationSummary
from studio.ui.i18n import tr
from studio.ui.math_text import DOLLAR, protect_prices

STATS_CLASS = "reply-stats"
STATS_PATTERN = re.compile(rf'\n\n<span class="{STATS_CLASS}">[^<]*</span>$')  # a shown reply's stats line


def shown_text(content: str) -> str:
    """A shown message's text as stored: without its stats line, each price's `$` as typed."""
    return STATS_PATTERN.sub("", content).replace(DOLLAR, "$")


# Part of the transcript value (no words, so one form serves both languages); an edited message's text
# arrives with it, and studio.ui.chat_versions strips it (VERSION_MARK_RE).
VERSION_MARK = "\n\n*‹ {k}/{m} ›*"
VERSION_MARK_RE = r"\s*\*?‹ \d+/\d+ ›\*?\s*$"


def user_of(uid: str, request) -> str:
    """The user key: the one /resume set, else this client session's own (API clients may skip /resume)."""
    return uid or f"session:{request.session_hash}"


class ShownTexts:
    """Message texts as shown (cleaned, prices protected), kept by the text they came from.

    A streaming reply repaints the whole transcript many times a second, and showing a text walks it
    character by character in Python (protect_prices): a 40-message conversation cost ~9 ms a frame,
    the same for every frame. Only the text decides the result, so earlier messages are converted once.
    Bounded by characters held; the oldest go first. One per app (shared by its streams)."""

    def __init__(self, max_chars: int = 8_000_000) -> None:
        self.max_chars = max_chars
        self._items: OrderedDict[str, str] = OrderedDict()
        self._chars = 0
        self._lock = threading.Lock()

    def get(self, text: str) -> str:
        """`text` as shown."""
        with self._lock:
            hit = self._items.get(text)
            if hit is not None:
                self._items.move_to_end(text)
                return hit
        shown = _shown(text)
        with self._lock:
            if text not in self._items and len(text) <= self.max_chars:
                self._items[text] = shown
                self._chars += len(text)
                while self._chars > self.max_chars:
                    self._chars -= len(self._items.popitem(last=False)[0])
        return shown

    def __len__(self) -> int:
        return len(self._items)


def _shown(text: str) -> str:
    # Cleaned for showing: a conversation stored before input was cleaned may hold lone surrogates,
    # which would break the event stream (the store keeps them exactly).
    return protect_prices(cleaned(text))


def chatbot_messages(session: ChatSession, lang: str = "en", texts: Optional[ShownTexts] = None) -> list[dict]:
    """The session's turns as messages-format Chatbot values: no empty reply bubble, partial replies labelled,
    each finished reply followed by its stats line in `lang`. `texts` keeps earlier messages' shown text
    between calls (the last message, a reply that may still grow, is converted each time)."""
    shown = []
    indices = shown_indices(session)
    for i in indices:
        m = session.messages[i]
        note = f"\n\n*{tr(lang, 'reply_interrupted')}*" if m.partial else ""
        # The stats line last: shown_text takes it off the end (a version mark stays above it).
        stats = "" if m.partial else stats_line(m.meta, lang)
        text = texts.get(m.text) if texts is not None and i != indices[-1] else _shown(m.text)
        shown.append({"role": m.role, "content": text + note + version_mark(session, i) + stats})
    return shown


def shown_indices(session: ChatSession) -> list[int]:
    """The session index of each message the Chatbot shows (no empty reply bubble): what its indices mean."""
    return [i for i, m in enumerate(session.messages) if m.role == "user" or (m.role == "assistant" and m.text)]


def version_mark(session: ChatSession, index: int) -> str:
    """The ‹ n/m › line under a message whose conversation has other versions from it on; else ''."""
    shown = session.version_of(index)
    return "" if shown is None else VERSION_MARK.format(k=shown[0], m=shown[1])


def stats_line(meta: Optional[dict], lang: str) -> str:
    """A finished reply's stats as a small muted line to append to its text ("" while it streams or unknown).

    The Chatbot has no per-message footer (metadata makes a collapsible "thought"), so the line is part of
    the content, in a span that assets/theme.css styles; `shown_text` takes it off again."""
    stats = (meta or {}).get("stats") or {}
    if not stats.get("finish_reason") or stats.get("completion_tokens") is None:
        return ""
    parts = [tr(lang, "stats_tokens", count=stats["completion_tokens"], n=stats["completion_tokens"])]
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
