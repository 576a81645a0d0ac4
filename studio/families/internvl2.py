"""InternVL2 (InternLM2-based: 2B, 8B, 26B): the internlm2-chat prompt with image placeholders,
dynamic tiling, and loading the official checkpoint with remote code off.

Prompt (official `internlm2-chat` template, MPT style: `<|im_end|>` with no newline after it):

    <s><|im_start|>system\\n{SYS}<|im_end|><|im_start|>user\\n{Q}<|im_end|><|im_start|>assistant\\n

Images, which only user messages may carry:
- one image in the whole conversation: `<image>\\n` before that message's text, as the official
  chat() does;
- several: each user message lists its own images as `Image-k: <image>\\n` (the README's
  multi-image form), k numbered across the whole conversation in order of appearance, so an image
  sent in an earlier turn stays in that turn under the same number. (Adding a second image
  therefore renumbers the first from `<image>` to `Image-1: <image>`.)
- a message's images always come before its text, whatever the part order, as in chat().
Each `<image>` becomes `<img>` + `<IMG_CONTEXT>`×(256·tiles) + `</img>` in the ids. Special
tokens are placed by id; user text is encoded as plain text, so typing `<img>`, `<image>` or
`<|im_end|>` never forges an image slot or a turn boundary.

`ChatTemplate` holds what differs between InternVL generations (the separator after `<|im_end|>`,
the system message, BOS and the markers' ids), so internvl25.py reuses this prompt assembly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

from studio.core.types import Message
from studio.errors import InputError, StudioError
from studio.families.base import ImageCost, LoadedParts, Progress, PromptInputs
from studio.families.hf_chat_template import unique_ids
from studio.families.plain_text import plain_ids as _text_ids

# The template's built-in system message (conversation.py, internlm2-chat); the Chinese comma and
# the ASCII ", " after "InternVL" are both as in the original.
SYSTEM_MESSAGE = "你是由上海人工智能实验室联合商汤科技开发的书生多模态大模型，英文名叫InternVL, 是一个有用无害的人工智能助手。"

BOS_ID, IM_END_ID, IM_START_ID = 1, 92542, 92543
IMG_START_ID, IMG_END_ID, IMG_CONTEXT_ID = 92544, 92545, 92546
SPECIAL_TEXT = {BOS_ID: "<s>", IM_END_ID: "<|im_end|>", IM_START_ID: "<|im_start|>",
                IMG_START_ID: "<img>", IMG_END_ID: "</img>", IMG_CONTEXT_ID: "<IMG_CONTEXT>"}
MARKERS = ("<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>")
IMAGE_PLACEHOLDER = "<image>"
ARCHITECTURE = "InternVLChatModel"
MAX_TILES_LIMIT = 64


@dataclass(frozen=True)
class TilingSettings:
    """How images are tiled and what a tile costs (official InternVL2 values by default)."""

    max_tiles: int = 12
    min_tiles: int = 1
    use_thumbnail: bool = True
    tokens_per_tile: int = 256


@dataclass(frozen=True)
class ChatTemplate:
    """An MPT-style InternVL conversation template and the ids its markers have in one tokenizer.

    `sep` is what follows each `<|im_end|>` ("" in internlm2-chat, "\\n" in internvl2_5); `bos_id`
    is None for tokenizers that add no BOS (Qwen2's)."""

    system_message: str
    sep: str = ""
    bos_id: Optional[int] = BOS_ID
    im_start_id: int = IM_START_ID
    im_end_id: int = IM_END_ID
    img_start_id: int = IMG_START_ID
    img_end_id: int = IMG_END_ID
    img_context_id: int = IMG_CONTEXT_ID
    bos_text: str = "<s>"

    def text_of(self, token_id: int) -> str:
        """The marker text of one of the template's special ids."""
        names = dict(zip((self.im_start_id, self.im_end_id, self.img_start_id, self.img_end_id,
                          self.img_context_id), MARKERS))
        return self.bos_text if token_id == self.bos_id else names[token_id]


INTERNLM2_CHAT = ChatTemplate(SYSTEM_MESSAGE)


@dataclass(frozen=True)
class _ImageSlot:
    """Where image number `index` (0-based, conversation order) goes in the prompt."""

    index: int


Piece = Union[str, int, _ImageSlot]  # text, a special token id, or an image


def _user_pieces(message: Message, first_index: int, numbered: bool) -> list[Piece]:
    """A user message's content: its images (numbered when the conversation has several), then its text."""
    pieces: list[Piece] = []
    for k in range(len(message.images)):
        index = first_index + k
        pieces += [f"Image-{index + 1}: "] if numbered else []
        pieces += [_ImageSlot(index), "\n"]
    return pieces + [message.text]


def prompt_pieces(messages: list[Message], template: ChatTemplate = INTERNLM2_CHAT) -> list[Piece]:
    """The whole prompt as text, special ids and image slots (BOS first, generation prompt last)."""
    total = sum(len(m.images) for m in messages if m.role == "user")
    if any(m.images for m in messages if m.role != "user"):
        raise InputError("Only user messages can carry images.", "Attach images to your own messages.")
    start, end = template.im_start_id, [template.im_end_id, *([template.sep] if template.sep else [])]
    pieces: list[Piece] = [] if template.bos_id is None else [template.bos_id]
    if not any(m.role == "system" for m in messages):
        pieces += [start, f"system\n{template.system_message}", *end]
    seen = 0
    for m in messages:
        if m.role == "system" and not m.text:
            continue  # an explicitly empty system message means no system block
        content = _user_pieces(m, seen, total > 1) if m.role == "user" else [m.text]
        seen += len(m.images) if m.role == "user" else 0
        pieces += [start, f"{m.role}\n", *content, *end]
    return pieces + [start, "assistant\n"]


def pieces_to_ids(tokenizer: Any, pieces: list[Piece], tiles: list[int], tokens_per_tile: int,
                  template: ChatTemplate = INTERNLM2_CHAT) -> list[int]:
    """Token ids: adjacent text encoded together (as the official tokenizer does between special tokens)."""
    ids: list[int] = []
    run: list[str] = []
    for piece in [*pieces, None]:
        if isinstance(piece, str):
            run.append(piece)
            continue
        ids += _text_ids(tokenizer, "".join(run))
        run = []
        if isinstance(piece, int):
            ids.append(piece)
        elif isinstance(piece, _ImageSlot):
            context = [template.img_context_id] * (tokens_per_tile * tiles[piece.index])
            ids += [template.img_start_id, *context, template.img_end_id]
    return ids


def conversation_images(messages: list[Message]) -> list[Any]:
    """The user messages' images in prompt order."""
    return [img for m in messages if m.role == "user" for img in m.images]


class InternVL2Family:
    """InternVL2 with an InternLM2 language model, built from the official checkpoint."""

    name = "internvl2"
    needs_remote_code = False
    loads_checkpoint = True
    accepts_images = True
    default_system_prompt: Optional[str] = SYSTEM_MESSAGE

    def __init__(self, tiling: Optional[TilingSettings] = None) -> None:
        # Replaced by the checkpoint's own values (max_dynamic_patch …) when `load` reads config.json.
        self.tiling = tiling or TilingSettings()
        self.template = INTERNLM2_CHAT

    def _max_tiles(self, max_tiles: Optional[int]) -> int:
        """The tile limit to use: the argument, else the checkpoint's max_dynamic_patch."""
        limit = self.tiling.max_tiles if max_tiles is None else max_tiles
        if not isinstance(limit, int) or not 1 <= limit <= MAX_TILES_LIMIT:
            raise InputError(f"max_tiles must be a whole number from 1 to {MAX_TILES_LIMIT} (got {limit!r}).",
                             "Fewer tiles use less memory; 12 is the model's default.")
        return max(limit, self.tiling.min_tiles)

    def image_cost(self, image: Any, max_tiles: Optional[int] = None) -> ImageCost:
        """Tiles (grid + thumbnail) and prompt tokens (256 per tile, plus <img> and </img>)."""
        from studio.families.internvl_tiling import tile_count

        t = self.tiling
        tiles = tile_count(image.width, image.height, self._max_tiles(max_tiles), t.min_tiles, t.use_thumbnail)
        return ImageCost(tiles=tiles, tokens=t.tokens_per_tile * tiles + 2)

    def build_prompt(self, tokenizer: Any, messages: list[Message]) -> str:
        """The prompt text, each image shown as the official `<image>` placeholder (before expansion)."""
        return "".join(
            p if isinstance(p, str) else IMAGE_PLACEHOLDER if isinstance(p, _ImageSlot) else self.template.text_of(p)
            for p in prompt_pieces(messages, self.template)
        )

    def encode(self, tokenizer: Any, messages: list[Message], max_tiles: Optional[int] = None) -> list[int]:
        """Ids of the prompt with image slots expanded (tile counts computed, no pixels decoded)."""
        tiles = [self.image_cost(img, max_tiles).tiles for img in conversation_images(messages)]
        return pieces_to_ids(tokenizer, prompt_pieces(messages, self.template), tiles, self.tiling.tokens_per_tile,
                             self.template)

    def prepare(self, tokenizer: Any, messages: list[Message], max_tiles: Optional[int] = None) -> PromptInputs:
        """Ids plus one normalised tile tensor [tiles, 3, 448, 448] per image, in prompt order."""
        from studio.families.internvl_tiling import pixel_values

        t, limit = self.tiling, self._max_tiles(max_tiles)
        pixels = [pixel_values(img, limit, t.min_tiles, t.use_thumbnail) for img in conversation_images(messages)]
        tiles = [int(p.shape[0]) for p in pixels]
        ids = pieces_to_ids(tokenizer, prompt_pieces(messages, self.template), tiles, t.tokens_per_tile, self.template)
        return PromptInputs(ids=ids, pixel_values=pixels, image_tokens=[t.tokens_per_tile * n + 2 for n in tiles])

    def stop_token_ids(self, tokenizer: Any, generation_config: Any = None) -> list[int]:
        """<|im_end|> (what chat() stops on) plus the eos ids of the generation config."""
        return unique_ids([self.template.im_end_id, getattr(generation_config, "eos_token_id", None)])

    def load(self, model_dir: Path, dtype: Any, progress: Progress) -> LoadedParts:
        """The LM (natively, remote code off), the tokenizer, and the InternViT vision part."""
        from studio.families.checkpoint_io import apply_generation_config, check_architectures, read_config
        from studio.families.internvit import vision_dims

        model_dir = Path(model_dir)
        config = read_config(model_dir)
        check_architectures(config, {ARCHITECTURE}, model_dir, self.name)
        llm_cfg = self._llm_config(config, model_dir)
        dims = vision_dims(config, model_dir / "config.json")
        tokenizer = self._load_tokenizer(model_dir, llm_cfg, config)
        progress(0.1, f"Reading the InternVL weights from {model_dir}")
        lm, vision = _load_weights(model_dir, llm_cfg, dims, dtype, self.template.img_context_id)
        apply_generation_config(lm, model_dir)
        self.tiling = tiling_settings(config, dims.tokens_per_tile)
        progress(0.85, "InternVL weights loaded")
        return LoadedParts(lm=lm, tokenizer=tokenizer, vision=vision)

    def _llm_config(self, config: dict, model_dir: Path) -> dict:
        """llm_config, checked to be one this family covers."""
        return _llm_config(config, model_dir)

    def _load_tokenizer(self, model_dir: Path, llm_cfg: dict, config: dict) -> Any:
        """The checkpoint's tokenizer, checked to know the image tokens at the template's ids."""
        return _load_tokenizer(model_dir)


def tiling_settings(config: dict, tokens_per_tile: int) -> TilingSettings:
    """TilingSettings from config.json (dynamic_image_size false means one 448-px tile per image)."""
    dynamic = bool(config.get("dynamic_image_size", True))
    max_tiles = int(config.get("max_dynamic_patch", 12)) if dynamic else 1
    min_tiles = min(int(config.get("min_dynamic_patch", 1)), max_tiles) if dynamic else 1
    return TilingSettings(max_tiles=max_tiles, min_tiles=min_tiles,
                          use_thumbnail=bool(config.get("use_thumbnail", False)) and dynamic,
                          tokens_per_tile=tokens_per_tile)


def _llm_config(config: dict, model_dir: Path) -> dict:
    """llm_config, which must be an InternLM2 one with the internlm2-chat template."""
    where = model_dir / "config.json"
    llm_cfg = config.get("llm_config")
    archs = llm_cfg.get("architectures") if isinstance(llm_cfg, dict) else None
    newer = "This is an InternVL2.5 / InternVL3 checkpoint: set `family: internvl2_5` (or `auto`)."
    if archs != ["InternLM2ForCausalLM"]:
        raise StudioError(f"{where}: llm_config.architectures is {archs!r}; this family covers InternVL2 "
                          "with an InternLM2 language model (2B, 8B, 26B).",
                          newer if config.get("template") == "internvl2_5" else
                          "InternVL2 models built on Qwen2 or Phi-3 (1B, 4B) need another family.")
    if config.get("template") != "internlm2-chat":
        raise StudioError(f"{where}: template is {config.get('template')!r}, expected 'internlm2-chat'.",
                          newer if config.get("template") == "internvl2_5" else
                          "This checkpoint uses another prompt format; set `family:` accordingly.")
    return llm_cfg


def _load_tokenizer(model_dir: Path) -> Any:
    """The SentencePiece tokenizer, checked to know the image tokens at their official ids."""
    from studio.families.sp_tokenizer import SPTokenizer

    tokenizer = SPTokenizer.from_dir(model_dir)
    for token_id in (IM_END_ID, IM_START_ID, IMG_START_ID, IMG_END_ID, IMG_CONTEXT_ID):
        name = SPECIAL_TEXT[token_id]
        if tokenizer.convert_tokens_to_ids(name) != token_id:
            raise StudioError(f"{model_dir / 'tokenizer_config.json'}: {name} is not token {token_id}.",
                              "InternVL2's tokenizer_config.json defines the image tokens; copy it again.")
    return tokenizer


def _load_weights(model_dir: Path, llm_cfg: dict, dims: Any, dtype: Any,
                  image_token_id: int = IMG_CONTEXT_ID) -> tuple[Any, Any]:
    """LM (InternLM2 as Llama, or Qwen2 as itself), tower and projector from one pass over the shards."""
    import torch

    from studio.families.checkpoint_io import iter_tensors, load_into
    from studio.families.internlm2_weights import build_internlm2_lm
    from studio.families.internvit import InternViTVision, build_projector, build_tower

    parts: dict[str, dict] = {"vision_model.": {}, "mlp1.": {}}

    def rest(name: str, tensor: Any) -> None:
        prefix = next((p for p in parts if name.startswith(p)), None)
        if prefix is None:
            raise StudioError(f"{model_dir}: unexpected tensor {name} in an InternVL checkpoint.",
                              "The checkpoint is of another model family; check `family:`.")
        parts[prefix][name[len(prefix):]] = tensor.to(dtype) if tensor.is_floating_point() else tensor

    if llm_cfg.get("architectures") == ["Qwen2ForCausalLM"]:
        from studio.families.internvl_qwen2 import build_qwen2_lm

        lm = build_qwen2_lm(llm_cfg, iter_tensors(model_dir), dtype, rest=rest, where=model_dir)
    else:
        lm = build_internlm2_lm(llm_cfg, iter_tensors(model_dir), dtype, src_prefix="language_model.",
                                rest=rest, where=model_dir)
    with torch.device("meta"):
        tower, projector = build_tower(dims), build_projector(dims)
    load_into(tower, parts["vision_model."], model_dir)
    load_into(projector, parts["mlp1."], model_dir)
    return lm, InternViTVision(tower.eval(), projector.eval(), dims, image_token_id)
