"""SQLite persistence of chat conversations, keyed by an opaque user id."""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from studio.core.session import ChatSession
from studio.errors import InputError, StudioError

# Bump when the schema changes and add a step to _MIGRATIONS; PRAGMA user_version records it.
SCHEMA_VERSION = 1
TITLE_MAX_CHARS = 200
BUSY_TIMEOUT_MS = 10_000

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
_CORRUPT_CODES = {"SQLITE_NOTADB", "SQLITE_CORRUPT"}
_SURROGATES = re.compile("[\ud800-\udfff]")
_TITLE_JUNK = re.compile(r"[\x00-\x1f\x7f\s]+")


@dataclass(frozen=True)
class ConversationSummary:
    """One row of the conversation list: enough to show it without loading the messages."""

    id: str
    title: str
    updated: float
    message_count: int


def _to_json(data: dict) -> str:
    """JSON text that SQLite can store; escapes everything when lone surrogates would not encode."""
    text = json.dumps(data, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # A browser can send lone UTF-16 surrogates; \\u escapes keep them exactly and stay valid UTF-8.
        text = json.dumps(data, ensure_ascii=True)
    return text


def _column_text(text: str) -> str:
    """A string safe to bind as SQLite TEXT (lone surrogates replaced); used for listing columns only."""
    return _SURROGATES.sub("\ufffd", text)


def clean_title(title: str) -> str:
    """A title as stored by rename: one line, control characters removed, stripped, capped."""
    return _TITLE_JUNK.sub(" ", title).strip()[:TITLE_MAX_CHARS].rstrip()


class ConversationStore:
    """Conversations in one SQLite file; thread-safe because every operation opens its own connection."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = Path(db_path)
        # Guards schema creation only; SQLite itself serialises writers (WAL + busy_timeout).
        self._schema_lock = threading.Lock()
        self._schema_ready = False

    # -- public API ---------------------------------------------------------------------------

    def save(self, user_id: str, session: ChatSession) -> None:
        """Insert or replace one conversation of `user_id`; on failure the previous row is kept."""
        data = _to_json(session.to_dict())
        row = (
            user_id, session.id, _column_text(session.display_title()), session.created,
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
                (clean, _to_json(session.to_dict()), user_id, conv_id),
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

    @contextmanager
    def _connection(self, action: str) -> Iterator[sqlite3.Connection]:
        """A fresh autocommit connection with the schema in place; sqlite errors become StudioError."""
        try:
            self._ensure_schema()
            with closing(self._open()) as conn:
                yield conn
        except sqlite3.Error as exc:
            if "no such table" in str(exc):
                self._schema_ready = False  # the file was replaced while running; recreate next time
            raise self._wrap(exc, action) from exc

    @contextmanager
    def _transaction(self, action: str) -> Iterator[sqlite3.Connection]:
        """A write transaction: committed as a whole or rolled back, never half-applied."""
        with self._connection(action) as conn:
            # IMMEDIATE takes the write lock up front, so busy_timeout applies instead of a
            # mid-transaction SQLITE_BUSY when two threads upgrade read locks at once.
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def _open(self) -> sqlite3.Connection:
        """Open the database file (autocommit mode; transactions are explicit)."""
        conn = sqlite3.connect(
            str(self.db_path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None
        )
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        return conn

    def _ensure_schema(self) -> None:
        """Create or migrate the schema once per store object (retried after a failure)."""
        if self._schema_ready:
            return
        with self._schema_lock:
            if self._schema_ready:
                return
            self.db_path.parent.mkdir(parents=True, exist_ok=True)
            with closing(self._open()) as conn:
                self._migrate(conn)
            self._schema_ready = True

    def _migrate(self, conn: sqlite3.Connection) -> None:
        """Apply the migrations between the file's user_version and SCHEMA_VERSION."""
        # WAL lets readers (list/load) run while another thread writes; the mode is stored in the file.
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("BEGIN IMMEDIATE")  # another process may be migrating the same file
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StudioError(
                    f"The conversation store {self.db_path} was written by a newer Puyu Studio "
                    f"(schema {version}, this one reads up to {SCHEMA_VERSION}).",
                    "Upgrade Puyu Studio, or point it at another store file.",
                )
            for step in range(version + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[step]:
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _decode(self, data: str, conv_id: str) -> ChatSession:
        """Rebuild a stored session; a damaged row is reported, not raised as a traceback."""
        try:
            return ChatSession.from_dict(json.loads(data))
        except Exception as exc:  # JSON, KeyError, pydantic ValidationError …
            raise StudioError(
                f"Conversation {conv_id} in {self.db_path} could not be read ({type(exc).__name__}).",
                "The row is damaged; delete this conversation or restore the file from a backup.",
            ) from exc

    def _wrap(self, exc: sqlite3.Error, action: str) -> StudioError:
        """Turn a sqlite3 error into a StudioError that names the file and the way out."""
        code = getattr(exc, "sqlite_errorname", "") or ""
        if code in _CORRUPT_CODES or "not a database" in str(exc) or "malformed" in str(exc):
            return StudioError(
                f"The conversation store {self.db_path} is damaged or is not a SQLite database.",
                f"Stop Puyu Studio, move the file aside (e.g. rename it to {self.db_path.name}.bad) "
                "and start again; a new, empty store will be created.",
            )
        if code == "SQLITE_BUSY" or "locked" in str(exc):
            hint = "Another program is holding the store; try again in a moment."
        elif code == "SQLITE_FULL" or "full" in str(exc):
            hint = "The disk is full; free some space and try again. Nothing was changed."
        else:
            hint = f"Check that {self.db_path} and its folder are writable. Nothing was changed."
        return StudioError(
            f"Could not {action} the conversation ({exc}; store {self.db_path}).", hint
        )


def _not_found() -> StudioError:
    """The error for a missing conversation (also what another user's id looks like)."""
    return StudioError(
        "conversation not found",
        "It may have been deleted or belong to another browser session; start a new conversation.",
    )
