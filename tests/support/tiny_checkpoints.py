"""Tiny random-weight checkpoints in the official on-disk layouts, written at test time.

- `write_tiny_tokenizer`: a real SentencePiece `tokenizer.model` trained on a small built-in
  corpus (byte fallback on, no dummy prefix, as InternLM2's), padded to InternLM2's 92544 pieces
  so that ids 92538..92543 are `[UNUSED_TOKEN_141]`..`[UNUSED_TOKEN_146]` as in the real model,
  plus `tokenizer_config.json` / `special_tokens_map.json` in the official shape.
- `write_tiny_internlm2`: an InternLM2-Chat checkpoint (official config.json fields and weight
  names, sharded safetensors or .bin with an index, generation_config.json, the tiny tokenizer).
- `internlm2_config`, `internlm2_tensors`, `write_shards`: the pieces, for fixtures of models
  that embed an InternLM2 (InternVL2's `language_model.` prefix, XComposer2's extra tensors).
"""

from __future__ import annotations

import functools
import io
import json
import struct
from pathlib import Path
from typing import Optional

REAL_VOCAB = 92544
FIRST_UNUSED = 92397  # [UNUSED_TOKEN_0] in the real tokenizer.model; 92543 is [UNUSED_TOKEN_146]

SPECIALS = {92538: "<|plugin|>", 92539: "<|interpreter|>", 92540: "<|action_end|>",
            92541: "<|action_start|>", 92542: "<|im_end|>", 92543: "<|im_start|>"}
CHAT_TEMPLATE = ("{{ bos_token }}{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
                 "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
                 "{{ '<|im_start|>assistant\\n' }}{% endif %}")

_CORPUS = """\
Hello world. The quick brown fox jumps over the lazy dog.
You are an AI assistant whose name is InternLM.
InternLM is a conversational language model that is developed by Shanghai AI Laboratory.
It is designed to be helpful, honest, and harmless.
Can you tell me a story about a cat who learns to play the piano?
What is the capital of France? Paris is the capital of France.
List three things: apples, bananas and cherries.
def add(a, b):
    return a + b
Numbers like 12345 and 3.14159 appear in text, as do dates such as 2024-07-26.
user assistant system
你好，请介绍一下你自己。
我是书生·浦语，一个由上海人工智能实验室开发的对话语言模型。
今天天气很好，我们去公园散步吧。
人工智能正在改变世界，语言模型可以帮助人们写作和学习。
请用中文回答下面的问题：北京是中国的首都吗？是的，北京是中国的首都。
这是一张图片，图片里有一只猫和一只狗。
"""


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _piece(text: str, kind: int = 4, score: float = 0.0) -> bytes:
    """One ModelProto.pieces entry in protobuf wire format (kind 4 = USER_DEFINED)."""
    raw = text.encode("utf-8")
    body = b"\x0a" + _varint(len(raw)) + raw + b"\x15" + struct.pack("<f", score) + b"\x18" + _varint(kind)
    return b"\x0a" + _varint(len(body)) + body


@functools.lru_cache(maxsize=1)
def _trained_base() -> bytes:
    """A small SentencePiece BPE model trained on the built-in corpus (once per process)."""
    import sentencepiece

    lines = [line for line in _CORPUS.splitlines() if line.strip()] * 4
    buf = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=buf, model_type="bpe", vocab_size=700,
        hard_vocab_limit=False, byte_fallback=True, add_dummy_prefix=False, remove_extra_whitespaces=False,
        normalization_rule_name="identity", character_coverage=1.0, split_digits=True,
        allow_whitespace_only_pieces=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        num_threads=1, minloglevel=2,
    )
    return buf.getvalue()


@functools.lru_cache(maxsize=4)
def tiny_sentencepiece(vocab_size: int = REAL_VOCAB) -> bytes:
    """The serialised tiny model, padded with user-defined pieces to `vocab_size` pieces."""
    import sentencepiece

    base = _trained_base()
    n = sentencepiece.SentencePieceProcessor(model_proto=base).get_piece_size()
    # Repeated protobuf fields may continue after other fields: appending entries appends pieces.
    first_unused = vocab_size - (REAL_VOCAB - FIRST_UNUSED)
    assert n <= first_unused, "vocab_size too small for the trained pieces and the 147 unused tokens"
    extra = [f"[FILLER_TOKEN_{i}]" for i in range(n, first_unused)]
    extra += [f"[UNUSED_TOKEN_{k}]" for k in range(vocab_size - first_unused)]
    return base + b"".join(_piece(p) for p in extra)


def _added(token_id_name: dict[int, str]) -> dict:
    return {str(i): {"content": name, "lstrip": False, "normalized": False, "rstrip": False,
                     "single_word": False, "special": True} for i, name in sorted(token_id_name.items())}


def write_tiny_tokenizer(folder: Path, vocab_size: int = REAL_VOCAB,
                         extra_special: Optional[dict[int, str]] = None) -> Path:
    """tokenizer.model + tokenizer_config.json + special_tokens_map.json as InternLM2-Chat ships them."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tokenizer.model").write_bytes(tiny_sentencepiece(vocab_size))
    specials = {vocab_size - REAL_VOCAB + i: name for i, name in SPECIALS.items()}
    specials.update(extra_special or {})
    additional = [specials[i] for i in sorted(specials, key=lambda i: (i >= vocab_size, -i if i < vocab_size else i))]
    config = {
        "added_tokens_decoder": _added({0: "<unk>", 1: "<s>", 2: "</s>", **specials}),
        "additional_special_tokens": additional,
        "auto_map": {"AutoTokenizer": ["tokenization_internlm2.InternLM2Tokenizer",
                                       "tokenization_internlm2_fast.InternLM2TokenizerFast"]},
        "add_bos_token": True,
        "add_eos_token": False,
        "bos_token": "<s>",
        "chat_template": CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "decode_with_prefix_space": False,
        "eos_token": "</s>",
        "model_max_length": 1000000000000000019884624838656,
        "pad_token": "</s>",
        "sp_model_kwargs": None,
        "tokenizer_class": "InternLM2Tokenizer",
        "unk_token": "<unk>",
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False), encoding="utf-8")
    smap = {"additional_special_tokens": additional, "bos_token": "<s>", "eos_token": "</s>",
            "pad_token": "</s>", "unk_token": "<unk>"}
    (folder / "special_tokens_map.json").write_text(json.dumps(smap, indent=2), encoding="utf-8")
    return folder


def internlm2_config(**dims) -> dict:
    """An official-shaped InternLM2-Chat config.json dict with tiny dimensions (override any field)."""
    cfg = {
        "architectures": ["InternLM2ForCausalLM"],
        "attn_implementation": "eager",
        "auto_map": {"AutoConfig": "configuration_internlm2.InternLM2Config",
                     "AutoModelForCausalLM": "modeling_internlm2.InternLM2ForCausalLM",
                     "AutoModel": "modeling_internlm2.InternLM2ForCausalLM"},
        "bias": False, "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu", "hidden_size": 64,
        "initializer_range": 0.02, "intermediate_size": 128, "max_position_embeddings": 32768,
        "model_type": "internlm2", "num_attention_heads": 4, "num_hidden_layers": 2, "num_key_value_heads": 2,
        "pad_token_id": 2, "rms_norm_eps": 1e-05, "rope_scaling": {"type": "dynamic", "factor": 2.0},
        "rope_theta": 1000000, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
        "transformers_version": "4.41.0", "use_cache": True, "vocab_size": REAL_VOCAB,
    }
    cfg.update(dims)
    return cfg


def internlm2_tensors(cfg: dict, seed: int = 0, dtype: str = "bfloat16", prefix: str = "") -> dict:
    """Random weights under the official InternLM2 names (scaled so greedy choices are clear-cut)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    dt = getattr(torch, dtype)
    hidden, inter, heads = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_attention_heads"]
    kv, d = cfg["num_key_value_heads"], cfg["hidden_size"] // cfg["num_attention_heads"]

    def rand(*shape, std=0.1, mean=0.0):
        return (torch.randn(*shape, generator=g) * std + mean).to(dt)

    out = {f"{prefix}model.tok_embeddings.weight": rand(cfg["vocab_size"], hidden, std=1.0)}
    for n in range(cfg["num_hidden_layers"]):
        p = f"{prefix}model.layers.{n}."
        out[p + "attention.wqkv.weight"] = rand((heads + 2 * kv) * d, hidden)
        if cfg.get("bias"):
            out[p + "attention.wqkv.bias"] = rand((heads + 2 * kv) * d)
        out[p + "attention.wo.weight"] = rand(hidden, hidden)
        if cfg.get("bias"):
            out[p + "attention.wo.bias"] = rand(hidden)
        out[p + "feed_forward.w1.weight"] = rand(inter, hidden)
        out[p + "feed_forward.w3.weight"] = rand(inter, hidden)
        out[p + "feed_forward.w2.weight"] = rand(hidden, inter)
        out[p + "attention_norm.weight"] = rand(hidden, mean=1.0)
        out[p + "ffn_norm.weight"] = rand(hidden, mean=1.0)
    out[f"{prefix}model.norm.weight"] = rand(hidden, mean=1.0)
    out[f"{prefix}output.weight"] = rand(cfg["vocab_size"], hidden, std=0.3)
    return out


def write_shards(folder: Path, tensors: dict, shards: int = 2, fmt: str = "safetensors") -> list[Path]:
    """Weights as the official uploads store them: N shards plus an index.json (one file, no index, for N=1)."""
    import torch

    folder = Path(folder)
    names = list(tensors)
    size = -(-len(names) // shards)
    groups = [names[i:i + size] for i in range(0, len(names), size)]
    stem, ext = ("model", "safetensors") if fmt == "safetensors" else ("pytorch_model", "bin")
    files = [f"{stem}.{ext}"] if len(groups) == 1 else [
        f"{stem}-{i + 1:05d}-of-{len(groups):05d}.{ext}" for i in range(len(groups))]
    for file, group in zip(files, groups):
        part = {n: tensors[n].contiguous() for n in group}
        if fmt == "safetensors":
            from safetensors.torch import save_file

            save_file(part, str(folder / file), metadata={"format": "pt"})
        else:
            torch.save(part, folder / file)
    if len(groups) > 1:
        total = sum(t.numel() * t.element_size() for t in tensors.values())
        index = {"metadata": {"total_size": total},
                 "weight_map": {n: f for f, group in zip(files, groups) for n in group}}
        (folder / f"{stem}.{ext}.index.json").write_text(json.dumps(index, indent=2), encoding="utf-8")
    return [folder / f for f in files]


def write_tiny_internlm2(folder: Path, shards: int = 2, fmt: str = "safetensors", seed: int = 0,
                         dtype: str = "bfloat16", **dims) -> Path:
    """A random-weight InternLM2-Chat checkpoint in the official layout; returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = internlm2_config(**dims)
    (folder / "config.json").write_text(json.dumps(cfg, indent=2), encoding="utf-8")
    gen = {"bos_token_id": 1, "eos_token_id": [2, 92542], "pad_token_id": 2, "transformers_version": "4.41.0"}
    (folder / "generation_config.json").write_text(json.dumps(gen, indent=2), encoding="utf-8")
    write_shards(folder, internlm2_tensors(cfg, seed, dtype), shards, fmt)
    write_tiny_tokenizer(folder, cfg["vocab_size"])
    return folder
