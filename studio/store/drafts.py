"""SQLite persistence of article drafts, keyed by an opaque user id (a file of its own)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from studio.core.article import ArticleDraft
from studio.core.session import TITLE_CHARS
from studio.errors import InputError, StudioError
from studio.store.sqlite_base import SQLiteStore, clean_title, column_text, to_json
from studio.store.draft_files import check_draft_id

# Bump when the schema changes and add a step to _MIGRATIONS; PRAGMA user_version records it.
SCHEMA_VERSION = 2

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
    # Whether the draft is still being written (or was, when the studio died), for the listing.
    2: ("ALTER TABLE drafts ADD COLUMN status TEXT NOT NULL DEFAULT ''",),
}


@dataclass(frozen=True)
class DraftSummary:
    """One row of the draft list: enough to show it without loading the article."""

    id: str
    title: str
    updated: float
    blocks: int
    images: int
    status: str = ""  # ArticleDraft.status: "writing" while (or if interrupted while) it is written


def display_title(draft: ArticleDraft) -> str:
    """The draft's title, or one derived from the instruction the user gave."""
    title = clean_title(draft.title)
    if title:
        return title
    text = clean_title(draft.instruction)
    return text[:TITLE_CHARS] + ("…" if len(text) > TITLE_CHARS else "")


class DraftStore(SQLiteStore):
    """Article drafts in one SQLite file; thread-safe because every operation opens its own connection."""

    SCHEMA_VERSION = SCHEMA_VERSION
    MIGRATIONS = _MIGRATIONS
    STORE, ITEM = "draft store", "article draft"

    # -- public API ---------------------------------------------------------------------------

    def save(self, user_id: str, draft: ArticleDraft) -> None:
        """Insert or replace one draft of `user_id`; on failure the previous row is kept."""
        check_draft_id(draft.id)  # the id also names the draft's image folder
        data = to_json(draft.to_dict())
        row = (user_id, draft.id, column_text(display_title(draft)), draft.created, draft.updated,
               len(draft.blocks), len(draft.images()), draft.status, data)
        with self._transaction("save") as conn:
            conn.execute(
                "INSERT INTO drafts (user_id, id, title, created, updated, block_count, image_count, status, data)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (user_id, id) DO UPDATE SET title = excluded.title,"
                " created = excluded.created, updated = excluded.updated,"
                " block_count = excluded.block_count, image_count = excluded.image_count,"
                " status = excluded.status, data = excluded.data",
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
            "SELECT id, title, updated, block_count, image_count, status FROM drafts WHERE user_id = ?"
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
                (clean, to_json(draft.to_dict()), user_id, draft_id),
            )
        return clean

    def delete(self, user_id: str, draft_id: str) -> bool:
        """Delete one draft of `user_id` (its image folder is DraftFiles.remove's job); False if none."""
        with self._transaction("delete") as conn:
            cur = conn.execute("DELETE FROM drafts WHERE user_id = ? AND id = ?", (user_id, draft_id))
            return cur.rowcount > 0

    def exists(self, user_id: str, draft_id: str) -> bool:
        """Whether `user_id` has a stored draft `draft_id`."""
        with self._connection("look up") as conn:
            row = conn.execute("SELECT 1 FROM drafts WHERE user_id = ? AND id = ?", (user_id, draft_id)).fetchone()
        return row is not None

    def keys(self) -> set[tuple[str, str]]:
        """(user id, draft id) of every stored draft, of all users (for tidying image folders)."""
        with self._connection("list") as conn:
            return {(u, d) for u, d in conn.execute("SELECT user_id, id FROM drafts")}

    def count(self, user_id: str) -> int:
        """How many drafts `user_id` has."""
        with self._connection("count") as conn:
            return conn.execute("SELECT COUNT(*) FROM drafts WHERE user_id = ?", (user_id,)).fetchone()[0]

    # -- internals ----------------------------------------------------------------------------

    def _decode(self, data: str, draft_id: str) -> ArticleDraft:
        """Rebuild a stored draft; a damaged row is reported, not raised as a traceback."""
        try:
            return ArticleDraft.from_dict(json.loads(data))
        except Exception as exc:  # JSON, KeyError, TypeError, pydantic ValidationError …
            raise StudioError(
                f"Article draft {draft_id} in {self.db_path} could not be read ({type(exc).__name__}).",
                "The row is damaged; delete this draft or restore the file from a backup.",
            ) from exc


def _not_found() -> StudioError:
    """The error for a missing draft (also what another user's id looks like)."""
    return StudioError(
        "article draft not found",
        "It may have been deleted or belong to another browser session; start a new article.",
    )
