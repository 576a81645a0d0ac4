"""A tiny random-weight InternVL2 checkpoint in the official on-disk layout, written at test time.

config.json carries the official InternVLChatModel fields (InternVL2-2B values) with tiny
dimensions; weights use the official names (`vision_model.*`, `mlp1.*`, `language_model.*`) in
sharded safetensors with an index; the tokenizer is the tiny InternLM2 one plus InternVL2's
image tokens at their official ids.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.tiny_checkpoints import (REAL_VOCAB, internlm2_config, internlm2_tensors, write_shards,
                                            write_tiny_tokenizer)

INTERNVL_SPECIALS = {92544: "<img>", 92545: "</img>", 92546: "<IMG_CONTEXT>", 92547: "<quad>", 92548: "</quad>",
                     92549: "<ref>", 92550: "</ref>", 92551: "<box>", 92552: "</box>"}
VISION_DEFAULTS = dict(vision_hidden=32, vision_layers=2, vision_heads=2, vision_intermediate=64,
                       image_size=448, patch_size=14)
LLM_DEFAULTS = dict(hidden_size=64, num_attention_heads=4, num_key_value_heads=2, num_hidden_layers=2,
                    intermediate_size=128, vocab_size=92553)


def internvl2_config(vision: dict, llm: dict) -> dict:
    """An official-shaped InternVL2-2B config.json dict with the given tiny dimensions."""
    llm_cfg = internlm2_config(**llm)
    llm_cfg.update({"_name_or_path": "internlm/internlm2-chat-1_8b", "attn_implementation": "flash_attention_2",
                    "transformers_version": "4.37.2"})
    vision_cfg = {
        "architectures": ["InternVisionModel"], "attention_dropout": 0.0, "drop_path_rate": 0.0, "dropout": 0.0,
        "hidden_act": "gelu", "hidden_size": vision["vision_hidden"], "image_size": vision["image_size"],
        "initializer_factor": 1.0, "initializer_range": 0.02, "intermediate_size": vision["vision_intermediate"],
        "layer_norm_eps": 1e-06, "model_type": "intern_vit_6b", "norm_type": "layer_norm",
        "num_attention_heads": vision["vision_heads"], "num_channels": 3,
        "num_hidden_layers": vision["vision_layers"], "patch_size": vision["patch_size"],
        "qk_normalization": False, "qkv_bias": True, "torch_dtype": "bfloat16",
        "transformers_version": "4.37.2", "use_bfloat16": True, "use_flash_attn": True,
    }
    return {
        "architectures": ["InternVLChatModel"],
        "auto_map": {"AutoConfig": "configuration_internvl_chat.InternVLChatConfig",
                     "AutoModel": "modeling_internvl_chat.InternVLChatModel",
                     "AutoModelForCausalLM": "modeling_internvl_chat.InternVLChatModel"},
        "downsample_ratio": 0.5, "dynamic_image_size": True, "force_image_size": vision["image_size"],
        "llm_config": llm_cfg, "max_dynamic_patch": 12, "min_dynamic_patch": 1, "model_type": "internvl_chat",
        "ps_version": "v2", "select_layer": -1, "template": "internlm2-chat", "torch_dtype": "bfloat16",
        "use_backbone_lora": 0, "use_llm_lora": 0, "use_thumbnail": True, "vision_config": vision_cfg,
    }


def internvl2_vision_tensors(cfg: dict, seed: int, dtype: str) -> dict:
    """Random `vision_model.*` and `mlp1.*` weights under the official names and shapes."""
    import torch

    g = torch.Generator().manual_seed(seed + 1)
    dt = getattr(torch, dtype)
    vc, llm_hidden = cfg["vision_config"], cfg["llm_config"]["hidden_size"]
    h, inter, patch = vc["hidden_size"], vc["intermediate_size"], vc["patch_size"]
    grid = vc["image_size"] // patch
    merged = h * round(1 / cfg["downsample_ratio"]) ** 2

    def rand(*shape, std=0.1, mean=0.0):
        return (torch.randn(*shape, generator=g) * std + mean).to(dt)

    p = "vision_model."
    out = {p + "embeddings.class_embedding": rand(1, 1, h, std=0.5),
           p + "embeddings.patch_embedding.weight": rand(h, 3, patch, patch, std=0.05),
           p + "embeddings.patch_embedding.bias": rand(h),
           p + "embeddings.position_embedding": rand(1, grid * grid + 1, h, std=0.5)}
    for n in range(vc["num_hidden_layers"]):
        q = f"{p}encoder.layers.{n}."
        for name, shape in (("attn.qkv", (3 * h, h)), ("attn.proj", (h, h)), ("mlp.fc1", (inter, h)),
                            ("mlp.fc2", (h, inter))):
            out[q + name + ".weight"] = rand(*shape, std=0.2)
            out[q + name + ".bias"] = rand(shape[0])
        for name in ("norm1", "norm2"):
            out[q + name + ".weight"] = rand(h, mean=1.0)
            out[q + name + ".bias"] = rand(h)
        # Layer scale well away from 1, so that a model ignoring it would show.
        out[q + "ls1"] = rand(h, std=0.3, mean=0.5)
        out[q + "ls2"] = rand(h, std=0.3, mean=0.5)
    out.update({"mlp1.0.weight": rand(merged, mean=1.0), "mlp1.0.bias": rand(merged),
                "mlp1.1.weight": rand(llm_hidden, merged, std=0.2), "mlp1.1.bias": rand(llm_hidden),
                "mlp1.3.weight": rand(llm_hidden, llm_hidden, std=0.2), "mlp1.3.bias": rand(llm_hidden)})
    return out


def write_tiny_internvl2(folder: Path, seed: int = 0, shards: int = 2, dtype: str = "bfloat16", **dims) -> Path:
    """A random-weight InternVL2 checkpoint in the official layout; returns the folder.

    `dims` overrides VISION_DEFAULTS keys (vision_hidden …) and any llm_config field (hidden_size …)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vision = {k: dims.pop(k, v) for k, v in VISION_DEFAULTS.items()}
    cfg = internvl2_config(vision, {**LLM_DEFAULTS, **dims})
    (folder / "config.json").write_text(json.dumps(cfg, indent=2), encoding="utf-8")
    gen = {"_from_model_config": True, "eos_token_id": [92542, 92543], "transformers_version": "4.37.2"}
    (folder / "generation_config.json").write_text(json.dumps(gen, indent=2), encoding="utf-8")
    tensors = internvl2_vision_tensors(cfg, seed, dtype)
    tensors.update(internlm2_tensors(cfg["llm_config"], seed, dtype, prefix="language_model."))
    write_shards(folder, tensors, shards)
    write_tiny_tokenizer(folder, REAL_VOCAB, extra_special=INTERNVL_SPECIALS)
    return folder
