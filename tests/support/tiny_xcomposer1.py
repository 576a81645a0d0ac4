"""A tiny random-weight InternLM-XComposer v1 checkpoint in the official on-disk layout.

config.json has the official InternLMXComposerForCausalLM fields (internlm-xcomposer-7b values:
`intern_converted_llm`, `kqvo_bias`, `internlm_lora`, `num_query_token` …) with tiny LM sizes and a
small LoRA (rank 8, alpha 16: scaling 2). The official code hard-codes the image side's sizes, so
the tiny ones exist only as tensor shapes: an EVA tower of width 176 (two 88-wide heads, the
official head width), 2 blocks, patch 14 at 224 px (257 positions); a Q-Former of width 128 (two
64-wide heads), 2 layers (cross-attention in layer 0), 8 query tokens. Weights are .bin shards with
an index, as uploaded; the tokenizer is the tiny v1 one with `<TOKENS_UNUSED_0/1>` at 103027/103028.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.tiny_checkpoints import write_shards
from tests.support.tiny_internlm1 import XCOMPOSER_MARKERS, internlm1_config, internlm1_tensors, write_v1_tokenizer

VISION = dict(width=176, layers=2, intermediate=768, patch=14, image=224, q_width=128, q_layers=2,
              q_intermediate=256, queries=8)


def xcomposer1_config(queries: int = VISION["queries"], lora_r: int = 8, lora_alpha: int = 16, **llm) -> dict:
    """An official-shaped internlm-xcomposer-7b config.json dict with tiny LM sizes."""
    cfg = internlm1_config(**llm)
    lora = {"freeze": False, "learn_param": ["q", "v", "ffn"], "lora_alpha": lora_alpha, "lora_dropout": 0.05,
            "lora_r": lora_r}
    cfg.update({
        "_name_or_path": "chat", "architectures": ["InternLMXComposerForCausalLM"],
        "auto_map": {"AutoConfig": "configuration_InternLM_XComposer.InternLMXComposerConfig",
                     "AutoModel": "modeling_InternLM_XComposer.InternLMXComposerForCausalLM",
                     "AutoModelForCausalLM": "modeling_InternLM_XComposer.InternLMXComposerForCausalLM"},
        "device": "cuda", "intern_converted_llm": True, "internlm_lora": lora, "kqvo_bias": True, "lora_cfg": lora,
        "model_type": "InternLMXComposer", "num_quant": 32, "num_query_token": queries, "pad_token_id": -1,
        "rms_norm_eps": 1e-05, "torch_dtype": "float32", "transformers_version": "4.30.2",
    })
    return cfg


def _vision_tensors(cfg: dict, g, dt) -> dict:
    """Random EVA / Q-Former / projection / flag tensors under the official names."""
    import torch

    v = VISION

    def rand(*shape, std=0.1, mean=0.0):
        return (torch.randn(*shape, generator=g) * std + mean).to(dt)

    w, qw, hidden = v["width"], v["q_width"], cfg["hidden_size"]
    grid = v["image"] // v["patch"]
    out = {"visual_encoder.cls_token": rand(1, 1, w), "visual_encoder.pos_embed": rand(1, grid * grid + 1, w),
           "visual_encoder.patch_embed.proj.weight": rand(w, 3, v["patch"], v["patch"], std=0.02),
           "visual_encoder.patch_embed.proj.bias": rand(w)}
    for n in range(v["layers"]):
        p = f"visual_encoder.blocks.{n}."
        out.update({p + "norm1.weight": rand(w, mean=1.0), p + "norm1.bias": rand(w),
                    p + "attn.q_bias": rand(w), p + "attn.v_bias": rand(w), p + "attn.qkv.weight": rand(3 * w, w),
                    p + "attn.proj.weight": rand(w, w), p + "attn.proj.bias": rand(w),
                    p + "norm2.weight": rand(w, mean=1.0), p + "norm2.bias": rand(w),
                    p + "mlp.fc1.weight": rand(v["intermediate"], w), p + "mlp.fc1.bias": rand(v["intermediate"]),
                    p + "mlp.fc2.weight": rand(w, v["intermediate"]), p + "mlp.fc2.bias": rand(w)})
    out.update({"ln_vision.weight": rand(w, mean=1.0), "ln_vision.bias": rand(w),
                "Qformer.bert.embeddings.LayerNorm.weight": rand(qw, mean=1.0),
                "Qformer.bert.embeddings.LayerNorm.bias": rand(qw),
                "Qformer.bert.embeddings.position_ids": torch.arange(512).expand((1, -1))})
    for n in range(v["q_layers"]):
        p = f"Qformer.bert.encoder.layer.{n}."
        blocks = [("attention", qw)] + ([("crossattention", w)] if n % 2 == 0 else [])
        for block, kv_width in blocks:
            for proj, width in (("query", qw), ("key", kv_width), ("value", kv_width)):
                out[f"{p}{block}.self.{proj}.weight"] = rand(qw, width)
                out[f"{p}{block}.self.{proj}.bias"] = rand(qw)
            out.update({f"{p}{block}.output.dense.weight": rand(qw, qw), f"{p}{block}.output.dense.bias": rand(qw),
                        f"{p}{block}.output.LayerNorm.weight": rand(qw, mean=1.0),
                        f"{p}{block}.output.LayerNorm.bias": rand(qw)})
        out.update({p + "intermediate_query.dense.weight": rand(v["q_intermediate"], qw),
                    p + "intermediate_query.dense.bias": rand(v["q_intermediate"]),
                    p + "output_query.dense.weight": rand(qw, v["q_intermediate"]),
                    p + "output_query.dense.bias": rand(qw),
                    p + "output_query.LayerNorm.weight": rand(qw, mean=1.0), p + "output_query.LayerNorm.bias": rand(qw)})
    out.update({"query_tokens": rand(1, cfg["num_query_token"], qw, std=0.5),
                "internlm_proj.weight": rand(hidden, qw, std=0.3), "internlm_proj.bias": rand(hidden),
                "flag_image_start": rand(1, 1, hidden, std=0.5), "flag_image_end": rand(1, 1, hidden, std=0.5)})
    return out


def xcomposer1_tensors(cfg: dict, seed: int = 0, dtype: str = "float32") -> dict:
    """All tensors: the LM under `internlm_model.` (with LoRA pairs) and the image side."""
    import torch

    g = torch.Generator().manual_seed(seed + 1)
    dt = getattr(torch, dtype)
    out = internlm1_tensors(cfg, seed, dtype, prefix="internlm_model.")
    r, hidden, inter = cfg["internlm_lora"]["lora_r"], cfg["hidden_size"], cfg["intermediate_size"]
    shapes = {"self_attn.q_proj": (hidden, hidden), "self_attn.v_proj": (hidden, hidden),
              "mlp.up_proj": (hidden, inter), "mlp.down_proj": (inter, hidden)}
    for n in range(cfg["num_hidden_layers"]):
        for module, (fan_in, fan_out) in shapes.items():
            p = f"internlm_model.model.layers.{n}.{module}."
            out[p + "lora_A.weight"] = (torch.randn(r, fan_in, generator=g) * 0.1).to(dt)
            out[p + "lora_B.weight"] = (torch.randn(fan_out, r, generator=g) * 0.1).to(dt)
    out.update(_vision_tensors(cfg, g, dt))
    return out


def write_tiny_xcomposer1(folder: Path, shards: int = 3, seed: int = 0, dtype: str = "float32", **llm) -> Path:
    """A random-weight internlm-xcomposer-7b checkpoint in the official layout; returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = xcomposer1_config(**llm)
    (folder / "config.json").write_text(json.dumps(cfg, indent=2), encoding="utf-8")
    write_shards(folder, xcomposer1_tensors(cfg, seed, dtype), shards, "bin")
    write_v1_tokenizer(folder, XCOMPOSER_MARKERS, "InternLMXComposerTokenizer", "tokenization_InternLM_XComposer")
    return folder
