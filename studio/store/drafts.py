"""SQLite persistence of article drafts, keyed by an opaque user id (a file of its own)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from studio.core.article import ArticleDraft
from studio.core.session import TITLE_CHARS
from studio.store.draft_files import check_draft_id
from studio.store.keyed_rows import KeyedRowStore, keyed_table
from studio.store.sqlite_base import clean_title, column_text

# Bump when the schema changes and add a step to _MIGRATIONS; PRAGMA user_version records it.
SCHEMA_VERSION = 2

_MIGRATIONS = {
    1: keyed_table("drafts", "block_count", "image_count"),
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


class DraftStore(KeyedRowStore[ArticleDraft, DraftSummary]):
    """Article drafts in one SQLite file; thread-safe because every operation opens its own connection.

    Deleting a draft leaves its image folder to DraftFiles.remove."""

    SCHEMA_VERSION = SCHEMA_VERSION
    MIGRATIONS = _MIGRATIONS
    STORE, ITEM, SHORT, FRESH = "draft store", "article draft", "draft", "article"
    TABLE, MODEL, SUMMARY = "drafts", ArticleDraft, DraftSummary
    LISTED = ("id", "title", "updated", "block_count", "image_count", "status")

    def save(self, user_id: str, draft: ArticleDraft) -> None:
        """Insert or replace one draft of `user_id`; on failure the previous row is kept."""
        check_draft_id(draft.id)  # the id also names the draft's image folder
        super().save(user_id, draft)

    def keys(self) -> set[tuple[str, str]]:
        """(user id, draft id) of every stored draft, of all users (for tidying image folders)."""
        with self._connection("list") as conn:
            return {(u, d) for u, d in conn.execute("SELECT user_id, id FROM drafts")}

    def _columns(self, draft: ArticleDraft) -> dict[str, Any]:
        """The listing columns of one draft."""
        return {"title": column_text(display_title(draft)), "created": draft.created, "updated": draft.updated,
                "block_count": len(draft.blocks), "image_count": len(draft.images()), "status": draft.status}
