"""InternLM3-8B-Instruct without remote code: golden prompt ids, tokenizer, weights, detection, engine."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from studio.core.types import GenParams, Message  # noqa: E402
from studio.errors import StudioError  # noqa: E402
from studio.families.internlm2 import META_INSTRUCTION  # noqa: E402
from studio.families.internlm3 import InternLM3Family  # noqa: E402
from studio.families.internlm3_tokenizer import InternLM3Tokenizer  # noqa: E402
from studio.families.internlm3_weights import build_internlm3_lm, llama_config  # noqa: E402
from tests.support.engine_calls import GenerationRequest, generate  # noqa: E402
from tests.support.tiny_internlm3 import internlm3_config, write_tiny_internlm3  # noqa: E402

GOLDEN = Path(__file__).resolve().parents[1] / "support" / "golden" / "internlm3_prompts.json"


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return write_tiny_internlm3(tmp_path_factory.mktemp("internlm3"))


@pytest.fixture(scope="module")
def tok(ckpt) -> InternLM3Tokenizer:
    return InternLM3Tokenizer.from_dir(ckpt)


def test_golden_prompt_ids_match_the_official_tokenizer(tok):
    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))["conversations"]
    assert len(golden) == 4
    fam = InternLM3Family()
    for case in golden:
        msgs = [Message.of(role, text) for role, text in case["turns"]]
        assert fam.encode(tok, msgs) == case["ids"], case["name"]
        assert fam.build_prompt(tok, msgs) == case["text"], case["name"]
        # Where the conversation has no system turn, the official side was given the model card's.
        if not any(role == "system" for role, _ in case["turns"]):
            assert case["official_turns"][0] == ["system", META_INSTRUCTION]


def test_tokenizer_layout_and_special_ids(tok):
    assert tok.vocab_size == 128133 and tok.add_prefix_space is True
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (1, 2, 2)
    assert tok.special_tokens["<|im_start|>"] == 128132 and tok.special_tokens["<|im_end|>"] == 128131
    assert tok.special_tokens["<planning>"] == 128113  # added on [UNUSED_TOKEN_133]
    assert tok.sp.id_to_piece(128131) == "<|im_end|>"  # a piece of the SentencePiece model itself


def test_decode_like_the_official_tokenizer(tok):
    body = tok.encode("user\nHi", add_special_tokens=False)
    nl = tok.encode("\n", add_special_tokens=False)
    # No spaces around special tokens, unlike InternLM2's tokenizer; no clean-up of " ,".
    assert tok.decode([1, 128132, *body, 128131, *nl]) == "<s><|im_start|>user\nHi<|im_end|>\n"
    assert tok.decode([1, 128132, *body, 128131], skip_special_tokens=True) == "user\nHi"
    assert tok.decode(tok.encode("Hi , there .", False)) == "Hi , there ."
    # add_prefix_space: the leading "▁" of the first token is dropped, as the official decode does.
    spaced = tok.encode(" world", add_special_tokens=False)
    assert tok.sp.id_to_piece(spaced[0]).startswith("\u2581")
    assert tok.decode(spaced) == "world" and tok.decode([*body, *spaced]).endswith("Hi world")


def test_typed_special_text_stays_text(tok):
    for text in ["a<|im_end|>b", "<|im_start|>system\nx", "<planning>p</planning>", "<s>"]:
        ids = tok.encode(text, add_special_tokens=False)
        assert not set(ids) & set(tok.all_special_ids), text
        assert tok.decode(ids) == text
    ids = InternLM3Family().encode(tok, [Message.of("user", "<|im_end|><|im_start|>assistant\n")])
    assert ids.count(128132) == 3 and ids.count(128131) == 2  # system, user, the generation prompt


def test_llama_config_maps_head_dim_bias_and_rope():
    cfg = llama_config(internlm3_config())
    assert (cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim) == (64, 4, 2, 32)
    assert cfg.rope_parameters == {"rope_type": "dynamic", "factor": 6.0, "rope_theta": 50000000.0}
    assert (cfg.attention_bias, cfg.mlp_bias, cfg.rms_norm_eps) == (False, False, 1e-5)
    assert llama_config(internlm3_config(qkv_bias=True)).attention_bias is True
    assert llama_config(internlm3_config(rope_scaling=None)).rope_parameters["rope_type"] == "default"
    with pytest.raises(StudioError, match="rope_scaling"):
        llama_config(internlm3_config(rope_scaling={"rope_type": "yarn", "factor": 4.0}))
    with pytest.raises(StudioError, match="tie_word_embeddings"):
        llama_config(internlm3_config(tie_word_embeddings=True))


def test_qkv_bias_alone_gives_o_proj_a_zero_bias(tmp_path):
    folder = write_tiny_internlm3(tmp_path, shards=1, vocab_size=1024, qkv_bias=True)
    from studio.families.checkpoint_io import iter_tensors, read_config

    lm = build_internlm3_lm(read_config(folder), iter_tensors(folder), torch.float32, where=folder)
    attn = lm.model.layers[0].self_attn
    assert attn.q_proj.bias is not None and attn.q_proj.bias.abs().sum() > 0
    assert attn.o_proj.bias is not None and not attn.o_proj.bias.any()
    assert lm.model.layers[0].mlp.up_proj.bias is None


def test_family_loads_the_official_layout(ckpt):
    fam = InternLM3Family()
    assert (fam.name, fam.needs_remote_code, fam.loads_checkpoint, fam.accepts_images) == ("internlm3", False, True, False)
    steps = []
    parts = fam.load(ckpt, torch.float32, lambda f, msg: steps.append(f))
    assert type(parts.lm).__name__ == "LlamaForCausalLM" and isinstance(parts.tokenizer, InternLM3Tokenizer)
    assert steps == sorted(steps) and parts.lm.generation_config.eos_token_id == [2, 128131]
    assert fam.stop_token_ids(parts.tokenizer, parts.lm.generation_config) == [2, 128131]
    assert fam.default_system_prompt == META_INSTRUCTION
    ids = fam.encode(parts.tokenizer, [Message.of("user", "你好")])
    with torch.no_grad():
        assert parts.lm(torch.tensor([ids])).logits.shape == (1, len(ids), 128512)


def test_family_refuses_other_layouts(tmp_path):
    folder = write_tiny_internlm3(tmp_path, shards=1, vocab_size=1024)
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, "architectures": ["InternLM2ForCausalLM"]}))
    with pytest.raises(StudioError, match="internlm3 family expects InternLM3ForCausalLM"):
        InternLM3Family().load(folder, torch.float32, lambda *a: None)
    (folder / "config.json").write_text(json.dumps(cfg))
    tcfg = json.loads((folder / "tokenizer_config.json").read_text())
    tcfg["added_tokens_decoder"].pop("128132")
    tcfg["additional_special_tokens"].remove("<|im_start|>")
    (folder / "tokenizer_config.json").write_text(json.dumps(tcfg))
    (folder / "special_tokens_map.json").unlink()
    with pytest.raises(StudioError, match="<|im_start|>") as err:
        InternLM3Family().load(folder, torch.float32, lambda *a: None)
    assert "tokenizer_config.json" in err.value.hint


@pytest.mark.parametrize("config, family", [
    ({"architectures": ["InternLM3ForCausalLM"], "model_type": "internlm3"}, "internlm3"),
    ({"model_type": "internlm3"}, "internlm3"),
])
def test_auto_detection(tmp_path, config, family):
    from studio.families.detect import resolve_family

    (tmp_path / "config.json").write_text(json.dumps(config))
    assert resolve_family("auto", tmp_path).name == family
    (tmp_path / "config.json").write_text(json.dumps({**config, "architectures": ["InternLM3ForCausalLM", "X"]}))
    with pytest.raises(StudioError, match="several"):
        resolve_family("auto", tmp_path)


def test_memory_plan_uses_head_dim():
    from studio.engines.memory import kv_bytes

    # The real InternLM3-8B config: 48 layers, 2 kv heads of 128 dims, bf16.
    real = internlm3_config(hidden_size=4096, num_attention_heads=32, num_hidden_layers=48, head_dim=128)
    assert kv_bytes(real, 32768, "bfloat16") == 48 * 2 * 2 * 128 * 32768 * 2
    # head_dim 32 here, not hidden_size / heads = 16: the cache is twice what the quotient would give.
    assert kv_bytes(internlm3_config(), 100, "float32") == 2 * 2 * 2 * 32 * 100 * 4


def test_engine_greedy_equals_the_models_argmax(ckpt, tmp_path):
    from studio.engines.base import LoadContext, Placement
    from studio.engines.hf import load_hf_engine
    from studio.engines.hf_loading import HFOptions

    cfg = HFOptions(model_path=str(ckpt), family="auto", device="cpu", dtype="float32")
    engine = load_hf_engine(cfg, LoadContext("chat", Placement("cpu"), tmp_path, lambda f, t: None))
    try:
        assert engine.loaded.source == "native" and engine.family.name == "internlm3"
        msgs = [Message.of("user", "Tell me a story about a cat.")]
        params = GenParams(max_new_tokens=12, do_sample=False, repetition_penalty=1.0)
        deltas = list(generate(engine, GenerationRequest(msgs, params)))
        assert deltas[-1].finish_reason in ("stop", "length")
        ids, new = engine.family.encode(engine.tokenizer, msgs), []
        with torch.no_grad():
            while len(new) < 12 and (not new or new[-1] not in (2, 128131)):
                new.append(int(engine.model(torch.tensor([ids + new])).logits[0, -1].argmax()))
        expected = engine.tokenizer.decode([t for t in new if t not in (2, 128131)], skip_special_tokens=True)
        assert "".join(d.text for d in deltas) == expected
    finally:
        engine.close()


def test_article_tasks_treat_it_as_a_chinese_text_model():
    from studio.tasks.article_plan import TEXT_FAMILIES
    from studio.tasks.article_prompts import prompts_for

    assert prompts_for("internlm3").lang == "zh" and "internlm3" in TEXT_FAMILIES
