"""InternLM-Chat v1 without remote code: the official chat() prompt, weights as Llama, detection, engine."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from PIL import Image  # noqa: E402

from studio.core.types import GenParams, ImagePart, Message, TextPart  # noqa: E402
from studio.errors import InputError, StudioError  # noqa: E402
from studio.families.internlm1 import InternLM1Family, pieces  # noqa: E402
from studio.families.internlm1_weights import llama_config, map_internlm1_weights  # noqa: E402
from studio.families.sp_tokenizer import SPTokenizer  # noqa: E402
from tests.support.engine_calls import GenerationRequest, generate  # noqa: E402
from tests.support.tiny_internlm1 import EOA_ID, EOH_ID, internlm1_config, write_tiny_internlm1  # noqa: E402

# Official InternLMForCausalLM.build_inputs + InternLMTokenizer output on the tiny tokenizer.model.
GOLDEN = json.loads((Path(__file__).resolve().parents[1] / "data" / "internlm1_golden.json").read_text("utf-8"))
FAMILY = InternLM1Family()


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return write_tiny_internlm1(tmp_path_factory.mktemp("internlm1"))


@pytest.fixture(scope="module")
def tok(ckpt) -> SPTokenizer:
    return SPTokenizer.from_dir(ckpt)


def conversation(history, query) -> list[Message]:
    msgs = []
    for q, a in history:
        msgs += [Message.of("user", q), Message.of("assistant", a)]
    return msgs + [Message.of("user", query)]


# ---------------------------------------------------------------- prompt


@pytest.mark.parametrize("case", GOLDEN["conversations"], ids=lambda c: f"{len(c['history'])}-turns")
def test_prompt_ids_equal_the_official_build_inputs(tok, case):
    assert FAMILY.encode(tok, conversation(case["history"], case["query"])) == case["ids"]


def test_tokenizer_ids_equal_the_official_tokenizer(tok):
    for case in GOLDEN["strings"]:
        assert tok.encode(case["text"]) == case["ids"], case["text"]


def test_prompt_text_and_double_bos(tok):
    msgs = conversation([("你好", "我是书生·浦语。")], "Tell me a story.")
    assert FAMILY.build_prompt(tok, msgs) == (
        "<s><s><|User|>:你好<eoh>\n<|Bot|>:我是书生·浦语。<eoa>\n<|User|>:Tell me a story.<eoh>\n<|Bot|>:")
    ids = FAMILY.encode(tok, msgs)
    assert ids[:2] == [1, 1] and ids.count(1) == 2 and ids.count(EOH_ID) == 2 and ids.count(EOA_ID) == 1
    assert FAMILY.encode(tok, [Message.of("user", "hi")])[:2] == [1, 1]  # no history: build_inputs adds "<s>"


def test_typed_markers_stay_text(tok):
    ids = FAMILY.encode(tok, [Message.of("user", "a<eoa>b<eoh>c")])
    assert ids.count(EOA_ID) == 0 and ids.count(EOH_ID) == 1  # only the template's own <eoh>


def test_system_message_and_turn_grouping(tok):
    msgs = [Message.of("system", "Be brief."), Message.of("user", "a"), Message.of("user", "b")]
    assert FAMILY.build_prompt(tok, msgs) == "<s><|System|>:Be brief.\n<s><|User|>:a\nb<eoh>\n<|Bot|>:"
    assert pieces([{"role": "assistant", "content": "x"}, {"role": "user", "content": "y"}]) == (None, [("", "x")], "y")
    assert FAMILY.default_system_prompt is None


def test_stop_ids_and_images(tok):
    assert FAMILY.stop_token_ids(tok) == [2, EOA_ID]
    with pytest.raises(InputError, match="reads text only"):
        FAMILY.encode(tok, [Message("user", [TextPart("what is this?"), ImagePart(Image.new("RGB", (4, 4)))])])


# ---------------------------------------------------------------- weights


def test_mapping_keeps_llama_names_and_drops_inv_freq():
    items = [("model.layers.0.self_attn.q_proj.bias", torch.zeros(2)),
             ("model.layers.0.self_attn.rotary_emb.inv_freq", torch.zeros(1)),
             ("lm_head.weight", torch.zeros(1))]
    assert [n for n, _ in map_internlm1_weights(items)] == ["model.layers.0.self_attn.q_proj.bias", "lm_head.weight"]
    rest = []
    mapped = list(map_internlm1_weights([("internlm_model.model.norm.weight", 1), ("internlm_model.lora", 2)],
                                        "internlm_model.", rest=lambda n, t: rest.append(n)))
    assert mapped == [("model.norm.weight", 1)] and rest == ["internlm_model.lora"]
    with pytest.raises(StudioError, match="unexpected tensor model.layers.0.self_attn.wqkv.weight"):
        list(map_internlm1_weights([("model.layers.0.self_attn.wqkv.weight", 1)]))


def test_llama_config_fields():
    cfg = llama_config(internlm1_config())
    assert cfg.attention_bias and not cfg.mlp_bias and cfg.num_key_value_heads == 4 and cfg.head_dim == 16
    assert cfg.rope_parameters["rope_theta"] == 10000.0 and cfg.rms_norm_eps == 1e-6
    dynamic = llama_config(internlm1_config(rotary={"base": 10000, "type": "dynamic"}))
    assert dynamic.rope_parameters["rope_type"] == "dynamic"
    with pytest.raises(StudioError, match="rotary"):
        llama_config(internlm1_config(rotary={"type": "yarn"}))
    with pytest.raises(StudioError, match="hidden_size"):
        llama_config({k: v for k, v in internlm1_config().items() if k != "hidden_size"})


def test_family_refuses_other_architectures(tmp_path):
    folder = write_tiny_internlm1(tmp_path, shards=1, num_hidden_layers=1)
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, "architectures": ["InternLM2ForCausalLM"]}))
    with pytest.raises(StudioError, match="internlm family expects InternLMForCausalLM"):
        FAMILY.load(folder, torch.float32, lambda *a: None)


# ---------------------------------------------------------------- detection and memory


def test_detection_from_config_json(ckpt, tmp_path):
    from studio.families.detect import resolve_family

    assert resolve_family("auto", ckpt).name == "internlm"
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["NoSuchForCausalLM"], "model_type": "nosuch"}))
    with pytest.raises(StudioError, match="cannot tell the model family") as err:
        resolve_family("auto", tmp_path)
    assert "internlm" in err.value.hint


def test_memory_plan_reads_the_v1_checkpoint(ckpt):
    from studio.engines.memory import kv_bytes, make_plan

    plan = make_plan(ckpt, None, "float32", "cpu", 1, 2048, vision=False, free=1 << 40)
    embeddings = 2 * 103168 * 64  # embed_tokens + lm_head dominate the tiny model
    assert embeddings * 4 <= plan.weights < embeddings * 4 * 1.2
    assert plan.kv_cache == kv_bytes(internlm1_config(), 2048, "float32") == 2 * 2 * 64 * 2048 * 4
    seven_b = internlm1_config(hidden_size=4096, num_attention_heads=32, num_hidden_layers=32)
    assert kv_bytes(seven_b, 2048, "bfloat16") == 1024**3  # 32 layers x K,V x 4096 x 2048 x 2 bytes


# ---------------------------------------------------------------- engine


def test_engine_loads_natively_and_decodes_greedily(ckpt, tmp_path):
    from studio.engines.base import LoadContext, Placement
    from studio.engines.hf import load_hf_engine
    from studio.engines.hf_loading import HFOptions

    cfg = HFOptions(model_path=str(ckpt), family="auto", device="cpu", dtype="float32")
    engine = load_hf_engine(cfg, LoadContext("chat", Placement("cpu"), tmp_path, lambda f, t: None))
    try:
        assert engine.loaded.source == "native" and engine.family.name == "internlm"
        msgs = conversation([("你好", "我是书生·浦语。")], "Tell me a story.")
        params = GenParams(max_new_tokens=10, do_sample=False, repetition_penalty=1.0)
        deltas = list(generate(engine, GenerationRequest(msgs, params)))
        ids, new = engine.family.encode(engine.tokenizer, msgs), []
        with torch.no_grad():
            while len(new) < 10 and (not new or new[-1] not in (2, EOA_ID)):
                new.append(int(engine.model(torch.tensor([ids + new])).logits[0, -1].argmax()))
        expected = engine.tokenizer.decode([t for t in new if t not in (2, EOA_ID)], skip_special_tokens=True)
        assert "".join(d.text for d in deltas) == expected and expected
    finally:
        engine.close()


def test_config_file_names_the_family_without_remote_code():
    from studio.config import DEFAULT_CONFIG, load_config

    chat = load_config(DEFAULT_CONFIG.parent / "internlm-chat-7b.yaml").engines["chat"]
    assert (chat.family, chat.trust_remote_code, chat.context_window) == ("internlm", False, 2048)
    assert (chat.defaults.temperature, chat.defaults.top_p, chat.defaults.max_new_tokens) == (0.8, 0.8, 1024)


def test_stop_ids_keep_the_demos_103028_whatever_the_piece_is_named(tmp_path):
    from tests.support.tiny_internlm1 import write_v1_tokenizer

    other = SPTokenizer.from_dir(write_v1_tokenizer(tmp_path, ("<a0>", "<a1>")))  # no <eoa> piece at all
    assert FAMILY.stop_token_ids(other) == [2, EOA_ID]
    assert FAMILY.encode(other, [Message.of("user", "hi")]).count(EOH_ID) == 0  # "<eoh>" is text there
