"""InternLM v1 checkpoints as transformers' LlamaForCausalLM, with remote code off.

InternLM v1 (`InternLMForCausalLM`, InternLM commit 3028f07 tools/transformers/modeling_internlm.py)
is Llama with biases on q/k/v/o: the same module names (`model.embed_tokens`, `model.layers.N.
self_attn.{q,k,v,o}_proj`, `mlp.{gate,up,down}_proj`, `input_layernorm`, `post_attention_layernorm`,
`model.norm`, `lm_head`), the same RMSNorm (fp32 variance), rotate-half RoPE (base 10000, cos/sin
over head_dim), silu MLP without bias, eager causal attention with an fp32 softmax, and no kv
grouping. So the weights load under their own names into a LlamaConfig with `attention_bias`
(which puts biases on exactly q, k, v and o). The one extra tensor per layer,
`self_attn.rotary_emb.inv_freq`, is a persistent buffer the official class saves; Llama computes
the same values itself, so it is dropped.

`{p}` (`src_prefix`) is "" for InternLM-Chat-7B and "internlm_model." for XComposer v1, whose
LoRA tensors go to the caller's `rest(name, tensor)` callback.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator, Optional

from studio.errors import StudioError

Rest = Callable[[str, Any], None]
_INV_FREQ = ".self_attn.rotary_emb.inv_freq"
_LAYER_PARTS = frozenset(
    [f"self_attn.{p}_proj.{k}" for p in "qkvo" for k in ("weight", "bias")]
    + [f"mlp.{p}_proj.weight" for p in ("gate", "up", "down")]
    + ["input_layernorm.weight", "post_attention_layernorm.weight"])
_TOP = frozenset({"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"})


def _rope_parameters(cfg: dict) -> dict:
    """RoPE settings: plain RoPE at base 10000 as at the pinned commit; later uploads' `rotary`
    field ({"base", "type": "origin" | "dynamic"}) is honoured (dynamic NTK = transformers' "dynamic")."""
    rotary = cfg.get("rotary")
    if rotary is None:
        return {"rope_type": "default", "rope_theta": 10000.0}
    kind = rotary.get("type", "origin") if isinstance(rotary, dict) else None
    if kind not in ("origin", "dynamic"):
        raise StudioError(f"config.json: rotary {rotary!r} is not one InternLM defines.",
                          'InternLM checkpoints use {"base": 10000, "type": "origin" or "dynamic"}.')
    theta = float(rotary.get("base", 10000))
    if kind == "origin":
        return {"rope_type": "default", "rope_theta": theta}
    return {"rope_type": "dynamic", "factor": float(rotary.get("scaling_factor", 1.0)), "rope_theta": theta}


def llama_config(cfg: dict) -> Any:
    """A transformers LlamaConfig equivalent to an InternLM v1 config dict (defaults as InternLMConfig)."""
    from transformers import LlamaConfig

    try:
        hidden, heads = int(cfg["hidden_size"]), int(cfg["num_attention_heads"])
        fields = dict(vocab_size=int(cfg["vocab_size"]), hidden_size=hidden,
                      intermediate_size=int(cfg["intermediate_size"]),
                      num_hidden_layers=int(cfg["num_hidden_layers"]), num_attention_heads=heads)
    except (KeyError, TypeError, ValueError) as exc:
        raise StudioError(f"config.json: InternLM field missing or invalid: {exc}", "The checkpoint looks damaged.") from None
    if hidden % heads:
        raise StudioError(f"config.json: hidden_size {hidden} is not divisible by {heads} heads.",
                          "The checkpoint looks damaged.")
    if cfg.get("tie_word_embeddings"):
        raise StudioError("config.json: tie_word_embeddings is true, which InternLM checkpoints never use.",
                          "This is not an official InternLM checkpoint; set `family:` accordingly.")
    pad = cfg.get("pad_token_id", 0)
    return LlamaConfig(
        **fields, num_key_value_heads=heads, head_dim=hidden // heads,
        hidden_act=cfg.get("hidden_act", "silu"),
        max_position_embeddings=int(cfg.get("max_position_embeddings", 2048)),
        rms_norm_eps=float(cfg.get("rms_norm_eps", 1e-6)), rope_parameters=_rope_parameters(cfg),
        attention_bias=bool(cfg.get("bias", True)), mlp_bias=False, tie_word_embeddings=False,
        bos_token_id=cfg.get("bos_token_id", 1), eos_token_id=cfg.get("eos_token_id", 2),
        # XComposer v1 ships pad_token_id -1: no padding id (only used to zero an embedding at init).
        pad_token_id=pad if isinstance(pad, int) and pad >= 0 else None, use_cache=True,
    )


def _is_llama_name(name: str) -> bool:
    """True for a tensor name that LlamaForCausalLM (with attention biases) has."""
    if name in _TOP:
        return True
    head, _, rest = name.partition(".layers.")
    if head != "model" or "." not in rest:
        return False
    layer, part = rest.split(".", 1)
    return layer.isdigit() and part in _LAYER_PARTS


def map_internlm1_weights(items: Iterable[tuple[str, Any]], src_prefix: str = "",
                          rest: Optional[Rest] = None) -> Iterator[tuple[str, Any]]:
    """Official InternLM v1 (name, tensor) pairs → LlamaForCausalLM ones (same names, prefix removed)."""
    for name, tensor in items:
        inside = name.startswith(src_prefix)
        local = name[len(src_prefix):] if inside else name
        if inside and local.endswith(_INV_FREQ):
            continue  # a saved RoPE buffer; Llama computes the same one
        if inside and _is_llama_name(local):
            yield local, tensor
        elif rest is not None:
            rest(name, tensor)
        elif inside:
            raise StudioError(f"unexpected tensor {name} in an InternLM checkpoint.",
                              "This looks like a variant of InternLM that needs its own family; check `family:`.")


def build_internlm1_lm(cfg: dict, tensors: Iterable[tuple[str, Any]], dtype: Any, src_prefix: str = "",
                       rest: Optional[Rest] = None, where: Any = "checkpoint") -> Any:
    """A LlamaForCausalLM on CPU in `dtype`, eval mode, holding the official InternLM v1 weights."""
    import torch
    from transformers import LlamaForCausalLM
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    from studio.families.checkpoint_io import load_into

    config = llama_config(cfg)
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    mapped = map_internlm1_weights(tensors, src_prefix=src_prefix, rest=rest)
    state = {n: (t.to(dtype) if t.is_floating_point() else t) for n, t in mapped}
    load_into(model, state, where)
    model.model.rotary_emb = LlamaRotaryEmbedding(config=config)
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:
        raise StudioError(f"{where}: no data for {', '.join(left[:4])} after loading.", "The checkpoint is incomplete.")
    return model.eval()
