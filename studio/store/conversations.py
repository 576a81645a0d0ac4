"""SQLite persistence of chat conversations, keyed by an opaque user id."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from studio.core.session import ChatSession
from studio.store.keyed_rows import KeyedRowStore, keyed_table
from studio.store.sqlite_base import clean_title, column_text

__all__ = ["ConversationStore", "ConversationSummary", "clean_title", "like_pattern"]

MAX_TERMS = 8  # words of one search; more only slow the query down
# One term matches the title or any message's text. Malformed JSON is skipped, not raised: json_each would
# fail the whole search (and read as "damaged store") for one bad row, which load() reports on its own.
_TERM_SQL = ("(title LIKE ? ESCAPE '\\' OR EXISTS (SELECT 1 FROM json_each("
             "CASE WHEN json_valid(data) THEN data ELSE '{}' END, '$.messages') AS m"
             " WHERE json_extract(m.value, '$.content') LIKE ? ESCAPE '\\'))")

# Bump when the schema changes and add a step to _MIGRATIONS; PRAGMA user_version records it.
SCHEMA_VERSION = 1

_MIGRATIONS = {1: keyed_table("conversations", "message_count")}


@dataclass(frozen=True)
class ConversationSummary:
    """One row of the conversation list: enough to show it without loading the messages."""

    id: str
    title: str
    updated: float
    message_count: int


class ConversationStore(KeyedRowStore[ChatSession, ConversationSummary]):
    """Conversations in one SQLite file; thread-safe because every operation opens its own connection."""

    SCHEMA_VERSION = SCHEMA_VERSION
    MIGRATIONS = _MIGRATIONS
    STORE, ITEM, SHORT, FRESH = "conversation store", "conversation", "conversation", "conversation"
    TABLE, MODEL, SUMMARY = "conversations", ChatSession, ConversationSummary
    LISTED = ("id", "title", "updated", "message_count")

    def _columns(self, session: ChatSession) -> dict[str, Any]:
        """The listing columns of one conversation."""
        return {"title": column_text(session.display_title()), "created": session.created,
                "updated": session.updated, "message_count": len(session.messages)}

    def search(self, user_id: str, query: str, limit: Optional[int] = None) -> list[ConversationSummary]:
        """The conversations of `user_id` whose title or message text holds every word of `query`
        (case-insensitive for Latin letters; % _ and \\ match themselves), newest first."""
        terms = (query or "").split()[:MAX_TERMS]
        if not terms:
            return self.list(user_id, limit)
        where = " AND ".join([_TERM_SQL] * len(terms))
        args = [p for term in terms for p in (like_pattern(term),) * 2]
        sql = (f"SELECT {', '.join(self.LISTED)} FROM {self.TABLE} WHERE user_id = ? AND {where}"
               " ORDER BY updated DESC, rowid DESC LIMIT ?")
        with self._connection("search") as conn:
            rows = conn.execute(sql, (user_id, *args, -1 if limit is None else max(0, int(limit)))).fetchall()
        return [self.SUMMARY(*row) for row in rows]


def like_pattern(term: str) -> str:
    """A LIKE pattern (ESCAPE '\\') that finds `term` anywhere, its wildcards taken literally."""
    text = column_text(term).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{text}%"
