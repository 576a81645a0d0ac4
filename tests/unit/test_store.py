"""ConversationStore against a real SQLite file."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest

from studio.core.session import ChatSession
from studio.core.types import GenParams, Message
from studio.errors import InputError, StudioError
from studio.store import ConversationStore, ConversationSummary
from studio.store.conversations import SCHEMA_VERSION
from studio.store.sqlite_base import TITLE_MAX_CHARS

A, B = "user-a", "user-b"


def make_session(*texts: str, title: str = "", updated: float | None = None) -> ChatSession:
    """A session alternating user/assistant turns."""
    roles = ("user", "assistant")
    session = ChatSession(
        title=title,
        system_prompt="你是一个有帮助的助手。",
        messages=[Message.of(roles[i % 2], t) for i, t in enumerate(texts)],
        params=GenParams(temperature=0.3, seed=7, stop=("<|im_end|>",)),
    )
    if updated is not None:
        session.updated = updated
    return session


@pytest.fixture
def store(tmp_path):
    return ConversationStore(tmp_path / "data" / "studio.db")


@pytest.mark.parametrize(
    "text",
    [
        "请写一个 300 字的小故事",
        "emoji 👩‍💻🚀 and ZWJ sequences",
        "nul \x00 in the middle\x00",
        "x" * 200_000,
        "lone surrogate \ud800 from a browser",
        "line\r\nendings\rand\ttabs",
    ],
    ids=["cjk", "emoji", "nul", "200k", "surrogate", "controls"],
)
def test_round_trip_exact(store, text):
    session = make_session(text, "回答：" + text)
    store.save(A, session)
    loaded = store.load(A, session.id)
    assert loaded == session
    assert loaded.messages[0].text == text


def test_persists_across_new_store_object(tmp_path):
    path = tmp_path / "studio.db"
    first = make_session("你好", "你好！")
    ConversationStore(path).save(A, first)
    reopened = ConversationStore(path)  # a restart: new object, same file
    assert reopened.load(A, first.id) == first
    assert reopened.count(A) == 1


def test_schema_version_and_wal(tmp_path):
    path = tmp_path / "studio.db"
    ConversationStore(path).count(A)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "studio.db"
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StudioError, match="newer"):
        ConversationStore(path).list(A)


def test_save_is_upsert(store):
    session = make_session("one")
    store.save(A, session)
    session.messages.append(Message.of("assistant", "two"))
    session.touch()
    store.save(A, session)
    assert store.count(A) == 1
    assert store.load(A, session.id).messages[-1].text == "two"
    assert store.list(A)[0].message_count == 2


def test_list_newest_first_with_summary(store):
    now = time.time()
    old = make_session("old question", updated=now - 100)
    new = make_session("new question", updated=now)
    mid = make_session("mid", title="Named", updated=now - 50)
    for s in (old, new, mid):
        store.save(A, s)
    listed = store.list(A)
    assert [s.id for s in listed] == [new.id, mid.id, old.id]
    assert listed[1] == ConversationSummary(mid.id, "Named", mid.updated, 1)
    assert listed[0].title == "new question"  # display_title() from the first user message
    assert [s.id for s in store.list(A, limit=2)] == [new.id, mid.id]


def test_empty_session_lists_with_empty_title(store):
    session = ChatSession()
    store.save(A, session)
    assert store.list(A) == [ConversationSummary(session.id, "", session.updated, 0)]


def test_users_are_isolated(store):
    mine = make_session("A's secret")
    store.save(A, mine)
    assert store.list(B) == []
    assert store.count(B) == 0
    with pytest.raises(StudioError, match="not found"):
        store.load(B, mine.id)
    with pytest.raises(StudioError, match="not found"):
        store.rename(B, mine.id, "hijacked")
    assert store.delete(B, mine.id) is False
    assert store.load(A, mine.id) == mine
    assert store.list(A)[0].title == "A's secret"


def test_same_id_under_two_users_are_two_rows(store):
    session = make_session("shared id")
    store.save(A, session)
    other = make_session("B's text")
    other.id = session.id
    store.save(B, other)
    assert store.load(A, session.id).messages[0].text == "shared id"
    assert store.load(B, session.id).messages[0].text == "B's text"


def test_load_missing_has_hint(store):
    with pytest.raises(StudioError) as info:
        store.load(A, "nope")
    assert info.value.message == "conversation not found"
    assert info.value.hint


def test_rename(store):
    session = make_session("q")
    store.save(A, session)
    assert store.rename(A, session.id, "  新标题\n second line\x00 ") == "新标题 second line"
    assert store.load(A, session.id).title == "新标题 second line"
    assert store.list(A)[0].title == "新标题 second line"
    assert store.rename(A, session.id, "t" * 500) == "t" * TITLE_MAX_CHARS
    assert store.load(A, session.id).title == "t" * TITLE_MAX_CHARS


@pytest.mark.parametrize("bad", ["", "   ", "\n\t", "\x00"])
def test_rename_rejects_empty(store, bad):
    session = make_session("q", title="keep")
    store.save(A, session)
    with pytest.raises(InputError, match="empty"):
        store.rename(A, session.id, bad)
    assert store.load(A, session.id).title == "keep"


def test_rename_missing(store):
    with pytest.raises(StudioError, match="not found"):
        store.rename(A, "nope", "title")


def test_delete(store):
    keep, drop = make_session("keep"), make_session("drop")
    store.save(A, keep)
    store.save(A, drop)
    assert store.delete(A, drop.id) is True
    assert store.delete(A, drop.id) is False
    assert [s.id for s in store.list(A)] == [keep.id]
    with pytest.raises(StudioError, match="not found"):
        store.load(A, drop.id)


@pytest.mark.parametrize("data", ["{not json", "[]", '{"messages": "not a list"}'])
def test_damaged_row_is_a_clear_error_and_others_still_list(store, data):
    good, bad = make_session("good"), make_session("bad")
    store.save(A, good)
    store.save(A, bad)
    with sqlite3.connect(store.db_path) as conn:
        conn.execute("UPDATE conversations SET data = ? WHERE id = ?", (data, bad.id))
    with pytest.raises(StudioError, match=f"Conversation {bad.id} in .* could not be read") as info:
        store.load(A, bad.id)
    assert "delete this conversation" in info.value.hint
    with pytest.raises(StudioError, match="could not be read"):
        store.rename(A, bad.id, "new")
    assert {s.id for s in store.list(A)} == {good.id, bad.id}  # the listing reads columns, not the JSON
    assert store.load(A, good.id) == good
    assert store.delete(A, bad.id) is True and store.count(A) == 1


def test_missing_conversation_hint_says_start_a_new_conversation(store):
    for call in (lambda: store.load(A, "nope"), lambda: store.rename(A, "nope", "t")):
        with pytest.raises(StudioError) as info:
            call()
        assert info.value.message == "conversation not found"
        assert info.value.hint.endswith("start a new conversation.")
    assert store.exists(A, "nope") is False


def test_concurrent_saves_from_many_threads(store):
    errors: list[BaseException] = []
    ids: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def worker(n: int) -> None:
        try:
            start.wait()
            for i in range(25):
                session = make_session(f"thread {n} message {i}", "答" * 50)
                store.save(f"user-{n % 2}", session)
                with lock:
                    ids.append((f"user-{n % 2}", session.id))
                store.list(f"user-{n % 2}")  # readers interleave with writers
        except BaseException as exc:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(ids) == 200
    assert store.count("user-0") + store.count("user-1") == 200
    for user, conv_id in ids:
        assert store.load(user, conv_id).id == conv_id


def test_failed_save_keeps_previous_row(tmp_path):
    path = tmp_path / "studio.db"
    store = ConversationStore(path)
    session = make_session("original")
    store.save(A, session)
    # Simulate a write failure inside SQLite (as a disk error would be) after the upsert began.
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TRIGGER fail_update BEFORE UPDATE ON conversations"
            " BEGIN SELECT RAISE(ABORT, 'simulated disk error'); END"
        )
    session.messages[0] = Message.of("user", "changed")
    with pytest.raises(StudioError, match="simulated disk error") as info:
        store.save(A, session)
    assert "Nothing was changed" in info.value.hint
    assert store.load(A, session.id).messages[0].text == "original"


@pytest.mark.parametrize("garbage", [b"garbage", bytes(range(256)) * 64], ids=["short", "long"])
def test_corrupt_file_is_a_studio_error(tmp_path, garbage):
    path = tmp_path / "studio.db"
    path.write_bytes(garbage)
    store = ConversationStore(path)
    for call in (lambda: store.list(A), lambda: store.save(A, make_session("x"))):
        with pytest.raises(StudioError) as info:
            call()
        assert str(path) in info.value.message
        assert "move the file aside" in info.value.hint
    assert path.read_bytes() == garbage  # never overwritten


def test_unopenable_path_is_a_studio_error(tmp_path):
    path = tmp_path / "is-a-directory"
    path.mkdir()
    with pytest.raises(StudioError) as info:
        ConversationStore(path).list(A)
    assert str(path) in str(info.value)


def test_zero_byte_file_becomes_a_store(tmp_path):
    path = tmp_path / "studio.db"
    path.write_bytes(b"")
    store = ConversationStore(path)
    store.save(A, make_session("hi"))
    assert store.count(A) == 1


def test_file_replaced_while_running_recovers(tmp_path):
    path = tmp_path / "studio.db"
    store = ConversationStore(path)
    store.save(A, make_session("before"))
    for suffix in ("", "-wal", "-shm"):
        (tmp_path / f"studio.db{suffix}").unlink(missing_ok=True)
    sqlite3.connect(path).close()  # an empty file, as after moving the old one aside
    with pytest.raises(StudioError):
        store.list(A)
    store.save(A, make_session("after"))
    assert store.count(A) == 1


# -- storage failures: each says the folder, the cause and the fix ---------------------------------------


class _CappedStore(ConversationStore):
    """A store whose file may not grow past its current pages: SQLite's own "database or disk is full"."""

    def _open(self):
        conn = super()._open()
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {max(pages, 1)}")
        return conn


def test_full_store_says_disk_full_keeps_old_row_and_keeps_serving(tmp_path):
    path = tmp_path / "data" / "studio.db"
    ConversationStore(path).save(A, make_session("original"))
    store = _CappedStore(path)
    big = make_session("x" * 200_000)
    with pytest.raises(StudioError) as info:
        store.save(A, big)
    assert info.value.message.startswith(f"Could not save the conversation: the disk holding {path.parent} is full")
    assert "Free some space" in info.value.hint and "Nothing was changed" in info.value.hint
    assert [s.message_count for s in store.list(A)] == [1]  # what is there is still served


def test_locked_store_names_the_other_program(tmp_path, monkeypatch):
    from studio.store import sqlite_base

    path = tmp_path / "studio.db"
    store = ConversationStore(path)
    store.save(A, make_session("hi"))
    monkeypatch.setattr(sqlite_base, "BUSY_TIMEOUT_MS", 50)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StudioError) as info:
            store.save(A, make_session("again"))
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert f"another program holds the lock on the store in {tmp_path}" in info.value.message
    assert "another studio on the same --data-dir" in info.value.hint


def test_folder_that_cannot_be_created_is_a_studio_error_naming_it(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    path = tmp_path / "file" / "data" / "studio.db"
    with pytest.raises(StudioError) as info:
        ConversationStore(path).list(A)
    assert info.value.message.startswith("Could not list the conversations (Not a directory")
    assert str(path.parent) in info.value.hint and "writable" in info.value.hint


def test_really_full_disk_says_full_not_writable(tmp_path):
    from tests.support.tmpfs import fill, tiny_tmpfs

    with tiny_tmpfs(tmp_path / "disk") as disk:
        path = disk / "data" / "studio.db"
        ConversationStore(path).save(A, make_session("kept"))
        filler = fill(disk)
        for call in (lambda s: s.list(A), lambda s: s.save(A, make_session("y" * 300_000))):
            with pytest.raises(StudioError) as info:
                call(ConversationStore(path))
            assert f"the disk holding {path.parent} is full" in info.value.message
            assert "Free some space on that disk" in info.value.hint and "writable" not in info.value.hint
        filler.unlink()  # space is back: the store works again, with nothing lost
        assert [s.message_count for s in ConversationStore(path).list(A)] == [1]


def test_read_only_disk_is_named_and_reading_still_works(tmp_path):
    from tests.support.tmpfs import remount, tiny_tmpfs

    with tiny_tmpfs(tmp_path / "disk") as disk:
        path = disk / "data" / "studio.db"
        ConversationStore(path).save(A, make_session("kept"))
        remount(disk, "ro")
        store = ConversationStore(path)
        assert [s.message_count for s in store.list(A)] == [1]  # the studio keeps serving what it can
        with pytest.raises(StudioError) as info:
            store.save(A, make_session("new"))
        assert f"{path.parent} is on a read-only file system" in info.value.message
        assert "Remount it read-write" in info.value.hint
        with pytest.raises(StudioError) as info:
            ConversationStore(disk / "other" / "studio.db").list(A)  # its folder cannot even be made
        assert f"{disk / 'other'} is on a read-only file system" in info.value.message

def test_partial_reply_flag_round_trips_and_old_rows_still_load(store):
    session = make_session("question", "half an ans")
    session.messages[-1] = Message.of("assistant", "half an ans", partial=True)
    store.save(A, session)
    loaded = store.load(A, session.id)
    assert [m.partial for m in loaded.messages] == [False, True]
    with sqlite3.connect(store.db_path) as conn:
        raw = conn.execute("SELECT data FROM conversations WHERE id = ?", (session.id,)).fetchone()[0]
    assert '"partial": true' in raw and raw.count('"partial"') == 1  # complete messages carry no flag
    # A row written before the flag existed: messages are plain role + content.
    old = session.to_dict()
    old["messages"] = [{"role": "user", "content": "old q"}, {"role": "assistant", "content": "old a"}]
    restored = ChatSession.from_dict(old)
    assert [(m.text, m.partial) for m in restored.messages] == [("old q", False), ("old a", False)]


def test_checkpoint_copy_marks_only_the_reply_and_drops_an_empty_one():
    session = make_session("q1", "a1", "q2", "streaming")
    copy = session.checkpoint()
    assert [m.partial for m in copy.messages] == [False, False, False, True]
    assert [m.partial for m in session.messages] == [False] * 4  # the live session is untouched
    session.messages[-1] = Message.of("assistant", "")
    assert [m.text for m in session.checkpoint().messages] == ["q1", "a1", "q2"]


def test_reassign_moves_every_row_of_one_user_and_overwrites_nothing(store):
    old_a, old_b = make_session("first", "one", updated=100.0), make_session("second", "two", updated=200.0)
    store.save(A, old_a)
    store.save(A, old_b)
    store.save(B, make_session("already B's", "x", updated=50.0))
    store.save("someone-else", make_session("not moved"))
    clash = make_session("B has this id too", updated=300.0)
    store.save(B, clash)
    store.save(A, ChatSession.from_dict({**clash.to_dict(), "title": "A's version"}))  # same id as B's
    assert store.reassign(A, B) == 2
    assert [s.id for s in store.list(B)] == [clash.id, old_b.id, old_a.id, store.list(B)[-1].id]
    assert store.load(B, old_a.id).messages[0].text == "first"  # the whole conversation moved
    assert store.load(B, clash.id).messages[0].text == "B has this id too"  # B's own row is untouched
    assert [s.title for s in store.list(A)] == ["A's version"]  # the clashing row stays, not lost
    assert store.count("someone-else") == 1
    assert store.reassign(B, B) == 0 and store.reassign("nobody", B) == 0


def test_writers_of_one_process_queue_instead_of_timing_out(store, monkeypatch):
    """A save that waits longer than SQLite's busy timeout for another thread's write still lands."""
    import studio.store.sqlite_base as base

    monkeypatch.setattr(base, "BUSY_TIMEOUT_MS", 50)  # SQLite alone would give up after 50 ms
    store.save(A, make_session("first"))  # the schema exists before the race
    inside, saved, errors = threading.Event(), [], []

    def long_write():
        with store._transaction("hold the write lock"):
            inside.set()
            time.sleep(0.5)  # ten busy timeouts

    holder = threading.Thread(target=long_write)
    holder.start()
    inside.wait()

    def save():
        try:
            session = make_session("second")
            store.save(A, session)
            saved.append(session.id)
        except StudioError as exc:
            errors.append(exc)

    writer = threading.Thread(target=save)
    writer.start()
    holder.join()
    writer.join()
    assert errors == [] and len(saved) == 1
    assert store.count(A) == 2


def test_held_keeps_one_connection_open_and_releases_the_files(tmp_path):
    path = tmp_path / "studio.db"
    store = ConversationStore(path)
    store.save(A, make_session("first"))
    wal = tmp_path / "studio.db-wal"
    assert not wal.exists()  # no connection left open between requests: the log folded back and gone
    with store.held():
        with store.held():  # nested holders (two replies streaming) share it
            store.save(A, make_session("second"))
        store.save(A, make_session("third"))
        assert wal.exists()  # the saves did not each fold the log back into the file
    assert not wal.exists()  # the last holder left: the file is whole again, nothing open on the disk
    assert store.count(A) == 3


def test_held_on_a_store_not_yet_created_is_harmless(tmp_path):
    store = ConversationStore(tmp_path / "later" / "studio.db")
    with store.held():
        store.save(A, make_session("made inside"))
    assert store.count(A) == 1
