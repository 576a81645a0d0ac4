"""A tiny random-weight InternLM-Chat v1 checkpoint in the official on-disk layout, written at test time.

- `tiny_v1_sentencepiece`: the tiny SentencePiece model of tiny_checkpoints, padded to InternLM v1's
  103168 pieces with the chat markers as user-defined pieces at their real ids (103027 / 103028:
  `<eoh>` / `<eoa>` for InternLM-Chat-7B, `<TOKENS_UNUSED_0>` / `<TOKENS_UNUSED_1>` for XComposer v1).
- `write_v1_tokenizer`: tokenizer.model + tokenizer_config.json + special_tokens_map.json as the
  v1 uploads ship them (no added tokens: bos/eos/unk/pad only).
- `internlm1_config`, `internlm1_tensors`: official config.json fields and weight names
  (`model.layers.N.self_attn.q_proj.bias` …, plus the saved `rotary_emb.inv_freq` buffers).
- `write_tiny_internlm1`: the whole checkpoint (.bin shards with an index, as uploaded).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from tests.support.tiny_checkpoints import _piece, _trained_base, write_shards

V1_VOCAB = 103168
EOH_ID, EOA_ID = 103027, 103028
CHAT_MARKERS = ("<eoh>", "<eoa>")
XCOMPOSER_MARKERS = ("<TOKENS_UNUSED_0>", "<TOKENS_UNUSED_1>")


@functools.lru_cache(maxsize=4)
def tiny_v1_sentencepiece(markers: tuple[str, str] = CHAT_MARKERS, vocab_size: int = V1_VOCAB) -> bytes:
    """The serialised tiny model with `markers` at ids 103027/103028 and fillers elsewhere."""
    import sentencepiece

    base = _trained_base()
    n = sentencepiece.SentencePieceProcessor(model_proto=base).get_piece_size()
    extra = [f"[FILLER_{i}]" for i in range(n, EOH_ID)] + list(markers)
    extra += [f"<TOKENS_UNUSED_{k}>" for k in range(2, vocab_size - EOA_ID + 1)]
    return base + b"".join(_piece(p) for p in extra)


def write_v1_tokenizer(folder: Path, markers: tuple[str, str] = CHAT_MARKERS,
                       tokenizer_class: str = "InternLMTokenizer", module: str = "tokenization_internlm") -> Path:
    """tokenizer.model + tokenizer_config.json + special_tokens_map.json as InternLM-Chat-7B ships them."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tokenizer.model").write_bytes(tiny_v1_sentencepiece(markers))
    config = {"auto_map": {"AutoTokenizer": [f"{module}.{tokenizer_class}", None]},
              "bos_token": "<s>", "clean_up_tokenization_spaces": False, "eos_token": "</s>",
              "model_max_length": 1000000000000000019884624838656, "pad_token": "</s>",
              "tokenizer_class": tokenizer_class, "unk_token": "<unk>"}
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    smap = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "</s>", "unk_token": "<unk>"}
    (folder / "special_tokens_map.json").write_text(json.dumps(smap, indent=2), encoding="utf-8")
    return folder


def internlm1_config(**dims) -> dict:
    """An official-shaped InternLM-Chat-7B config.json dict with tiny dimensions (override any field)."""
    cfg = {
        "architectures": ["InternLMForCausalLM"],
        "auto_map": {"AutoConfig": "configuration_internlm.InternLMConfig",
                     "AutoModel": "modeling_internlm.InternLMForCausalLM",
                     "AutoModelForCausalLM": "modeling_internlm.InternLMForCausalLM"},
        "bias": True, "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu", "hidden_size": 64,
        "initializer_range": 0.02, "intermediate_size": 128, "max_position_embeddings": 2048,
        "model_type": "internlm", "num_attention_heads": 4, "num_hidden_layers": 2, "pad_token_id": 0,
        "rms_norm_eps": 1e-06, "tie_word_embeddings": False, "torch_dtype": "float16",
        "transformers_version": "4.29.2", "use_cache": True, "vocab_size": V1_VOCAB,
    }
    cfg.update(dims)
    return cfg


def internlm1_tensors(cfg: dict, seed: int = 0, dtype: str = "float16", prefix: str = "") -> dict:
    """Random weights under the official InternLM v1 names (scaled so greedy choices are clear-cut)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    dt = getattr(torch, dtype)
    hidden, inter, heads = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_attention_heads"]
    d = hidden // heads

    def rand(*shape, std=0.1, mean=0.0):
        return (torch.randn(*shape, generator=g) * std + mean).to(dt)

    out = {f"{prefix}model.embed_tokens.weight": rand(cfg["vocab_size"], hidden, std=1.0)}
    for n in range(cfg["num_hidden_layers"]):
        p = f"{prefix}model.layers.{n}."
        for proj in "qkvo":
            out[f"{p}self_attn.{proj}_proj.weight"] = rand(hidden, hidden)
            if cfg.get("bias", True):
                out[f"{p}self_attn.{proj}_proj.bias"] = rand(hidden)
        out[p + "self_attn.rotary_emb.inv_freq"] = 1.0 / (10000 ** (torch.arange(0, d, 2).float() / d))
        out[p + "mlp.gate_proj.weight"] = rand(inter, hidden)
        out[p + "mlp.up_proj.weight"] = rand(inter, hidden)
        out[p + "mlp.down_proj.weight"] = rand(hidden, inter)
        out[p + "input_layernorm.weight"] = rand(hidden, mean=1.0)
        out[p + "post_attention_layernorm.weight"] = rand(hidden, mean=1.0)
    out[f"{prefix}model.norm.weight"] = rand(hidden, mean=1.0)
    out[f"{prefix}lm_head.weight"] = rand(cfg["vocab_size"], hidden, std=0.3)
    return out


def write_tiny_internlm1(folder: Path, shards: int = 2, fmt: str = "bin", seed: int = 0,
                         dtype: str = "float16", **dims) -> Path:
    """A random-weight InternLM-Chat v1 checkpoint in the official layout; returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = internlm1_config(**dims)
    (folder / "config.json").write_text(json.dumps(cfg, indent=2), encoding="utf-8")
    gen = {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0, "transformers_version": "4.29.2"}
    (folder / "generation_config.json").write_text(json.dumps(gen, indent=2), encoding="utf-8")
    write_shards(folder, internlm1_tensors(cfg, seed, dtype), shards, fmt)
    write_v1_tokenizer(folder)
    return folder
