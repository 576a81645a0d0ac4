"""The CRUD the stores share: one table of JSON rows keyed by (user id, id), with the columns a listing
reads kept beside the JSON so that listing never decodes it."""

from __future__ import annotations

import json
import sqlite3
from typing import Any, Callable, Generic, TypeVar

from studio.errors import InputError, StudioError
from studio.store.sqlite_base import SQLiteStore, clean_title, to_json

T = TypeVar("T")  # the stored object (ChatSession, ArticleDraft): has id, title, to_dict() and from_dict()
S = TypeVar("S")  # its listing row (ConversationSummary, DraftSummary)


def keyed_table(table: str, *counts: str) -> tuple[str, str]:
    """The first migration step of a keyed-row table: the table, with INTEGER columns `counts` for its
    listing, and its per-user index. Stores with this schema exist: change it with a new step, never here."""
    columns = "".join(f"\n    {name} INTEGER NOT NULL DEFAULT 0," for name in counts)
    return (
        f"""CREATE TABLE IF NOT EXISTS {table} (
    user_id TEXT NOT NULL,
    id      TEXT NOT NULL,
    title   TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL,
    updated REAL NOT NULL,{columns}
    data    TEXT NOT NULL,
    PRIMARY KEY (user_id, id)
)""",
        f"CREATE INDEX IF NOT EXISTS {table}_by_user_updated ON {table} (user_id, updated DESC)",
    )


class KeyedRowStore(SQLiteStore, Generic[T, S]):
    """Rows of TABLE (user_id, id, listing columns…, data): subclasses set TABLE, MODEL, SUMMARY and
    LISTED (the columns SUMMARY is built from, in order), SHORT and FRESH for the hints, and `_columns`."""

    TABLE = ""
    MODEL: Any = None  # the stored class: MODEL.from_dict(dict) rebuilds an object
    SUMMARY: Callable[..., S]
    LISTED: tuple[str, ...] = ()
    SHORT = "item"  # "delete this draft"
    FRESH = "item"  # "start a new article"

    def _columns(self, item: T) -> dict[str, Any]:
        """The listing columns of `item` (all but user_id, id and data), by column name."""
        raise NotImplementedError

    def save(self, user_id: str, item: T) -> None:
        """Insert or replace one row of `user_id`; on failure the previous row is kept."""
        data = to_json(item.to_dict())
        columns = self._columns(item)
        names = ["user_id", "id", *columns, "data"]
        updates = ", ".join(f"{name} = excluded.{name}" for name in names[2:])
        # Column and table names are the subclass's constants, never user input; values are bound.
        sql = (f"INSERT INTO {self.TABLE} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
               f" ON CONFLICT (user_id, id) DO UPDATE SET {updates}")
        with self._transaction("save") as conn:
            conn.execute(sql, (user_id, item.id, *columns.values(), data))

    def load(self, user_id: str, item_id: str) -> T:
        """The row `item_id` of `user_id`, decoded; StudioError if there is none."""
        with self._connection("load") as conn:
            data = self._data(conn, user_id, item_id)
        return self._decode(data, item_id)

    def list(self, user_id: str, limit: int | None = None) -> list[S]:
        """The rows of `user_id`, most recently updated first (read from the columns, not the JSON)."""
        sql = (f"SELECT {', '.join(self.LISTED)} FROM {self.TABLE} WHERE user_id = ?"
               " ORDER BY updated DESC, rowid DESC LIMIT ?")  # LIMIT -1: no limit
        with self._connection("list") as conn:
            rows = conn.execute(sql, (user_id, -1 if limit is None else max(0, int(limit)))).fetchall()
        return [self.SUMMARY(*row) for row in rows]

    def rename(self, user_id: str, item_id: str, title: str) -> str:
        """Set the title of one row; returns the title as stored."""
        clean = clean_title(title or "")
        if not clean:
            raise InputError("The title cannot be empty.", "Type a few words, or keep the old title.")
        with self._transaction("rename") as conn:
            item = self._decode(self._data(conn, user_id, item_id), item_id)
            item.title = clean
            # The title lives both in the JSON (what load returns) and in the listing column.
            conn.execute(f"UPDATE {self.TABLE} SET title = ?, data = ? WHERE user_id = ? AND id = ?",
                         (clean, to_json(item.to_dict()), user_id, item_id))
        return clean

    def delete(self, user_id: str, item_id: str) -> bool:
        """Delete one row of `user_id`; False if there was none."""
        with self._transaction("delete") as conn:
            cur = conn.execute(f"DELETE FROM {self.TABLE} WHERE user_id = ? AND id = ?", (user_id, item_id))
            return cur.rowcount > 0

    def exists(self, user_id: str, item_id: str) -> bool:
        """Whether `user_id` has a stored row `item_id`."""
        with self._connection("look up") as conn:
            sql = f"SELECT 1 FROM {self.TABLE} WHERE user_id = ? AND id = ?"
            return conn.execute(sql, (user_id, item_id)).fetchone() is not None

    def count(self, user_id: str) -> int:
        """How many rows `user_id` has."""
        with self._connection("count") as conn:
            return conn.execute(f"SELECT COUNT(*) FROM {self.TABLE} WHERE user_id = ?", (user_id,)).fetchone()[0]

    def reassign(self, old_user: str, new_user: str) -> int:
        """Give every row of `old_user` to `new_user`; how many moved. A row whose id `new_user` already
        has stays where it is (nothing is overwritten)."""
        if old_user == new_user:
            return 0
        with self._transaction("move") as conn:
            cur = conn.execute(f"UPDATE OR IGNORE {self.TABLE} SET user_id = ? WHERE user_id = ?", (new_user, old_user))
            return cur.rowcount

    def transfer(self, old_user: str, new_user: str, item_id: str, rewrite: Callable[[dict], dict]) -> bool:
        """Give one row of `old_user` to `new_user` in one transaction, its JSON passed through `rewrite`;
        False (nothing changed) when `new_user` already has that id (nothing is overwritten)."""
        with self._transaction("move") as conn:
            data = self._data(conn, old_user, item_id)
            taken = f"SELECT 1 FROM {self.TABLE} WHERE user_id = ? AND id = ?"
            if conn.execute(taken, (new_user, item_id)).fetchone() is not None:
                return False
            # The listing columns hold nothing that `rewrite` changes (paths live in the JSON only).
            conn.execute(f"UPDATE {self.TABLE} SET user_id = ?, data = ? WHERE user_id = ? AND id = ?",
                         (new_user, to_json(rewrite(json.loads(data))), old_user, item_id))
            return True

    def ids(self, user_id: str) -> list[str]:
        """The ids of every row of `user_id` (read from the column, not the JSON)."""
        with self._connection("list") as conn:
            return [r[0] for r in conn.execute(f"SELECT id FROM {self.TABLE} WHERE user_id = ?", (user_id,))]

    def _data(self, conn: sqlite3.Connection, user_id: str, item_id: str) -> str:
        """The JSON of one row; the not-found StudioError (also what another user's id looks like) if none."""
        row = conn.execute(f"SELECT data FROM {self.TABLE} WHERE user_id = ? AND id = ?", (user_id, item_id)).fetchone()
        if row is None:
            raise StudioError(f"{self.ITEM} not found", "It may have been deleted or belong to another browser "
                              f"session; start a new {self.FRESH}.")
        return row[0]

    def _decode(self, data: str, item_id: str) -> T:
        """Rebuild a stored object; a damaged row is reported, not raised as a traceback."""
        try:
            return self.MODEL.from_dict(json.loads(data))
        except Exception as exc:  # JSON, KeyError, TypeError, pydantic ValidationError …
            raise StudioError(
                f"{self.ITEM.capitalize()} {item_id} in {self.db_path} could not be read ({type(exc).__name__}).",
                f"The row is damaged; delete this {self.SHORT} or restore the file from a backup.",
            ) from exc
