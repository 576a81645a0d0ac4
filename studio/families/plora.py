"""Partial-LoRA (XComposer2's PLoRA) on a transformers Llama: low-rank updates applied only at
image positions of the prompt.

In the official model every wqkv, wo, w1, w2 and w3 is a `PLoRA` linear: `y = W x`, plus
`B(A(x)) * alpha / r` at the positions where the image mask is True. Text tokens, and every decode
step (the official forward passes an all-False mask whenever it gets input ids), see the base
weights only. Here the base weights live in a plain LlamaForCausalLM; the low-rank parts become
parameters of the matching Llama linear plus a forward hook that adds the update where the
shared `AdapterMask` says so. With the mask unset the model is exactly the base Llama.

The fused wqkv's Plora_B rows follow wqkv's per-kv-group layout, so Plora_B is split with the same
`split_wqkv` as the base weight; Plora_A (the input side) is shared by q, k and v.
"""

from __future__ import annotations

import re
from functools import partial
from typing import Any, Optional

from studio.errors import StudioError

# Official tensor name (within model.layers.N.) → the Llama linear(s) it becomes.
_TARGETS = {
    "attention.wqkv": ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
    "attention.wo": ("self_attn.o_proj",),
    "feed_forward.w1": ("mlp.gate_proj",),
    "feed_forward.w3": ("mlp.up_proj",),
    "feed_forward.w2": ("mlp.down_proj",),
}
_NAME = re.compile(r"model\.layers\.(\d+)\.(attention\.wqkv|attention\.wo|feed_forward\.w[123])\.Plora_([AB])\.weight")
# The official VL code hard-codes lora_r=256, lora_alpha=256 (scaling 1.0) and its checkpoints'
# config.json carries neither. A config that does name lora_alpha is honoured; otherwise the
# official alpha/r ratio of 1.0 is kept for whatever rank the stored tensors have.
OFFICIAL_SCALING = 1.0


class AdapterMask:
    """The image-position mask [1, chunk] (bool) the adapters apply on the next forward; None: none."""

    def __init__(self) -> None:
        self.mask: Optional[Any] = None


def is_plora_name(name: str) -> bool:
    """True for an official Plora_A / Plora_B tensor name."""
    return _NAME.fullmatch(name) is not None


def collect_plora(tensors: dict[str, Any]) -> dict[tuple[int, str], dict[str, Any]]:
    """{(layer, "attention.wqkv" …): {"A": tensor, "B": tensor}} from official Plora tensor names."""
    out: dict[tuple[int, str], dict[str, Any]] = {}
    for name, tensor in tensors.items():
        m = _NAME.fullmatch(name)
        if m:
            out.setdefault((int(m.group(1)), m.group(2)), {})[m.group(3)] = tensor
    return out


def plora_scaling(config: dict, rank: int) -> float:
    """alpha / r: config.json `lora_alpha` when present, else the official ratio."""
    alpha = config.get("lora_alpha")
    if alpha is None:
        return OFFICIAL_SCALING
    return float(alpha) / rank


def _check(adapters: dict, layers: int, where: Any) -> int:
    """The common rank of a complete set of adapters; StudioError naming what is missing."""
    ranks = set()
    for layer in range(layers):
        for target in _TARGETS:
            pair = adapters.get((layer, target), {})
            if set(pair) != {"A", "B"}:
                raise StudioError(
                    f"{where}: missing model.layers.{layer}.{target}.Plora_{'A' if 'A' not in pair else 'B'}.weight.",
                    "The checkpoint is incomplete: XComposer2 has Partial-LoRA weights on every layer.",
                )
            a, b = pair["A"], pair["B"]
            if a.shape[0] != b.shape[1]:
                raise StudioError(f"{where}: model.layers.{layer}.{target} Plora_A {tuple(a.shape)} and "
                                  f"Plora_B {tuple(b.shape)} disagree on the rank.", "The checkpoint looks damaged.")
            ranks.add(int(a.shape[0]))
    extra = [k for k in adapters if k[0] >= layers]
    if extra:
        raise StudioError(f"{where}: Partial-LoRA weights for layer {extra[0][0]}, beyond the {layers} layers "
                          "of config.json.", "The checkpoint does not match its config.json.")
    if len(ranks) > 1:
        raise StudioError(f"{where}: Partial-LoRA ranks differ between layers ({sorted(ranks)}).",
                          "The checkpoint looks damaged.")
    return ranks.pop()


def attach_plora(lm: Any, adapters: dict, config: dict, mask: AdapterMask, dtype: Any,
                 where: Any = "checkpoint") -> float:
    """Give every layer of `lm` its Partial-LoRA (parameters + hook reading `mask`); returns alpha/r."""
    import torch

    from studio.families.internlm2_weights import split_wqkv

    cfg = lm.config
    rank = _check(adapters, cfg.num_hidden_layers, where)
    scaling = plora_scaling(config, rank)
    for (layer, target), pair in sorted(adapters.items()):
        block = lm.model.layers[layer]
        a = torch.nn.Parameter(pair["A"].to(dtype), requires_grad=False)
        if target == "attention.wqkv":
            bs = split_wqkv(pair["B"], cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim)
        else:
            bs = (pair["B"],)
        for path, b in zip(_TARGETS[target], bs):
            linear = block.get_submodule(path)
            if b.shape[0] != linear.weight.shape[0] or a.shape[1] != linear.weight.shape[1]:
                raise StudioError(f"{where}: model.layers.{layer}.{target} Partial-LoRA shapes do not fit the "
                                  f"layer ({tuple(a.shape)}, {tuple(pair['B'].shape)}).",
                                  "The checkpoint looks damaged.")
            # q, k and v hold the same Parameter object for A: one copy in memory, moved once.
            linear.register_parameter("plora_A", a)
            linear.register_parameter("plora_B", torch.nn.Parameter(b.to(dtype).contiguous(), requires_grad=False))
            linear.plora_scaling = scaling
            linear.register_forward_hook(partial(_apply_plora, mask))
    return scaling


def _apply_plora(holder: AdapterMask, module: Any, inputs: tuple, output: Any) -> Any:
    """Forward hook: add B(A(x))·alpha/r to `output` at the positions the mask marks."""
    mask = holder.mask
    if mask is None:
        return output
    if tuple(mask.shape) != tuple(output.shape[:2]):
        raise ValueError(f"image mask {tuple(mask.shape)} does not match the forward's "
                         f"{tuple(output.shape[:2])} positions")
    mask = mask.to(output.device)
    if not bool(mask.any()):
        return output
    import torch.nn.functional as F

    x = inputs[0][mask]
    delta = F.linear(F.linear(x, module.plora_A), module.plora_B) * module.plora_scaling
    # Same order as the official layer: the base output first, the update added on top.
    output[mask] += delta
    return output
