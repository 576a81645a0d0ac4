"""SQLite persistence of chat conversations, keyed by an opaque user id."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from studio.core.session import ChatSession
from studio.store.keyed_rows import KeyedRowStore, keyed_table
from studio.store.sqlite_base import clean_title, column_text

__all__ = ["ConversationStore", "ConversationSummary", "clean_title"]

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
