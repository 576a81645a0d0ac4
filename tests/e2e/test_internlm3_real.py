"""InternLM3-8B-Instruct and InternLM2.5-Chat in the official layouts (tiny random weights) through the
launched app: each detected from config.json, loaded with remote code off, answering a chat turn over
HTTP with the model's own greedy reply under its official default system prompt."""

from __future__ import annotations

import pytest

from studio.core.types import GenParams, Message
from studio.families.internlm2 import META_INSTRUCTION
from tests.e2e.helpers import chat, connect, reply_text
from tests.support.apps import running_app, write_config
from tests.support.engine_calls import GenerationRequest, generate
from tests.support.tiny_checkpoints import write_tiny_internlm2
from tests.support.tiny_internlm3 import write_tiny_internlm3

QUESTION = "你好，请介绍一下你自己。"
# internlm2_5-7b-chat's config.json values with tiny widths (4 query heads per kv head, as the 7B).
INTERNLM2_5 = dict(rope_theta=1000000, rope_scaling={"type": "dynamic", "factor": 2.0}, max_position_embeddings=32768,
                   bias=False, num_attention_heads=8, num_key_value_heads=2, hidden_size=128)


@pytest.fixture(scope="module", params=["internlm3", "internlm2_5"])
def app(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(request.param)
    if request.param == "internlm3":
        model = write_tiny_internlm3(tmp / "internlm3-8b-instruct-tiny")
    else:
        model = write_tiny_internlm2(tmp / "internlm2_5-7b-chat-tiny", **INTERNLM2_5)
    cfg = write_config(tmp, engine="hf", model_path=str(model))
    cfg.write_text(cfg.read_text().replace("    family: auto\n", "    family: auto\n    device: cpu\n"))
    with running_app(cfg, tmp / "data") as running:
        yield request.param, running


def test_chat_turn_answers_with_the_models_own_greedy_reply(app):
    name, running = app
    engine = running.services.engines.get("chat")
    info = engine.info()
    family = "internlm3" if name == "internlm3" else "internlm2"
    assert (info.family, info.extra["source"], info.accepts_images) == (family, "native", False)
    client, _ = connect(running.url)
    outs, final = chat(client, QUESTION, max_new_tokens=16, do_sample=False, repetition_penalty=1.0)
    texts = [reply_text(o[0]) for o in outs if o[0]]
    assert len(set(texts)) >= 2  # streamed
    answer = reply_text(final[0])
    assert answer
    # The session's system prompt is the official default (the same text for both); the engine, given it
    # directly, answers the same.
    params = GenParams(max_new_tokens=16, do_sample=False, repetition_penalty=1.0, temperature=0.7, top_p=0.9, top_k=50)
    direct = "".join(d.text for d in generate(engine, GenerationRequest(
        [Message.of("system", META_INSTRUCTION), Message.of("user", QUESTION)], params)))
    assert answer == direct
    # And the prompt it answered is the family's, with the markers as the tokenizer's special ids.
    ids = engine.family.encode(engine.tokenizer, [Message.of("user", QUESTION)])
    start = engine.tokenizer.special_tokens["<|im_start|>"]
    assert ids[0] == engine.tokenizer.bos_token_id and ids.count(start) == 3
