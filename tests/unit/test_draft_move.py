"""Moving a browser's article drafts (rows and image folders) to another user, against real SQLite and
real folders, including a move stopped between its steps and run again."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest

from studio.core.article import ArticleBlock, ArticleDraft, ArticleImage, Candidate
from studio.errors import StudioError
from studio.services import Services
from studio.store import DraftFiles, DraftStore, PresetStore
from studio.store.draft_move import move_drafts
from studio.tasks.users import adopt_browser_data

OLD, NEW = "0123456789abcdef0123456789abcdef", "local:tester"
PNG = b"\x89PNG\r\n\x1a\n" + b"fake image body"
GALLERY = "/opt/gallery/cat.png"  # outside the draft's folder: never rewritten


@pytest.fixture
def store(tmp_path):
    return DraftStore(tmp_path / "data" / "drafts.db")


@pytest.fixture
def files(tmp_path):
    return DraftFiles(tmp_path / "data" / "drafts")


def old_draft(store: DraftStore, files: DraftFiles, tmp_path: Path, title: str = "Old browser's draft") -> ArticleDraft:
    """A draft stored the way the per-browser code did: its row and its pictures under the browser's key."""
    draft = ArticleDraft(title=title, instruction=title)
    store.save(OLD, draft)  # the row first, as the article task does
    src = tmp_path / f"{title[:3]}.png"
    src.write_bytes(PNG + title.encode())
    upload = files.adopt(OLD, draft.id, src, "upload")
    placed = files.adopt(OLD, draft.id, src, "placed")
    cands = [Candidate(str(placed), "upload", 0.9, "mine"), Candidate(GALLERY, "gallery", 0.5, "cat")]
    draft.blocks = [ArticleBlock("A paragraph.", ArticleImage(str(placed), "mine", "upload", cands))]
    draft.uploads = [str(upload)]
    store.save(OLD, draft)
    return draft


def paths_of(draft: ArticleDraft) -> list[str]:
    image = draft.blocks[0].image
    return [*draft.uploads, image.path, *(c.path for c in image.candidates)]


def assert_moved(store, files, draft):
    """The draft is NEW's, its pictures in NEW's folder (readable), and nothing is left under OLD."""
    moved = store.load(NEW, draft.id)
    folder = files.folder(NEW, draft.id)
    assert moved.title == draft.title and [s.id for s in store.list(OLD)] == []
    for path in paths_of(moved)[:-1]:
        assert Path(path).parent == folder and Path(path).read_bytes().startswith(PNG)
    assert paths_of(moved)[-1] == GALLERY
    assert files.draft_ids(OLD) == [] and not (files.root / files._path(OLD, draft.id).parent.name).exists()


def test_a_draft_moves_with_its_pictures_and_paths_rewritten(store, files, tmp_path):
    draft = old_draft(store, files, tmp_path)
    other = old_draft(store, files, tmp_path, title="Second one")
    assert move_drafts(store, files, OLD, NEW) == 2
    assert_moved(store, files, draft)
    assert_moved(store, files, other)
    assert move_drafts(store, files, OLD, NEW) == 0 and move_drafts(store, files, NEW, NEW) == 0


def test_a_draft_id_the_new_user_already_has_is_neither_overwritten_nor_lost(store, files, tmp_path):
    draft = old_draft(store, files, tmp_path)
    mine = ArticleDraft(id=draft.id, title="The local user's own")
    store.save(NEW, mine)
    assert move_drafts(store, files, OLD, NEW) == 0
    assert store.load(NEW, draft.id).title == "The local user's own"
    kept = store.load(OLD, draft.id)  # still under the browser's key, pictures and all
    assert all(Path(p).is_file() for p in paths_of(kept)[:-1])


def test_stopped_after_copying_loses_nothing_and_a_retry_finishes(store, files, tmp_path, monkeypatch):
    draft = old_draft(store, files, tmp_path)

    def crash(*args, **kwargs):
        raise StudioError("the power went out", "")

    monkeypatch.setattr(DraftStore, "transfer", crash)
    with pytest.raises(StudioError):
        move_drafts(store, files, OLD, NEW)
    left = store.load(OLD, draft.id)  # the row still points at the old pictures, which are all there
    assert all(Path(p).is_file() for p in paths_of(left)[:-1]) and store.list(NEW) == []
    assert files.draft_ids(NEW) == [draft.id]  # the copies made before the crash
    monkeypatch.undo()
    assert move_drafts(store, files, OLD, NEW) == 1
    assert_moved(store, files, draft)


def test_stopped_after_moving_the_row_a_retry_removes_the_old_folder(store, files, tmp_path, monkeypatch):
    draft = old_draft(store, files, tmp_path)

    def crash(*args, **kwargs):
        raise StudioError("the power went out", "")

    monkeypatch.setattr(DraftFiles, "remove", crash)
    with pytest.raises(StudioError):
        move_drafts(store, files, OLD, NEW)
    moved = store.load(NEW, draft.id)  # the row moved, pointing at the copies
    assert all(Path(p).is_file() for p in paths_of(moved)[:-1]) and files.draft_ids(OLD) == [draft.id]
    monkeypatch.undo()
    assert move_drafts(store, files, OLD, NEW) == 0  # nothing left to move; the old folder goes
    assert_moved(store, files, draft)


def test_a_half_copied_file_is_never_taken_for_a_whole_one(store, files, tmp_path):
    draft = old_draft(store, files, tmp_path)
    name = Path(draft.uploads[0]).name
    (files.folder(NEW, draft.id) / name).write_bytes(PNG[:3])  # a copy cut short
    assert move_drafts(store, files, OLD, NEW) == 1
    assert Path(store.load(NEW, draft.id).uploads[0]).read_bytes() == Path(tmp_path / "Old.png").read_bytes()


def test_a_damaged_row_stays_with_its_pictures(store, files, tmp_path, caplog):
    draft = old_draft(store, files, tmp_path)
    with sqlite3.connect(store.db_path) as db:
        db.execute("UPDATE drafts SET data = '{not json' WHERE id = ?", (draft.id,))
    with caplog.at_level(logging.WARNING):
        assert move_drafts(store, files, OLD, NEW) == 0
    assert "cannot be read" in caplog.text and store.ids(OLD) == [draft.id] and files.draft_ids(OLD) == [draft.id]


class ReadOnlyDraftStore(DraftStore):
    """The same file opened read-only by SQLite itself: every write fails as on a read-only disk."""

    def _connect(self, target, uri, factory=sqlite3.Connection, **kw):
        return super()._connect(f"{Path(target).resolve().as_uri()}?mode=ro", uri=True, factory=factory, **kw)


def test_a_read_only_store_is_a_warning_and_the_rest_still_moves(store, files, tmp_path, caplog):
    draft = old_draft(store, files, tmp_path)
    presets = PresetStore(tmp_path / "data" / "presets.db")
    presets.save_named(OLD, "Concise", "Answer in one line.")
    services = Services(config=None, engines=None, store=None, data_dir=tmp_path,
                        drafts=ReadOnlyDraftStore(store.db_path), draft_files=files, presets=presets)
    with caplog.at_level(logging.WARNING):
        assert adopt_browser_data(services, OLD, NEW) == 1  # the preset moved
    assert "Could not move a browser's article drafts" in caplog.text
    assert [p.title for p in presets.list(NEW)] == ["Concise"] and presets.list(OLD) == []
    kept = store.load(OLD, draft.id)  # nothing lost: the row and its pictures are where they were
    assert all(Path(p).is_file() for p in paths_of(kept)[:-1])
    services.drafts = store  # the disk is writable again: the next page load finishes the move
    assert adopt_browser_data(services, OLD, NEW) == 1
    assert_moved(store, files, draft)
