"""The launched app on the real embedded SmolLM2, driven over HTTP with gradio_client."""

from __future__ import annotations

import threading
import time

import pytest
from gradio_client.client import Status

from studio.core.types import Message
from studio.tasks.chat import merge_user_runs
from tests.e2e.helpers import GREEDY, chat, connect, reply_text, wait_for, resume_open
from tests.support.apps import EMBEDDED_CONFIG, running_app
from tests.support.engine_calls import prompt_tokens


@pytest.fixture(scope="module")
def app(tmp_path_factory, embedded_cache_dir):
    tmp = tmp_path_factory.mktemp("real")
    with running_app(EMBEDDED_CONFIG, tmp / "data", cache_dir=embedded_cache_dir) as running:
        yield running


def test_streamed_chunks_grow_on_the_real_model(app):
    client, _ = connect(app.url)
    outs, final = chat(client, "Write one sentence about the sea.", max_new_tokens=40, **GREEDY)
    texts = [reply_text(o[0]) for o in outs if o[0]]
    assert len(set(texts)) >= 5  # many distinct growing chunks, not one final blob
    assert all(texts[i] == texts[i + 1][: len(texts[i])] for i in range(len(texts) - 1))
    assert len(texts[-1].split()) >= 3


def test_stop_ends_generation_and_counts_tokens_after_cancel(app):
    client, user = connect(app.url)
    engine = app.services.engines.get("chat")
    job = client.submit("Count from 1 to 500, separated by commas.", max_new_tokens=800, api_name="/chat", **GREEDY)
    wait_for(lambda: len(job.outputs()) >= 5, "5 streamed updates", progress=lambda: len(job.outputs()))
    seen = reply_text(job.outputs()[-1][0])
    cancelled_at = time.monotonic()
    job.cancel()
    wait_for(lambda: job.status().code in (Status.CANCELLED, Status.FINISHED), "the job to end after Stop")
    # The engine is freed by Stop (not by finishing the 800 tokens: the count below shows that).
    wait_for(lambda: not engine_busy(engine), "the engine to be free after Stop")
    freed_after = time.monotonic() - cancelled_at
    conv = app.services.store.list(user)[0]
    saved = app.services.store.load(user, conv.id).messages[-1].text
    after = prompt_tokens(engine, [Message.of("assistant", saved)]) - prompt_tokens(engine, [Message.of("assistant", seen)])
    print(f"tokens produced after cancel: {after}; engine free after {freed_after:.2f}s")
    assert saved.startswith(seen[:20]) and after <= 25  # tokens, not seconds: the same on a busy machine


def test_the_real_model_reply_is_saved_as_it_streams(app):
    client, user = connect(app.url)
    before = {c.id for c in app.services.store.list(user)}  # the local user's earlier chats (other tests')
    job = client.submit("请写一个 300 字的小故事", max_new_tokens=800, api_name="/chat", **GREEDY)  # streams for long

    def stored():
        convs = [c for c in app.services.store.list(user) if c.id not in before]
        return app.services.store.load(user, convs[0].id).messages if convs else None

    first = wait_for(stored, "the message in the store")  # stored when sent, whatever the model does next
    assert first[0].text == "请写一个 300 字的小故事"
    partial = wait_for(lambda: (m := stored()) and len(m) == 2 and m[1].partial and m[1], "a partial checkpoint in the store")
    assert partial.text.strip() and not job.done()  # checkpointed while still streaming
    job.cancel()
    wait_for(lambda: (m := stored()) and not m[-1].partial, "the stopped reply stored as it stands")  # stopped: kept as it stands


def engine_busy(engine) -> bool:
    lock = getattr(engine, "_lock", None)
    if lock is None or not lock.acquire(blocking=False):
        return lock is not None
    lock.release()
    return False


def test_two_concurrent_sessions_get_their_own_answers(app):
    prompts = ["What is the capital of France? Answer in one sentence.",
               "Name a fruit that is yellow. Answer in one sentence."]
    solo = []
    for p in prompts:
        client, _ = connect(app.url)
        solo.append(reply_text(chat(client, p, max_new_tokens=24, **GREEDY)[1][0]))
    results = [None, None]

    def run(i):
        client, _ = connect(app.url)
        results[i] = chat(client, prompts[i], max_new_tokens=24, **GREEDY)[1][0]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    for i in range(2):
        chatbot = results[i]
        assert prompts[i] in str(chatbot[0]["content"]) and prompts[1 - i] not in str(chatbot)
        assert reply_text(chatbot) == solo[i]  # greedy: the same answer as when alone


def test_history_longer_than_context_window_is_trimmed_with_notice(tmp_path, embedded_cache_dir):
    from studio.config import load_config

    cfg = load_config(EMBEDDED_CONFIG)
    chat_cfg = cfg.engines["chat"].model_copy(update={"context_window": 256})
    small = cfg.model_copy(update={"engines": {"chat": chat_cfg}})
    with running_app(small, tmp_path / "data", cache_dir=embedded_cache_dir) as running:
        client, user = connect(running.url)
        long_text = "Tell me about rivers. " * 20  # ~100 tokens a turn
        notices = []
        for _ in range(3):
            outs, final = chat(client, long_text, max_new_tokens=16, **GREEDY)
            notices.append(final[2])
        assert any("left out" in n and "256-token context window" in n for n in notices), notices
        saved = running.services.store.load(user, running.services.store.list(user)[0].id)
        assert len(saved.messages) == 6  # nothing saved is dropped, only the prompt is trimmed


def test_conversation_survives_restart(tmp_path, embedded_cache_dir):
    data = tmp_path / "data"
    with running_app(EMBEDDED_CONFIG, data, cache_dir=embedded_cache_dir) as first:
        client, user = connect(first.url)
        _, final = chat(client, "Say hello to Puyu Studio.", max_new_tokens=12, **GREEDY)
        before = final[0]
    with running_app(EMBEDDED_CONFIG, data, cache_dir=embedded_cache_dir) as second:
        client, same = connect(second.url, user)
        out = resume_open(client, user)
        assert same == user and out[2] == before


def shown_content(message: dict) -> str:
    """A Chatbot message's text as the page gets it (Gradio 6 sends a list of text blocks)."""
    return "".join(part.get("text", "") for part in message["content"])


def test_reply_stats_are_the_engines_own_counts(app):
    """The stats stored with a reply (and shown under it) are the HF engine's counts for that very request."""
    client, user = connect(app.url)
    _, final = chat(client, "Write a paragraph about the sea.", max_new_tokens=20, **GREEDY)
    session = app.services.store.load(user, app.services.store.list(user)[0].id)
    reply = session.messages[-1]
    stats = reply.meta["stats"]
    # The same request straight to the engine (greedy, so the same reply): its prompt and its final delta.
    engine = app.services.engines.get("chat")
    prepared = engine.prepare(merge_user_runs(session.prompt_messages()[:-1]), session.params, fit="trim")
    deltas = list(engine.stream(prepared, threading.Event()))
    assert "".join(d.text for d in deltas) == reply.text
    assert stats["prompt_tokens"] == prepared.prompt_tokens == deltas[-1].prompt_tokens
    assert stats["completion_tokens"] == deltas[-1].completion_tokens == 20
    assert stats["finish_reason"] == deltas[-1].finish_reason == "length"
    assert len(engine.tokenizer(reply.text, add_special_tokens=False)["input_ids"]) == 20
    assert 0 < stats["first_token_s"] <= stats["seconds"] and stats["tokens_per_s"] > 0
    shown = shown_content(final[0][-1])
    assert f"20 tokens · {stats['first_token_s']:.2f} s to first token · {stats['tokens_per_s']:.1f} tok/s" in shown


def test_reply_stats_follow_the_pages_language(app):
    client, _ = connect(app.url, headers={"Accept-Language": "zh-CN,zh;q=0.9"})
    _, final = chat(client, "Say hi.", max_new_tokens=6, **GREEDY)
    shown = shown_content(final[0][-1])
    assert "6 个 token · 首 token" in shown and "tok/s" not in shown
