"""The scripted test engine: queued replies in order, the echo default, its scripts, and its
registration only where a test asks for it."""

from __future__ import annotations

import threading

import pytest

from studio.core.types import GenParams, Message
from studio.engines import ENGINES
from tests.support.engine_calls import GenerationRequest, generate
from tests.support.scripted import (
    ARTICLE,
    Script,
    ScriptedEngine,
    load_scripted,
    parse_model_path,
    scripted_registered,
)


def reply(engine, text="hello there", max_new=512, cancel=None):
    request = GenerationRequest([Message.of("user", text)], GenParams(max_new_tokens=max_new), cancel or threading.Event())
    deltas = list(generate(engine, request))
    return "".join(d.text for d in deltas), deltas[-1].finish_reason


def test_queued_replies_come_in_order_then_the_echo_default():
    engine = ScriptedEngine(Script(delay=0)).enqueue("first one", "second\n\nwith paragraphs")
    engine.enqueue("third")
    assert reply(engine) == ("first one", "stop")
    assert reply(engine) == ("second\n\nwith paragraphs", "stop")
    assert reply(engine) == ("third", "stop")
    assert reply(engine, "anything else") == ("echo: anything else", "stop")
    assert engine.queued() == []


def test_a_reply_is_streamed_word_by_word_and_cut_at_max_new_tokens():
    engine = ScriptedEngine(Script(delay=0)).enqueue("one two three four")
    request = GenerationRequest([Message.of("user", "x")], GenParams(max_new_tokens=2), threading.Event())
    deltas = list(generate(engine, request))
    assert [d.text for d in deltas[:-1]] == ["one", " two"]


def test_a_cancelled_reply_stops_and_the_next_reply_is_the_next_in_the_queue():
    engine = ScriptedEngine(Script(delay=0)).enqueue("never shown", "shown")
    cancel = threading.Event()
    cancel.set()
    assert reply(engine, cancel=cancel) == ("", "cancelled")
    assert reply(engine) == ("shown", "stop")


def test_the_model_path_names_a_script_and_a_reply_list_queued_at_load():
    name, script, replies = parse_model_path("script:slowarticle:article")
    assert (name, script.prefill, replies) == ("slowarticle", 5.0, ARTICLE)
    assert parse_model_path("script:vision")[1].images and parse_model_path("script:vision")[2] == ()
    with pytest.raises(ValueError, match="unknown script 'nope'; known: echo"):
        parse_model_path("script:nope")
    with pytest.raises(ValueError, match="unknown reply list 'nope'"):
        parse_model_path("script:echo:nope")


def test_importing_registers_nothing_and_a_block_registers_it_for_its_length():
    assert "scripted" not in ENGINES
    with scripted_registered():
        with scripted_registered():  # e.g. a second app launched inside a test's own
            assert ENGINES.get("scripted").load is load_scripted
        assert ENGINES.get("scripted").load is load_scripted
    assert "scripted" not in ENGINES


def test_the_fixture_registers_the_engine(scripted_engine):
    assert ENGINES.get("scripted").load is load_scripted
