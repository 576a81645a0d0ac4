"""The article task stores its draft as it goes: the row before the model is asked, the streamed text
while it streams, every step, and how it ended. Real SQLite and real folders; the scripted engine (no
delay), told the pipeline's replies in order, is wrapped to look at the store each time it yields a word."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from PIL import Image

from studio.config import load_config
from studio.core.article import ArticleBlock, ArticleParams, ArticleSession
from studio.core.types import TextDelta
from studio.errors import StudioError
from studio.services import Services
from studio.store import DraftFiles, DraftStore
from studio.tasks import article, article_edit, turn
from tests.support.engine_calls import OnePool
from tests.support.apps import write_config
from tests.support.scripted import ARTICLE, ARTICLE_TEXT, Script, ScriptedEngine

USER = "user-a"


class Watching:
    """The scripted engine, noting the stored draft (or None) before each word it yields."""

    accepts_images = False

    def __init__(self, store: DraftStore, fail_at: int | None = None) -> None:
        self.inner, self.store, self.fail_at = ScriptedEngine(Script(delay=0)), store, fail_at
        self.seen: list = []
        self.calls = 0

    def enqueue(self, *replies):
        self.inner.enqueue(*replies)

    def prepare(self, messages, params, **kwargs):
        return self.inner.prepare(messages, params, **kwargs)

    def stream(self, prepared, cancel):
        self.calls += 1
        for i, delta in enumerate(self.inner.stream(prepared, cancel)):
            listed = self.store.list(USER)
            self.seen.append((self.calls, self.store.load(USER, listed[0].id) if listed else None))
            if self.fail_at is not None and i == self.fail_at:
                yield TextDelta(finish_reason="error", error="the GPU fell over")
                return
            yield delta

    def info(self):
        return self.inner.info()


class Adopting(DraftFiles):
    """DraftFiles that notes, for each adopted file, whether the draft's row existed at that moment."""

    def __init__(self, root: Path, store: DraftStore) -> None:
        super().__init__(root)
        self.store, self.row_existed = store, []

    def adopt(self, user_id, draft_id, src, stem_hint):
        self.row_existed.append(self.store.exists(user_id, draft_id))
        return super().adopt(user_id, draft_id, src, stem_hint)


@pytest.fixture
def services(tmp_path, scripted_engine):
    cfg = load_config(write_config(tmp_path))
    drafts = DraftStore(tmp_path / "data" / "drafts.db")
    svc = Services(cfg, engines=None, store=None, data_dir=tmp_path / "data", drafts=drafts,
                   draft_files=Adopting(tmp_path / "data" / "drafts", drafts))
    svc.engines = OnePool(Watching(drafts))
    return svc


@pytest.fixture
def upload(tmp_path) -> str:
    path = tmp_path / "upload" / "my cat.png"
    path.parent.mkdir()
    Image.new("RGB", (32, 24), (200, 100, 0)).save(path)
    return str(path)


def write(services, session, uploads=(), cancel=None, close_after=None, **params):
    """Run the pipeline to its end (or close it after `close_after` events); the events seen."""
    gen = article.run(services, USER, session, "A lazy afternoon", "cats and coffee",
                      ArticleParams(**{"image_count": None, **params}), list(uploads), cancel)
    events = []
    for event in gen:
        events.append(event)
        if close_after is not None and len(events) >= close_after:
            gen.close()
            break
    return events


def stored(services, session):
    return services.drafts.load(USER, session.draft.id)


def test_the_row_exists_with_what_was_asked_before_the_model_answers(services, upload):
    session = ArticleSession()
    services.engines.engine.enqueue(*ARTICLE)
    write(services, session, [upload], max_new_tokens=300, seed=7)
    engine = services.engines.engine
    _, first = engine.seen[0]
    assert first is not None and first.id == session.draft.id
    assert (first.status, first.step) == ("writing", "write")
    assert (first.instruction, first.material) == ("A lazy afternoon", "cats and coffee")
    assert first.params.max_new_tokens == 300 and first.params.seed == 7
    assert len(first.uploads) == 1 and Path(first.uploads[0]).is_file()
    assert Path(first.uploads[0]).parent == services.draft_files.folder(USER, session.draft.id)
    assert services.draft_files.row_existed and all(services.draft_files.row_existed)  # uploads and the placed copy


def test_streamed_text_is_checkpointed_while_it_streams(services, monkeypatch):
    monkeypatch.setattr(turn, "CHECKPOINT_S", 0.0)  # every word is due, so no clock is involved
    session = ArticleSession()
    services.engines.engine.enqueue(*ARTICLE)
    write(services, session)
    during_write = [d for call, d in services.engines.engine.seen if call == 1]
    texts = [d.text() for d in during_write]
    assert all(d.status == "writing" for d in during_write)
    assert texts[0] == "" and texts[-1].startswith("Cats sleep a lot.")
    assert all(len(a) <= len(b) for a, b in zip(texts, texts[1:])) and len(set(texts)) > 5
    assert len(during_write[-1].blocks) >= 2  # stored as paragraphs, not one block


def test_checkpoints_are_timed_not_per_word(services, monkeypatch):
    monkeypatch.setattr(turn, "CHECKPOINT_S", 3600.0)
    session = ArticleSession()
    services.engines.engine.enqueue(*ARTICLE)
    write(services, session)
    assert {d.text() for call, d in services.engines.engine.seen if call == 1} == {""}
    assert stored(services, session).text().startswith("Cats sleep a lot.")


def test_every_step_is_stored_and_the_end_is_done(services, upload):
    session = ArticleSession()
    services.engines.engine.enqueue(*ARTICLE)
    write(services, session, [upload])
    steps_seen = [d.step for call, d in services.engines.engine.seen]
    assert {"write", "positions", "captions"} <= set(steps_seen)
    final = stored(services, session)
    assert (final.status, final.step) == ("done", "select")
    assert final == session.draft and final.images()
    assert services.drafts.list(USER)[0].status == "done"
    assert services.engines.engine.inner.queued() == []  # text, positions and the one caption were asked for


def test_a_stop_is_stored_as_stopped_with_the_text_so_far(services):
    session, cancel = ArticleSession(), threading.Event()
    services.engines.engine.enqueue(ARTICLE_TEXT)
    events = []
    gen = article.run(services, USER, session, "Stop me", "", ArticleParams(), [], cancel)
    for event in gen:
        events.append(event)
        if isinstance(event, TextDelta) and "lot." in event.text:
            cancel.set()
    final = stored(services, session)
    assert (final.status, final.step) == ("stopped", "write")
    assert final.text().startswith("Cats sleep a lot") and "happy" not in final.text()


def test_a_closed_generator_is_stored_as_stopped(services):
    session = ArticleSession()
    services.engines.engine.enqueue(ARTICLE_TEXT)
    write(services, session, close_after=5)
    final = stored(services, session)
    assert final.status == "stopped" and final.step == "write"


def test_a_model_failure_is_stored_as_failed_and_still_listed(services):
    services.engines = OnePool(Watching(services.drafts, fail_at=0))
    services.engines.engine.enqueue(ARTICLE_TEXT)
    session = ArticleSession()
    with pytest.raises(StudioError, match="GPU fell over"):
        write(services, session)
    final = stored(services, session)
    assert (final.status, final.step, final.blocks) == ("failed", "write", [])
    assert [s.id for s in services.drafts.list(USER)] == [session.draft.id]


def test_a_failure_shows_as_the_running_steps_failed_with_the_reason(services):
    from studio.tasks.article_model import Step

    services.engines = OnePool(Watching(services.drafts, fail_at=0))
    services.engines.engine.enqueue(ARTICLE_TEXT)
    events = []
    with pytest.raises(StudioError, match="GPU fell over"):
        for event in article.run(services, USER, ArticleSession(), "Fail", "", ArticleParams(), []):
            events.append(event)
    last = [e for e in events if isinstance(e, Step)][-1]
    assert (last.key, last.state, last.detail) == ("write", "failed", "article_d_failed")
    assert "GPU fell over" in last.args["reason"]


def test_a_model_edit_is_stored_before_and_after(services):
    session = ArticleSession()
    services.engines.engine.enqueue(ARTICLE_TEXT, "Rewrited paragraph.")
    write(services, session, image_count=0)
    session.draft.blocks[0].text = "Typed but not yet stored."  # e.g. an edit whose save was lost
    engine = services.engines.engine
    engine.seen.clear()
    list(article_edit.model_edit(services, USER, session, "rewrite", 0))
    during = {d.blocks[0].text for _, d in engine.seen}
    assert during == {"Typed but not yet stored."}  # a crash now leaves the draft as it was before the edit
    assert stored(services, session).blocks[0].text == "Rewrited paragraph."


def test_checkpoint_stores_paragraphs_without_touching_the_session(services):
    session = ArticleSession()
    session.draft.blocks = [ArticleBlock("one\n\ntwo")]
    saver = article.Saver(services, USER, session.draft)
    saver.checkpoint(turn.Reply("one\n\ntwo"))
    assert [b.text for b in stored(services, session).blocks] == ["one", "two"]
    assert [b.text for b in session.draft.blocks] == ["one\n\ntwo"]
