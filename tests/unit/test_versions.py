"""The version tree of a conversation: edit, regenerate, switch, nesting, storage round trip, old rows."""

from __future__ import annotations

import json
import threading

import pytest

from studio.config import load_config
from studio.core.session import FORMAT, ChatSession
from studio.core.types import Message
from studio.errors import InputError
from studio.services import build_services
from studio.tasks import chat
from tests.support.apps import write_config


def texts(session: ChatSession) -> list[str]:
    return [m.text for m in session.messages]


def convo(*pairs: str) -> ChatSession:
    """A session of alternating user/assistant texts."""
    return ChatSession(messages=[Message.of("user" if i % 2 == 0 else "assistant", t) for i, t in enumerate(pairs)])


def edit(session: ChatSession, at: int, *new: str) -> None:
    """What an edit does to the tree: branch at `at`, then the new messages follow."""
    session.branch(at)
    session.messages.extend(Message.of("user" if i % 2 == 0 else "assistant", t) for i, t in enumerate(new))


def test_edit_keeps_the_old_continuation_and_switching_swaps_it_back():
    s = convo("q1", "a1", "q2", "a2", "q3", "a3")
    edit(s, 2, "q2 edited", "a2 new")
    assert texts(s) == ["q1", "a1", "q2 edited", "a2 new"] and s.version_of(2) == (2, 2)
    s.switch_version(2, 1)
    assert texts(s) == ["q1", "a1", "q2", "a2", "q3", "a3"] and s.version_of(2) == (1, 2)
    s.switch_version(2, 2)
    assert texts(s) == ["q1", "a1", "q2 edited", "a2 new"]
    s.switch_version(2, 1)
    s.switch_version(2, 1)  # the shown one: nothing changes
    assert texts(s) == ["q1", "a1", "q2", "a2", "q3", "a3"]


def test_regenerate_versions_accumulate_in_order():
    s = convo("q", "r1")
    for reply in ("r2", "r3"):
        s.branch(1)
        s.messages.append(Message.of("assistant", reply))
    assert texts(s) == ["q", "r3"] and s.version_of(1) == (3, 3)
    seen = []
    for v in (1, 2, 3):
        s.switch_version(1, v)
        seen.append(s.messages[-1].text)
    assert seen == ["r1", "r2", "r3"]


def test_nested_versions_travel_with_their_branch():
    s = convo("q1", "a1", "q2", "a2")
    edit(s, 2, "q2b", "a2b")  # version 2 of message 2
    s.branch(3)
    s.messages.append(Message.of("assistant", "a2b second"))  # a regenerated reply inside version 2
    assert s.version_of(3) == (2, 2)
    s.switch_version(2, 1)
    assert texts(s) == ["q1", "a1", "q2", "a2"] and s.version_of(3) is None  # not in this branch
    s.switch_version(2, 2)
    assert texts(s) == ["q1", "a1", "q2b", "a2b second"] and s.version_of(3) == (2, 2)
    s.switch_version(3, 1)
    assert texts(s) == ["q1", "a1", "q2b", "a2b"]
    # An edit at the first message keeps the whole tree above as its version 1.
    edit(s, 0, "fresh start", "ok")
    assert texts(s) == ["fresh start", "ok"] and not set(s.forks) - {0}
    s.switch_version(0, 1)
    assert texts(s) == ["q1", "a1", "q2b", "a2b"] and s.version_of(2) == (2, 2) and s.version_of(3) == (1, 2)


def test_an_empty_version_is_not_kept():
    s = convo("q", "r1")
    s.branch(1)  # regenerate, stopped before its first word: nothing follows the question
    assert s.version_of(1) == (2, 2) and texts(s) == ["q"]
    s.switch_version(1, 1)
    assert texts(s) == ["q", "r1"] and s.version_of(1) is None and s.forks == {}  # one version: no ‹ 1/1 ›
    s.branch(1)
    s.branch(1)  # twice empty in a row: one empty slot, not two
    assert s.version_of(1) == (2, 2)


def test_round_trip_through_json_keeps_every_version():
    s = convo("q1", "a1", "q2", "a2")
    edit(s, 2, "q2b", "a2b")
    s.branch(3)
    s.messages.append(Message.of("assistant", "a2b again", partial=True))
    s.switch_version(2, 1)
    data = json.loads(json.dumps(s.to_dict()))
    assert data["format"] == FORMAT == 3
    back = ChatSession.from_dict(data)
    assert texts(back) == texts(s) and back.to_dict() == s.to_dict()
    back.switch_version(2, 2)
    assert texts(back) == ["q1", "a1", "q2b", "a2b again"] and back.messages[-1].partial
    back.switch_version(3, 1)
    assert texts(back) == ["q1", "a1", "q2b", "a2b"]


def test_rows_without_versions_load_unchanged():
    old = {"id": "abc", "title": "", "system_prompt": "", "format": 2, "engine": "chat",
           "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    s = ChatSession.from_dict(old)
    assert texts(s) == ["hi", "hello"] and s.forks == {} and s.system_prompt == ""
    assert "versions" not in s.to_dict()  # a conversation without versions is written as before
    v1 = ChatSession.from_dict({**old, "format": 1})
    assert v1.system_prompt is None and v1.forks == {}


@pytest.fixture
def services(tmp_path, scripted_engine):
    s = build_services(load_config(write_config(tmp_path)), tmp_path / "data")
    assert s.engines.wait("chat", 60).state == "ready"
    yield s
    s.close()


def test_chat_task_edit_regenerate_switch_and_store(services):
    s = chat.new_session(services)
    list(chat.send(services, "u", s, "first"))
    list(chat.send(services, "u", s, "second"))
    list(chat.edit(services, "u", s, 0, "first, edited"))
    assert texts(s) == ["first, edited", "echo: first, edited"]
    list(chat.regenerate(services, "u", s))
    assert s.version_of(1) == (2, 2)
    stored = services.store.load("u", s.id)
    assert texts(stored) == texts(s) and stored.version_of(0) == (2, 2)
    chat.switch_version(services, "u", s, 0, 1)
    assert texts(services.store.load("u", s.id)) == ["first", "echo: first", "second", "echo: second"]
    with pytest.raises(InputError, match="versions 1 to 2; there is no version 3"):
        chat.switch_version(services, "u", s, 0, 3)
    with pytest.raises(InputError, match="no other versions"):
        chat.switch_version(services, "u", s, 2, 1)
    with pytest.raises(InputError, match="not one of your messages"):
        list(chat.edit(services, "u", s, 1, "a reply is not mine to edit"))
    with pytest.raises(InputError, match="empty"):
        list(chat.edit(services, "u", s, 0, "  "))
    assert services.store.load("u", s.id).version_of(0) == (1, 2)


def test_undo_after_an_edit_keeps_the_other_versions(services):
    s = chat.new_session(services)
    list(chat.send(services, "u", s, "one"))
    list(chat.edit(services, "u", s, 0, "two"))
    list(chat.regenerate(services, "u", s))
    assert chat.undo(services, "u", s) == "two"
    assert s.messages == [] and set(s.forks) == {0}  # the reply's versions went with the exchange
    list(chat.send(services, "u", s, "three"))
    assert s.version_of(0) == (2, 2)
    chat.switch_version(services, "u", s, 0, 1)
    assert texts(s) == ["one", "echo: one"]
    chat.clear(services, "u", s)
    assert s.forks == {} and services.store.list("u") == []


def test_a_regenerate_stopped_before_its_first_word_shows_the_earlier_reply(services):
    s = chat.new_session(services)
    list(chat.send(services, "u", s, "q"))
    list(chat.regenerate(services, "u", s))
    chat.switch_version(services, "u", s, 1, 1)
    cancel = threading.Event()
    cancel.set()  # Stop pressed before the first word
    list(chat.regenerate(services, "u", s, cancel))
    assert texts(s) == ["q", "echo: q"] and s.version_of(1) == (1, 2)  # version 1 again; no empty third
    assert services.store.load("u", s.id).version_of(1) == (1, 2)
