"""Chat is saved as it goes: over real HTTP, mid-stream, and across a `kill -9` of a launched studio."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from studio.ui.i18n import tr
from tests.e2e.helpers import chat, connect, reply_text, wait_for, resume_open
from tests.support.apps import running_app, write_config
from tests.support.studio_process import running_studio

INTERRUPTED_NOTE = tr("en", "reply_interrupted")  # what an API client's transcript shows


@pytest.fixture(scope="module")
def slow_app(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("saving")
    with running_app(write_config(tmp, model_path="script:slow"), tmp / "data") as running:
        yield running


def stored_rows(db: Path, user: str) -> list[dict]:
    """Every conversation of `user` as SQLite holds it right now (read by the test, not the app)."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT data FROM conversations WHERE user_id = ?", (user,)).fetchall()
    return [json.loads(r[0]) for r in rows]


def words_shown(job) -> int:
    outs = job.outputs()
    return len(reply_text(outs[-1][0]).split()) if outs else 0


def test_the_message_and_a_partial_checkpoint_are_stored_while_the_reply_streams(slow_app):
    client, user = connect(slow_app.url)
    job = client.submit("a long story please", api_name="/chat")
    db = slow_app.services.store.db_path
    # The message is there long before the 200-word reply (40 s) ends.
    rows = wait_for(lambda: stored_rows(db, user), "the message in the store")
    assert rows[0]["messages"][0] == {"role": "user", "content": "a long story please"}
    # About every 2 s the reply so far is written, flagged partial.
    row = wait_for(lambda: next((r for r in stored_rows(db, user)
                                 if len(r["messages"]) == 2 and r["messages"][1].get("partial")), None), "a partial checkpoint in the store")
    assert row["messages"][1]["role"] == "assistant" and row["messages"][1]["content"].startswith("w0 w1")
    assert not job.done()
    job.cancel()


def test_undo_of_a_one_turn_chat_removes_it_from_the_listing(tmp_path):
    with running_app(write_config(tmp_path), tmp_path / "data") as app:
        client, user = connect(app.url)
        chat(client, "only turn")
        client.predict(api_name="/new")
        chat(client, "to be undone")
        assert len(app.services.store.list(user)) == 2
        chatbot, box, _ = client.predict(api_name="/undo")
        assert chatbot == [] and box == "to be undone"
        assert [c.title for c in app.services.store.list(user)] == ["only turn"]
        again, _ = connect(app.url, user)
        out = resume_open(again, user)
        assert [label for label, _ in out[1]["choices"]] == ["only turn"]  # no "…" entry left behind
        assert reply_text(out[2]) == "echo: only turn"


# -- a real launch.py process, killed with SIGKILL mid-reply ------------------------------------------


def test_kill_9_mid_reply_then_restart_shows_every_message_and_an_interrupted_reply(tmp_path):
    config = write_config(tmp_path, model_path="script:slow")
    data, log = tmp_path / "data", tmp_path / "launch.log"
    with running_studio(config, data, log) as studio:
        client, user = connect(studio.url)
        _, first = chat(client, "first question", max_new_tokens=3)
        assert reply_text(first[0]) == "w0 w1 w2"
        job = client.submit("second question, a long answer", api_name="/chat")
        wait_for(lambda: words_shown(job) >= 15, "15 words of the reply")  # ~3 s of reply: a checkpoint is on disk
        studio.kill()
    with running_studio(config, data, log) as studio:
        client, same = connect(studio.url, user)
        assert same == user
        chatbot = resume_open(client, user)[2]
        assert [m["role"] for m in chatbot] == ["user", "assistant", "user", "assistant"]
        texts = [reply_text([dict(m, role="assistant")]) for m in chatbot]  # each message's text
        assert texts[0] == "first question" and texts[1] == "w0 w1 w2"
        assert texts[2] == "second question, a long answer"
        assert texts[3].startswith("w0 w1 w2") and INTERRUPTED_NOTE in texts[3]
        assert INTERRUPTED_NOTE not in texts[1]
        # Regenerate shows a complete reply; the interrupted one is kept as version 1.
        chatbot = client.predict(max_new_tokens=4, api_name="/regenerate")[0]
        assert len(chatbot) == 4 and reply_text(chatbot) == "w0 w1 w2 w3\n\n*‹ 2/2 ›*"
