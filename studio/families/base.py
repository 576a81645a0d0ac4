"""The model-family contract: how a model wants its input, and how its official checkpoint loads."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Protocol

from studio.core.types import Message

# progress(fraction 0..1, short description), as in studio.engines.base.ProgressFn.
Progress = Callable[[float, str], None]


class ModelFamily(Protocol):
    """Prompt assembly and stop tokens of one model family."""

    name: str
    # True while the family can only load its official checkpoints through their own code.
    needs_remote_code: bool
    # True when `load` builds the model from the official on-disk layout with remote code off.
    loads_checkpoint: bool
    # True for families whose prompts carry images (they implement VisionFamily).
    accepts_images: bool
    # The system prompt the official chat code uses when the user gives none (None: no default).
    default_system_prompt: Optional[str]

    def build_prompt(self, tokenizer: Any, messages: list[Message]) -> str:
        """The prompt text for `messages`, ending with the assistant's generation prompt."""
        ...

    def encode(self, tokenizer: Any, messages: list[Message]) -> list[int]:
        """Token ids of `build_prompt` (BOS handled as the official code does)."""
        ...

    def stop_token_ids(self, tokenizer: Any, generation_config: Any = None) -> list[int]:
        """Ids that end a reply."""
        ...


def system_default(family: ModelFamily, tokenizer: Any) -> Optional[str]:
    """The system prompt the model gets when a conversation has none (None: no default): the family's,
    or, for a family that reads it from the tokenizer's chat template (`system_default`), the template's."""
    read = getattr(family, "system_default", None)
    return read(tokenizer) if callable(read) else family.default_system_prompt


@dataclass
class PromptInputs:
    """A prompt ready for the model: ids with placeholders where image embeddings go."""

    ids: list[int]
    # One preprocessed tensor per image, in prompt order (shape is the family's business).
    pixel_values: list[Any] = field(default_factory=list)
    # Prompt positions each image occupies, in the same order.
    image_tokens: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class ImageCost:
    """What one image costs in a prompt: tiles (448-px crops, or 1) and tokens."""

    tiles: int
    tokens: int


class VisionPart(Protocol):
    """The image side of a loaded vision-language model (encoder + projector + adapters)."""

    def embed(self, lm: Any, prompt: PromptInputs) -> tuple[Any, Optional[Any]]:
        """inputs_embeds [1, len(ids), hidden] with image features spliced in, and a bool mask
        [len(ids)] of image positions for families with image-only adapters (else None)."""
        ...

    def set_adapter_mask(self, mask: Optional[Any]) -> None:
        """Image-position mask [1, chunk] for the next forward (None: text only, as in decoding)."""
        ...

    def to(self, device: Any) -> "VisionPart":
        """Move the encoder/projector to `device`."""
        ...


@dataclass
class LoadedParts:
    """What a family's `load` returns: a transformers LlamaForCausalLM (or other causal LM),
    its tokenizer, and for vision families the image side. Weights are on CPU in `dtype`."""

    lm: Any
    tokenizer: Any
    vision: Optional[VisionPart] = None


class CheckpointFamily(ModelFamily, Protocol):
    """A family that loads its official checkpoints itself (remote code off)."""

    def load(self, model_dir: Path, dtype: Any, progress: Progress) -> LoadedParts:
        """Build the model from `model_dir` (config.json + safetensors/bin shards + tokenizer files)."""
        ...


class VisionFamily(CheckpointFamily, Protocol):
    """A family whose prompts carry images."""

    def prepare(self, tokenizer: Any, messages: list[Message], max_tiles: Optional[int] = None) -> PromptInputs:
        """Ids (image placeholders expanded) and preprocessed images for `messages`."""
        ...

    def image_cost(self, image: Any, max_tiles: Optional[int] = None) -> ImageCost:
        """Tiles and prompt tokens one (normalised RGB PIL) image takes."""
        ...
