"""What the SQLite stores share: one connection per operation, explicit transactions, schema
migrations recorded in `PRAGMA user_version`, and sqlite errors turned into StudioError."""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import weakref
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Iterator

from studio.errors import StudioError
from studio.store.storage_errors import cause_of_errno, probe, storage_error

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


class _ImmutableConnection(sqlite3.Connection):
    """A read-only connection to a store on a read-only disk (see SQLiteStore._open)."""


class SQLiteStore:
    """Base of the stores: subclasses set SCHEMA_VERSION, MIGRATIONS, STORE ("conversation store") and
    ITEM ("conversation") for their messages; thread-safe because every operation opens its own connection."""

    SCHEMA_VERSION = 1
    MIGRATIONS: dict[int, tuple[str, ...]] = {}
    STORE = "store"
    ITEM = "item"

    def __init__(self, db_path: Path) -> None:
        self.db_path = Path(db_path)
        self._schema_lock = threading.Lock()
        # This process's writers queue here rather than in SQLite's busy handler, which gives up after
        # BUSY_TIMEOUT_MS: 32 users streaming at once on a loaded machine lost saves to "database is locked".
        # Other processes (a terminal chat) still meet at SQLite's lock, with the busy timeout.
        self._write_lock = threading.RLock()
        self._schema_ready = False
        # While replies stream (held()), one connection stays open: when the last connection to a WAL file
        # closes, SQLite checkpoints the log into the file and deletes it, so each checkpoint save of a
        # reply paid a checkpoint of the file (a third of the server's time on a short chat reply). Never
        # held between requests: an open file keeps its disk from being unmounted or remounted read-only.
        self._held, self._held_lock = 0, threading.Lock()
        self._keeper: weakref.finalize | None = None

    @contextmanager
    def _connection(self, action: str) -> Iterator[sqlite3.Connection]:
        """A fresh autocommit connection with the schema in place; sqlite errors become StudioError."""
        try:
            try:
                self._ensure_schema()
            except OSError as exc:  # the store's folder could not be created (read-only, permission, full)
                raise self._wrap_os(exc, action) from exc
            with closing(self._open()) as conn:
                yield conn
        except sqlite3.Error as exc:
            if "no such table" in str(exc):
                self._schema_ready = False  # the file was replaced while running; recreate next time
            raise self._wrap(exc, action) from exc

    @contextmanager
    def _transaction(self, action: str) -> Iterator[sqlite3.Connection]:
        """A write transaction: committed as a whole or rolled back, never half-applied."""
        with self._write_lock, self._connection(action) as conn:
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
        conn = self._connect(str(self.db_path), uri=False)
        try:
            conn.execute("PRAGMA schema_version")  # reads the file: a WAL store on a read-only disk fails here
        except sqlite3.OperationalError:
            conn.close()
            if probe(self.db_path.parent) != "read-only" or not self.db_path.is_file():
                raise
            # SQLite cannot create a WAL store's shared-memory file on a read-only disk. Nothing can change
            # the file there, so reading it as immutable is safe, and the conversations stay readable.
            conn = self._connect(f"{self.db_path.resolve().as_uri()}?mode=ro&immutable=1", uri=True,
                                 factory=_ImmutableConnection)
        return conn

    def _connect(self, target: str, uri: bool, factory=sqlite3.Connection,
                 check_same_thread: bool = True) -> sqlite3.Connection:
        conn = sqlite3.connect(target, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, uri=uri,
                               factory=factory, check_same_thread=check_same_thread)
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

    @contextmanager
    def held(self) -> Iterator[None]:
        """Keep one connection open while the block runs (a streaming reply's saves; see __init__); nests,
        and is thread-safe: the connection closes when the last holder leaves."""
        with self._held_lock:
            self._held += 1
            if self._held == 1:
                self._keeper = self._keep()
        try:
            yield
        finally:
            with self._held_lock:
                self._held -= 1
                if self._held == 0:
                    self._release()

    def _keep(self) -> weakref.finalize | None:
        """The held connection, closed at the latest when the store goes (sqlite3 connections sit in a
        reference cycle with their statement cache: only the cyclic collector would free one); None when the
        file cannot be opened as it is (no store yet, a read-only disk: nothing to keep)."""
        try:
            conn = self._connect(str(self.db_path), uri=False, check_same_thread=False)
        except sqlite3.Error:
            return None
        try:
            conn.execute("PRAGMA schema_version")
        except sqlite3.Error:
            conn.close()
            return None
        return weakref.finalize(self, conn.close)

    def _release(self) -> None:
        """Close the held connection, if any."""
        keeper, self._keeper = self._keeper, None
        if keeper is not None:
            keeper()

    def _migrate(self, conn: sqlite3.Connection) -> None:
        """Apply the migrations between the file's user_version and SCHEMA_VERSION."""
        if self._is_current(conn):
            return  # nothing to write, so a store on a read-only or full disk can still be read
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

    def _is_current(self, conn: sqlite3.Connection) -> bool:
        """Whether the file already has this schema version in WAL mode (read without writing)."""
        # An immutable connection reports journal mode "delete" whatever the file says.
        mode = "wal" if isinstance(conn, _ImmutableConnection) else conn.execute("PRAGMA journal_mode").fetchone()[0]
        return mode == "wal" and conn.execute("PRAGMA user_version").fetchone()[0] == self.SCHEMA_VERSION

    def _wrap(self, exc: sqlite3.Error, action: str) -> StudioError:
        """Turn a sqlite3 error into a StudioError that names the file, the cause and the way out."""
        code = getattr(exc, "sqlite_errorname", "") or ""
        if code in _CORRUPT_CODES or "not a database" in str(exc) or "malformed" in str(exc):
            return StudioError(
                f"The {self.STORE} {self.db_path} is damaged or is not a SQLite database.",
                f"Stop Puyu Studio, move the file aside (e.g. rename it to {self.db_path.name}.bad) "
                "and start again; a new, empty store will be created.",
            )
        folder = self.db_path.parent
        if code.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in str(exc):
            cause = "locked"
        elif code == "SQLITE_FULL" or "full" in str(exc):
            cause = "full"  # SQLite reports a used-up quota (EDQUOT) as SQLITE_FULL too
        else:  # read-only, cannot open, "disk I/O error": SQLite does not say why; the file system does
            cause = probe(folder, self.db_path) or ("read-only" if code.startswith("SQLITE_READONLY") else None)
        return storage_error(self._what(action), folder, cause, f"SQLite: {exc}; store {self.db_path}")

    def _what(self, action: str) -> str:
        """"save the conversation", "list the conversations": what failed, for the message."""
        return f"{action} the {self.ITEM}s" if action in ("list", "count", "search") else f"{action} the {self.ITEM}"

    def _wrap_os(self, exc: OSError, action: str) -> StudioError:
        """Turn an OSError (creating the store's folder) into a StudioError naming the cause."""
        folder = self.db_path.parent
        return storage_error(self._what(action), folder, cause_of_errno(exc) or probe(folder),
                             f"{exc.strerror or exc}; store {self.db_path}")
