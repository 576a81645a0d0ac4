"""InternViT (InternVL's vision tower: 300M, and 6B with RMSNorm and qk-norm), pixel shuffle, the mlp1
projector, and the VisionPart.

Our own small module rather than transformers' native InternVL vision classes:
- it holds the official parameter names (`embeddings.class_embedding`, `encoder.layers.N.attn.qkv`,
  `ls1` …), so `vision_model.*` loads as stored, with no renaming and no splitting of qkv;
- the native classes follow the converted-checkpoint conventions, which differ in details that
  change numbers unless configured around (an optional final LayerNorm, position-embedding
  interpolation in the weight dtype rather than fp32, `layer_scale_init_value` instead of the
  stored ls1/ls2 semantics), and their internals move between transformers releases;
- the whole tower is ~30 lines of forward code, which keeps it easy to check against the official one.

Built from stock torch modules inside functions (torch is imported lazily, as everywhere in studio).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from studio.errors import StudioError


@dataclass(frozen=True)
class VisionDims:
    """The vision_config fields the tower and the projector need."""

    hidden: int
    layers: int
    heads: int
    intermediate: int
    image_size: int
    patch: int
    eps: float
    qkv_bias: bool
    llm_hidden: int
    downsample: float = 0.5
    select_layer: int = -1
    norm: str = "layer_norm"  # "rms_norm" in InternViT-6B
    qk_norm: bool = False  # InternViT-6B RMS-normalises q and k over all heads before attention

    @property
    def grid(self) -> int:
        """Patches per side of a tile (448 / 14 = 32)."""
        return self.image_size // self.patch

    @property
    def shuffle(self) -> int:
        """Side of the square of patches merged into one token (1 / 0.5 = 2)."""
        return round(1 / self.downsample)

    @property
    def tokens_per_tile(self) -> int:
        """LM tokens one tile becomes (256 for InternVL2: 32² patches, 2×2 merged)."""
        return (self.grid // self.shuffle) ** 2

    @property
    def depth(self) -> int:
        """Encoder layers to run: select_layer indexes the hidden states (0 = the embeddings)."""
        return self.select_layer if self.select_layer >= 0 else self.layers + 1 + self.select_layer


def vision_dims(config: dict, where: Any) -> VisionDims:
    """VisionDims from an InternVLChatModel config.json, refusing variants this tower does not cover."""
    vc, lc = config.get("vision_config") or {}, config.get("llm_config") or {}
    unsupported = [
        (vc.get("norm_type", "rms_norm") not in ("layer_norm", "rms_norm"),
         f"vision_config.norm_type={vc.get('norm_type')!r}"),
        (vc.get("hidden_act", "gelu") != "gelu", f"vision_config.hidden_act={vc.get('hidden_act')!r}"),
        (config.get("ps_version", "v1") != "v2", f"ps_version={config.get('ps_version')!r}"),
        (bool(config.get("use_backbone_lora")) or bool(config.get("use_llm_lora")), "LoRA wrappers"),
    ]
    bad = [what for flag, what in unsupported if flag]
    if bad:
        raise StudioError(
            f"{where}: {', '.join(bad)}: this InternVL variant is not supported (InternViT with "
            "layer_norm or rms_norm, gelu, pixel shuffle v2).",
            "Use an InternVL2, InternVL2.5 or InternVL3 checkpoint.",
        )
    try:
        return VisionDims(
            hidden=int(vc["hidden_size"]), layers=int(vc["num_hidden_layers"]),
            heads=int(vc["num_attention_heads"]), intermediate=int(vc["intermediate_size"]),
            image_size=int(config.get("force_image_size") or vc["image_size"]), patch=int(vc["patch_size"]),
            eps=float(vc.get("layer_norm_eps", 1e-6)), qkv_bias=bool(vc.get("qkv_bias", False)),
            llm_hidden=int(lc["hidden_size"]), downsample=float(config.get("downsample_ratio", 0.5)),
            select_layer=int(config.get("select_layer", -1)),
            norm=str(vc.get("norm_type", "rms_norm")), qk_norm=bool(vc.get("qk_normalization", False)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise StudioError(f"{where}: vision_config/llm_config field missing or invalid: {exc}",
                          "The checkpoint's config.json looks damaged.") from None


def build_tower(dims: VisionDims) -> Any:
    """An empty InternViT whose state-dict names equal the official `vision_model.*` names (minus prefix)."""
    import torch
    from torch import nn

    tower = nn.Module()
    tower.embeddings = nn.Module()
    tower.embeddings.class_embedding = nn.Parameter(torch.empty(1, 1, dims.hidden))
    tower.embeddings.patch_embedding = nn.Conv2d(3, dims.hidden, kernel_size=dims.patch, stride=dims.patch)
    tower.embeddings.position_embedding = nn.Parameter(torch.empty(1, dims.grid**2 + 1, dims.hidden))
    tower.encoder = nn.Module()
    tower.encoder.layers = nn.ModuleList(_layer(dims) for _ in range(dims.layers))
    return tower


def _norm(dims: VisionDims) -> Any:
    """The tower's norm: LayerNorm (300M) or RMSNorm without bias (6B), eps from the config."""
    from torch import nn

    # nn.RMSNorm's fp32 math is InternRMSNorm's: x · rsqrt(mean(x²) + eps) · weight.
    return nn.LayerNorm(dims.hidden, eps=dims.eps) if dims.norm == "layer_norm" else nn.RMSNorm(dims.hidden, eps=dims.eps)


def _layer(dims: VisionDims) -> Any:
    """One pre-norm encoder block with layer scale (ls1, ls2), and q/k norms when the config asks."""
    import torch
    from torch import nn

    layer = nn.Module()
    layer.norm1, layer.norm2 = _norm(dims), _norm(dims)
    layer.attn = nn.Module()
    layer.attn.qkv = nn.Linear(dims.hidden, 3 * dims.hidden, bias=dims.qkv_bias)
    if dims.qk_norm:
        # Always RMSNorm, over the whole width (all heads), as the official InternAttention.
        layer.attn.q_norm = nn.RMSNorm(dims.hidden, eps=dims.eps)
        layer.attn.k_norm = nn.RMSNorm(dims.hidden, eps=dims.eps)
    layer.attn.proj = nn.Linear(dims.hidden, dims.hidden)
    layer.mlp = nn.Module()
    layer.mlp.fc1 = nn.Linear(dims.hidden, dims.intermediate)
    layer.mlp.fc2 = nn.Linear(dims.intermediate, dims.hidden)
    layer.ls1 = nn.Parameter(torch.empty(dims.hidden))
    layer.ls2 = nn.Parameter(torch.empty(dims.hidden))
    return layer


def build_projector(dims: VisionDims) -> Any:
    """mlp1: LayerNorm(4096) → Linear → GELU → Linear (indices 0, 1, 3 hold weights, as stored)."""
    from torch import nn

    merged = dims.hidden * dims.shuffle**2
    # The LayerNorm keeps torch's default eps (1e-5), unlike the tower's 1e-6.
    return nn.Sequential(nn.LayerNorm(merged), nn.Linear(merged, dims.llm_hidden), nn.GELU(),
                         nn.Linear(dims.llm_hidden, dims.llm_hidden))


def _embed_patches(tower: Any, dims: VisionDims, pixels: Any) -> Any:
    """CLS + patch embeddings + position embeddings (bicubic-resized when the grid differs)."""
    import torch
    import torch.nn.functional as F

    emb = tower.embeddings
    patches = emb.patch_embedding(pixels.to(emb.patch_embedding.weight.dtype))
    n, _, rows, cols = patches.shape
    x = torch.cat([emb.class_embedding.expand(n, 1, -1), patches.flatten(2).transpose(1, 2)], dim=1)
    pos = emb.position_embedding
    if (rows, cols) != (dims.grid, dims.grid):
        # As the official embeddings: resize the patch positions in fp32, keep the CLS position.
        grid = pos[:, 1:].float().reshape(1, dims.grid, dims.grid, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(rows, cols), mode="bicubic", align_corners=False)
        pos = torch.cat([pos[:, :1], grid.flatten(2).transpose(1, 2).to(pos.dtype)], dim=1)
    return x + pos.to(x.dtype)


def _block(layer: Any, dims: VisionDims, x: Any) -> Any:
    """x + ls1·attn(norm1 x), then + ls2·mlp(norm2 x); exact-erf GELU."""
    import torch.nn.functional as F

    n, t, c = x.shape
    qkv = layer.attn.qkv(layer.norm1(x)).reshape(n, t, 3, dims.heads, c // dims.heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    if dims.qk_norm:
        q = _across_heads(layer.attn.q_norm, q)
        k = _across_heads(layer.attn.k_norm, k)
    attn = F.scaled_dot_product_attention(q, k, v)
    x = x + layer.attn.proj(attn.transpose(1, 2).reshape(n, t, c)) * layer.ls1
    return x + layer.mlp.fc2(F.gelu(layer.mlp.fc1(layer.norm2(x)))) * layer.ls2


def _across_heads(norm: Any, x: Any) -> Any:
    """`norm` over all heads of each position: [n, heads, t, d] → [n, t, heads·d] → back."""
    n, h, t, d = x.shape
    return norm(x.transpose(1, 2).reshape(n, t, h * d)).reshape(n, t, h, d).transpose(1, 2)


def pixel_shuffle(x: Any, side: int) -> Any:
    """[n, tokens, c] on a square grid → [n, tokens/side², c·side²], official ps v2 order.

    Output token (i, j) is the concatenation of input tokens (side·i + a, side·j + b) for a, b in
    row-major order; v2 keeps rows as rows (v1 left the grid transposed)."""
    n, t, c = x.shape
    g = round(t**0.5)
    x = x.reshape(n, g // side, side, g // side, side, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(n, (g // side) ** 2, c * side * side)


def tower_hidden(tower: Any, dims: VisionDims, pixels: Any) -> Any:
    """Tiles [n, 3, H, W] → the selected layer's hidden states [n, 1 + patches, hidden] (CLS first)."""
    x = _embed_patches(tower, dims, pixels)
    for layer in tower.encoder.layers[: dims.depth]:
        x = _block(layer, dims, x)
    return x


def tower_features(tower: Any, projector: Any, dims: VisionDims, pixels: Any) -> Any:
    """Tiles [n, 3, 448, 448] → LM-space features [n, 256, llm_hidden]."""
    x = tower_hidden(tower, dims, pixels)
    return projector(pixel_shuffle(x[:, 1:], dims.shuffle))  # CLS dropped


class InternViTVision:
    """The VisionPart of InternVL2: tower + mlp1; IMG_CONTEXT embeddings replaced by image features."""

    def __init__(self, tower: Any, projector: Any, dims: VisionDims, image_token_id: int) -> None:
        self.tower, self.projector, self.dims = tower, projector, dims
        self.image_token_id = image_token_id

    def features(self, pixels: Any) -> Any:
        """Projected features [n_tiles, 256, llm_hidden] of one image's tiles."""
        import torch

        device = self.projector[0].weight.device
        with torch.no_grad():
            return tower_features(self.tower, self.projector, self.dims, pixels.to(device))

    def embed(self, lm: Any, prompt: Any) -> tuple[Any, Optional[Any]]:
        """Token embeddings of prompt.ids with the IMG_CONTEXT positions holding the image features."""
        import torch

        table = lm.model.embed_tokens
        ids = torch.tensor([prompt.ids], dtype=torch.long, device=table.weight.device)
        with torch.no_grad():
            embeds = table(ids)
            slots = ids[0] == self.image_token_id
            n_slots = int(slots.sum())
            if not prompt.pixel_values:
                if n_slots:
                    raise StudioError(f"The prompt has {n_slots} image positions but no image.", "")
                return embeds, None
            feats = torch.cat([self.features(p).reshape(-1, embeds.shape[-1]) for p in prompt.pixel_values])
            if feats.shape[0] != n_slots:
                raise StudioError(
                    f"The prompt has {n_slots} image positions for {feats.shape[0]} image features.",
                    "Build the prompt with the same family that embeds it.",
                )
            embeds[0, slots] = feats.to(device=embeds.device, dtype=embeds.dtype)
        return embeds, None

    def parameters(self) -> Any:
        """Tower and projector parameters (for memory accounting)."""
        yield from self.tower.parameters()
        yield from self.projector.parameters()

    def set_adapter_mask(self, mask: Optional[Any]) -> None:
        """No image-only adapters in InternVL2: nothing to do."""

    def to(self, device: Any) -> "InternViTVision":
        """Move tower and projector to `device`."""
        self.tower.to(device)
        self.projector.to(device)
        return self
