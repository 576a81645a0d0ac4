"""Two browser users at once on the embedded SmolLM2 through the chat UI: the transformers engine decodes
them together, and each gets its own reply, the one it gets alone (float32: batched rows equal one row)."""

from __future__ import annotations

import threading

import pytest

from tests.e2e.helpers import GREEDY, chat, connect, reply_text
from tests.support.apps import EMBEDDED_CONFIG, running_app

PROMPTS = ["What is the capital of France? Answer in one sentence.",
           "Name a fruit that is yellow. Answer in one sentence."]


@pytest.fixture(scope="module")
def app(tmp_path_factory, embedded_cache_dir):
    from studio.config import load_config

    cfg = load_config(EMBEDDED_CONFIG)
    chat_cfg = cfg.engines["chat"].model_copy(update={"dtype": "float32", "device": "cpu"})
    with running_app(cfg.model_copy(update={"engines": {"chat": chat_cfg}}), tmp_path_factory.mktemp("batch") / "data",
                     cache_dir=embedded_cache_dir) as running:
        yield running


def test_two_users_at_once_are_decoded_together_and_get_their_own_replies(app, monkeypatch):
    engine = app.services.engines.get("chat")
    assert app.services.engines.concurrency("chat") == 4 and engine.batches
    solo = []
    for p in PROMPTS:
        client, _ = connect(app.url)
        solo.append(reply_text(chat(client, p, max_new_tokens=16, **GREEDY)[1][0]))
    rows: list = []
    step = engine.batcher.step
    real = step.forward
    monkeypatch.setattr(step, "forward", lambda t, c, s: (rows.append(len(t)), real(t, c, s))[1])
    results = [None, None]

    def run(i):
        client, _ = connect(app.url)
        results[i] = chat(client, PROMPTS[i], max_new_tokens=16, **GREEDY)[1][0]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert 2 in rows  # the two replies shared decode steps
    for i in range(2):
        chatbot = results[i]
        assert PROMPTS[i] in str(chatbot[0]["content"]) and PROMPTS[1 - i] not in str(chatbot)
        assert reply_text(chatbot) == solo[i] and solo[i].strip()
