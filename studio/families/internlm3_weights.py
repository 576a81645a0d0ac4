"""InternLM3 checkpoints as transformers' LlamaForCausalLM, with remote code off.

The official InternLM3ForCausalLM (modeling_internlm3.py) is Llama with its own names for two bias
switches: `qkv_bias` for q/k/v_proj and `bias` for o_proj and the MLP. Llama has `attention_bias`
(q, k, v and o_proj together) and `mlp_bias`, so when only one of the two is on, the projections
the official model builds without a bias get a zero bias here: the same function, exactly. The
weight names are already Llama's (model.embed_tokens, model.layers.N.self_attn.q_proj, …, lm_head).
RoPE is the official one: transformers' rope functions with `rope_scaling` {"rope_type": "dynamic",
"factor": 6.0} on the real model, which Llama's "dynamic" rope type computes the same way.
"""

from __future__ import annotations

from typing import Any, Iterable

from studio.errors import StudioError

_DAMAGED = "The checkpoint looks damaged."


def _rope_parameters(cfg: dict) -> dict:
    """transformers 5 rope parameters for the official `rope_theta` / `rope_scaling`."""
    theta = float(cfg.get("rope_theta", 10000.0))
    scaling = cfg.get("rope_scaling")
    if not scaling:
        return {"rope_type": "default", "rope_theta": theta}
    kind = scaling.get("rope_type", scaling.get("type")) if isinstance(scaling, dict) else None
    factor = scaling.get("factor") if isinstance(scaling, dict) else None
    if kind not in ("dynamic", "linear") or not isinstance(factor, (int, float)) or factor < 1:
        raise StudioError(f"config.json: rope_scaling {scaling!r} is not supported for InternLM3.",
                          'Official InternLM3 checkpoints use {"rope_type": "dynamic", "factor": 6.0}.')
    return {"rope_type": kind, "factor": float(factor), "rope_theta": theta}


def llama_config(cfg: dict) -> Any:
    """A transformers LlamaConfig equivalent to an InternLM3 config dict (defaults as InternLM3Config)."""
    from transformers import LlamaConfig

    try:
        hidden, heads = int(cfg["hidden_size"]), int(cfg["num_attention_heads"])
        kv_heads = int(cfg.get("num_key_value_heads") or heads)
        fields = dict(vocab_size=int(cfg["vocab_size"]), hidden_size=hidden,
                      intermediate_size=int(cfg["intermediate_size"]),
                      num_hidden_layers=int(cfg["num_hidden_layers"]), num_attention_heads=heads,
                      num_key_value_heads=kv_heads, head_dim=int(cfg.get("head_dim") or hidden // heads))
    except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
        raise StudioError(f"config.json: InternLM3 field missing or invalid: {exc}", _DAMAGED) from None
    if heads % kv_heads:
        raise StudioError(f"config.json: {heads} heads do not split into {kv_heads} kv heads.", _DAMAGED)
    if cfg.get("tie_word_embeddings"):
        raise StudioError("config.json: tie_word_embeddings is true, which InternLM3 checkpoints never use.",
                          "This is not an official InternLM3 checkpoint; set `family:` accordingly.")
    qkv_bias, bias = bool(cfg.get("qkv_bias", False)), bool(cfg.get("bias", False))
    return LlamaConfig(
        **fields,
        hidden_act=cfg.get("hidden_act", "silu"),
        max_position_embeddings=int(cfg.get("max_position_embeddings", 2048)),
        rms_norm_eps=float(cfg.get("rms_norm_eps", 1e-6)),
        rope_parameters=_rope_parameters(cfg),
        attention_bias=qkv_bias or bias,
        mlp_bias=bias,
        tie_word_embeddings=False,
        bos_token_id=cfg.get("bos_token_id", 1),
        eos_token_id=cfg.get("eos_token_id", 2),
        pad_token_id=cfg.get("pad_token_id", 2),
        use_cache=True,
    )


def _zero_biases(config: Any, cfg: dict, state: dict, dtype: Any) -> None:
    """Zero biases for the projections the official model builds without one (see the module docstring)."""
    import torch

    qkv_bias, bias = bool(cfg.get("qkv_bias", False)), bool(cfg.get("bias", False))
    if qkv_bias == bias:
        return
    d, nq, nkv = config.head_dim, config.num_attention_heads, config.num_key_value_heads
    sizes = {"o_proj": config.hidden_size} if qkv_bias else {"q_proj": nq * d, "k_proj": nkv * d, "v_proj": nkv * d}
    for n in range(config.num_hidden_layers):
        for name, rows in sizes.items():
            state.setdefault(f"model.layers.{n}.self_attn.{name}.bias", torch.zeros(rows, dtype=dtype))


def build_internlm3_lm(cfg: dict, tensors: Iterable[tuple[str, Any]], dtype: Any, where: Any = "checkpoint") -> Any:
    """A LlamaForCausalLM on CPU in `dtype`, eval mode, holding the official InternLM3 weights."""
    import torch
    from transformers import LlamaForCausalLM
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    from studio.families.checkpoint_io import load_into

    config = llama_config(cfg)
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    # Cast while streaming, so a bf16 checkpoint loaded as fp32 is never held twice;
    # rotary_emb.inv_freq, which some exports include, is a buffer Llama computes itself.
    state = {n: (t.to(dtype) if t.is_floating_point() else t) for n, t in tensors
             if not n.endswith("rotary_emb.inv_freq")}
    _zero_biases(config, cfg, state, dtype)
    load_into(model, state, where)
    model.model.rotary_emb = LlamaRotaryEmbedding(config=config)
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:
        raise StudioError(f"{where}: no data for {', '.join(left[:4])} after loading.", "The checkpoint is incomplete.")
    return model.eval()
