"""InternLM2-Chat in the official layout (tiny random weights) through the launched app: loaded with
remote code off, detected from config.json, chatting over HTTP with the official prompt format."""

from __future__ import annotations

import pytest

from studio.core.types import GenParams, Message
from studio.families.internlm2 import META_INSTRUCTION
from tests.e2e.helpers import chat, connect, reply_text
from tests.support.apps import running_app, write_config
from tests.support.tiny_checkpoints import write_tiny_internlm2
from tests.support.engine_calls import GenerationRequest, generate


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("internlm2")
    model = write_tiny_internlm2(tmp / "internlm2-chat-tiny")
    cfg = write_config(tmp, engine="hf", model_path=str(model))
    cfg.write_text(cfg.read_text().replace("    family: auto\n", "    family: auto\n    device: cpu\n"))
    with running_app(cfg, tmp / "data") as running:
        yield running


def test_chat_streams_the_models_own_greedy_answer(app):
    engine = app.services.engines.get("chat")
    info = engine.info()
    assert (info.family, info.extra["source"], info.accepts_images) == ("internlm2", "native", False)
    client, _ = connect(app.url)
    outs, final = chat(client, "你好，请介绍一下你自己。", max_new_tokens=16, do_sample=False, repetition_penalty=1.0)
    texts = [reply_text(o[0]) for o in outs if o[0]]
    assert len(set(texts)) >= 2  # streamed
    # The session's system prompt is the official meta instruction; the engine gets the same directly.
    params = GenParams(max_new_tokens=16, do_sample=False, repetition_penalty=1.0, temperature=0.7, top_p=0.9, top_k=50)
    direct = "".join(d.text for d in generate(engine, GenerationRequest(
        [Message.of("system", META_INSTRUCTION), Message.of("user", "你好，请介绍一下你自己。")], params)))
    assert reply_text(final[0]) == direct
