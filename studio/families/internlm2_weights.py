"""InternLM2 checkpoints as transformers' LlamaForCausalLM, with remote code off.

InternLM2 is Llama with renamed weights and a fused, per-kv-group `wqkv`. This module maps the
official config and weight names onto LlamaConfig / LlamaForCausalLM names:

    {p}model.tok_embeddings.weight                  -> model.embed_tokens.weight
    {p}model.layers.N.attention.wqkv.{weight,bias}  -> model.layers.N.self_attn.{q,k,v}_proj.*  (split_wqkv)
    {p}model.layers.N.attention.wo.*                -> model.layers.N.self_attn.o_proj.*
    {p}model.layers.N.feed_forward.w1/w3/w2.weight  -> model.layers.N.mlp.gate_proj/up_proj/down_proj.weight
    {p}model.layers.N.attention_norm.weight         -> model.layers.N.input_layernorm.weight
    {p}model.layers.N.ffn_norm.weight               -> model.layers.N.post_attention_layernorm.weight
    {p}model.norm.weight                            -> model.norm.weight
    {p}output.weight                                -> lm_head.weight

`{p}` is `src_prefix` ("" for InternLM2-Chat, "language_model." for InternVL2). Tensors the
mapping does not turn into a Llama weight go to the caller's `rest(name, tensor)` callback when
one is given (InternVL2's vision tower, XComposer2's Plora_A/Plora_B and vit): the caller owns
them. Without `rest`, tensors outside `src_prefix` are skipped (they belong to another part of a
bigger model) and an unknown tensor inside it is an error, since silently dropping a weight of the
language model would give a model that loads but answers wrongly. `split_wqkv` is public so that
callers can split other per-row tensors of the fused projection the same way (e.g. Plora_B).
"""

from __future__ import annotations

import re
from typing import Any, Callable, Iterable, Iterator, Optional

from studio.errors import StudioError

Rest = Callable[[str, Any], None]

_LAYER = re.compile(r"model\.layers\.(\d+)\.(.+)")
_LAYER_RENAMES = {
    "attention.wo.weight": "self_attn.o_proj.weight",
    "attention.wo.bias": "self_attn.o_proj.bias",
    "feed_forward.w1.weight": "mlp.gate_proj.weight",
    "feed_forward.w3.weight": "mlp.up_proj.weight",
    "feed_forward.w2.weight": "mlp.down_proj.weight",
    "attention_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
}
_TOP_RENAMES = {
    "model.tok_embeddings.weight": "model.embed_tokens.weight",
    "model.norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}


def _rope_parameters(cfg: dict, theta: float) -> dict:
    """transformers 5 rope parameters for InternLM2's `rope_scaling`.

    InternLM2's "dynamic" scaling is dynamic NTK: up to max_position_embeddings it is plain RoPE,
    beyond it the base grows to theta * (factor * len / max - (factor - 1)) ** (d / (d - 2)).
    transformers' "dynamic" rope type uses the same formula and the same trigger (current length
    past max_position_embeddings), so it is mapped to that rather than dropped: prompts up to
    the trained length are unchanged and longer ones behave as in the official code. (One
    difference: the official code keeps the enlarged base for later, shorter calls; transformers
    returns to the original base when a shorter sequence starts, which is what a fresh official
    model would do.)"""
    scaling = cfg.get("rope_scaling")
    if not scaling:
        return {"rope_type": "default", "rope_theta": theta}
    kind = scaling.get("type", scaling.get("rope_type")) if isinstance(scaling, dict) else None
    factor = scaling.get("factor") if isinstance(scaling, dict) else None
    if kind not in ("dynamic", "linear") or not isinstance(factor, (int, float)) or factor < 1:
        raise StudioError(
            f"config.json: rope_scaling {scaling!r} is not one InternLM2 defines.",
            'InternLM2 checkpoints use {"type": "dynamic" or "linear", "factor": >= 1}.',
        )
    return {"rope_type": kind, "factor": float(factor), "rope_theta": theta}


def llama_config(internlm2_cfg: dict) -> Any:
    """A transformers LlamaConfig equivalent to an InternLM2 config dict (defaults as the official config class)."""
    from transformers import LlamaConfig

    cfg = internlm2_cfg
    try:
        hidden, heads = int(cfg["hidden_size"]), int(cfg["num_attention_heads"])
        fields = dict(
            vocab_size=int(cfg["vocab_size"]),
            hidden_size=hidden,
            intermediate_size=int(cfg["intermediate_size"]),
            num_hidden_layers=int(cfg["num_hidden_layers"]),
            num_attention_heads=heads,
            num_key_value_heads=int(cfg.get("num_key_value_heads") or heads),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise StudioError(f"config.json: InternLM2 field missing or invalid: {exc}", "The checkpoint looks damaged.") from None
    if cfg.get("tie_word_embeddings"):
        raise StudioError("config.json: tie_word_embeddings is true, which InternLM2 checkpoints never use.",
                          "This is not an official InternLM2 checkpoint; set `family:` accordingly.")
    if hidden % heads or heads % fields["num_key_value_heads"]:
        raise StudioError(f"config.json: hidden_size {hidden}, {heads} heads and "
                          f"{fields['num_key_value_heads']} kv heads do not divide evenly.", "The checkpoint looks damaged.")
    # Defaults are those of the official InternLM2Config, for configs that leave a field out.
    theta = float(cfg.get("rope_theta", 10000))
    return LlamaConfig(
        **fields,
        head_dim=hidden // heads,
        hidden_act=cfg.get("hidden_act", "silu"),
        max_position_embeddings=int(cfg.get("max_position_embeddings", 2048)),
        rms_norm_eps=float(cfg.get("rms_norm_eps", 1e-6)),
        rope_parameters=_rope_parameters(cfg, theta),
        attention_bias=bool(cfg.get("bias", True)),
        mlp_bias=False,
        tie_word_embeddings=False,
        bos_token_id=cfg.get("bos_token_id", 1),
        eos_token_id=cfg.get("eos_token_id", 2),
        pad_token_id=cfg.get("pad_token_id", 0),
        use_cache=True,
    )


def split_wqkv(tensor: Any, num_heads: int, num_kv_heads: int, head_dim: int) -> tuple[Any, Any, Any]:
    """q, k, v rows of a fused wqkv weight [(nh + 2·nkv)·d, …] or bias [(nh + 2·nkv)·d].

    Rows come in nkv groups of (g + 2) heads, g = nh / nkv: g query heads, then that group's key
    head, then its value head. Query head h·g + j therefore shares kv head h, which is the order
    Llama's repeat_kv expects, so q keeps the groups' order and no permutation is needed."""
    g = num_heads // num_kv_heads
    rows = (num_heads + 2 * num_kv_heads) * head_dim
    if num_heads % num_kv_heads or tensor.shape[0] != rows:
        raise StudioError(f"wqkv has {tensor.shape[0]} rows; {num_heads} heads, {num_kv_heads} kv heads "
                          f"and head_dim {head_dim} need {rows}.", "The checkpoint does not match its config.json.")
    tail = tuple(tensor.shape[1:])
    grouped = tensor.reshape(num_kv_heads, g + 2, head_dim, *tail)
    # clone(): the parts must not keep the whole fused tensor alive through a shared storage.
    q = grouped[:, :g].reshape(num_heads * head_dim, *tail).clone()
    k = grouped[:, g].reshape(num_kv_heads * head_dim, *tail).clone()
    v = grouped[:, g + 1].reshape(num_kv_heads * head_dim, *tail).clone()
    return q, k, v


def _map_one(name: str, tensor: Any, heads: tuple[int, int, int]) -> Optional[list[tuple[str, Any]]]:
    """Llama (name, tensor) pairs for one official tensor name (prefix removed); None if unknown."""
    if name in _TOP_RENAMES:
        return [(_TOP_RENAMES[name], tensor)]
    m = _LAYER.fullmatch(name)
    if not m:
        return None
    layer, rest = m.groups()
    base = f"model.layers.{layer}."
    if rest in _LAYER_RENAMES:
        return [(base + _LAYER_RENAMES[rest], tensor)]
    if rest in ("attention.wqkv.weight", "attention.wqkv.bias"):
        kind = rest.rsplit(".", 1)[1]
        q, k, v = split_wqkv(tensor, *heads)
        return [(f"{base}self_attn.{p}_proj.{kind}", t) for p, t in zip("qkv", (q, k, v))]
    if rest == "attention.rotary_emb.inv_freq":
        return []  # a non-weight buffer some exports include; Llama computes its own
    return None


def map_internlm2_weights(items: Iterable[tuple[str, Any]], num_heads: int, num_kv_heads: int, head_dim: int,
                          src_prefix: str = "", rest: Optional[Rest] = None) -> Iterator[tuple[str, Any]]:
    """Official InternLM2 (name, tensor) pairs → LlamaForCausalLM ones (see the module docstring for `rest`)."""
    heads = (num_heads, num_kv_heads, head_dim)
    for name, tensor in items:
        mapped = _map_one(name[len(src_prefix):], tensor, heads) if name.startswith(src_prefix) else None
        if mapped is not None:
            yield from mapped
        elif rest is not None:
            rest(name, tensor)
        elif name.startswith(src_prefix):
            raise StudioError(
                f"unexpected tensor {name} in an InternLM2 checkpoint.",
                "This looks like a variant of InternLM2 that needs its own family; check `family:`.",
            )


def build_internlm2_lm(cfg: dict, tensors: Iterable[tuple[str, Any]], dtype: Any, src_prefix: str = "",
                       rest: Optional[Rest] = None, where: Any = "checkpoint") -> Any:
    """A LlamaForCausalLM on CPU in `dtype`, eval mode, holding the official InternLM2 weights."""
    import torch
    from transformers import LlamaForCausalLM
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    from studio.families.checkpoint_io import load_into

    config = llama_config(cfg)
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    mapped = map_internlm2_weights(tensors, config.num_attention_heads, config.num_key_value_heads,
                                   config.head_dim, src_prefix=src_prefix, rest=rest)
    # Cast while streaming, so a bf16 checkpoint loaded as fp32 is never held twice.
    state = {n: (t.to(dtype) if t.is_floating_point() else t) for n, t in mapped}
    load_into(model, state, where)
    # The rotary buffers are not weights: built on the meta device they have no data yet.
    model.model.rotary_emb = LlamaRotaryEmbedding(config=config)
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:
        raise StudioError(f"{where}: no data for {', '.join(left[:4])} after loading.", "The checkpoint is incomplete.")
    return model.eval()
