"""A tiny random-weight InternLM3-8B-Instruct checkpoint in the official on-disk layout, written at test time.

- `write_tiny_internlm3_tokenizer`: a real SentencePiece `tokenizer.model` (the small BPE model of
  tiny_checkpoints, byte fallback on, no dummy prefix, as InternLM3's), padded to InternLM3's 128133
  pieces so that 127980..128126 are `[UNUSED_TOKEN_0]`..`[UNUSED_TOKEN_146]` and 128127..128132 are
  `<|plugin|>` … `<|im_start|>` as in the real model, plus `tokenizer_config.json` (the official
  added tokens 128111..128132, `add_prefix_space`, the chat template) and `special_tokens_map.json`.
- `internlm3_config`: the official config.json fields with tiny dimensions; head_dim 32 differs from
  hidden_size / heads (16) on purpose, which the real model does not, but its code allows.
- `write_tiny_internlm3`: config.json, generation_config.json, Llama-named safetensors shards, the tokenizer.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from tests.support.tiny_checkpoints import _piece, _trained_base, write_shards

PIECES = 128133  # pieces in the real tokenizer.model
VOCAB = 128512  # embedding rows in the real config.json (padded past the pieces)
FIRST_UNUSED = 127980  # [UNUSED_TOKEN_0]; 128126 is [UNUSED_TOKEN_146]
NAMED_PIECES = ["<|plugin|>", "<|interpreter|>", "<|action_end|>", "<|action_start|>", "<|im_end|>", "<|im_start|>"]
# tokenizer_config.json's added tokens: the thinking-mode markers sit on [UNUSED_TOKEN_131..146].
THINKING = ["<restate>", "</restate>", "<planning>", "</planning>", "<recollect>", "</recollect>", "<execution>",
            "</execution>", "<review>", "</review>", "<summarize>", "</summarize>", "<retry>", "</retry>",
            "<conclude>", "</conclude>"]
ADDED = {0: "<unk>", 1: "<s>", 2: "</s>", **{128111 + i: t for i, t in enumerate(THINKING)},
         **{128127 + i: t for i, t in enumerate(NAMED_PIECES)}}
ADDITIONAL = ["<|im_start|>", "<|im_end|>", "<|action_start|>", "<|action_end|>", "<|interpreter|>", "<|plugin|>",
              *THINKING]
CHAT_TEMPLATE = ("{{ bos_token }}{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
                 "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
                 "{{ '<|im_start|>assistant\\n' }}{% endif %}")


@functools.lru_cache(maxsize=1)
def tiny_internlm3_sentencepiece() -> bytes:
    """The serialised tiny model with InternLM3's piece layout."""
    import sentencepiece

    base = _trained_base()
    n = sentencepiece.SentencePieceProcessor(model_proto=base).get_piece_size()
    extra = [f"[FILLER_TOKEN_{i}]" for i in range(n, FIRST_UNUSED)]
    extra += [f"[UNUSED_TOKEN_{k}]" for k in range(147)] + NAMED_PIECES
    assert n + len(extra) == PIECES
    return base + b"".join(_piece(p) for p in extra)


def _entry(name: str) -> dict:
    return {"content": name, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False,
            "special": True}


def write_tiny_internlm3_tokenizer(folder: Path) -> Path:
    """tokenizer.model + tokenizer_config.json + special_tokens_map.json as InternLM3-8B-Instruct ships them."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tokenizer.model").write_bytes(tiny_internlm3_sentencepiece())
    config = {
        "add_bos_token": True, "add_eos_token": False, "add_prefix_space": True,
        "added_tokens_decoder": {str(i): _entry(t) for i, t in sorted(ADDED.items())},
        "additional_special_tokens": ADDITIONAL,
        "auto_map": {"AutoTokenizer": ["tokenization_internlm3.InternLM3Tokenizer", None]},
        "bos_token": "<s>", "chat_template": CHAT_TEMPLATE, "clean_up_tokenization_spaces": False,
        "eos_token": "</s>", "extra_special_tokens": {}, "model_max_length": 1000000000000000019884624838656,
        "pad_token": "</s>", "sp_model_kwargs": {}, "spaces_between_special_tokens": False,
        "tokenizer_class": "InternLM3Tokenizer", "unk_token": "<unk>", "use_default_system_prompt": False,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False), encoding="utf-8")
    plain = {"lstrip": False, "normalized": False, "rstrip": False, "single_word": False}
    smap = {"additional_special_tokens": ADDITIONAL, "bos_token": {"content": "<s>", **plain},
            "eos_token": {"content": "</s>", **plain}, "pad_token": {"content": "</s>", **plain},
            "unk_token": {"content": "<unk>", **plain}}
    (folder / "special_tokens_map.json").write_text(json.dumps(smap, indent=2), encoding="utf-8")
    return folder


def internlm3_config(**dims) -> dict:
    """An official-shaped InternLM3-8B-Instruct config.json dict with tiny dimensions (override any field)."""
    cfg = {
        "architectures": ["InternLM3ForCausalLM"], "attention_dropout": 0.0,
        "auto_map": {"AutoConfig": "configuration_internlm3.InternLM3Config",
                     "AutoModel": "modeling_internlm3.InternLM3Model",
                     "AutoModelForCausalLM": "modeling_internlm3.InternLM3ForCausalLM"},
        "bias": False, "bos_token_id": 1, "eos_token_id": 2, "head_dim": 32, "hidden_act": "silu",
        "hidden_size": 64, "initializer_range": 0.02, "intermediate_size": 128, "max_position_embeddings": 32768,
        "model_type": "internlm3", "num_attention_heads": 4, "num_hidden_layers": 2, "num_key_value_heads": 2,
        "pad_token_id": 2, "qkv_bias": False, "rms_norm_eps": 1e-05,
        "rope_scaling": {"factor": 6.0, "rope_type": "dynamic"}, "rope_theta": 50000000,
        "tie_word_embeddings": False, "torch_dtype": "bfloat16", "transformers_version": "4.47.1",
        "use_cache": True, "vocab_size": VOCAB,
    }
    cfg.update(dims)
    return cfg


def internlm3_tensors(cfg: dict, seed: int = 0, dtype: str = "bfloat16") -> dict:
    """Random weights under the official (Llama) names, scaled so greedy choices are clear-cut."""
    import torch

    g = torch.Generator().manual_seed(seed)
    dt = getattr(torch, dtype)
    hidden, inter = cfg["hidden_size"], cfg["intermediate_size"]
    d = cfg.get("head_dim") or hidden // cfg["num_attention_heads"]
    q, kv = cfg["num_attention_heads"] * d, cfg["num_key_value_heads"] * d

    def rand(*shape, std=0.1, mean=0.0):
        return (torch.randn(*shape, generator=g) * std + mean).to(dt)

    out = {"model.embed_tokens.weight": rand(cfg["vocab_size"], hidden, std=1.0)}
    for n in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{n}."
        for name, rows in (("q_proj", q), ("k_proj", kv), ("v_proj", kv)):
            out[f"{p}self_attn.{name}.weight"] = rand(rows, hidden)
            if cfg.get("qkv_bias"):
                out[f"{p}self_attn.{name}.bias"] = rand(rows)
        out[p + "self_attn.o_proj.weight"] = rand(hidden, q)
        for name, shape in (("gate_proj", (inter, hidden)), ("up_proj", (inter, hidden)), ("down_proj", (hidden, inter))):
            out[f"{p}mlp.{name}.weight"] = rand(*shape)
            if cfg.get("bias"):
                out[f"{p}mlp.{name}.bias"] = rand(shape[0])
        if cfg.get("bias"):
            out[p + "self_attn.o_proj.bias"] = rand(hidden)
        out[p + "input_layernorm.weight"] = rand(hidden, mean=1.0)
        out[p + "post_attention_layernorm.weight"] = rand(hidden, mean=1.0)
    out["model.norm.weight"] = rand(hidden, mean=1.0)
    out["lm_head.weight"] = rand(cfg["vocab_size"], hidden, std=0.3)
    return out


def write_tiny_internlm3(folder: Path, shards: int = 2, seed: int = 0, dtype: str = "bfloat16", **dims) -> Path:
    """A random-weight InternLM3-8B-Instruct checkpoint in the official layout; returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = internlm3_config(**dims)
    (folder / "config.json").write_text(json.dumps(cfg, indent=4), encoding="utf-8")
    gen = {"bos_token_id": 1, "eos_token_id": [2, 128131], "pad_token_id": 2, "transformers_version": "4.47.1"}
    (folder / "generation_config.json").write_text(json.dumps(gen, indent=2), encoding="utf-8")
    write_shards(folder, internlm3_tensors(cfg, seed, dtype), shards)
    write_tiny_internlm3_tokenizer(folder)
    return folder
