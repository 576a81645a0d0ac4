"""The Qwen2 (Qwen2.5) language model of InternVL2.5 / InternVL3 as transformers' native Qwen2ForCausalLM.

The checkpoint stores it under `language_model.` with transformers' own Qwen2 names
(`language_model.model.layers.N.self_attn.q_proj.bias` …, `language_model.lm_head.weight`), so
the weights load as stored once the prefix is removed. The config is rebuilt from `llm_config`
field by field, because that dict also carries training-time settings (`attn_implementation:
flash_attention_2`, `use_cache: false` …) that must not reach an inference model.
`InternVLChatConfig` forces `tie_word_embeddings` off, and so do we.

`rope_scaling` (InternVL3's `{"type": "dynamic", "factor": 2.0}`) is kept: transformers' Qwen2
applies it only past `max_position_embeddings` (32k), so prompts within the trained length are
plain RoPE, as in the official code.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Optional

from studio.errors import StudioError

PREFIX = "language_model."
_FIELDS = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")
_OPTIONAL = ("num_key_value_heads", "hidden_act", "max_position_embeddings", "rms_norm_eps", "rope_theta",
             "rope_scaling", "use_sliding_window", "sliding_window", "max_window_layers", "bos_token_id",
             "eos_token_id", "pad_token_id")


def qwen2_config(llm_cfg: dict, where: Any = "config.json") -> Any:
    """A transformers Qwen2Config from an InternVL `llm_config` dict (inference settings only)."""
    from transformers import Qwen2Config

    missing = [k for k in _FIELDS if not isinstance(llm_cfg.get(k), int)]
    if missing:
        raise StudioError(f"{where}: llm_config field(s) missing or invalid: {', '.join(missing)}.",
                          "The checkpoint's config.json looks damaged; copy it again.")
    fields = {k: llm_cfg[k] for k in (*_FIELDS, *_OPTIONAL) if llm_cfg.get(k) is not None}
    heads, kv = fields["num_attention_heads"], int(fields.get("num_key_value_heads") or fields["num_attention_heads"])
    if fields["hidden_size"] % heads or heads % kv:
        raise StudioError(f"{where}: hidden_size {fields['hidden_size']}, {heads} heads and {kv} kv heads "
                          "do not divide evenly.", "The checkpoint's config.json looks damaged.")
    return Qwen2Config(**fields, tie_word_embeddings=False, use_cache=True)


def build_qwen2_lm(llm_cfg: dict, tensors: Iterable[tuple[str, Any]], dtype: Any,
                   rest: Optional[Callable[[str, Any], None]] = None, where: Any = "checkpoint") -> Any:
    """A Qwen2ForCausalLM on CPU in `dtype`, eval mode, holding the `language_model.*` weights.

    Tensors outside the prefix go to `rest` (the vision side); one inside it that the model does
    not have is refused by `load_into`, so no language-model weight is silently dropped."""
    import torch
    from transformers import Qwen2ForCausalLM
    from transformers.models.qwen2.modeling_qwen2 import Qwen2RotaryEmbedding

    from studio.families.checkpoint_io import load_into

    config = qwen2_config(llm_cfg, where)
    with torch.device("meta"):
        model = Qwen2ForCausalLM(config)
    state = {}
    for name, tensor in tensors:
        if not name.startswith(PREFIX):
            if rest is not None:
                rest(name, tensor)
            continue
        if name.endswith("rotary_emb.inv_freq"):
            continue  # a buffer some exports include; the model computes its own
        # Cast while streaming, so a bf16 checkpoint loaded as fp32 is never held twice.
        state[name[len(PREFIX):]] = tensor.to(dtype) if tensor.is_floating_point() else tensor
    load_into(model, state, where)
    # The rotary buffers are not weights: built on the meta device they have no data yet.
    model.model.rotary_emb = Qwen2RotaryEmbedding(config=config)
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:
        raise StudioError(f"{where}: no data for {', '.join(left[:4])} after loading.", "The checkpoint is incomplete.")
    return model.eval()
