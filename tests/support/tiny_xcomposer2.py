"""A tiny random-weight InternLM-XComposer2-VL checkpoint in the official on-disk layout.

config.json has the official InternLMXComposer2ForCausalLM fields (1.8B values, `img_size` 490)
with tiny LM dimensions. The official checkpoint does not describe its CLIP tower in config.json
(the code hard-codes openai/clip-vit-large-patch14-336), so the tiny tower's dimensions exist only
as tensor shapes, which is where the loader reads them from: width 128 (two 64-wide heads, the
CLIP head width), 2 layers, patch 14, and a position table already stretched to 1226 rows (or the
hub's 577 rows with `positions=577`). Every wqkv / wo / w1 / w2 / w3 has Plora_A / Plora_B of
rank `plora_r`. The tokenizer is the tiny InternLM2 one with the chat tokens under their raw names.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.tiny_checkpoints import (REAL_VOCAB, internlm2_config, internlm2_tensors, write_shards,
                                           write_tiny_tokenizer)

LLM_DEFAULTS = dict(hidden_size=64, num_attention_heads=4, num_key_value_heads=2, num_hidden_layers=2,
                    intermediate_size=128, vocab_size=REAL_VOCAB)
VISION_DEFAULTS = dict(vision_hidden=128, vision_layers=2, vision_intermediate=256, patch_size=14,
                       positions=1226, plora_r=8, position_ids=False)
RAW_CHAT_TOKENS = {92538 + k: f"[UNUSED_TOKEN_{141 + k}]" for k in range(6)}
VIT = "vit.vision_tower.vision_model."


def xcomposer2_config(**llm) -> dict:
    """An official-shaped internlm-xcomposer2-vl-1_8b config.json dict with the given LM dimensions."""
    cfg = internlm2_config(**{**LLM_DEFAULTS, **llm})
    cfg.update({
        "_name_or_path": "internlm/internlm-xcomposer2-vl-1_8b",
        "architectures": ["InternLMXComposer2ForCausalLM"],
        "auto_map": {"AutoConfig": "configuration_internlm_xcomposer2.InternLMXcomposer2Config",
                     "AutoModel": "modeling_internlm_xcomposer2.InternLMXComposer2ForCausalLM",
                     "AutoModelForCausalLM": "modeling_internlm_xcomposer2.InternLMXComposer2ForCausalLM"},
        "img_size": 490, "max_length": 4096, "model_type": "internlmxcomposer2",
        "torch_dtype": "bfloat16", "transformers_version": "4.33.1",
    })
    cfg.pop("attn_implementation", None)
    return cfg


def vision_tensors(cfg: dict, v: dict, seed: int, dtype: str) -> dict:
    """Random CLIP tower (`vit.vision_tower.vision_model.*`) and `vision_proj.*` weights."""
    import torch

    g = torch.Generator().manual_seed(seed + 1)
    dt = getattr(torch, dtype)
    d, inter, p, hidden = v["vision_hidden"], v["vision_intermediate"], v["patch_size"], cfg["hidden_size"]

    def rand(*shape, std=0.1, mean=0.0):
        return (torch.randn(*shape, generator=g) * std + mean).to(dt)

    out = {VIT + "embeddings.class_embedding": rand(d, std=0.5),
           VIT + "embeddings.patch_embedding.weight": rand(d, 3, p, p, std=0.05),
           VIT + "embeddings.position_embedding.weight": rand(v["positions"], d, std=0.5),
           VIT + "pre_layrnorm.weight": rand(d, mean=1.0), VIT + "pre_layrnorm.bias": rand(d)}
    if v["position_ids"]:
        out[VIT + "embeddings.position_ids"] = torch.arange(v["positions"]).expand((1, -1)).clone()
    for n in range(v["vision_layers"]):
        pre = f"{VIT}encoder.layers.{n}."
        for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
            out[f"{pre}self_attn.{name}.weight"], out[f"{pre}self_attn.{name}.bias"] = rand(d, d), rand(d)
        for name in ("layer_norm1", "layer_norm2"):
            out[f"{pre}{name}.weight"], out[f"{pre}{name}.bias"] = rand(d, mean=1.0), rand(d)
        out[f"{pre}mlp.fc1.weight"], out[f"{pre}mlp.fc1.bias"] = rand(inter, d), rand(inter)
        out[f"{pre}mlp.fc2.weight"], out[f"{pre}mlp.fc2.bias"] = rand(d, inter), rand(d)
    out[VIT + "post_layernorm.weight"], out[VIT + "post_layernorm.bias"] = rand(d, mean=1.0), rand(d)
    out["vision_proj.0.weight"], out["vision_proj.0.bias"] = rand(hidden, d), rand(hidden)
    out["vision_proj.2.weight"], out["vision_proj.2.bias"] = rand(hidden, hidden), rand(hidden)
    return out


def plora_tensors(cfg: dict, rank: int, seed: int, dtype: str) -> dict:
    """Random Plora_A [r, in] / Plora_B [out, r] for every wqkv, wo, w1, w2, w3."""
    import torch

    g = torch.Generator().manual_seed(seed + 2)
    dt = getattr(torch, dtype)
    hidden, inter = cfg["hidden_size"], cfg["intermediate_size"]
    d = hidden // cfg["num_attention_heads"]
    qkv = (cfg["num_attention_heads"] + 2 * cfg["num_key_value_heads"]) * d
    shapes = {"attention.wqkv": (hidden, qkv), "attention.wo": (hidden, hidden),
              "feed_forward.w1": (hidden, inter), "feed_forward.w3": (hidden, inter),
              "feed_forward.w2": (inter, hidden)}
    out = {}
    for n in range(cfg["num_hidden_layers"]):
        for name, (fan_in, fan_out) in shapes.items():
            pre = f"model.layers.{n}.{name}."
            out[pre + "Plora_A.weight"] = (torch.randn(rank, fan_in, generator=g) * 0.2).to(dt)
            out[pre + "Plora_B.weight"] = (torch.randn(fan_out, rank, generator=g) * 0.2).to(dt)
    return out


def write_tokenizer(folder: Path, vocab_size: int) -> None:
    """The tiny tokenizer as XComposer2 ships it: raw [UNUSED_TOKEN_*] names, its own tokenizer class."""
    write_tiny_tokenizer(folder, vocab_size, extra_special=RAW_CHAT_TOKENS)
    path = folder / "tokenizer_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config.pop("chat_template", None)
    config["auto_map"] = {"AutoTokenizer": ["tokenization_internlm_xcomposer2.InternLMXComposer2Tokenizer", None]}
    config["tokenizer_class"] = "InternLMXComposer2Tokenizer"
    path.write_text(json.dumps(config, indent=2, ensure_ascii=False), encoding="utf-8")


def write_tiny_xcomposer2(folder: Path, seed: int = 0, shards: int = 2, dtype: str = "bfloat16", **dims) -> Path:
    """A random-weight XComposer2-VL checkpoint in the official layout; returns the folder.

    `dims` may override LM config fields (hidden_size …) and the VISION_DEFAULTS keys."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vision = {k: dims.pop(k, default) for k, default in VISION_DEFAULTS.items()}
    cfg = xcomposer2_config(**dims)
    (folder / "config.json").write_text(json.dumps(cfg, indent=2), encoding="utf-8")
    gen = {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2, "transformers_version": "4.33.1"}
    (folder / "generation_config.json").write_text(json.dumps(gen, indent=2), encoding="utf-8")
    tensors = internlm2_tensors(cfg, seed, dtype)
    tensors.update(plora_tensors(cfg, vision["plora_r"], seed, dtype))
    tensors.update(vision_tensors(cfg, vision, seed, dtype))
    write_shards(folder, tensors, shards)
    write_tokenizer(folder, cfg["vocab_size"])
    return folder
