"""DraftStore against a real SQLite file, and DraftFiles against a real folder."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import threading
import time
from pathlib import Path

import pytest

from studio.core.article import (
    ArticleBlock,
    ArticleDraft,
    ArticleImage,
    ArticleParams,
    Candidate,
)
from studio.errors import InputError, StudioError
from studio.store import DraftFiles, DraftStore, DraftSummary, referenced_paths
from studio.store.sqlite_base import TITLE_MAX_CHARS
from studio.store.draft_files import MAX_IMAGE_BYTES
from studio.store.drafts import SCHEMA_VERSION

A, B = "user-a", "user-b"
PNG = b"\x89PNG\r\n\x1a\n" + b"fake image body"


def make_draft(*texts: str, images: int = 0, title: str = "", updated: float | None = None) -> ArticleDraft:
    """A draft with one block per text; the first `images` blocks get an image with two candidates."""
    blocks = []
    for i, text in enumerate(texts):
        image = None
        if i < images:
            cands = [Candidate(f"/data/img/{i}-{k}.png", "gallery", 0.5 + k / 10, f"图 {k}") for k in range(2)]
            image = ArticleImage(cands[0].path, f"caption {i}", "gallery", cands)
        blocks.append(ArticleBlock(text, image))
    draft = ArticleDraft(
        title=title, instruction="写一篇关于西湖的游记", material="西湖位于杭州。", blocks=blocks,
        params=ArticleParams(beams=3, repetition_penalty=1.2, max_new_tokens=900, do_sample=True,
                             seed=42, image_count=2, model_selects=False),
        engine="article", model="internlm-xcomposer2-vl-1_8b", uploads=["/data/up/me.jpg"],
    )
    if updated is not None:
        draft.updated = updated
    return draft


@pytest.fixture
def store(tmp_path):
    return DraftStore(tmp_path / "data" / "drafts.db")


@pytest.fixture
def files(tmp_path):
    return DraftFiles(tmp_path / "data" / "drafts")


def image_file(tmp_path: Path, name: str = "photo.png", body: bytes = PNG) -> Path:
    path = tmp_path / "src" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(body)
    return path


# -- DraftStore ---------------------------------------------------------------------------------


def test_round_trip_exact(store):
    draft = make_draft("第一段 \x00 nul", "emoji 👩‍💻", "lone \ud800 surrogate", images=2)
    store.save(A, draft)
    loaded = store.load(A, draft.id)
    assert loaded == draft
    assert loaded.blocks[0].image.candidates[1] == Candidate("/data/img/0-1.png", "gallery", 0.6, "图 1")
    assert loaded.params.beams == 3 and loaded.params.seed == 42


def test_schema_version_wal_and_separate_file(tmp_path, store):
    store.count(A)
    with sqlite3.connect(store.db_path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {"drafts"}


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "drafts.db"
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StudioError, match="newer"):
        DraftStore(path).list(A)


def test_list_newest_first_with_counts(store):
    now = time.time()
    old = make_draft("a", updated=now - 100)
    new = make_draft("a", "b", "c", images=2, updated=now)
    mid = make_draft("a", "b", images=1, title="  Named\n draft ", updated=now - 50)
    for d in (old, new, mid):
        store.save(A, d)
    listed = store.list(A)
    assert [s.id for s in listed] == [new.id, mid.id, old.id]
    assert listed[0] == DraftSummary(new.id, "写一篇关于西湖的游记", now, 3, 2)
    assert listed[1] == DraftSummary(mid.id, "Named draft", mid.updated, 2, 1)
    assert [s.id for s in store.list(A, limit=2)] == [new.id, mid.id]
    assert store.list(A, limit=0) == []


def test_save_is_upsert(store):
    draft = make_draft("one")
    store.save(A, draft)
    draft.blocks.append(ArticleBlock("two", ArticleImage("/x.png", "c")))
    draft.touch()
    store.save(A, draft)
    assert store.count(A) == 1
    summary = store.list(A)[0]
    assert (summary.blocks, summary.images) == (2, 1)
    assert store.load(A, draft.id).blocks[-1].text == "two"


@pytest.mark.parametrize("bad", ["../x", "a/b", "", "ab\x00cd", "ABCDEF", "x" * 10])
def test_save_refuses_ids_unfit_for_a_folder(store, bad):
    draft = make_draft("text")
    draft.id = bad
    with pytest.raises(InputError, match="Invalid article draft id"):
        store.save(A, draft)
    assert store.count(A) == 0


def test_rename(store):
    draft = make_draft("q")
    store.save(A, draft)
    assert store.rename(A, draft.id, "  新标题\n second\x00 line ") == "新标题 second line"
    assert store.load(A, draft.id).title == "新标题 second line"
    assert store.list(A)[0].title == "新标题 second line"
    assert store.rename(A, draft.id, "t" * 500) == "t" * TITLE_MAX_CHARS
    with pytest.raises(InputError, match="empty"):
        store.rename(A, draft.id, " \n\x00")
    assert store.load(A, draft.id).title == "t" * TITLE_MAX_CHARS


def test_users_are_isolated(store):
    mine = make_draft("A's secret", title="secret")
    store.save(A, mine)
    assert store.list(B) == [] and store.count(B) == 0
    for call in (lambda: store.load(B, mine.id), lambda: store.rename(B, mine.id, "hijacked")):
        with pytest.raises(StudioError, match="article draft not found") as info:
            call()
        assert info.value.hint.endswith("start a new article.")
    assert store.delete(B, mine.id) is False and store.exists(B, mine.id) is False
    assert store.exists(A, mine.id) is True
    assert store.load(A, mine.id) == mine
    other = make_draft("B's text")
    other.id = mine.id  # the same id under another user is another row
    store.save(B, other)
    assert store.load(A, mine.id).blocks[0].text == "A's secret"
    assert store.load(B, mine.id).blocks[0].text == "B's text"


def test_delete(store):
    keep, drop = make_draft("keep"), make_draft("drop")
    store.save(A, keep)
    store.save(A, drop)
    assert store.delete(A, drop.id) is True
    assert store.delete(A, drop.id) is False
    assert [s.id for s in store.list(A)] == [keep.id]
    with pytest.raises(StudioError, match="not found"):
        store.load(A, drop.id)


def test_survives_restart(tmp_path):
    path = tmp_path / "drafts.db"
    draft = make_draft("before the restart", images=1)
    DraftStore(path).save(A, draft)
    reopened = DraftStore(path)
    assert reopened.load(A, draft.id) == draft
    assert reopened.list(A)[0].images == 1


def test_concurrent_saves_from_eight_threads(store):
    errors: list[BaseException] = []
    saved: list[tuple[str, str]] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def worker(n: int) -> None:
        try:
            start.wait()
            for i in range(15):
                draft = make_draft(f"thread {n} block {i}", "段" * 500, images=1)
                store.save(f"user-{n % 2}", draft)
                with lock:
                    saved.append((f"user-{n % 2}", draft.id))
                store.list(f"user-{n % 2}")  # readers interleave with writers
        except BaseException as exc:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for user in ("user-0", "user-1"):
        assert {s.id for s in store.list(user)} == {d for u, d in saved if u == user}
    assert len(saved) == 120 and all(store.load(u, d).id == d for u, d in saved)


@pytest.mark.parametrize("data", ["{not json", "[]", '{"no": "id"}', '{"id": "ab", "params": {"beams": 99}}'])
def test_corrupted_row_is_a_clear_error_and_others_still_list(store, data):
    good, bad = make_draft("good"), make_draft("bad")
    store.save(A, good)
    store.save(A, bad)
    with sqlite3.connect(store.db_path) as conn:
        conn.execute("UPDATE drafts SET data = ? WHERE id = ?", (data, bad.id))
    with pytest.raises(StudioError, match=f"Article draft {bad.id} .* could not be read") as info:
        store.load(A, bad.id)
    assert "delete this draft" in info.value.hint
    with pytest.raises(StudioError, match="could not be read"):
        store.rename(A, bad.id, "new")
    assert {s.id for s in store.list(A)} == {good.id, bad.id}
    assert store.load(A, good.id) == good
    assert store.delete(A, bad.id) is True


def test_corrupt_file_is_a_studio_error(tmp_path):
    path = tmp_path / "drafts.db"
    path.write_bytes(bytes(range(256)) * 64)
    with pytest.raises(StudioError) as info:
        DraftStore(path).list(A)
    assert str(path) in info.value.message and "move the file aside" in info.value.hint


# -- DraftFiles ---------------------------------------------------------------------------------


def test_folder_is_private_hashed_and_inside_root(files):
    draft_id = make_draft().id
    folder = files.folder("alice@example.com/../../etc", draft_id)
    assert folder.is_dir() and folder.is_absolute() and folder.name == draft_id
    assert folder.is_relative_to(files.root.resolve())
    assert "alice" not in str(folder) and ".." not in folder.parts
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(folder.parent.stat().st_mode) == 0o700
    assert files.folder("bob", draft_id) != folder


@pytest.mark.parametrize("bad", ["../x", "a/b", "", "ab\x00cd", "..", ".", "ABC", "g1", "/etc", "a" * 65])
def test_hostile_draft_ids_are_refused(files, tmp_path, bad):
    src = image_file(tmp_path)
    for call in (lambda: files.folder(A, bad), lambda: files.adopt(A, bad, src, "x"),
                 lambda: files.remove(A, bad), lambda: files.prune(A, bad, set())):
        with pytest.raises(InputError, match="Invalid article draft id"):
            call()
    assert not files.root.exists()


def test_empty_user_id_is_refused(files):
    with pytest.raises(InputError, match="user id"):
        files.folder("", "ab12")


def test_adopt_copies_keeps_extension_and_is_idempotent(files, tmp_path):
    src = image_file(tmp_path, "Photo.JPEG")
    draft_id = make_draft().id
    first = files.adopt(A, draft_id, src, "西湖 夜景")
    assert first.parent == files.folder(A, draft_id)
    assert first.name.startswith("西湖_夜景-") and first.suffix == ".jpeg"
    assert first.read_bytes() == PNG and stat.S_IMODE(first.stat().st_mode) == 0o600
    assert files.adopt(A, draft_id, src, "西湖 夜景") == first
    assert files.adopt(A, draft_id, src, "another caption") == first  # same content, same file
    assert files.adopt(A, draft_id, first, "re-adopting its own file") == first
    src.unlink()  # the draft's copy outlives the gallery or temp file
    assert first.read_bytes() == PNG
    other = files.adopt(A, draft_id, image_file(tmp_path, "b.png", PNG + b"!"), "b")
    assert other != first and sorted(p.name for p in first.parent.iterdir()) == sorted([first.name, other.name])


@pytest.mark.parametrize("name, suffix", [("a.webp", ".webp"), ("a.GIF", ".gif"), ("a.bmp", ".bmp"),
                                          ("a.svg", ".img"), ("a.html", ".img"), ("noext", ".img")])
def test_adopt_extension_allow_list(files, tmp_path, name, suffix):
    assert files.adopt(A, "ab12", image_file(tmp_path, name), "x").suffix == suffix


@pytest.mark.parametrize("stem", ["../../etc/passwd", "a/b\\c", "", "\x00\x00", "..", ".hidden", "x" * 300,
                                  "<script>alert(1)</script>", "\ud800lone", "con:nul*?|"])
def test_hostile_stems_stay_in_the_folder(files, tmp_path, stem):
    path = files.adopt(A, "ab12", image_file(tmp_path), stem)
    assert path.parent == files.folder(A, "ab12")
    assert not path.name.startswith(".") and len(path.name.encode()) < 255
    assert all(c.isalnum() or c in "_-." for c in path.name)


def test_adopt_refuses_non_files_and_big_files(files, tmp_path):
    for src in (tmp_path, tmp_path / "missing.png", Path("/dev/null"), Path("bad\x00name.png")):
        with pytest.raises(InputError):
            files.adopt(A, "ab12", src, "x")
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="not a regular file"):
        files.adopt(A, "ab12", fifo, "x")
    big = tmp_path / "big.png"
    with open(big, "wb") as f:
        f.truncate(MAX_IMAGE_BYTES + 1)  # sparse: no real disk use
    with pytest.raises(InputError, match="larger than 50 MB"):
        files.adopt(A, "ab12", big, "x")
    assert list(files.folder(A, "ab12").iterdir()) == []  # no temporary file left behind


def test_a_symlink_out_of_the_root_is_refused(files, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    folder = files.folder(A, "ab12")
    folder.rmdir()
    folder.symlink_to(outside)
    with pytest.raises(StudioError, match="outside the article image folder"):
        files.adopt(A, "ab12", image_file(tmp_path), "x")
    assert list(outside.iterdir()) == []
    # A link to another draft's folder, still inside the root, must not let remove/prune reach it.
    victim = files.adopt(A, "cd34", image_file(tmp_path), "victim")
    folder.unlink()
    folder.symlink_to(victim.parent)
    for call in (lambda: files.remove(A, "ab12"), lambda: files.prune(A, "ab12", set())):
        with pytest.raises(StudioError, match="outside the article image folder"):
            call()
    assert victim.read_bytes() == PNG


def test_prune_keeps_only_referenced_files(files, tmp_path):
    draft = make_draft("one", "two")
    kept = files.adopt(A, draft.id, image_file(tmp_path, "k.png", PNG + b"k"), "kept")
    cand = files.adopt(A, draft.id, image_file(tmp_path, "c.png", PNG + b"c"), "candidate")
    upload = files.adopt(A, draft.id, image_file(tmp_path, "u.png", PNG + b"u"), "upload")
    gone = files.adopt(A, draft.id, image_file(tmp_path, "g.png", PNG + b"g"), "dropped")
    draft.blocks[0].image = ArticleImage(str(kept), "kept", "upload", [Candidate(str(cand), "gallery")])
    draft.uploads = [str(upload)]
    outside = image_file(tmp_path, "outside.png")
    assert files.prune(A, draft.id, referenced_paths(draft) | {outside}) == 1
    assert not gone.exists() and kept.exists() and cand.exists() and upload.exists() and outside.exists()
    assert files.prune(A, draft.id, set()) == 3
    assert files.prune(A, "ffff", set()) == 0  # no folder yet: nothing to do


def test_store_delete_and_files_remove_leave_nothing(store, files, tmp_path):
    draft = make_draft("text", images=1)
    path = files.adopt(A, draft.id, image_file(tmp_path), "caption")
    draft.blocks[0].image = ArticleImage(str(path), "caption", "upload")
    store.save(A, draft)
    other = make_draft("B keeps theirs")
    other_path = files.adopt(B, other.id, image_file(tmp_path), "caption")
    assert store.delete(A, draft.id) is True
    files.remove(A, draft.id)
    files.remove(A, draft.id)  # twice is fine
    assert store.count(A) == 0 and not path.exists()
    assert [p.name for p in files.root.iterdir()] == [other_path.parent.parent.name]
    assert other_path.read_bytes() == PNG


# -- status and the start-up sweep ----------------------------------------------------------------


def test_status_and_step_round_trip_and_are_listed(store):
    draft = make_draft()
    draft.status, draft.step = "writing", "write"
    store.save(A, draft)
    assert store.list(A)[0].status == "writing" and store.list(A)[0].blocks == 0
    assert (store.load(A, draft.id).status, store.load(A, draft.id).step) == ("writing", "write")
    assert store.exists(A, draft.id) and not store.exists(B, draft.id)
    assert store.keys() == {(A, draft.id)}


def test_a_version_1_store_is_migrated_and_its_rows_still_load(tmp_path):
    path = tmp_path / "drafts.db"
    old = make_draft("legacy text", images=1)
    data = old.to_dict()
    del data["status"], data["step"]
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE drafts (user_id TEXT NOT NULL, id TEXT NOT NULL, title TEXT NOT NULL DEFAULT '',"
                     " created REAL NOT NULL, updated REAL NOT NULL, block_count INTEGER NOT NULL DEFAULT 0,"
                     " image_count INTEGER NOT NULL DEFAULT 0, data TEXT NOT NULL, PRIMARY KEY (user_id, id))")
        conn.execute("INSERT INTO drafts VALUES (?, ?, 't', 1, 2, 1, 1, ?)", (A, old.id, json.dumps(data)))
        conn.execute("PRAGMA user_version = 1")
    store = DraftStore(path)
    assert store.list(A)[0].status == ""
    loaded = store.load(A, old.id)
    assert loaded.status == "" and loaded.blocks[0].text == "legacy text"
    loaded.status = "done"
    store.save(A, loaded)
    assert store.list(A)[0].status == "done"


def _age(path: Path, seconds: float) -> None:
    past = time.time() - seconds
    os.utime(path, (past, past), follow_symlinks=False)


def test_sweep_removes_old_orphans_and_keeps_fresh_and_owned_folders(store, files, tmp_path):
    owned = files.adopt(A, "aa11", image_file(tmp_path), "owned").parent
    orphan = files.adopt(A, "bb22", image_file(tmp_path), "orphan").parent
    fresh = files.adopt(B, "cc33", image_file(tmp_path), "fresh").parent
    lone_user = files.adopt(B, "dd44", image_file(tmp_path), "lone").parent
    for folder in (owned, orphan, lone_user):
        _age(folder, 3600)
    unowned_file = owned / "not-referenced.png"  # files a draft no longer names are not the sweep's business
    unowned_file.write_bytes(PNG)
    _age(owned, 3600)
    removed = files.sweep({(A, "aa11")}, grace_s=600)
    assert removed == 2 and not orphan.exists() and not lone_user.exists()
    assert owned.is_dir() and unowned_file.exists() and fresh.is_dir()


def test_sweep_never_follows_links_and_keeps_what_is_not_its_layout(files, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("keep")
    user_dir = files.folder(A, "aa11").parent
    (user_dir / "ee55").symlink_to(outside, target_is_directory=True)  # named like a draft folder
    (files.root / ("f" * 32)).symlink_to(outside, target_is_directory=True)  # named like a user folder
    notes = files.root / "notes"  # not a name this layout makes
    notes.mkdir()
    inner = files.adopt(A, "ab12", image_file(tmp_path), "x").parent
    (inner / "link").symlink_to(outside, target_is_directory=True)  # inside an orphan: unlinked, not followed
    for path in (user_dir / "ee55", files.root / ("f" * 32), notes, inner, user_dir / "aa11"):
        _age(path, 3600)
    assert files.sweep(set(), grace_s=600) == 2  # aa11 and ab12, real folders of the layout
    assert (outside / "precious.txt").read_text() == "keep"
    assert (user_dir / "ee55").is_symlink() and (files.root / ("f" * 32)).is_symlink() and notes.is_dir()


def test_services_sweep_at_start_and_leave_an_unreadable_store_alone(tmp_path, scripted_engine):
    from studio.config import load_config
    from studio.services import build_services
    from tests.support.apps import write_config

    cfg = load_config(write_config(tmp_path))
    data = tmp_path / "data"
    files = DraftFiles(data / "drafts")
    orphan = files.adopt(A, "aa11", image_file(tmp_path), "x").parent
    _age(orphan, 3600)
    (data / "drafts.db").write_bytes(b"not a database" * 100)
    build_services(cfg, data)
    assert orphan.is_dir()  # without its rows, nothing can be called an orphan
    (data / "drafts.db").unlink()
    build_services(cfg, data)
    assert not orphan.exists()
