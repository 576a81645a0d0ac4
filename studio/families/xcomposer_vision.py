"""XComposer2-VL's image side: a CLIP ViT-L/14 tower at the checkpoint's `img_size` (490), the
vision_proj MLP, and the VisionPart the engine drives (image embeddings + the Partial-LoRA mask).

The official code builds the tower from the hub id openai/clip-vit-large-patch14-336 and stretches
its 24×24 position grid to 35×35 before loading the checkpoint; the checkpoint then stores the
stretched table (1226 rows). Nothing is downloaded here: the tower's config is the OpenAI CLIP
architecture (quick_gelu, pre-LN, 64-wide heads) with widths, depth and grid read from the
stored tensors, so the same code builds ViT-L/14 and a tiny test tower.
"""

from __future__ import annotations

import math
from typing import Any, Optional

from studio.errors import StudioError
from studio.families.base import PromptInputs
from studio.families.plora import AdapterMask

VIT_PREFIX = "vit.vision_tower.vision_model."
PROJ_PREFIX = "vision_proj."
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
CLIP_HEAD_DIM = 64  # every OpenAI CLIP ViT uses 64-wide attention heads (ViT-L/14: 1024 / 16)
# Image positions in PromptInputs.ids hold this id (<unk>, which the byte-fallback tokenizer never
# produces from text); embed() overwrites them with image features.
IMAGE_PLACEHOLDER_ID = 0


def preprocess(image: Any, size: int) -> Any:
    """RGB PIL image → [3, size, size] float32: Resize((size, size), BICUBIC), ToTensor, CLIP mean/std."""
    import numpy as np
    import torch
    from PIL import Image

    # torchvision's Resize on a PIL image is PIL's own resize: the aspect ratio is not kept.
    resized = image.convert("RGB").resize((size, size), Image.BICUBIC)
    pixels = torch.from_numpy(np.array(resized, dtype=np.uint8)).permute(2, 0, 1).float().div(255)
    mean = torch.tensor(CLIP_MEAN, dtype=torch.float32)[:, None, None]
    std = torch.tensor(CLIP_STD, dtype=torch.float32)[:, None, None]
    return pixels.sub(mean).div(std)


def resize_positions(table: Any, grid: int) -> Any:
    """A CLIP position table [1 + s², D] stretched to [1 + grid², D] (bicubic, CLS row kept), as resize_pos does."""
    import torch
    import torch.nn.functional as F

    side = math.isqrt(table.shape[0] - 1)
    if side * side != table.shape[0] - 1:
        raise ValueError(f"position table of {table.shape[0]} rows is not 1 + a square grid")
    if side == grid:
        return table
    dim = table.shape[1]
    patches = table[1:].float().reshape(1, side, side, dim).permute(0, 3, 1, 2)
    patches = F.interpolate(patches, size=(grid, grid), mode="bicubic", align_corners=False)
    patches = patches.permute(0, 2, 3, 1).reshape(grid * grid, dim)
    return torch.cat([table[:1].float(), patches]).to(table.dtype)


def clip_config(tensors: dict[str, Any], image_size: int, where: Any) -> Any:
    """A CLIPVisionConfig for the tower whose weights (names without VIT_PREFIX) are `tensors`."""
    from transformers import CLIPVisionConfig

    try:
        hidden = int(tensors["embeddings.class_embedding"].shape[0])
        patch = int(tensors["embeddings.patch_embedding.weight"].shape[-1])
        inter = int(tensors["encoder.layers.0.mlp.fc1.weight"].shape[0])
    except KeyError as exc:
        raise StudioError(f"{where}: vision tower weight {VIT_PREFIX}{exc.args[0]} not found.",
                          "The checkpoint is incomplete.") from None
    layers = 1 + max(int(n.split(".")[2]) for n in tensors if n.startswith("encoder.layers."))
    if image_size % patch or hidden % CLIP_HEAD_DIM and hidden > CLIP_HEAD_DIM:
        raise StudioError(f"{where}: img_size {image_size} / patch {patch} / width {hidden} do not fit a CLIP tower.",
                          "The checkpoint does not match its config.json.")
    return CLIPVisionConfig(
        hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
        num_attention_heads=max(1, hidden // CLIP_HEAD_DIM), image_size=image_size, patch_size=patch,
        hidden_act="quick_gelu", layer_norm_eps=1e-5, num_channels=3,
    )


def build_tower(tensors: dict[str, Any], image_size: int, dtype: Any, where: Any) -> Any:
    """CLIPVisionModel at `image_size` holding the checkpoint's tower (position table stretched if needed)."""
    import torch
    from transformers import CLIPVisionModel

    from studio.families.checkpoint_io import load_into

    config = clip_config(tensors, image_size, where)
    # Some exports carry position_ids (a buffer, not a weight); it is rebuilt below.
    state = {n: t for n, t in tensors.items() if n != "embeddings.position_ids"}
    grid = image_size // config.patch_size
    try:
        # Stretched before the cast, from the stored precision, as the official code does in fp32.
        key = "embeddings.position_embedding.weight"
        state[key] = resize_positions(state[key], grid)
    except (KeyError, ValueError) as exc:
        raise StudioError(f"{where}: {VIT_PREFIX}embeddings.position_embedding.weight: {exc}",
                          "The checkpoint is incomplete or damaged.") from None
    state = {n: t.to(dtype) if t.is_floating_point() else t for n, t in state.items()}
    with torch.device("meta"):
        tower = CLIPVisionModel(config)
    load_into(tower, state, where)
    # position_ids is a non-persistent buffer, so it is still on the meta device.
    tower.embeddings.position_ids = torch.arange(grid * grid + 1).expand((1, -1))
    return tower.eval()


def build_projector(tensors: dict[str, Any], dtype: Any, where: Any) -> Any:
    """vision_proj: Linear(tower width → H), GELU, Linear(H → H), from `vision_proj.{0,2}.*`."""
    import torch

    from studio.families.checkpoint_io import load_into

    try:
        w0, w2 = tensors["0.weight"], tensors["2.weight"]
    except KeyError as exc:
        raise StudioError(f"{where}: {PROJ_PREFIX}{exc.args[0]} not found.", "The checkpoint is incomplete.") from None
    with torch.device("meta"):
        proj = torch.nn.Sequential(torch.nn.Linear(w0.shape[1], w0.shape[0]), torch.nn.GELU(),
                                   torch.nn.Linear(w2.shape[1], w2.shape[0]))
    load_into(proj, {n: t.to(dtype) for n, t in tensors.items()}, where)
    return proj.eval()


class XComposerVision:
    """The VisionPart of XComposer2-VL: CLIP tower + vision_proj, and the Partial-LoRA image mask."""

    def __init__(self, tower: Any, projector: Any, adapter_mask: AdapterMask) -> None:
        self.tower, self.projector, self.adapter_mask = tower, projector, adapter_mask

    def parameters(self) -> list[Any]:
        """Tower and projector parameters (the adapters live in the language model)."""
        return [*self.tower.parameters(), *self.projector.parameters()]

    def features(self, pixel_values: Any) -> Any:
        """[N, 3, S, S] pixels → [N, tokens, H]: last layer, CLS dropped, no post-layernorm, projected."""
        import torch

        weight = self.projector[0].weight
        with torch.no_grad():
            hidden = self.tower(pixel_values.to(weight.device, weight.dtype)).last_hidden_state
            return self.projector(hidden[:, 1:])

    def embed(self, lm: Any, prompt: PromptInputs) -> tuple[Any, Optional[Any]]:
        """inputs_embeds [1, T, H] with image features at the placeholder runs, and the image mask [T]."""
        return splice_images(lm, prompt, self.features)

    def set_adapter_mask(self, mask: Optional[Any]) -> None:
        """Image-position mask [1, chunk] for the next forward of the language model (None: text only)."""
        self.adapter_mask.mask = mask

    def to(self, device: Any) -> "XComposerVision":
        """Move the tower and projector to `device`."""
        self.tower.to(device)
        self.projector.to(device)
        return self


def splice_images(lm: Any, prompt: PromptInputs, features: Any) -> tuple[Any, Any]:
    """inputs_embeds [1, T, H] of `prompt.ids` with `features(pixels)` at the placeholder runs, and the
    image mask [T]; ValueError when the prompt's image positions and the images disagree."""
    import torch

    table = lm.get_input_embeddings()
    ids = torch.tensor([prompt.ids], device=table.weight.device)
    mask = ids[0] == IMAGE_PLACEHOLDER_ID
    if int(mask.sum()) != sum(prompt.image_tokens) or len(prompt.pixel_values) != len(prompt.image_tokens):
        raise ValueError(f"prompt has {int(mask.sum())} image positions for images of {prompt.image_tokens} tokens")
    with torch.no_grad():
        embeds = table(ids)
        if prompt.pixel_values:
            feats = features(torch.stack(list(prompt.pixel_values)))
            if [f.shape[0] for f in feats] != list(prompt.image_tokens):
                raise ValueError(f"image features of {feats.shape[1]} tokens, prompt expects {prompt.image_tokens}")
            embeds[0, mask] = feats.reshape(-1, feats.shape[-1]).to(embeds.device, embeds.dtype)
    return embeds, mask
