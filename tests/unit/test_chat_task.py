"""The chat use case on the scripted engine: trimming, saving on close, undo/regenerate rules."""

from __future__ import annotations

import threading

import pytest

from studio.config import load_config
from studio.core.types import GenParams, Message, Notice, TextDelta
from studio.errors import InputError
from studio.services import build_services
from studio.tasks import chat, turn
from tests.support.apps import write_config
from tests.support.engine_calls import prompt_tokens
from tests.support.scripted import Script, ScriptedEngine

pytestmark = pytest.mark.usefixtures("scripted_engine")


@pytest.fixture
def services(tmp_path):
    s = build_services(load_config(write_config(tmp_path, model_path="script:slow")), tmp_path / "data")
    assert s.engines.wait("chat", 30).state == "ready"
    yield s
    s.close()


def test_trim_drops_whole_exchanges_and_keeps_system():
    engine = ScriptedEngine(Script(delay=0))  # 512-token window; a message costs words + 4
    msgs = [Message.of("system", "be brief")]
    for i in range(6):
        msgs += [Message.of("user", "word " * 60), Message.of("assistant", "reply " * 60)]
    msgs.append(Message.of("user", "last question"))
    prepared = engine.prepare(msgs, GenParams(max_new_tokens=128), fit="trim")
    kept, dropped = prepared.messages, prepared.dropped
    assert kept[0].role == "system" and kept[-1].text == "last question"
    assert kept[1].role == "user" and dropped % 2 == 0 and dropped > 0
    assert prompt_tokens(engine, kept) <= 512 - 128
    assert prepared.prompt_tokens == prompt_tokens(engine, kept) and prepared.params.max_new_tokens == 128
    assert f"{dropped} earliest message(s) left out" in prepared.notices[0].text


def test_single_message_too_long_is_refused_with_numbers():
    engine = ScriptedEngine(Script(delay=0))
    with pytest.raises(InputError, match=r"takes 6\d\d tokens; this model's context window is 512"):
        engine.prepare([Message.of("user", "w " * 600)], GenParams(max_new_tokens=64), fit="trim")


def test_closing_mid_reply_saves_the_partial_turn(services):
    session = chat.new_session(services)
    events = chat.send(services, "u1", session, "go")
    texts = []
    for ev in events:
        if isinstance(ev, TextDelta) and ev.text:
            texts.append(ev.text)
        if len(texts) == 3:
            break
    events.close()  # what Gradio does on Stop or a closed tab
    saved = services.store.load("u1", session.id)
    assert [m.role for m in saved.messages] == ["user", "assistant"]
    assert saved.messages[1].text == "".join(texts)


def test_empty_and_oversized_messages(services):
    session = chat.new_session(services)
    with pytest.raises(InputError, match="empty"):
        list(chat.send(services, "u1", session, " \n "))
    with pytest.raises(InputError, match="limit is 100,000"):
        list(chat.send(services, "u1", session, "x" * 100_001))
    with pytest.raises(InputError, match="nothing to undo"):
        chat.undo(services, "u1", session)
    with pytest.raises(InputError, match="nothing to regenerate"):
        list(chat.regenerate(services, "u1", session))
    assert session.messages == []


def test_loading_notice_then_reply(tmp_path):
    s = build_services(load_config(write_config(tmp_path, model_path="script:slowload")), tmp_path / "data")
    try:
        events = list(chat.send(s, "u1", chat.new_session(s), "hi there"))
        assert isinstance(events[0], Notice) and events[0].text.startswith("Waiting for the model to load")
        assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "echo: hi there"
    finally:
        s.close()


def _stored(services, user, conv_id):
    """The raw JSON of one stored conversation, as SQLite holds it (the partial flag included)."""
    import json
    import sqlite3

    with sqlite3.connect(services.store.db_path) as conn:
        row = conn.execute("SELECT data FROM conversations WHERE user_id = ? AND id = ?", (user, conv_id)).fetchone()
    return json.loads(row[0]) if row else None


def test_the_message_is_stored_before_the_reply_arrives(services):
    session = chat.new_session(services)
    events = chat.send(services, "u1", session, "remember me")
    next(events)  # the first word: the reply is still streaming
    stored = services.store.load("u1", session.id)
    assert [(m.role, m.text) for m in stored.messages] == [("user", "remember me")]
    events.close()


def test_a_streaming_reply_is_checkpointed_as_partial(services, monkeypatch):
    monkeypatch.setattr(turn, "CHECKPOINT_S", 0.0)  # checkpoint after every word
    session = chat.new_session(services)
    events = chat.send(services, "u1", session, "go")
    shown = "".join(next(events).text for _ in range(3))
    row = _stored(services, "u1", session.id)
    stats = row["messages"][-1].pop("meta")["stats"]
    assert row["messages"][-1] == {"role": "assistant", "content": shown, "partial": True}
    assert shown.startswith("w0 w1")
    # What is known mid-reply travels with the checkpoint; the engine's counts come with its last delta.
    assert stats["prompt_tokens"] > 0 and stats["first_token_s"] is not None and stats["finish_reason"] is None
    assert stats["completion_tokens"] is None and stats["tokens_per_s"] is None
    events.close()  # stopped by the user: kept as it stands, no longer partial
    row = _stored(services, "u1", session.id)
    assert row["messages"][-1]["role"] == "assistant" and "partial" not in row["messages"][-1]
    assert services.store.load("u1", session.id).messages[-1].partial is False


def test_checkpoints_follow_the_clock_not_every_token(services, monkeypatch):
    saves = []
    real_save = services.store.save
    monkeypatch.setattr(services.store, "save", lambda user, s: (saves.append(len(s.messages)), real_save(user, s)))
    session = chat.new_session(services)
    events = chat.send(services, "u1", session, "go")
    words = [next(events) for _ in range(15)]  # ~3 s of the slow script (0.2 s a word)
    events.close()
    assert len(words) == 15
    # The user message, one or two checkpoints (every 2 s), the final save: far fewer than 15 words.
    assert saves[0] == 1 and 3 <= len(saves) <= 5 and saves[-1] == 2


def test_stop_before_the_first_word_keeps_the_message_and_no_empty_reply(services):
    session = chat.new_session(services)
    cancel = threading.Event()
    cancel.set()
    events = list(chat.send(services, "u1", session, "are you there", cancel))
    assert events[-1].finish_reason == "cancelled"
    assert [(m.role, m.text) for m in session.messages] == [("user", "are you there")]
    assert [m.role for m in services.store.load("u1", session.id).messages] == ["user"]


def test_regenerate_then_stop_never_saves_an_empty_reply(services):
    session = chat.new_session(services)
    session.params = session.params.model_copy(update={"max_new_tokens": 3})
    list(chat.send(services, "u1", session, "go"))
    assert services.store.load("u1", session.id).messages[-1].text == "w0 w1 w2"
    cancel = threading.Event()
    events = chat.regenerate(services, "u1", session, cancel)
    cancel.set()  # Stop before the first word of the new reply
    list(events)
    stored = services.store.load("u1", session.id)
    # Nothing new was written: the earlier reply is shown again, and no empty version is kept.
    assert [(m.role, m.text) for m in stored.messages] == [("user", "go"), ("assistant", "w0 w1 w2")]
    assert stored.forks == {}
    assert all(m.text for m in _session_messages(_stored(services, "u1", session.id)))
    regen = list(chat.regenerate(services, "u1", session))  # ready to regenerate
    assert "".join(e.text for e in regen if isinstance(e, TextDelta)) == "w0 w1 w2"


def _session_messages(row):
    return [Message.of(m["role"], m["content"]) for m in row["messages"]]


def test_a_reply_cut_by_an_engine_error_stays_partial(services, monkeypatch):
    engine = services.engines.get("chat")

    def failing(prepared, cancel):
        yield TextDelta("half a")
        yield TextDelta(" reply")
        raise RuntimeError("device lost")

    monkeypatch.setattr(engine, "stream", failing)
    session = chat.new_session(services)
    with pytest.raises(RuntimeError):
        list(chat.send(services, "u1", session, "go"))
    stored = services.store.load("u1", session.id)
    assert stored.messages[-1].text == "half a reply" and stored.messages[-1].partial
    monkeypatch.undo()
    session.params = session.params.model_copy(update={"max_new_tokens": 2})
    list(chat.regenerate(services, "u1", session))
    last = services.store.load("u1", session.id).messages[-1]
    assert last.text == "w0 w1" and not last.partial


def test_undo_or_clear_that_empties_a_conversation_removes_it(services):
    session = chat.new_session(services)
    session.params = session.params.model_copy(update={"max_new_tokens": 2})
    list(chat.send(services, "u1", session, "one turn"))
    assert services.store.count("u1") == 1
    assert chat.undo(services, "u1", session) == "one turn"
    assert services.store.list("u1") == []
    list(chat.send(services, "u1", session, "again"))
    list(chat.send(services, "u1", session, "twice"))
    chat.undo(services, "u1", session)  # one exchange left: still stored
    assert [m.text for m in services.store.load("u1", session.id).messages] == ["again", "w0 w1"]
    chat.clear(services, "u1", session)
    assert services.store.list("u1") == [] and session.messages == []


def test_ctrl_c_in_the_terminal_keeps_the_reply_as_it_stands(services):
    session = chat.new_session(services)
    events = chat.send(services, "u1", session, "go")
    next(events), next(events)
    try:
        events.throw(KeyboardInterrupt)
    except KeyboardInterrupt:
        pass
    last = services.store.load("u1", session.id).messages[-1]
    assert last.text == "w0 w1" and not last.partial


def test_stop_while_the_model_loads_keeps_the_message(tmp_path):
    s = build_services(load_config(write_config(tmp_path, model_path="script:slowload")), tmp_path / "data")
    try:
        session, cancel = chat.new_session(s), threading.Event()
        events = chat.send(s, "u1", session, "sent during start-up", cancel)
        assert next(events).text.startswith("Waiting for the model to load")
        cancel.set()  # Stop: no reply is coming, and the wait ends with the next poll
        assert [e for e in events if isinstance(e, TextDelta)] == []
        assert [m.text for m in s.store.load("u1", session.id).messages] == ["sent during start-up"]
    finally:
        s.close()


def test_a_message_left_without_a_reply_is_kept_and_read_with_the_next(services, monkeypatch):
    session = chat.new_session(services)
    stopped = threading.Event()
    stopped.set()  # Stop before the first word (a crash there leaves the same stored session)
    list(chat.send(services, "u1", session, "first, never answered", stopped))
    seen = []
    engine = services.engines.get("chat")
    original = engine.stream

    def recording(prepared, cancel):
        seen.append([(m.role, m.text) for m in prepared.messages])
        return original(prepared, cancel)

    monkeypatch.setattr(engine, "stream", recording)
    session.params = session.params.model_copy(update={"max_new_tokens": 2})
    list(chat.send(services, "u1", session, "second"))
    saved = services.store.load("u1", session.id)
    assert [(m.role, m.text) for m in saved.messages[:2]] == [("user", "first, never answered"), ("user", "second")]
    assert seen[-1][-1] == ("user", "first, never answered\n\nsecond")  # one turn for the template
    assert [role for role, _ in seen[-1]].count("user") == 1


def test_merge_user_runs_keeps_alternating_turns_as_they_are():
    turns = [Message.of("system", "s"), Message.of("user", "a"), Message.of("assistant", "b"), Message.of("user", "c")]
    assert chat.merge_user_runs(turns) == turns
