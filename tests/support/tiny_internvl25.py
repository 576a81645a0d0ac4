"""Tiny random-weight InternVL2.5 / InternVL3 checkpoints in the official on-disk layout, written at test time.

Three styles, all `InternVLChatModel` with `template: internvl2_5` and the InternViT-300M-V2_5
vision config (tiny widths):
- "internvl3": InternVL3-2B's layout: a Qwen2.5 language model (`llm_config` with the
  dynamic rope_scaling InternVL3 ships), the Qwen2 tokenizer files, `language_model.*` in
  transformers' Qwen2 names;
- "internvl2_5-qwen2": InternVL2.5-1B's (Qwen2.5 without rope_scaling);
- "internvl2_5-internlm2": InternVL2.5-2B's (InternLM2.5 language model, SentencePiece tokenizer);
- "internvl3-vit6b": InternVL3-38B/78B's (and InternVL2.5-26B+'s) InternViT-6B-448px-V2_5 vision
  config: RMSNorm without biases, q/k RMS-normalised over all heads, no qkv bias; Qwen2.5 LM.

The Qwen2 tokenizer is built here (nothing is downloaded): a byte-level BPE trained with
`tokenizers` on a small corpus under Qwen2's pre-tokenizer rule, written as `vocab.json` (padded
with filler entries to Qwen2.5's 151643 regular tokens) + `merges.txt`, with the added special
tokens at their official ids (`<|endoftext|>` 151643, `<|im_start|>` 151644, `<|im_end|>` 151645 …
`<img>` 151665, `</img>` 151666, `<IMG_CONTEXT>` 151667 … `</box>` 151673) in
`tokenizer_config.json` and `added_tokens.json`, as InternVL2.5-1B and InternVL3 ship them.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from tests.support.tiny_checkpoints import _CORPUS, write_shards
from tests.support.tiny_internvl2 import VISION_DEFAULTS, internvl2_vision_tensors, write_tiny_internvl2

QWEN_REGULAR = 151643
QWEN_VOCAB = 151674
# Qwen2's pre-tokenizer pattern (tokenization_qwen2.PRETOKENIZE_REGEX).
PRETOKENIZE_REGEX = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
                     r"""|\s*[\r\n]+|\s+(?!\S)|\s+""")
QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
                 "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
                 "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>",
                 "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>",
                 "<img>", "</img>", "<IMG_CONTEXT>", "<quad>", "</quad>", "<ref>", "</ref>", "<box>", "</box>"]
# Qwen2.5 marks these few as not special (they stay visible when decoding).
_NOT_SPECIAL = {"<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
                "<|repo_name|>", "<|file_sep|>"}
QWEN_LLM_DEFAULTS = dict(hidden_size=64, num_attention_heads=4, num_key_value_heads=2, num_hidden_layers=2,
                         intermediate_size=128)
STYLES = ("internvl3", "internvl2_5-qwen2", "internvl2_5-internlm2", "internvl3-vit6b")


@functools.lru_cache(maxsize=1)
def _trained_bpe() -> tuple[dict, list]:
    """(vocab, merges) of a byte-level BPE trained on the built-in corpus under Qwen2's pre-tokenizer."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    trainer = trainers.BpeTrainer(vocab_size=900, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    lines = [line for line in _CORPUS.splitlines() if line.strip()]
    tok.train_from_iterator(lines * 4 + ["\n".join(lines)] * 4, trainer)
    data = json.loads(tok.to_str())["model"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in data["merges"]]
    return data["vocab"], merges


def write_qwen2_tokenizer(folder: Path) -> Path:
    """vocab.json + merges.txt + tokenizer_config.json + added_tokens.json + special_tokens_map.json."""
    folder = Path(folder)
    vocab, merges = _trained_bpe()
    vocab = dict(sorted(vocab.items(), key=lambda kv: kv[1]))
    # Unreachable fillers (no merge builds them) keep the added tokens at Qwen2.5's ids.
    vocab.update({f"[FILLER_{i}]": i for i in range(len(vocab), QWEN_REGULAR)})
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    added = {name: QWEN_REGULAR + i for i, name in enumerate(QWEN_SPECIALS)}
    decoder = {str(i): {"content": n, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False,
                        "special": n not in _NOT_SPECIAL} for n, i in added.items()}
    additional = QWEN_SPECIALS[1:14]
    config = {"add_bos_token": False, "add_prefix_space": False, "added_tokens_decoder": decoder,
              "additional_special_tokens": additional, "bos_token": None, "clean_up_tokenization_spaces": False,
              "eos_token": "<|im_end|>", "errors": "replace", "model_max_length": 12288,
              "pad_token": "<|endoftext|>", "split_special_tokens": False, "tokenizer_class": "Qwen2Tokenizer",
              "unk_token": None}
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    (folder / "added_tokens.json").write_text(json.dumps(added, indent=2), encoding="utf-8")
    smap = {"additional_special_tokens": additional, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}
    (folder / "special_tokens_map.json").write_text(json.dumps(smap, indent=2), encoding="utf-8")
    return folder


def qwen2_llm_config(rope_scaling: bool, **dims) -> dict:
    """An official-shaped Qwen2.5 `llm_config` (InternVL3-2B's fields) with tiny dimensions."""
    cfg = {"_name_or_path": "./pretrained/Qwen2.5-1.5B-Instruct", "architectures": ["Qwen2ForCausalLM"],
           "attention_dropout": 0.0, "bos_token_id": 151643, "eos_token_id": 151643, "hidden_act": "silu",
           "initializer_range": 0.02, "max_position_embeddings": 32768, "max_window_layers": 70,
           "model_type": "qwen2", "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "sliding_window": None,
           "torch_dtype": "bfloat16", "use_bfloat16": True, "use_cache": False, "use_sliding_window": False,
           "vocab_size": QWEN_VOCAB, **QWEN_LLM_DEFAULTS}
    if rope_scaling:
        cfg["rope_scaling"] = {"factor": 2.0, "rope_type": "dynamic", "type": "dynamic"}
    cfg.update(dims)
    return cfg


def qwen2_tensors(cfg: dict, seed: int, dtype: str) -> dict:
    """Random `language_model.*` weights under transformers' Qwen2 names (q/k/v with bias, o without)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    dt = getattr(torch, dtype)
    hidden, inter, heads, kv = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_attention_heads"], \
        cfg["num_key_value_heads"]
    d = hidden // heads

    def rand(*shape, std=0.1, mean=0.0):
        return (torch.randn(*shape, generator=g) * std + mean).to(dt)

    p = "language_model."
    out = {p + "model.embed_tokens.weight": rand(cfg["vocab_size"], hidden, std=1.0)}
    for n in range(cfg["num_hidden_layers"]):
        q = f"{p}model.layers.{n}."
        for name, rows in (("q_proj", heads * d), ("k_proj", kv * d), ("v_proj", kv * d)):
            out[q + f"self_attn.{name}.weight"] = rand(rows, hidden)
            out[q + f"self_attn.{name}.bias"] = rand(rows, std=0.3)
        out[q + "self_attn.o_proj.weight"] = rand(hidden, hidden)
        out[q + "mlp.gate_proj.weight"] = rand(inter, hidden)
        out[q + "mlp.up_proj.weight"] = rand(inter, hidden)
        out[q + "mlp.down_proj.weight"] = rand(hidden, inter)
        out[q + "input_layernorm.weight"] = rand(hidden, mean=1.0)
        out[q + "post_attention_layernorm.weight"] = rand(hidden, mean=1.0)
    out[p + "model.norm.weight"] = rand(hidden, mean=1.0)
    out[p + "lm_head.weight"] = rand(cfg["vocab_size"], hidden, std=0.3)
    return out


def _v25_vision(cfg: dict) -> None:
    """InternViT-300M-448px-V2_5's vision_config values (same tower as V1, drop path 0.1 in training)."""
    cfg["vision_config"].update({"_name_or_path": "OpenGVLab/InternViT-300M-448px-V2_5", "drop_path_rate": 0.1,
                                 "use_flash_attn": True})
    cfg["template"] = "internvl2_5"


def _vit6b(cfg: dict, tensors: dict, seed: int) -> None:
    """InternViT-6B's vision config and tensors: rms_norm (weights only), qk_normalization, no qkv bias."""
    import torch

    cfg["vision_config"].update({"_name_or_path": "OpenGVLab/InternViT-6B-448px-V2_5", "norm_type": "rms_norm",
                                 "qk_normalization": True, "qkv_bias": False, "initializer_factor": 0.1})
    g = torch.Generator().manual_seed(seed + 2)
    h, dt = cfg["vision_config"]["hidden_size"], next(iter(tensors.values())).dtype
    for n in range(cfg["vision_config"]["num_hidden_layers"]):
        q = f"vision_model.encoder.layers.{n}."
        for name in ("norm1.bias", "norm2.bias", "attn.qkv.bias"):
            del tensors[q + name]
        for name in ("attn.q_norm.weight", "attn.k_norm.weight"):
            tensors[q + name] = (torch.randn(h, generator=g) * 0.3 + 1.0).to(dt)


def write_tiny_internvl25(folder: Path, style: str = "internvl3", seed: int = 0, shards: int = 2,
                          dtype: str = "bfloat16", **dims) -> Path:
    """A random-weight InternVL2.5 / InternVL3 checkpoint of `style` (see STYLES); returns the folder."""
    from tests.support.tiny_internvl2 import internvl2_config

    assert style in STYLES, style
    folder = Path(folder)
    if style == "internvl2_5-internlm2":
        write_tiny_internvl2(folder, seed=seed, shards=shards, dtype=dtype, **dims)
        cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        cfg["llm_config"]["_name_or_path"] = "internlm/internlm2_5-1_8b-chat"
        _v25_vision(cfg)
        (folder / "config.json").write_text(json.dumps(cfg, indent=2), encoding="utf-8")
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    vision = {k: dims.pop(k, v) for k, v in VISION_DEFAULTS.items()}
    cfg = internvl2_config(vision, {})
    cfg["llm_config"] = qwen2_llm_config(style != "internvl2_5-qwen2", **dims)
    _v25_vision(cfg)
    tensors = internvl2_vision_tensors(cfg, seed, dtype)
    if style == "internvl3-vit6b":
        _vit6b(cfg, tensors, seed)
    tensors.update(qwen2_tensors(cfg["llm_config"], seed, dtype))
    (folder / "config.json").write_text(json.dumps(cfg, indent=2), encoding="utf-8")
    gen = {"_from_model_config": True, "bos_token_id": 151643, "eos_token_id": 151643,
           "transformers_version": "4.37.2"}
    (folder / "generation_config.json").write_text(json.dumps(gen, indent=2), encoding="utf-8")
    write_shards(folder, tensors, shards)
    write_qwen2_tokenizer(folder)
    return folder
