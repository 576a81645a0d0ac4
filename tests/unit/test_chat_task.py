"""The chat use case on the scripted engine: trimming, saving on close, undo/regenerate rules."""

from __future__ import annotations

import pytest

import tests.support.scripted  # noqa: F401  registers the scripted engine
from studio.config import load_config
from studio.core.types import Message, Notice, TextDelta
from studio.errors import InputError
from studio.services import build_services
from studio.tasks import chat
from tests.support.apps import write_config
from tests.support.scripted import ScriptedEngine


@pytest.fixture
def services(tmp_path):
    s = build_services(load_config(write_config(tmp_path, model_path="script:slow")), tmp_path / "data")
    assert s.engines.wait("chat", 30).state == "ready"
    yield s
    s.close()


def test_trim_drops_whole_exchanges_and_keeps_system():
    engine = ScriptedEngine("echo", 0)  # 512-token window; a message costs words + 4
    msgs = [Message.of("system", "be brief")]
    for i in range(6):
        msgs += [Message.of("user", "word " * 60), Message.of("assistant", "reply " * 60)]
    msgs.append(Message.of("user", "last question"))
    kept, dropped = chat.trim_history(engine, msgs, reply_room=128)
    assert kept[0].role == "system" and kept[-1].text == "last question"
    assert kept[1].role == "user" and dropped % 2 == 0 and dropped > 0
    assert engine.count_tokens(kept) <= 512 - 128


def test_single_message_too_long_is_refused_with_numbers():
    engine = ScriptedEngine("echo", 0)
    with pytest.raises(InputError, match=r"takes 6\d\d tokens; this model's context window is 512"):
        chat.trim_history(engine, [Message.of("user", "w " * 600)], reply_room=64)


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
