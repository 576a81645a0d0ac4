"""InternLM-XComposer v1's image side with remote code off: EVA-CLIP ViT-g, the BLIP-2 Q-Former
("perceive sampler"), the projection into the LM and the image start/end flags.

The official code (InternLM-XComposer 3e8c790 huggingface/internlm-xcomposer/) is LAVIS' BLIP-2
image encoder, which transformers ships as Blip2VisionModel + Blip2QFormerModel, so the official
tensors are renamed onto those (as transformers' own BLIP-2 conversion does):

    visual_encoder.cls_token / pos_embed / patch_embed.proj.*  -> embeddings.class_embedding / position_embedding / patch_embedding.*
    visual_encoder.blocks.N.norm1/norm2.*                      -> encoder.layers.N.layer_norm1/layer_norm2.*
    visual_encoder.blocks.N.attn.qkv.weight (+ q_bias, v_bias) -> encoder.layers.N.self_attn.qkv.weight / .bias = [q_bias, 0, v_bias]
    visual_encoder.blocks.N.attn.proj.*, mlp.fc1/fc2.*          -> encoder.layers.N.self_attn.projection.*, mlp.fc1/fc2.*
    ln_vision.*                                                -> post_layernorm.* (eps 1e-5, the blocks use 1e-6)
    Qformer.bert.embeddings.LayerNorm.*                        -> layernorm.*
    Qformer.bert.encoder.layer.N.{attention,crossattention}.self.*  -> encoder.layer.N.{…}.attention.*
    Qformer.bert.encoder.layer.N.… (output, intermediate_query, output_query)  -> the same names

Sizes are read from the tensors; head counts follow the official hard-coded widths (EVA: 88 per
head, 1408 / 16; BERT: 64 per head, 768 / 12). One image = `flag_image_start`, the projected
`query_tokens` outputs (64), `flag_image_end`: 66 prompt positions.
"""

from __future__ import annotations

import re
from typing import Any, Optional

from studio.errors import StudioError
from studio.families.base import PromptInputs

IMAGE_SIZE = 224  # vis_processor: Resize((224, 224), BICUBIC), ToTensor, CLIP mean/std
EVA_HEAD_DIM, BERT_HEAD_DIM = 88, 64
IMAGE_PLACEHOLDER_ID = 0  # <unk>: never produced from text by the byte-fallback tokenizer
OWN = ("query_tokens", "internlm_proj.weight", "internlm_proj.bias", "flag_image_start", "flag_image_end")
_EVA_RENAMES = {"cls_token": "embeddings.class_embedding", "pos_embed": "embeddings.position_embedding",
                "patch_embed.proj.weight": "embeddings.patch_embedding.weight",
                "patch_embed.proj.bias": "embeddings.patch_embedding.bias"}
_BLOCK = re.compile(r"blocks\.(\d+)\.(.+)")
_BLOCK_RENAMES = {"norm1": "layer_norm1", "norm2": "layer_norm2", "attn.qkv": "self_attn.qkv",
                  "attn.proj": "self_attn.projection", "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2"}


def is_vision_name(name: str) -> bool:
    """True for a tensor of the image side (everything outside `internlm_model.`)."""
    return name.startswith(("visual_encoder.", "ln_vision.", "Qformer.")) or name in OWN


def _eva_state(tensors: dict[str, Any], where: Any) -> dict[str, Any]:
    """visual_encoder.* + ln_vision.* → Blip2VisionModel names (q/v biases folded into qkv.bias)."""
    import torch

    out: dict[str, Any] = {}
    biases: dict[str, dict[str, Any]] = {}
    for name, t in tensors.items():
        if name.startswith("ln_vision."):
            out["post_layernorm." + name[len("ln_vision."):]] = t
            continue
        local = name[len("visual_encoder."):]
        m = _BLOCK.fullmatch(local)
        if local in _EVA_RENAMES:
            out[_EVA_RENAMES[local]] = t
        elif m and m.group(2) in ("attn.q_bias", "attn.v_bias"):
            biases.setdefault(m.group(1), {})[m.group(2)[5]] = t
        elif m and m.group(2).rsplit(".", 1)[0] in _BLOCK_RENAMES:
            part, kind = m.group(2).rsplit(".", 1)
            out[f"encoder.layers.{m.group(1)}.{_BLOCK_RENAMES[part]}.{kind}"] = t
        else:
            raise StudioError(f"{where}: unexpected tensor {name} in the EVA vision tower.",
                              "The checkpoint is of another model family; check `family:`.")
    for layer, qv in biases.items():
        if set(qv) != {"q", "v"}:
            raise StudioError(f"{where}: block {layer} of the vision tower lacks q_bias or v_bias.", "The checkpoint is incomplete.")
        out[f"encoder.layers.{layer}.self_attn.qkv.bias"] = torch.cat([qv["q"], torch.zeros_like(qv["v"]), qv["v"]])
    return out


def _qformer_state(tensors: dict[str, Any]) -> dict[str, Any]:
    """Qformer.bert.* → Blip2QFormerModel names (the unused position_ids buffer dropped)."""
    out = {}
    for name, t in tensors.items():
        local = name[len("Qformer.bert."):]
        if local == "embeddings.position_ids":
            continue
        if local.startswith("embeddings.LayerNorm."):
            out["layernorm." + local.rsplit(".", 1)[1]] = t
            continue
        out[local.replace("attention.self.", "attention.attention.")] = t
    return out


def _count(tensors: dict[str, Any], pattern: str) -> int:
    """Number of distinct layer indices matching `pattern` (with one (\\d+) group)."""
    return len({m.group(1) for n in tensors if (m := re.fullmatch(pattern, n))})


def _need(tensors: dict[str, Any], name: str, where: Any) -> Any:
    if name not in tensors:
        raise StudioError(f"{where}: {name} is missing.", "The checkpoint is incomplete; copy it again.")
    return tensors[name]


def build_tower(tensors: dict[str, Any], dtype: Any, where: Any) -> Any:
    """Blip2VisionModel (EVA-CLIP ViT-g layout) + ln_vision as its post_layernorm, from the official tensors."""
    import torch
    from transformers import Blip2VisionConfig
    from transformers.models.blip_2.modeling_blip_2 import Blip2VisionModel

    from studio.families.checkpoint_io import load_into

    state = _eva_state(tensors, where)
    patch = _need(state, "embeddings.patch_embedding.weight", where)
    positions = _need(state, "embeddings.position_embedding", where)
    width, size = int(patch.shape[0]), int(patch.shape[-1])
    grid = round((positions.shape[1] - 1) ** 0.5)
    if width % EVA_HEAD_DIM or grid * grid != positions.shape[1] - 1:
        raise StudioError(f"{where}: vision tower of width {width} with {positions.shape[1]} positions is not "
                          "an EVA ViT layout.", "The checkpoint is of another model family; check `family:`.")
    config = Blip2VisionConfig(
        hidden_size=width, num_attention_heads=width // EVA_HEAD_DIM, patch_size=size, image_size=grid * size,
        intermediate_size=int(_need(state, "encoder.layers.0.mlp.fc1.weight", where).shape[0]),
        num_hidden_layers=_count(state, r"encoder\.layers\.(\d+)\.layer_norm1\.weight"),
        layer_norm_eps=1e-6, hidden_act="gelu", qkv_bias=True, attention_dropout=0.0)
    with torch.device("meta"):
        tower = Blip2VisionModel(config)
        tower.post_layernorm = torch.nn.LayerNorm(width, eps=1e-5)  # ln_vision: nn.LayerNorm's default eps
    load_into(tower, {n: t.to(dtype) for n, t in state.items()}, where)
    return tower.eval()


def build_qformer(tensors: dict[str, Any], vision_width: int, dtype: Any, where: Any) -> Any:
    """Blip2QFormerModel (BERT-base layout, cross-attention every second layer) from the official tensors."""
    import torch
    from transformers import Blip2QFormerConfig
    from transformers.models.blip_2.modeling_blip_2 import Blip2QFormerModel

    from studio.families.checkpoint_io import load_into

    state = _qformer_state(tensors)
    hidden = int(_need(state, "layernorm.weight", where).shape[0])
    config = Blip2QFormerConfig(
        hidden_size=hidden, num_attention_heads=max(1, hidden // BERT_HEAD_DIM),
        num_hidden_layers=_count(state, r"encoder\.layer\.(\d+)\.attention\.output\.dense\.weight"),
        intermediate_size=int(_need(state, "encoder.layer.0.intermediate_query.dense.weight", where).shape[0]),
        encoder_hidden_size=vision_width, cross_attention_frequency=2, layer_norm_eps=1e-12, hidden_act="gelu",
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, use_qformer_text_input=False)
    with torch.device("meta"):
        qformer = Blip2QFormerModel(config)
    load_into(qformer, {n: t.to(dtype) for n, t in state.items()}, where)
    return qformer.eval()


class XComposer1Vision:
    """The VisionPart of XComposer v1: EVA tower → Q-Former → projection, framed by the image flags."""

    def __init__(self, tower: Any, qformer: Any, own: dict[str, Any]) -> None:
        import torch

        self.tower, self.qformer = tower, qformer
        self.query_tokens = own["query_tokens"]
        weight = own["internlm_proj.weight"]
        self.proj = torch.nn.Linear(weight.shape[1], weight.shape[0], device="meta")
        # assign: the projection takes the loaded dtype (a copy would keep nn.Linear's fp32).
        self.proj.load_state_dict({"weight": weight, "bias": own["internlm_proj.bias"]}, assign=True)
        self.flags = (own["flag_image_start"], own["flag_image_end"])

    @property
    def tokens_per_image(self) -> int:
        """Prompt positions of one image: the queries plus the two flags."""
        return int(self.query_tokens.shape[1]) + 2

    def parameters(self) -> list[Any]:
        """Every tensor of the image side."""
        return [*self.tower.parameters(), *self.qformer.parameters(), *self.proj.parameters(),
                self.query_tokens, *self.flags]

    def features(self, pixel_values: Any) -> Any:
        """[N, 3, 224, 224] pixels → [N, queries + 2, H], as the official encode_img."""
        import torch

        weight = self.proj.weight
        with torch.no_grad():
            image = self.tower(pixel_values.to(weight.device, weight.dtype)).last_hidden_state
            n = image.shape[0]
            queries = self.qformer(query_embeds=self.query_tokens.expand(n, -1, -1), encoder_hidden_states=image,
                                   encoder_attention_mask=torch.ones(image.shape[:-1], dtype=torch.long,
                                                                     device=image.device)).last_hidden_state
            start, end = (f.expand(n, -1, -1) for f in self.flags)
            return torch.cat([start, self.proj(queries), end], dim=1)

    def embed(self, lm: Any, prompt: PromptInputs) -> tuple[Any, Optional[Any]]:
        """inputs_embeds [1, T, H] with image features at the placeholder runs (no image-only adapters)."""
        from studio.families.xcomposer_vision import splice_images

        return splice_images(lm, prompt, self.features)[0], None

    def set_adapter_mask(self, mask: Optional[Any]) -> None:
        """Nothing to do: v1's LoRA applies to every position and is merged into the weights."""

    def to(self, device: Any) -> "XComposer1Vision":
        """Move the whole image side to `device`."""
        self.tower.to(device)
        self.qformer.to(device)
        self.proj.to(device)
        self.query_tokens = self.query_tokens.to(device)
        self.flags = tuple(f.to(device) for f in self.flags)
        return self


def build_vision(tensors: dict[str, Any], lm_hidden: int, dtype: Any, where: Any) -> XComposer1Vision:
    """The whole image side from the official tensors outside `internlm_model.`."""
    own = {n: _need(tensors, n, where).to(dtype) for n in OWN}
    tower = build_tower({n: t for n, t in tensors.items() if n.startswith(("visual_encoder.", "ln_vision."))}, dtype, where)
    qformer = build_qformer({n: t for n, t in tensors.items() if n.startswith("Qformer.")},
                            tower.config.hidden_size, dtype, where)
    if own["internlm_proj.weight"].shape != (lm_hidden, qformer.config.hidden_size) or \
            own["flag_image_start"].shape[-1] != lm_hidden:
        raise StudioError(f"{where}: internlm_proj / image flags do not map the Q-Former "
                          f"({qformer.config.hidden_size}) onto the language model ({lm_hidden}).",
                          "The checkpoint does not match its config.json.")
    return XComposer1Vision(tower, qformer, own)
