"""What the SQLite stores share: one connection per operation, explicit transactions, schema
migrations recorded in `PRAGMA user_version`, and sqlite errors turned into StudioError."""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Iterator

from studio.errors import StudioError

BUSY_TIMEOUT_MS = 10_000
TITLE_MAX_CHARS = 200
# SQLite result codes that mean "the file itself is bad", as opposed to busy / full / read-only.
_CORRUPT_CODES = {"SQLITE_NOTADB", "SQLITE_CORRUPT"}
_SURROGATES = re.compile("[\ud800-\udfff]")
_TITLE_JUNK = re.compile(r"[\x00-\x1f\x7f\s]+")


def to_json(data: dict) -> str:
    """JSON text that SQLite can store; escapes everything when lone surrogates would not encode."""
    text = json.dumps(data, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # A browser can send lone UTF-16 surrogates; \\u escapes keep them exactly and stay valid UTF-8.
        text = json.dumps(data, ensure_ascii=True)
    return text


def column_text(text: str) -> str:
    """A string safe to bind as SQLite TEXT (lone surrogates replaced); used for listing columns only."""
    return _SURROGATES.sub("\ufffd", text)


def clean_title(title: str) -> str:
    """A title as stored by rename: one line, control characters removed, lone surrogates replaced, capped."""
    return _TITLE_JUNK.sub(" ", _SURROGATES.sub("\ufffd", title)).strip()[:TITLE_MAX_CHARS].rstrip()


class SQLiteStore:
    """Base of the stores: subclasses set SCHEMA_VERSION, MIGRATIONS, STORE ("conversation store") and
    ITEM ("conversation") for their messages; thread-safe because every operation opens its own connection."""

    SCHEMA_VERSION = 1
    MIGRATIONS: dict[int, tuple[str, ...]] = {}
    STORE = "store"
    ITEM = "item"

    def __init__(self, db_path: Path) -> None:
        self.db_path = Path(db_path)
        # Guards schema creation only; SQLite itself serialises writers (WAL + busy_timeout).
        self._schema_lock = threading.Lock()
        self._schema_ready = False

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
            if version > self.SCHEMA_VERSION:
                raise StudioError(
                    f"The {self.STORE} {self.db_path} was written by a newer Puyu Studio "
                    f"(schema {version}, this one reads up to {self.SCHEMA_VERSION}).",
                    "Upgrade Puyu Studio, or point it at another store file.",
                )
            for step in range(version + 1, self.SCHEMA_VERSION + 1):
                for statement in self.MIGRATIONS[step]:
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {self.SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _wrap(self, exc: sqlite3.Error, action: str) -> StudioError:
        """Turn a sqlite3 error into a StudioError that names the file and the way out."""
        code = getattr(exc, "sqlite_errorname", "") or ""
        if code in _CORRUPT_CODES or "not a database" in str(exc) or "malformed" in str(exc):
            return StudioError(
                f"The {self.STORE} {self.db_path} is damaged or is not a SQLite database.",
                f"Stop Puyu Studio, move the file aside (e.g. rename it to {self.db_path.name}.bad) "
                "and start again; a new, empty store will be created.",
            )
        if code == "SQLITE_BUSY" or "locked" in str(exc):
            hint = "Another program is holding the store; try again in a moment."
        elif code == "SQLITE_FULL" or "full" in str(exc):
            hint = "The disk is full; free some space and try again. Nothing was changed."
        else:
            hint = f"Check that {self.db_path} and its folder are writable. Nothing was changed."
        return StudioError(f"Could not {action} the {self.ITEM} ({exc}; store {self.db_path}).", hint)
