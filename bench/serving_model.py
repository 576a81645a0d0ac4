"""The benchmark checkpoint and prompts for bench/serving_gpu.py.

InternLM2-Chat-1.8B's shape (24 layers, hidden 2048, 16 heads, GQA 8 KV heads, MLP 8192, 92 544
vocabulary, untied output) as a random-weight bf16 Llama-layout checkpoint, so that transformers
and lmdeploy's PyTorch engine both load it without remote code, with the real InternLM2 tokenizer.

Random weights cost the same FLOPs and bytes as trained ones. So that every request decodes the
same number of tokens and each one shows as text, the output rows of tokens that end a reply or
decode to nothing (special tokens, byte pieces, empty pieces) are zeroed: their logit is 0, far
below the maximum of 92k random logits, so greedy decoding never picks them.
"""

from __future__ import annotations

import json
from pathlib import Path

LM_1_8B = dict(vocab_size=92544, hidden_size=2048, intermediate_size=8192, num_hidden_layers=24,
               num_attention_heads=16, num_key_value_heads=8, max_position_embeddings=32768,
               rope_theta=1_000_000.0, rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2,
               tie_word_embeddings=False)
LM_7B = {**LM_1_8B, "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
         "num_attention_heads": 32, "num_key_value_heads": 8}  # InternLM2-Chat-7B's shape (--shape 7b)
TINY = {**LM_1_8B, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2}  # a CPU dry run of the scripts (--tiny)
TOPICS = ["a lighthouse keeper", "the first train to Lhasa", "a cat who learns the piano", "tea in Hangzhou",
          "a robot gardener", "the night market", "a lost umbrella", "the last bookshop", "a mountain spring",
          "an old violin", "the moon festival", "a paper kite", "a river ferry", "the snow leopard",
          "a bicycle repairman", "the silk road"]


def prompt(i: int) -> str:
    """User i's message: distinct per user, so that prefix caching cannot share the replies' work."""
    return f"User {i}: please write a long, detailed story about {TOPICS[i % len(TOPICS)]} (version {i})."


def write_checkpoint(folder: Path, spm: Path, shape: dict = LM_1_8B) -> Path:
    """The 1.8B-shaped checkpoint + tokenizer in `folder` (kept between runs)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from tests.support.internlm2_hf_tokenizer import quiet_ids, write_internlm2_hf_tokenizer

    folder = Path(folder)
    if (folder / "model.safetensors.index.json").is_file() or (folder / "model.safetensors").is_file():
        return folder
    write_internlm2_hf_tokenizer(spm, folder)
    tok = AutoTokenizer.from_pretrained(folder)
    quiet = quiet_ids(tok)
    torch.manual_seed(0)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = LlamaForCausalLM(LlamaConfig(**shape)).to(torch.bfloat16)
    with torch.no_grad():
        model.lm_head.weight[quiet] = 0
    model.save_pretrained(folder)
    (folder / "bench_quiet_ids.json").write_text(json.dumps({"count": len(quiet)}), encoding="utf-8")
    del model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()  # the orchestrator keeps no GPU memory: the engines' plans see all of it
    return folder
