"""Each reply's stats: timed by the one turn loop, counted by the engine, stored on the message, shown in a line."""

from __future__ import annotations

import threading

import pytest

from studio.config import load_config
from studio.core.session import ChatSession
from studio.core.types import GenParams, Message, TextDelta
from studio.services import build_services
from studio.tasks import chat, turn
from studio.ui.chat_page import GENERATING_CLASS, Generating
from studio.ui.convert import STATS_CLASS, chatbot_messages, shown_text, stats_line
from studio.ui.i18n import tr
from tests.support.apps import write_config

INTERRUPTED_NOTE = tr("en", "reply_interrupted")  # what an API client's transcript shows


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def timed(deltas: list[tuple[float, TextDelta]]) -> turn.Reply:
    clock = Clock()
    reply = turn.Reply(clock=clock)
    reply.start()
    reply.prompt_tokens = 9  # the prepared prompt's count, as run sets it
    for at, delta in deltas:
        clock.now = 100.0 + at
        reply.add(delta)
    return reply


def test_reply_times_first_text_and_the_whole_generation_and_takes_the_engines_counts():
    reply = timed([(0.5, TextDelta("")), (1.25, TextDelta("Hel")), (1.75, TextDelta("lo")),
                   (3.25, TextDelta("", "stop", prompt_tokens=11, completion_tokens=6))])
    assert (reply.first_token_s, reply.seconds, reply.pieces) == (1.25, 3.25, 2)
    assert reply.tokens_per_s == 6 / 2.0  # completion tokens over the time after the first text
    assert reply.stats() == {"prompt_tokens": 11, "completion_tokens": 6, "first_token_s": 1.25, "seconds": 3.25,
                             "tokens_per_s": 3.0, "finish_reason": "stop"}


def test_reply_stats_while_streaming_leave_the_engines_counts_unknown():
    reply = timed([(0.5, TextDelta("a")), (0.75, TextDelta("b"))])
    assert reply.stats() == {"prompt_tokens": 9, "completion_tokens": None, "first_token_s": 0.5, "seconds": 0.75,
                             "tokens_per_s": None, "finish_reason": None}


def test_an_engine_without_a_prompt_count_keeps_the_prepared_one_and_a_whole_reply_has_no_speed():
    reply = timed([(2.0, TextDelta("all at once", "length", completion_tokens=3))])
    assert reply.prompt_tokens == 9 and reply.first_token_s == reply.seconds == 2.0
    assert reply.tokens_per_s is None and reply.stats()["finish_reason"] == "length"


@pytest.fixture
def services(tmp_path, scripted_engine):
    s = build_services(load_config(write_config(tmp_path, model_path="script:slow")), tmp_path / "data")
    assert s.engines.wait("chat", 30).state == "ready"
    yield s
    s.close()


def test_run_measures_from_prepare_and_reports_the_engines_final_counts(services):
    events = turn.run(services, "chat", [Message.of("user", "go on then")], GenParams(max_new_tokens=4),
                      threading.Event())
    seen = []
    while True:
        try:
            seen.append(next(events))
        except StopIteration as end:
            reply = end.value
            break
    started = next(e for e in seen if isinstance(e, turn.Started))
    final = [e for e in seen if isinstance(e, TextDelta)][-1]
    assert final.finish_reason == "stop"
    assert reply.prompt_tokens == started.prompt_tokens > 0
    assert reply.completion_tokens == final.completion_tokens
    # The slow script sleeps 0.2 s before each word: lower bounds only, a loaded machine is only slower.
    assert reply.first_token_s >= 0.2 and reply.seconds >= reply.first_token_s + 3 * 0.2
    stats = reply.stats()
    assert stats["tokens_per_s"] == pytest.approx(final.completion_tokens / (reply.seconds - reply.first_token_s),
                                                  rel=1e-2)


def test_chat_stores_the_stats_on_the_reply_and_they_survive_a_reload(services):
    session = chat.new_session(services)
    session.params = GenParams(max_new_tokens=3)
    deltas = [e for e in chat.send(services, "u1", session, "hello") if isinstance(e, TextDelta)]
    stats = session.messages[-1].meta["stats"]
    assert set(stats) == {"prompt_tokens", "completion_tokens", "first_token_s", "seconds", "tokens_per_s",
                          "finish_reason"}
    assert stats["completion_tokens"] == deltas[-1].completion_tokens and stats["finish_reason"] == "stop"
    assert stats["prompt_tokens"] > 0 and stats["seconds"] >= stats["first_token_s"] > 0
    assert services.store.load("u1", session.id).messages[-1].meta == {"stats": stats}


def test_regenerate_replaces_the_stats_with_the_new_replys(services):
    session = chat.new_session(services)
    list(chat.send(services, "u1", session, "hello"))
    first = session.messages[-1].meta["stats"]
    session.params = GenParams(max_new_tokens=2)
    list(chat.regenerate(services, "u1", session))
    again = session.messages[-1].meta["stats"]
    assert again is not first and again["finish_reason"] == "stop" and len(session.messages) == 2


STATS = {"prompt_tokens": 20, "completion_tokens": 128, "first_token_s": 0.2149, "seconds": 3.3,
         "tokens_per_s": 41.27, "finish_reason": "stop"}


def test_the_stats_line_in_both_languages():
    assert stats_line({"stats": STATS}, "en") == (
        f'\n\n<span class="{STATS_CLASS}">128 tokens · 0.21 s to first token · 41.3 tok/s</span>')
    assert "128 个 token · 首 token 0.21 s · 41.3 token/s" in stats_line({"stats": STATS}, "zh")
    assert "已停止" in stats_line({"stats": {**STATS, "finish_reason": "cancelled"}}, "zh")
    assert stats_line({"stats": {**STATS, "finish_reason": None, "completion_tokens": None}}, "en") == ""
    assert stats_line(None, "en") == ""


def test_the_transcript_shows_stats_under_finished_replies_only():
    session = ChatSession(messages=[
        Message.of("user", "q"), Message("assistant", Message.of("assistant", "a").content, meta={"stats": STATS}),
        Message.of("user", "q2"), Message("assistant", Message.of("assistant", "b").content, partial=True,
                                          meta={"stats": STATS})])
    shown = chatbot_messages(session, "en")
    assert shown[1]["content"].endswith("41.3 tok/s</span>") and shown_text(shown[1]["content"]) == "a"
    assert INTERRUPTED_NOTE in shown[3]["content"] and STATS_CLASS not in shown[3]["content"]
    assert STATS_CLASS not in shown[0]["content"]


def test_the_interrupted_note_is_in_the_page_language_only():
    session = ChatSession(messages=[Message.of("user", "q"), Message.of("assistant", "a", partial=True)])
    zh = chatbot_messages(session, "zh")[1]["content"]
    assert tr("zh", "reply_interrupted") in zh and "Reply" not in zh and "Regenerate" not in zh


def test_the_generating_line_counts_what_streamed_and_keeps_warnings():
    state = Generating("zh", since=0.0)
    assert GENERATING_CLASS in state.notice("", "info") and "正在读取提示" in state.notice("", "info")
    assert "Waiting for the model" in state.notice("Waiting for the model to load (5%)…", "info")
    state.pieces = 12
    line = state.notice("History trimmed", "warning")
    assert "已生成 12 个 token" in line and line.endswith("History trimmed")
