"""`kill -9` at random moments while chat replies stream, articles are written and articles are
edited; each time the studio is restarted at once on the same data dir and port, and everything
that was sent is still there: every chat message, every draft (reopenable), a sound database, no
image folder without its draft."""

from __future__ import annotations

import random
import sqlite3
import time

import pytest
from gradio_client import Client

from studio.store.conversations import ConversationStore
from studio.store.drafts import DraftStore
from studio.ui.i18n import tr
from tests.support.apps import write_config
from tests.support.studio_process import StudioProcess
from tests.support.waits import wait_until

INTERRUPTED_NOTE = tr("en", "reply_interrupted")  # what an API client's transcript shows

pytestmark = pytest.mark.slow

TOKEN = "c0ffee" + "0" * 26  # one browser's key across every restart
KILLS = 12
SEED = 20261201


def connect(url: str) -> tuple[Client, str]:
    client = Client(url, verbose=False)
    return client, client.predict(TOKEN, api_name="/resume")[0]


def started(job, what: str) -> None:
    """Wait until the server has taken the request (its first update arrived)."""
    wait_until(lambda: job.outputs() or job.done(), what)
    if job.done() and not job.outputs():
        job.result()  # raises the server's error, if that is why it ended


def article_args(title: str) -> tuple:
    # instruction, material, uploads, beams, repetition penalty, max new tokens, sample, seed, images, vision picks
    return (title, "", [], 1, 1.1, 400, False, -1, "auto", False)


def drafts_with_text(drafts: DraftStore, user: str) -> list[str]:
    return [s.id for s in drafts.list(user) if s.blocks]


def check_everything_is_there(studio: StudioProcess, user: str, sent: list[str], titles: list[str]) -> tuple[int, int]:
    """Assert nothing sent was lost; returns (interrupted replies, interrupted drafts) seen."""
    data = studio.data_dir
    for db in ("studio.db", "drafts.db"):
        if (data / db).exists():
            with sqlite3.connect(data / db) as conn:
                assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok", db
    store = ConversationStore(data / "studio.db")
    stored = [m.text for s in store.list(user) for m in store.load(user, s.id).messages if m.role == "user"]
    missing = [text for text in sent if text not in stored]
    assert not missing, f"messages lost after kill -9: {missing}"
    for s in store.list(user):
        assert all(m.text for m in store.load(user, s.id).messages if m.role == "assistant"), "empty reply saved"
    drafts = DraftStore(data / "drafts.db")
    listed = drafts.list(user)
    rows = {s.id for s in listed}
    stored_titles = [drafts.load(user, d).instruction for d in rows]
    lost = [t for t in titles if t not in stored_titles]
    assert not lost, f"article drafts lost after kill -9: {lost}"
    folders = [p for user_dir in (data / "drafts").glob("*") if user_dir.is_dir() for p in user_dir.iterdir()]
    orphans = [p.name for p in folders if p.is_dir() and p.name not in rows]
    assert not orphans, f"image folders with no draft: {orphans}"
    client, _ = connect(studio.url)
    client.predict(api_name="/article_drafts")  # the list a page shows on load
    for draft_id in rows:  # every draft reopens through the UI's own endpoint
        client.predict(draft_id, api_name="/article_open")
    for s in store.list(user):  # every conversation opens; a reply cut by the kill is labelled interrupted
        chatbot = client.predict(s.id, api_name="/select")[1]
        partial = [m for m in store.load(user, s.id).messages if m.role == "assistant" and m.partial]
        assert sum(INTERRUPTED_NOTE in str(m["content"]) for m in chatbot) == len(partial)
    cut = [d.id for d in listed if drafts.load(user, d.id).status == "writing"]
    for draft_id in cut:  # a draft whose writing was cut says so when it reopens
        assert "interrupted" in client.predict(draft_id, api_name="/article_open")[1]
    replies = sum(m.partial for s in store.list(user) for m in store.load(user, s.id).messages)
    return replies, len(cut)


def test_kill_9_at_random_moments_loses_nothing_that_was_sent(tmp_path):
    rng = random.Random(SEED)
    config = write_config(tmp_path, model_path="script:slow")
    studio = StudioProcess(config, tmp_path / "data", tmp_path / "studio.log")
    sent: list[str] = []
    titles: list[str] = []
    restarts: list[float] = []
    studio.start()
    try:
        kinds = ["chat", "article_write", "article_edit"] * (KILLS // 3 + 1)
        for cycle, kind in enumerate(kinds[:KILLS]):
            client, user = connect(studio.url)
            if kind == "article_edit" and not drafts_with_text(DraftStore(studio.data_dir / "drafts.db"), user):
                kind = "article_write"  # nothing to edit yet
            if kind == "chat":
                text = f"message {cycle}: tell me a long story"
                job = client.submit(text, api_name="/chat")
                sent.append(text)
                started(job, "the chat message to reach the studio")
            elif kind == "article_write":
                title = f"Article {cycle} about tea"
                job = client.submit(*article_args(title), api_name="/article_write")
                titles.append(title)
                started(job, "Write to start")
            else:
                draft_id = rng.choice(drafts_with_text(DraftStore(studio.data_dir / "drafts.db"), user))
                client.predict(api_name="/article_drafts")
                client.predict(draft_id, api_name="/article_open")
                job = client.submit(0, "", api_name="/article_rewrite")
                started(job, "the rewrite to start")
            time.sleep(rng.uniform(0.0, 5.0))  # somewhere in the reply, the article's steps or the edit
            studio.kill()
            restarts.append(studio.start())  # at once, same port and data dir
            seen = check_everything_is_there(studio, user, sent, titles)
    finally:
        studio.kill()  # also when an assertion failed: no studio is left running
    print(f"{KILLS} kills; restart to serving: {min(restarts):.1f}–{max(restarts):.1f} s; "
          f"interrupted replies {seen[0]}, interrupted drafts {seen[1]}")
    assert len(sent) >= 3 and len(titles) >= 3
