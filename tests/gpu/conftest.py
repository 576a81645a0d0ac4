"""Checkpoints shared by the GPU tests (written on the GPU machine; nothing is downloaded)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
REAL_SPM = [os.environ.get("PUYU_INTERNLM2_SPM", ""),
            str(REPO.parent / "shared" / "fixtures" / "internlm2-tokenizer" / "tokenizer.model")]


@pytest.fixture(scope="session")
def llama_checkpoint(tmp_path_factory) -> Path:
    """InternLM2-1.8B's layout scaled down (8 layers, hidden 512, GQA 8:2, 92544-token vocabulary), bf16.

    Llama layout, so transformers and lmdeploy load it without remote code. With the real InternLM2
    tokenizer (PUYU_INTERNLM2_SPM or ../shared/fixtures) the output rows of stop and empty tokens are
    zeroed, so replies are visible text of exactly max_new_tokens; otherwise the tiny tokenizer."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM, LlamaTokenizerFast

    from tests.support.internlm2_hf_tokenizer import quiet_ids, write_internlm2_hf_tokenizer
    from tests.support.tiny_checkpoints import CHAT_TEMPLATE, REAL_VOCAB, write_tiny_tokenizer

    folder = tmp_path_factory.mktemp("llama-tiny")
    spm = next((Path(p) for p in REAL_SPM if p and Path(p).is_file()), None)
    if spm is not None:
        write_internlm2_hf_tokenizer(spm, folder)
        quiet = quiet_ids(AutoTokenizer.from_pretrained(folder))
    else:
        tiny = write_tiny_tokenizer(tmp_path_factory.mktemp("spm")) / "tokenizer.model"
        tok = LlamaTokenizerFast(vocab_file=str(tiny), legacy=False, add_bos_token=True)
        tok.chat_template = CHAT_TEMPLATE
        tok.save_pretrained(folder)
        quiet = []
    config = LlamaConfig(vocab_size=REAL_VOCAB, hidden_size=512, intermediate_size=1408, num_hidden_layers=8,
                         num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=4096,
                         rope_theta=1_000_000.0, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    with torch.no_grad():
        model.lm_head.weight[quiet] = 0
    model.save_pretrained(folder)
    return folder
