"""InternLM-XComposer2-VL (1.8B, 7B): the official chat prompt with interleaved images, and
loading the official checkpoint with remote code off.

Prompt, as the official chat() builds it (the chat tokens keep their raw piece names here):

    [UNUSED_TOKEN_146]system\\n{meta}[UNUSED_TOKEN_145]\\n
    [UNUSED_TOKEN_146]user\\n{q}[UNUSED_TOKEN_145]\\n[UNUSED_TOKEN_146]assistant\\n{a}[UNUSED_TOKEN_145]\\n …
    [UNUSED_TOKEN_146]user\\n{query}[UNUSED_TOKEN_145]\\n[UNUSED_TOKEN_146]assistant\\n

Images:
- each image part stands at its place in its message as `<ImageHere>`; when a message's images
  all follow its text (e.g. an upload next to a typed question) they go before the text, as in
  the README's `<ImageHere>Please describe this image in detail.`;
- the official code splits the prompt at `<ImageHere>` and tokenizes each non-empty text part
  with the tokenizer's defaults, so **every text part starts with BOS**, also the ones after an
  image (two adjacent images have no BOS between them); this is reproduced;
- each image occupies `(img_size / 14)²` = 1225 positions whose ids are IMAGE_PLACEHOLDER_ID
  (`<unk>`, 0); the vision part writes the image features there.
Text-only prompts follow the official build_inputs: its prompt string starts with a literal `<s>`
and the tokenizer adds BOS as well, so the ids start with BOS twice.

Special tokens are placed by id and user text is encoded as plain text: a typed
`[UNUSED_TOKEN_145]` stays text (no forged turn) and a typed `<ImageHere>` is just text (no
image slot), unlike the official code, which would act on both.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Optional, Union

from studio.core.types import ImagePart, Message, TextPart
from studio.errors import StudioError
from studio.families.base import ImageCost, LoadedParts, Progress, PromptInputs
from studio.families.hf_chat_template import unique_ids
from studio.families.plain_text import plain_ids as _text_ids
from studio.families.xcomposer_vision import IMAGE_PLACEHOLDER_ID, PROJ_PREFIX, VIT_PREFIX

# The official chat() default meta_instruction: four lines, no trailing newline.
META_INSTRUCTION = "\n".join(
    [
        "You are an AI assistant whose name is InternLM-XComposer (浦语·灵笔).",
        "- InternLM-XComposer (浦语·灵笔) is a multi-modality conversational language model that is developed "
        "by Shanghai AI Laboratory (上海人工智能实验室). It is designed to be helpful, honest, and harmless.",
        "- InternLM-XComposer (浦语·灵笔) can understand and communicate fluently in the language chosen by "
        "the user such as English and 中文.",
        "- InternLM-XComposer (浦语·灵笔) is capable of comprehending and articulating responses effectively "
        "based on the provided image.",
    ]
)

BOS_ID, EOS_ID = 1, 2
TURN_START_ID, TURN_END_ID = 92543, 92542
SPECIAL_TEXT = {BOS_ID: "<s>", TURN_START_ID: "[UNUSED_TOKEN_146]", TURN_END_ID: "[UNUSED_TOKEN_145]"}
IMAGE_MARK = "<ImageHere>"
ARCHITECTURE = "InternLMXComposer2ForCausalLM"
DEFAULT_IMAGE_SIZE, PATCH_SIZE = 490, 14
# SentencePiece matches these pieces (the chat tokens among them) even inside plain text.
_RAW_SPECIAL = re.compile(r"\[(?=UNUSED_TOKEN_\d+\])")

Piece = Union[str, int, ImagePart]  # text, a special token id, or an image


def plain_text_ids(tokenizer: Any, text: str) -> list[int]:
    """Ids of user text in which a typed `[UNUSED_TOKEN_n]` stays text (split after its `[`)."""
    ids, start = [], 0
    for m in _RAW_SPECIAL.finditer(text):
        ids += _text_ids(tokenizer, text[start:m.end()])
        start = m.end()
    return ids + _text_ids(tokenizer, text[start:])


def _content(message: Message) -> list[Piece]:
    """A message's text and images in prompt order (trailing images moved to the front)."""
    parts = [p.text if isinstance(p, TextPart) else p for p in message.content]
    parts = [p for p in parts if not (isinstance(p, str) and not p)]
    first_image = next((i for i, p in enumerate(parts) if isinstance(p, ImagePart)), len(parts))
    if not any(isinstance(p, str) for p in parts[first_image:]):
        parts = [p for p in parts if isinstance(p, ImagePart)] + [p for p in parts if isinstance(p, str)]
    return parts


def prompt_pieces(messages: list[Message]) -> list[Piece]:
    """The whole prompt as text, special ids and images (no BOS; the generation prompt last)."""
    pieces: list[Piece] = []
    if not any(m.role == "system" for m in messages):
        pieces += [TURN_START_ID, f"system\n{META_INSTRUCTION}", TURN_END_ID, "\n"]
    for m in messages:
        content = _content(m)
        if m.role == "system" and not content:
            continue  # an explicitly empty system message means no system block, as in chat()
        pieces += [TURN_START_ID, f"{m.role}\n", *content, TURN_END_ID, "\n"]
    return pieces + [TURN_START_ID, "assistant\n"]


def _segment_ids(tokenizer: Any, pieces: list[Piece]) -> list[int]:
    """Ids of a run of text and special ids; adjacent text is encoded together."""
    ids: list[int] = []
    run: list[str] = []
    for piece in [*pieces, None]:
        if isinstance(piece, str):
            run.append(piece)
            continue
        ids += plain_text_ids(tokenizer, "".join(run))
        run = []
        if isinstance(piece, int):
            ids.append(piece)
    return ids


def pieces_to_ids(tokenizer: Any, pieces: list[Piece], image_tokens: int) -> list[int]:
    """Token ids as the official code builds them (see the module docstring for BOS)."""
    if not any(isinstance(p, ImagePart) for p in pieces):
        return [BOS_ID, BOS_ID, *_segment_ids(tokenizer, pieces)]
    ids: list[int] = []
    segment: list[Piece] = []
    for piece in [*pieces, None]:
        if piece is not None and not isinstance(piece, ImagePart):
            segment.append(piece)
            continue
        if any(isinstance(p, int) or p for p in segment):
            ids += [BOS_ID, *_segment_ids(tokenizer, segment)]
        segment = []
        if piece is not None:
            ids += [IMAGE_PLACEHOLDER_ID] * image_tokens
    return ids


def conversation_images(messages: list[Message]) -> list[Any]:
    """The images of all messages in prompt order."""
    return [p.image for p in prompt_pieces(messages) if isinstance(p, ImagePart)]


class XComposer2Family:
    """InternLM-XComposer2-VL, built from the official checkpoint (Partial-LoRA on image positions)."""

    name = "xcomposer2"
    needs_remote_code = False
    loads_checkpoint = True
    accepts_images = True
    default_system_prompt: Optional[str] = META_INSTRUCTION

    def __init__(self, image_size: int = DEFAULT_IMAGE_SIZE, patch_size: int = PATCH_SIZE) -> None:
        # `load` replaces these with the checkpoint's img_size and the tower's patch size.
        self.image_size, self.patch_size = image_size, patch_size

    @property
    def tokens_per_image(self) -> int:
        """Prompt positions of one image: the tower's patch grid (CLS dropped)."""
        return (self.image_size // self.patch_size) ** 2

    def image_cost(self, image: Any, max_tiles: Optional[int] = None) -> ImageCost:
        """One 490-px view per image (no tiling), 1225 tokens."""
        return ImageCost(tiles=1, tokens=self.tokens_per_image)

    def build_prompt(self, tokenizer: Any, messages: list[Message]) -> str:
        """The prompt string the official code tokenizes (`<ImageHere>` for images; `<s>` first when text-only)."""
        pieces = prompt_pieces(messages)
        text = "".join(IMAGE_MARK if isinstance(p, ImagePart) else SPECIAL_TEXT[p] if isinstance(p, int) else p
                       for p in pieces)
        return text if any(isinstance(p, ImagePart) for p in pieces) else SPECIAL_TEXT[BOS_ID] + text

    def encode(self, tokenizer: Any, messages: list[Message], max_tiles: Optional[int] = None) -> list[int]:
        """Ids of the prompt, images as runs of IMAGE_PLACEHOLDER_ID (no pixels decoded; no tiling)."""
        return pieces_to_ids(tokenizer, prompt_pieces(messages), self.tokens_per_image)

    def prepare(self, tokenizer: Any, messages: list[Message], max_tiles: Optional[int] = None) -> PromptInputs:
        """Ids plus one normalised [3, img_size, img_size] tensor per image, in prompt order."""
        from studio.families.xcomposer_vision import preprocess

        pieces = prompt_pieces(messages)
        pixels = [preprocess(p.image, self.image_size) for p in pieces if isinstance(p, ImagePart)]
        ids = pieces_to_ids(tokenizer, pieces, self.tokens_per_image)
        return PromptInputs(ids=ids, pixel_values=pixels, image_tokens=[self.tokens_per_image] * len(pixels))

    def stop_token_ids(self, tokenizer: Any, generation_config: Any = None) -> list[int]:
        """eos (2) and [UNUSED_TOKEN_145] (92542), as chat() passes, plus the generation config's eos ids."""
        return unique_ids([EOS_ID, TURN_END_ID, getattr(generation_config, "eos_token_id", None)])

    def load(self, model_dir: Path, dtype: Any, progress: Progress) -> LoadedParts:
        """The LM as LlamaForCausalLM with Partial-LoRA hooks, the tokenizer, and the CLIP vision part."""
        from studio.families.checkpoint_io import apply_generation_config, check_architectures, read_config
        from studio.families.sp_tokenizer import SPTokenizer

        model_dir = Path(model_dir)
        config = read_config(model_dir)
        check_architectures(config, {ARCHITECTURE}, model_dir, self.name)
        image_size = _image_size(config, model_dir)
        tokenizer = SPTokenizer.from_dir(model_dir)
        progress(0.05, "reading weights")
        lm, vision = _load_weights(model_dir, config, image_size, dtype)
        apply_generation_config(lm, model_dir)
        self.image_size, self.patch_size = image_size, int(vision.tower.config.patch_size)
        progress(1.0, "loaded")
        return LoadedParts(lm=lm, tokenizer=tokenizer, vision=vision)


def _image_size(config: dict, model_dir: Path) -> int:
    """config.json `img_size` (490 for the VL checkpoints)."""
    size = config.get("img_size", DEFAULT_IMAGE_SIZE)
    if not isinstance(size, int) or not 14 <= size <= 4096:
        raise StudioError(f"{model_dir / 'config.json'}: img_size {size!r} is not an image size.",
                          "The checkpoint looks damaged.")
    return size


def _load_weights(model_dir: Path, config: dict, image_size: int, dtype: Any) -> tuple[Any, Any]:
    """LM (with Partial-LoRA), tower and projector from one pass over the shards."""
    from studio.families.checkpoint_io import iter_tensors
    from studio.families.internlm2_weights import build_internlm2_lm
    from studio.families.plora import AdapterMask, attach_plora, collect_plora, is_plora_name
    from studio.families.xcomposer_vision import XComposerVision, build_projector, build_tower

    vit: dict[str, Any] = {}
    proj: dict[str, Any] = {}
    adapters: dict[str, Any] = {}

    def rest(name: str, tensor: Any) -> None:
        if name.startswith(VIT_PREFIX):
            # The position table stays as stored: it may still need the bicubic stretch.
            key = name[len(VIT_PREFIX):]
            vit[key] = tensor if key.endswith("position_embedding.weight") else _cast(tensor, dtype)
        elif name.startswith(PROJ_PREFIX):
            proj[name[len(PROJ_PREFIX):]] = _cast(tensor, dtype)
        elif is_plora_name(name):
            adapters[name] = tensor
        else:
            raise StudioError(f"{model_dir}: unexpected tensor {name} in an InternLM-XComposer2 checkpoint.",
                              "The checkpoint is of another model family; check `family:`.")

    lm = build_internlm2_lm(config, iter_tensors(model_dir), dtype, rest=rest, where=model_dir)
    mask = AdapterMask()
    attach_plora(lm, collect_plora(adapters), config, mask, dtype, where=model_dir)
    tower = build_tower(vit, image_size, dtype, model_dir)
    projector = build_projector(proj, dtype, model_dir)
    width, hidden = projector[0].in_features, projector[2].out_features
    if width != tower.config.hidden_size or hidden != lm.config.hidden_size:
        raise StudioError(f"{model_dir}: vision_proj maps {width} → {hidden}, but the tower is "
                          f"{tower.config.hidden_size} wide and the LM {lm.config.hidden_size}.",
                          "The checkpoint does not match its config.json.")
    return lm, XComposerVision(tower, projector, mask)


def _cast(tensor: Any, dtype: Any) -> Any:
    """Floating tensors in `dtype`; others as stored."""
    return tensor.to(dtype) if tensor.is_floating_point() else tensor
