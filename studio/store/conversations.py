"""SQLite persistence of chat conversations, keyed by an opaque user id."""

from __future__ import annotations

import json
from dataclasses import dataclass

from studio.core.session import ChatSession
from studio.errors import InputError, StudioError
from studio.store.sqlite_base import SQLiteStore, clean_title, column_text, to_json

__all__ = ["ConversationStore", "ConversationSummary", "clean_title"]

# Bump when the schema changes and add a step to _MIGRATIONS; PRAGMA user_version records it.
SCHEMA_VERSION = 1

_MIGRATIONS = {
    1: (
        """CREATE TABLE IF NOT EXISTS conversations (
            user_id       TEXT    NOT NULL,
            id            TEXT    NOT NULL,
            title         TEXT    NOT NULL DEFAULT '',
            created       REAL    NOT NULL,
            updated       REAL    NOT NULL,
            message_count INTEGER NOT NULL DEFAULT 0,
            data          TEXT    NOT NULL,
            PRIMARY KEY (user_id, id)
        )""",
        "CREATE INDEX IF NOT EXISTS conversations_by_user_updated"
        " ON conversations (user_id, updated DESC)",
    ),
}

# SQLite result codes that mean "the file itself is bad", as opposed to busy / full / read-only.


@dataclass(frozen=True)
class ConversationSummary:
    """One row of the conversation list: enough to show it without loading the messages."""

    id: str
    title: str
    updated: float
    message_count: int


class ConversationStore(SQLiteStore):
    """Conversations in one SQLite file; thread-safe because every operation opens its own connection."""

    SCHEMA_VERSION = SCHEMA_VERSION
    MIGRATIONS = _MIGRATIONS
    STORE, ITEM = "conversation store", "conversation"

    # -- public API ---------------------------------------------------------------------------

    def save(self, user_id: str, session: ChatSession) -> None:
        """Insert or replace one conversation of `user_id`; on failure the previous row is kept."""
        data = to_json(session.to_dict())
        row = (
            user_id, session.id, column_text(session.display_title()), session.created,
            session.updated, len(session.messages), data,
        )
        with self._transaction("save") as conn:
            conn.execute(
                "INSERT INTO conversations (user_id, id, title, created, updated, message_count, data)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (user_id, id) DO UPDATE SET title = excluded.title,"
                " created = excluded.created, updated = excluded.updated,"
                " message_count = excluded.message_count, data = excluded.data",
                row,
            )

    def load(self, user_id: str, conv_id: str) -> ChatSession:
        """The conversation `conv_id` of `user_id`; StudioError if there is none."""
        with self._connection("load") as conn:
            row = conn.execute(
                "SELECT data FROM conversations WHERE user_id = ? AND id = ?", (user_id, conv_id)
            ).fetchone()
        if row is None:
            raise _not_found()
        return self._decode(row[0], conv_id)

    def list(self, user_id: str, limit: int | None = None) -> list[ConversationSummary]:
        """The conversations of `user_id`, most recently updated first."""
        sql = (
            "SELECT id, title, updated, message_count FROM conversations WHERE user_id = ?"
            " ORDER BY updated DESC, rowid DESC"
        )
        args: tuple = (user_id,)
        if limit is not None:
            sql += " LIMIT ?"
            args = (user_id, max(0, int(limit)))
        with self._connection("list") as conn:
            rows = conn.execute(sql, args).fetchall()
        return [ConversationSummary(r[0], r[1], r[2], r[3]) for r in rows]

    def rename(self, user_id: str, conv_id: str, title: str) -> str:
        """Set the title of one conversation; returns the title as stored."""
        clean = clean_title(title or "")
        if not clean:
            raise InputError("The title cannot be empty.", "Type a few words, or keep the old title.")
        with self._transaction("rename") as conn:
            row = conn.execute(
                "SELECT data FROM conversations WHERE user_id = ? AND id = ?", (user_id, conv_id)
            ).fetchone()
            if row is None:
                raise _not_found()
            session = self._decode(row[0], conv_id)
            session.title = clean
            # The title lives both in the JSON (what load returns) and in the listing column.
            conn.execute(
                "UPDATE conversations SET title = ?, data = ? WHERE user_id = ? AND id = ?",
                (clean, to_json(session.to_dict()), user_id, conv_id),
            )
        return clean

    def delete(self, user_id: str, conv_id: str) -> bool:
        """Delete one conversation of `user_id`; False if there was none."""
        with self._transaction("delete") as conn:
            cur = conn.execute(
                "DELETE FROM conversations WHERE user_id = ? AND id = ?", (user_id, conv_id)
            )
            return cur.rowcount > 0

    def count(self, user_id: str) -> int:
        """How many conversations `user_id` has."""
        with self._connection("count") as conn:
            return conn.execute(
                "SELECT COUNT(*) FROM conversations WHERE user_id = ?", (user_id,)
            ).fetchone()[0]

    # -- internals ----------------------------------------------------------------------------

    def _decode(self, data: str, conv_id: str) -> ChatSession:
        """Rebuild a stored session; a damaged row is reported, not raised as a traceback."""
        try:
            return ChatSession.from_dict(json.loads(data))
        except Exception as exc:  # JSON, KeyError, pydantic ValidationError …
            raise StudioError(
                f"Conversation {conv_id} in {self.db_path} could not be read ({type(exc).__name__}).",
                "The row is damaged; delete this conversation or restore the file from a backup.",
            ) from exc


def _not_found() -> StudioError:
    """The error for a missing conversation (also what another user's id looks like)."""
    return StudioError(
        "conversation not found",
        "It may have been deleted or belong to another browser session; start a new conversation.",
    )
