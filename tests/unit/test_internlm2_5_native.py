"""InternLM2.5-Chat is InternLM2's architecture: a tiny checkpoint with its config.json values is detected,
loaded natively by the internlm2 family and generates through the HF engine; the shipped configs validate."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from studio.config import load_config  # noqa: E402
from studio.core.types import GenParams, Message  # noqa: E402
from tests.support.engine_calls import GenerationRequest, generate  # noqa: E402
from tests.support.tiny_checkpoints import write_tiny_internlm2  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
# internlm2_5-7b-chat's config.json values (the 1.8B one differs only in widths), tiny widths with the
# 7B grouping of 4 query heads per kv head.
INTERNLM2_5 = dict(rope_theta=1000000, rope_scaling={"type": "dynamic", "factor": 2.0}, max_position_embeddings=32768,
                   bias=False, vocab_size=92544, rms_norm_eps=1e-05, num_attention_heads=8, num_key_value_heads=2,
                   hidden_size=128)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return write_tiny_internlm2(tmp_path_factory.mktemp("internlm2_5"), **INTERNLM2_5)


def test_detected_and_mapped_as_internlm2(ckpt):
    from studio.families.detect import resolve_family
    from studio.families.internlm2_weights import llama_config

    cfg = json.loads((ckpt / "config.json").read_text())
    assert cfg["architectures"] == ["InternLM2ForCausalLM"] and cfg["model_type"] == "internlm2"
    assert resolve_family("auto", ckpt).name == "internlm2"
    llama = llama_config(cfg)
    assert llama.rope_parameters == {"rope_type": "dynamic", "factor": 2.0, "rope_theta": 1000000.0}
    assert (llama.num_attention_heads // llama.num_key_value_heads, llama.head_dim) == (4, 16)


def test_engine_loads_natively_and_greedy_equals_argmax(ckpt, tmp_path):
    from studio.engines.base import LoadContext, Placement
    from studio.engines.hf import load_hf_engine
    from studio.engines.hf_loading import HFOptions

    cfg = HFOptions(model_path=str(ckpt), family="auto", device="cpu", dtype="float32")
    engine = load_hf_engine(cfg, LoadContext("chat", Placement("cpu"), tmp_path, lambda f, t: None))
    try:
        assert (engine.loaded.source, engine.family.name) == ("native", "internlm2")
        msgs = [Message.of("user", "你好，请介绍一下你自己。")]
        params = GenParams(max_new_tokens=12, do_sample=False, repetition_penalty=1.0)
        text = "".join(d.text for d in generate(engine, GenerationRequest(msgs, params)))
        ids, new = engine.family.encode(engine.tokenizer, msgs), []
        with torch.no_grad():
            while len(new) < 12 and (not new or new[-1] not in (2, 92542)):
                new.append(int(engine.model(torch.tensor([ids + new])).logits[0, -1].argmax()))
        assert text == engine.tokenizer.decode([t for t in new if t not in (2, 92542)], skip_special_tokens=True)
    finally:
        engine.close()


@pytest.mark.parametrize("name, family, label", [
    ("internlm2_5-chat-1_8b.yaml", "internlm2", "InternLM2.5-Chat-1.8B"),
    ("internlm2_5-chat-7b.yaml", "internlm2", "InternLM2.5-Chat-7B"),
    ("internlm2_5-chat-20b.yaml", "internlm2", "InternLM2.5-Chat-20B"),
    ("internlm3-8b-instruct.yaml", "internlm3", "InternLM3-8B-Instruct"),
])
def test_shipped_configs_validate_without_remote_code(name, family, label):
    chat = load_config(CONFIGS / name).engines["chat"]
    assert (chat.engine, chat.family, chat.label, chat.trust_remote_code) == ("hf", family, label, False)
