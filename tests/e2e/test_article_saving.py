"""Article drafts are saved as they are written: listed while Write still streams, their text growing,
reopened after a `kill -9` with a notice, and no image folder left without its draft. The scripted
engine's "slowarticle" script streams slowly enough to look at (and kill) the studio mid-write."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest
from gradio_client import handle_file

from studio.core.article import ArticleDraft
from studio.store import DraftStore
from tests.e2e.helpers import connect, wait_for
from tests.support.apps import REPO, running_app, write_config
from tests.support.scripted import ARTICLE_TEXT, scripted
from tests.support.studio_process import StudioProcess

UPLOAD = REPO / "assets" / "gallery" / "astronaut.jpg"
SETTINGS = dict(beams=1, repetition_penalty=1.05, max_new_tokens=200, do_sample=False, seed=-1,
                image_count="0", model_selects=True)


def submit_write(client, title, uploads=()):
    return client.submit(title, "", [handle_file(str(p)) for p in uploads], *SETTINGS.values(),
                         api_name="/article_write")


def stored(store: DraftStore, user: str):
    """The user's newest stored draft, or None."""
    listed = store.list(user)
    return store.load(user, listed[0].id) if listed else None


def writing(store: DraftStore, user: str):
    """The user's newest draft if it is stored as still being written, else None."""
    draft = stored(store, user)
    return draft if getattr(draft, "status", None) == "writing" else None


def orphan_folders(data: Path) -> list[Path]:
    """Draft image folders with no draft row."""
    owned = {(hashlib.sha256(u.encode()).hexdigest()[:32], d) for u, d in DraftStore(data / "drafts.db").keys()}
    root = data / "drafts"
    folders = [d for u in root.iterdir() for d in u.iterdir()] if root.is_dir() else []
    return [d for d in folders if (d.parent.name, d.name) not in owned]


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("article-saving")
    with running_app(write_config(tmp, model_path="script:slowarticle"), tmp / "data") as running:
        yield running


def test_the_draft_is_listed_while_write_streams_and_its_text_grows(app):
    client, user = connect(app.url)
    scripted(app.services).enqueue(ARTICLE_TEXT)
    job = submit_write(client, "A slow afternoon", [UPLOAD])
    # The row is stored before the upload is copied into its folder: wait for both.
    first = wait_for(lambda: (d := writing(app.services.drafts, user)) and d.uploads and d,
                     "the draft row and its upload while Write streams")
    assert first.instruction == "A slow afternoon"
    assert len(first.uploads) == 1 and Path(first.uploads[0]).is_file()  # copied once the row existed
    other, _ = connect(app.url, token=user)  # the same user in a second tab, mid-write
    listed = other.predict(api_name="/article_drafts")["choices"]
    assert [c[1] for c in listed] == [first.id] and "unfinished" in listed[0][0]
    lengths = set()

    def grew():
        draft = stored(app.services.drafts, user)
        assert draft.status == "writing", "the write ended before its text was seen growing"
        if draft.text():
            lengths.add(len(draft.text()))
        return len(lengths) >= 2

    wait_for(grew, "the stored text to grow", step=0.05)
    job.result()
    final = stored(app.services.drafts, user)
    assert final.status == "done" and final.text().startswith("Cats sleep a lot.")
    assert max(lengths) < len(final.text())
    assert "unfinished" not in other.predict(api_name="/article_drafts")["choices"][0][0]


def test_a_draft_without_paragraphs_is_listed_opened_renamed_and_deleted(app, tmp_path):
    client, user = connect(app.url)
    draft = ArticleDraft(instruction="Nothing written yet", title="Nothing written yet", status="writing",
                         step="start")
    app.services.drafts.save(user, draft)
    picture = app.services.draft_files.adopt(user, draft.id, UPLOAD, "up")
    assert client.predict(api_name="/article_drafts")["choices"][0][1] == draft.id  # the local user's newest
    out = client.predict(draft.id, api_name="/article_open")
    assert "interrupted" in out[1] and "no text had been written yet" in out[1]
    assert "Nothing written yet" in out[2]
    client.predict("Renamed empty draft", api_name="/article_rename")
    assert app.services.drafts.list(user)[0].title == "Renamed empty draft"
    client.predict(True, api_name="/article_delete")
    assert draft.id not in [d.id for d in app.services.drafts.list(user)] and not picture.parent.exists()


# -- a real process, killed ----------------------------------------------------------------------


def test_kill_9_mid_write_and_mid_edit_loses_nothing_stored(tmp_path):
    # Each process queues its replies at load: the article's text, then (after the restart) the rewrite.
    config = write_config(tmp_path, model_path="script:slowarticle:article_text")
    config_edit = write_config(tmp_path, model_path="script:slowarticle:rewrite")
    data, log = tmp_path / "data", tmp_path / "studio.log"
    store = DraftStore(data / "drafts.db")
    studio = StudioProcess(config, data, log)
    studio.start()
    try:
        client, user = connect(studio.url)
        submit_write(client, "Written when the power went out", [UPLOAD])
        before = wait_for(lambda: (d := writing(store, user)) and d.text() and d, "stored text of the draft being written", step=0.05)
        studio.kill()
    finally:
        studio.kill()
    written = store.load(user, before.id)  # a checkpoint may have landed between the look and the kill
    assert written.status == "writing" and written.text() and Path(written.uploads[0]).is_file()
    assert orphan_folders(data) == []

    studio = StudioProcess(config_edit, data, log)
    studio.start()
    try:
        client, same = connect(studio.url, token=user)
        listed = client.predict(api_name="/article_drafts")["choices"]
        assert [c[1] for c in listed] == [before.id] and "unfinished" in listed[0][0]
        out = client.predict(before.id, api_name="/article_open")
        assert "interrupted at step “Write the text”" in out[1] and "Write again" in out[1]
        assert written.blocks[0].text in out[2]
        updated = written.updated
        client.submit(0, "", api_name="/article_rewrite")
        # The edit stores the draft before the model runs; the kill lands while the model is still thinking.
        wait_for(lambda: store.load(user, before.id).updated > updated, "the draft stored before the edit", step=0.02)
        studio.kill()
    finally:
        studio.kill()

    studio = StudioProcess(config_edit, data, log)
    studio.start()
    try:
        client, _ = connect(studio.url, token=user)
        assert [c[1] for c in client.predict(api_name="/article_drafts")["choices"]] == [before.id]
        out = client.predict(before.id, api_name="/article_open")
        reopened = store.load(user, before.id)
        assert reopened.blocks == written.blocks and reopened.blocks[0].text != "Rewrited paragraph."
        assert written.blocks[0].text in out[2] and "interrupted" in out[1]
    finally:
        studio.kill()
    assert orphan_folders(data) == []
    with sqlite3.connect(data / "drafts.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
