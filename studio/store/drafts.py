"""SQLite persistence of article drafts, keyed by an opaque user id (a file of its own)."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

from studio.core.article import ArticleDraft
from studio.core.session import TITLE_CHARS
from studio.errors import InputError, StudioError
from studio.store.conversations import _column_text, _to_json, clean_title
from studio.store.draft_files import check_draft_id

# Bump when the schema changes and add a step to _MIGRATIONS; PRAGMA user_version records it.
SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 10_000

_MIGRATIONS = {
    1: (
        """CREATE TABLE IF NOT EXISTS drafts (
            user_id     TEXT    NOT NULL,
            id          TEXT    NOT NULL,
            title       TEXT    NOT NULL DEFAULT '',
            created     REAL    NOT NULL,
            updated     REAL    NOT NULL,
            block_count INTEGER NOT NULL DEFAULT 0,
            image_count INTEGER NOT NULL DEFAULT 0,
            data        TEXT    NOT NULL,
            PRIMARY KEY (user_id, id)
        )""",
        "CREATE INDEX IF NOT EXISTS drafts_by_user_updated ON drafts (user_id, updated DESC)",
    ),
}

# SQLite result codes that mean "the file itself is bad", as opposed to busy / full / read-only.
_CORRUPT_CODES = {"SQLITE_NOTADB", "SQLITE_CORRUPT"}


@dataclass(frozen=True)
class DraftSummary:
    """One row of the draft list: enough to show it without loading the article."""

    id: str
    title: str
    updated: float
    blocks: int
    images: int


def display_title(draft: ArticleDraft) -> str:
    """The draft's title, or one derived from the instruction the user gave."""
    title = clean_title(draft.title)
    if title:
        return title
    text = clean_title(draft.instruction)
    return text[:TITLE_CHARS] + ("…" if len(text) > TITLE_CHARS else "")


class DraftStore:
    """Article drafts in one SQLite file; thread-safe because every operation opens its own connection."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = Path(db_path)
        # Guards schema creation only; SQLite itself serialises writers (WAL + busy_timeout).
        self._schema_lock = threading.Lock()
        self._schema_ready = False

    # -- public API ---------------------------------------------------------------------------

    def save(self, user_id: str, draft: ArticleDraft) -> None:
        """Insert or replace one draft of `user_id`; on failure the previous row is kept."""
        check_draft_id(draft.id)  # the id also names the draft's image folder
        data = _to_json(draft.to_dict())
        row = (user_id, draft.id, _column_text(display_title(draft)), draft.created, draft.updated,
               len(draft.blocks), len(draft.images()), data)
        with self._transaction("save") as conn:
            conn.execute(
                "INSERT INTO drafts (user_id, id, title, created, updated, block_count, image_count, data)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (user_id, id) DO UPDATE SET title = excluded.title,"
                " created = excluded.created, updated = excluded.updated,"
                " block_count = excluded.block_count, image_count = excluded.image_count,"
                " data = excluded.data",
                row,
            )

    def load(self, user_id: str, draft_id: str) -> ArticleDraft:
        """The draft `draft_id` of `user_id`; StudioError if there is none."""
        with self._connection("load") as conn:
            row = conn.execute(
                "SELECT data FROM drafts WHERE user_id = ? AND id = ?", (user_id, draft_id)
            ).fetchone()
        if row is None:
            raise _not_found()
        return self._decode(row[0], draft_id)

    def list(self, user_id: str, limit: int | None = None) -> list[DraftSummary]:
        """The drafts of `user_id`, most recently updated first (read from columns, not the JSON)."""
        sql = (
            "SELECT id, title, updated, block_count, image_count FROM drafts WHERE user_id = ?"
            " ORDER BY updated DESC, rowid DESC LIMIT ?"
        )
        with self._connection("list") as conn:
            rows = conn.execute(sql, (user_id, -1 if limit is None else max(0, int(limit)))).fetchall()
        return [DraftSummary(*r) for r in rows]

    def rename(self, user_id: str, draft_id: str, title: str) -> str:
        """Set the title of one draft; returns the title as stored."""
        clean = clean_title(title or "")
        if not clean:
            raise InputError("The title cannot be empty.", "Type a few words, or keep the old title.")
        with self._transaction("rename") as conn:
            row = conn.execute(
                "SELECT data FROM drafts WHERE user_id = ? AND id = ?", (user_id, draft_id)
            ).fetchone()
            if row is None:
                raise _not_found()
            draft = self._decode(row[0], draft_id)
            draft.title = clean
            # The title lives both in the JSON (what load returns) and in the listing column.
            conn.execute(
                "UPDATE drafts SET title = ?, data = ? WHERE user_id = ? AND id = ?",
                (clean, _to_json(draft.to_dict()), user_id, draft_id),
            )
        return clean

    def delete(self, user_id: str, draft_id: str) -> bool:
        """Delete one draft of `user_id` (its image folder is DraftFiles.remove's job); False if none."""
        with self._transaction("delete") as conn:
            cur = conn.execute("DELETE FROM drafts WHERE user_id = ? AND id = ?", (user_id, draft_id))
            return cur.rowcount > 0

    def count(self, user_id: str) -> int:
        """How many drafts `user_id` has."""
        with self._connection("count") as conn:
            return conn.execute("SELECT COUNT(*) FROM drafts WHERE user_id = ?", (user_id,)).fetchone()[0]

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
        conn = sqlite3.connect(str(self.db_path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
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
                    f"The draft store {self.db_path} was written by a newer Puyu Studio "
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

    def _decode(self, data: str, draft_id: str) -> ArticleDraft:
        """Rebuild a stored draft; a damaged row is reported, not raised as a traceback."""
        try:
            return ArticleDraft.from_dict(json.loads(data))
        except Exception as exc:  # JSON, KeyError, TypeError, pydantic ValidationError …
            raise StudioError(
                f"Article draft {draft_id} in {self.db_path} could not be read ({type(exc).__name__}).",
                "The row is damaged; delete this draft or restore the file from a backup.",
            ) from exc

    def _wrap(self, exc: sqlite3.Error, action: str) -> StudioError:
        """Turn a sqlite3 error into a StudioError that names the file and the way out."""
        code = getattr(exc, "sqlite_errorname", "") or ""
        if code in _CORRUPT_CODES or "not a database" in str(exc) or "malformed" in str(exc):
            return StudioError(
                f"The draft store {self.db_path} is damaged or is not a SQLite database.",
                f"Stop Puyu Studio, move the file aside (e.g. rename it to {self.db_path.name}.bad) "
                "and start again; a new, empty store will be created.",
            )
        if code == "SQLITE_BUSY" or "locked" in str(exc):
            hint = "Another program is holding the store; try again in a moment."
        elif code == "SQLITE_FULL" or "full" in str(exc):
            hint = "The disk is full; free some space and try again. Nothing was changed."
        else:
            hint = f"Check that {self.db_path} and its folder are writable. Nothing was changed."
        return StudioError(f"Could not {action} the article draft ({exc}; store {self.db_path}).", hint)


def _not_found() -> StudioError:
    """The error for a missing draft (also what another user's id looks like)."""
    return StudioError(
        "article draft not found",
        "It may have been deleted or belong to another browser session; start a new article.",
    )
