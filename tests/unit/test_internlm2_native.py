"""InternLM2 without remote code: weight mapping, checkpoint reading, SentencePiece tokenizer."""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from studio.errors import ModelNotFound, StudioError  # noqa: E402
from studio.families.checkpoint_io import (  # noqa: E402
    check_architectures, iter_tensors, load_into, read_config)
from studio.families.internlm2_weights import (  # noqa: E402
    build_internlm2_lm, llama_config, map_internlm2_weights, split_wqkv)
from studio.families.sp_tokenizer import SPTokenizer  # noqa: E402
from tests.support.tiny_checkpoints import write_tiny_internlm2, write_tiny_tokenizer  # noqa: E402
from tests.support.engine_calls import GenerationRequest, generate

REAL_TOKENIZER = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "internlm2-tokenizer" / "tokenizer.model"


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return write_tiny_internlm2(tmp_path_factory.mktemp("internlm2"))


@pytest.fixture(scope="module")
def tok(ckpt) -> SPTokenizer:
    return SPTokenizer.from_dir(ckpt)


def load(folder: Path, dtype=torch.float32):
    return build_internlm2_lm(read_config(folder), iter_tensors(folder), dtype, where=folder)


# ---------------------------------------------------------------- wqkv


def test_split_wqkv_gqa_layout():
    nh, nkv, d, hidden = 6, 2, 2, 3
    g = nh // nkv
    # Row r of group h, slot s (0..g-1 query heads, g key, g+1 value), dim i holds 1000h + 100s + 10i + column.
    rows = [[1000 * h + 100 * s + 10 * i + c for c in range(hidden)]
            for h in range(nkv) for s in range(g + 2) for i in range(d)]
    w = torch.tensor(rows, dtype=torch.float32)
    q, k, v = split_wqkv(w, nh, nkv, d)
    assert q.shape == (nh * d, hidden) and k.shape == v.shape == (nkv * d, hidden)
    for head in range(nh):
        h, j = divmod(head, g)  # query head h*g + j belongs to kv group h
        for i in range(d):
            assert q[head * d + i].tolist() == [1000 * h + 100 * j + 10 * i + c for c in range(hidden)]
    for h in range(nkv):
        for i in range(d):
            assert k[h * d + i].tolist() == [1000 * h + 100 * g + 10 * i + c for c in range(hidden)]
            assert v[h * d + i].tolist() == [1000 * h + 100 * (g + 1) + 10 * i + c for c in range(hidden)]
    qb, kb, vb = split_wqkv(w[:, 0].contiguous(), nh, nkv, d)  # a bias splits the same way
    assert torch.equal(qb, q[:, 0]) and torch.equal(kb, k[:, 0]) and torch.equal(vb, v[:, 0])
    assert q.untyped_storage().data_ptr() != w.untyped_storage().data_ptr()


def test_split_wqkv_wrong_rows_is_a_clear_error():
    with pytest.raises(StudioError, match="wqkv has 10 rows"):
        split_wqkv(torch.zeros(10, 4), 4, 2, 2)


def test_mapping_names_prefix_and_rest():
    w = torch.zeros(8 * 2, 4)
    items = [("language_model.model.layers.0.attention.wqkv.weight", w),
             ("language_model.output.weight", torch.zeros(3, 4)),
             ("vision_model.x", torch.zeros(1)),
             ("language_model.model.layers.0.attention.wqkv.Plora_A.weight", torch.zeros(1))]
    names = [n for n, _ in map_internlm2_weights(items[:3], 4, 2, 2, src_prefix="language_model.")]
    assert names == ["model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.k_proj.weight",
                     "model.layers.0.self_attn.v_proj.weight", "lm_head.weight"]
    with pytest.raises(StudioError, match="Plora_A"):
        list(map_internlm2_weights(items, 4, 2, 2, src_prefix="language_model."))
    rest = []
    list(map_internlm2_weights(items, 4, 2, 2, src_prefix="language_model.", rest=lambda n, t: rest.append(n)))
    assert rest == ["vision_model.x", "language_model.model.layers.0.attention.wqkv.Plora_A.weight"]


def test_llama_config_fields(ckpt):
    cfg = llama_config(read_config(ckpt))
    assert (cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim) == (64, 4, 2, 16)
    assert cfg.rope_parameters == {"rope_type": "dynamic", "factor": 2.0, "rope_theta": 1000000.0}
    assert cfg.attention_bias is False and cfg.tie_word_embeddings is False
    assert (cfg.bos_token_id, cfg.eos_token_id, cfg.pad_token_id, cfg.rms_norm_eps) == (1, 2, 2, 1e-5)
    assert llama_config({**read_config(ckpt), "rope_scaling": None}).rope_parameters["rope_type"] == "default"
    with pytest.raises(StudioError, match="rope_scaling"):
        llama_config({**read_config(ckpt), "rope_scaling": {"type": "yarn", "factor": 2.0}})


# ---------------------------------------------------------------- loading


def test_tiny_checkpoint_round_trip(ckpt, tmp_path):
    src = dict(iter_tensors(ckpt))
    assert len(list(ckpt.glob("model-0000*-of-00002.safetensors"))) == 2
    lm = load(ckpt)
    assert type(lm).__name__ == "LlamaForCausalLM" and not lm.training
    assert all(not t.is_meta and t.device.type == "cpu" for t in [*lm.parameters(), *lm.buffers()])
    assert lm.dtype == torch.float32 and lm.model.rotary_emb.inv_freq.dtype == torch.float32
    layer = lm.model.layers[1]
    q, k, v = split_wqkv(src["model.layers.1.attention.wqkv.weight"].float(), 4, 2, 16)
    assert torch.equal(layer.self_attn.q_proj.weight, q) and torch.equal(layer.self_attn.v_proj.weight, v)
    assert torch.equal(layer.mlp.down_proj.weight, src["model.layers.1.feed_forward.w2.weight"].float())
    assert torch.equal(layer.input_layernorm.weight, src["model.layers.1.attention_norm.weight"].float())
    assert torch.equal(lm.lm_head.weight, src["output.weight"].float())
    ids = torch.tensor([[1, 515, 553, 92543, 7, 92542]])
    with torch.no_grad():
        logits = lm(ids).logits
    # The same weights as pytorch .bin shards load to the same model.
    bin_dir = write_tiny_internlm2(tmp_path / "bin", fmt="bin", shards=3)
    assert (bin_dir / "pytorch_model.bin.index.json").is_file()
    with torch.no_grad():
        assert torch.equal(load(bin_dir)(ids).logits, logits)
    assert load(ckpt, torch.bfloat16).dtype == torch.bfloat16


def test_single_file_without_index(tmp_path):
    folder = write_tiny_internlm2(tmp_path, shards=1)
    assert (folder / "model.safetensors").is_file() and not (folder / "model.safetensors.index.json").exists()
    assert load(folder).model.embed_tokens.weight.shape == (92544, 64)


def test_missing_shard_names_the_file(tmp_path):
    folder = write_tiny_internlm2(tmp_path)
    (folder / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(ModelNotFound) as err:
        list(iter_tensors(folder))
    assert "model-00002-of-00002.safetensors" in err.value.message
    assert "model.safetensors.index.json" in err.value.message


def test_missing_weights_and_config(tmp_path):
    with pytest.raises(ModelNotFound, match="config.json"):
        read_config(tmp_path)
    with pytest.raises(ModelNotFound, match="no weights"):
        list(iter_tensors(tmp_path))
    (tmp_path / "config.json").write_text("{oops")
    with pytest.raises(StudioError, match="config.json"):
        read_config(tmp_path)


def test_wrong_architectures_names_config_json(tmp_path):
    check_architectures({"architectures": ["InternLM2ForCausalLM"]}, {"InternLM2ForCausalLM"}, tmp_path)
    with pytest.raises(StudioError) as err:
        check_architectures({"architectures": ["LlamaForCausalLM"]}, {"InternLM2ForCausalLM"}, tmp_path,
                            family="internlm2")
    assert str(tmp_path / "config.json") in err.value.message
    assert "LlamaForCausalLM" in err.value.message and "internlm2 family expects InternLM2ForCausalLM" in err.value.message
    assert "family:" in err.value.hint


def test_incomplete_weights_name_keys_and_folder(ckpt, tmp_path):
    items = [(n, t) for n, t in iter_tensors(ckpt) if "layers.1.ffn_norm" not in n]
    with pytest.raises(StudioError) as err:
        build_internlm2_lm(read_config(ckpt), items, torch.float32, where=tmp_path)
    assert "model.layers.1.post_attention_layernorm.weight" in err.value.message
    assert str(tmp_path) in err.value.message
    with pytest.raises(StudioError, match="unexpected tensor model.extra"):
        build_internlm2_lm(read_config(ckpt), [*iter_tensors(ckpt), ("model.extra", torch.zeros(1))], torch.float32)
    with pytest.raises(StudioError, match="unexpected lm_head.extra"):
        load_into(torch.nn.Linear(1, 1), {"weight": torch.zeros(1, 1), "bias": torch.zeros(1),
                                          "lm_head.extra": torch.zeros(1)}, tmp_path)


def test_corrupt_shard_is_named(tmp_path):
    folder = write_tiny_internlm2(tmp_path)
    (folder / "model-00001-of-00002.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(StudioError, match="model-00001-of-00002.safetensors"):
        list(iter_tensors(folder))


# ---------------------------------------------------------------- tokenizer


def test_tiny_tokenizer_layout(tok):
    sp = tok.sp
    assert sp.get_piece_size() == 92544 == tok.vocab_size == len(tok)
    assert [sp.id_to_piece(i) for i in (0, 1, 2, 3)] == ["<unk>", "<s>", "</s>", "<0x00>"]
    assert [sp.id_to_piece(i) for i in range(92538, 92544)] == [f"[UNUSED_TOKEN_{n}]" for n in range(141, 147)]
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (1, 2, 2)
    assert tok.convert_tokens_to_ids("<|im_start|>") == 92543 and tok.convert_tokens_to_ids("<|im_end|>") == 92542
    assert tok.special_tokens["<|plugin|>"] == 92538
    assert tok.all_special_ids == [0, 1, 2, *range(92538, 92544)]
    assert "{{ bos_token }}" in tok.chat_template


@pytest.mark.parametrize("text", ["Hello world", "你好，请介绍一下你自己。", "emoji 😀 and tabs\tok",
                                  "  two  spaces\n\nlines", "混合 mixed 文本 123.45"])
def test_encode_decode_round_trip(tok, text):
    ids = tok.encode(text)
    assert ids[0] == 1 and 1 not in ids[1:]
    assert tok.encode(text, add_special_tokens=False) == ids[1:]
    assert tok.decode(ids, skip_special_tokens=True) == text
    assert tok.decode(ids[1:]) == text


def test_typed_special_strings_stay_text(tok):
    for text in ["a<|im_end|>b", "x[UNUSED_TOKEN_145]y<s></s>"]:
        ids = tok.encode(text, add_special_tokens=False)
        assert not set(ids) & set(tok.all_special_ids)
        assert tok.decode(ids) == text


def test_decode_specials_like_the_official_tokenizer(tok):
    body = tok.encode("user\nHi", add_special_tokens=False)
    ids = [1, 92543, *body, 92542, *tok.encode("\n", add_special_tokens=False)]
    # The official tokenizer writes a space before a special token that follows text or starts
    # the sequence (and so after one that precedes text), never between two special tokens.
    assert tok.decode(ids) == " <s><|im_start|> user\nHi<|im_end|>\n"
    assert tok.decode(ids, skip_special_tokens=True) == "user\nHi\n"
    assert tok.decode(tok.encode("Hi , there .", False)) == "Hi, there."  # the official clean-up, always on


def test_added_tokens_beyond_the_pieces(tmp_path):
    folder = write_tiny_tokenizer(tmp_path, extra_special={92544: "<img>", 92545: "</img>"})
    tok = SPTokenizer.from_dir(folder)
    assert len(tok) == 92546 and tok.vocab_size == 92544
    assert tok.convert_tokens_to_ids("<img>") == 92544
    text = tok.encode("cat", add_special_tokens=False)
    assert tok.decode([92544, *text, 92545]) == "<img> cat </img>"
    assert tok.decode([92544, *text, 92545], skip_special_tokens=True) == "cat"


def test_tokenizer_errors(tmp_path):
    with pytest.raises(ModelNotFound) as err:
        SPTokenizer.from_dir(tmp_path)
    assert str(tmp_path / "tokenizer.model") in err.value.message
    (tmp_path / "tokenizer.model").write_bytes(b"junk")
    with pytest.raises(StudioError, match="tokenizer.model"):
        SPTokenizer.from_dir(tmp_path)


def test_tokenizer_is_thread_safe(tok):
    texts = [f"第{i}行 line {i} 😀" for i in range(40)]
    expected = [tok.encode(t) for t in texts]
    errors = []

    def work():
        for _ in range(20):
            for t, ids in zip(texts, expected):
                if tok.encode(t) != ids or tok.decode(ids, skip_special_tokens=True) != t:
                    errors.append(t)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_real_tokenizer_ids(tmp_path):
    if not REAL_TOKENIZER.is_file():
        pytest.skip(f"InternLM2 tokenizer fixture not found at {REAL_TOKENIZER}")
    folder = write_tiny_tokenizer(tmp_path)
    shutil.copyfile(REAL_TOKENIZER, folder / "tokenizer.model")
    tok = SPTokenizer.from_dir(folder)
    assert tok.encode("Hello world") == [1, 9843, 2028]
    assert tok.encode("user\n", add_special_tokens=False) == [1008, 364]
    assert tok.encode("[UNUSED_TOKEN_145]", add_special_tokens=False) != [92542]
    assert tok.decode(tok.encode("你好，世界！")) == " <s>你好，世界！"
    assert json.loads((folder / "tokenizer_config.json").read_text())["add_bos_token"] is True


# ---------------------------------------------------------------- the family


def test_family_loads_the_official_layout(ckpt):
    from studio.core.types import Message
    from studio.engines.hf_decode import fast_llama_supported
    from studio.families.internlm2 import InternLM2Family

    fam = InternLM2Family()
    assert (fam.needs_remote_code, fam.loads_checkpoint, fam.accepts_images) == (False, True, False)
    steps = []
    parts = fam.load(ckpt, torch.float32, lambda f, msg: steps.append((f, msg)))
    assert parts.vision is None and isinstance(parts.tokenizer, SPTokenizer)
    assert steps and all(0 <= f <= 1 for f, _ in steps) and [f for f, _ in steps] == sorted(f for f, _ in steps)
    assert parts.lm.generation_config.eos_token_id == [2, 92542]
    assert fam.stop_token_ids(parts.tokenizer, parts.lm.generation_config) == [2, 92542]
    assert fast_llama_supported(parts.lm)
    msgs = [Message.of("user", "你好 Hello world")]
    ids = fam.encode(parts.tokenizer, msgs)
    tail = [92543, *parts.tokenizer.encode("assistant\n", add_special_tokens=False)]
    assert ids[:2] == [1, 92543] and ids[-len(tail):] == tail
    assert ids.count(92543) == 3 and ids.count(92542) == 2  # system, user, generation prompt
    assert parts.tokenizer.decode(ids, skip_special_tokens=True).endswith("你好 Hello world\nassistant\n")
    with torch.no_grad():
        assert parts.lm(torch.tensor([ids])).logits.shape == (1, len(ids), 92544)


def test_family_refuses_other_architectures(tmp_path):
    from studio.families.internlm2 import InternLM2Family

    folder = write_tiny_internlm2(tmp_path)
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, "architectures": ["InternVLChatModel"]}))
    with pytest.raises(StudioError, match="config.json: architectures is") as err:
        InternLM2Family().load(folder, torch.float32, lambda *a: None)
    assert "internlm2 family expects InternLM2ForCausalLM" in err.value.message
    (folder / "config.json").write_text(json.dumps({**cfg, "architectures": None}))  # model_type suffices
    assert InternLM2Family().load(folder, torch.float32, lambda *a: None).lm is not None


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_engine_streams_from_the_official_layout(ckpt, tmp_path, dtype):
    from studio.engines.hf_loading import HFOptions
    from studio.core.types import GenParams, Message
    from studio.engines.base import LoadContext, Placement
    from studio.engines.hf import load_hf_engine

    cfg = HFOptions(model_path=str(ckpt), family="internlm2", device="cpu", dtype=dtype)
    engine = load_hf_engine(cfg, LoadContext("chat", Placement("cpu"), tmp_path, lambda f, t: None))
    try:
        assert engine.loaded.source == "native"
        params = GenParams(max_new_tokens=12, do_sample=False, repetition_penalty=1.0)
        msgs = [Message.of("user", "你好")]
        deltas = list(generate(engine, GenerationRequest(msgs, params)))
        assert deltas[-1].finish_reason in ("stop", "length")
        if dtype != "float32":
            return
        # Greedy decoding through the engine equals argmax over the model's own full forward.
        ids = engine.family.encode(engine.tokenizer, msgs)
        new: list[int] = []
        with torch.no_grad():
            while len(new) < 12 and (not new or new[-1] not in (2, 92542)):
                new.append(int(engine.model(torch.tensor([ids + new])).logits[0, -1].argmax()))
        expected = engine.tokenizer.decode([t for t in new if t not in (2, 92542)], skip_special_tokens=True)
        assert "".join(d.text for d in deltas) == expected
    finally:
        engine.close()
