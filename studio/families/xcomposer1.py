"""InternLM-XComposer v1 (internlm-xcomposer-7b): the official web demo's multimodal chat prompt, and
the official checkpoint loaded with remote code off (InternLM-XComposer 3e8c790).

Prompt, as examples/web_demo.py builds it (CONV_VISION_7132_v2 and get_context_emb):

    {meta} <|User|>: <Img><ImageHere></Img> {q}<TOKENS_UNUSED_0> <|Bot|>: {a}<TOKENS_UNUSED_1> … <|User|>: {query}<TOKENS_UNUSED_0> <|Bot|>:

The prompt is split at each `<Img><ImageHere></Img>` (the tags go with it) and every text part is
tokenized apart, BOS only before the first; an image takes 66 positions (start flag, 64 Q-Former
outputs, end flag). A message's images go before its text, joined by a space, as an upload next to
a typed question does in the demo; a text with one `<ImageHere>` per image of its message puts each
image at its mark instead (the article demo's candidate list: `A.<ImageHere>\nB.<ImageHere>…`). `<TOKENS_UNUSED_0>` / `<TOKENS_UNUSED_1>` (103027 / 103028,
eoh / eoa) are SentencePiece pieces; typed in user text they stay text here. `{meta}` is the
demo's meta instruction, replaced by the conversation's own system message when it has one (an
empty one means none).

Weights: `internlm_model.` is InternLM v1 (the `intern_converted_llm` attention: q/k/v/o with
biases, rotate-half RoPE), with LoRA (rank/alpha from config.json `internlm_lora`) on q, v and the
MLP's up/down projections. The adapters are merged into the base weights (W + alpha/r · B·A), so
the LM is a plain LlamaForCausalLM; the image side is in xcomposer1_vision.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, Union

from studio.core.types import ImagePart, Message, TextPart
from studio.errors import StudioError
from studio.families.base import ImageCost, LoadedParts, Progress, PromptInputs
from studio.families.hf_chat_template import unique_ids
from studio.families.internlm1 import MarkerIds

META_INSTRUCTION = "\n".join([
    "meta instruction",
    "You are an AI assistant whose name is 浦语.",
    "- 浦语 is a conversational language model that is developed by Shanghai AI Laboratory (上海人工智能实验室). "
    "It is designed to be helpful, honest, and harmless.",
    "- 浦语 can understand and communicate fluently in the language chosen by the user such as English and 中文.",
    "conversation",
    "",
])
BOS_ID, EOS_ID = 1, 2
EOH, EOA = "<TOKENS_UNUSED_0>", "<TOKENS_UNUSED_1>"
STOP_IDS = [103027, 103028]  # the demo's stop words, by number
IMAGE_TAG = "<Img><ImageHere></Img>"
IMAGE_MARK = "<ImageHere>"
ARCHITECTURE = "InternLMXComposerForCausalLM"
LM_PREFIX = "internlm_model."
Piece = Union[str, int, ImagePart]  # text, a marker (0 = eoh, 1 = eoa), or an image


def _content(message: Message) -> list[Piece]:
    """A user message's images (first, as the demo's upload) and text, joined by single spaces; or, when
    its text has one `<ImageHere>` per image, each image at its mark (the demo's interleaved prompts)."""
    images = [p for p in message.content if isinstance(p, ImagePart)]
    text = "".join(p.text for p in message.content if isinstance(p, TextPart))
    if images and text.count(IMAGE_MARK) == len(images):
        chunks = text.split(IMAGE_MARK)
        return [chunks[0], *(p for image, chunk in zip(images, chunks[1:]) for p in (image, chunk))]
    out: list[Piece] = []
    for image in images:
        out += [image, " "]
    return out + [text] if text or not images else out[:-1]


def prompt_pieces(messages: list[Message]) -> list[Piece]:
    """The whole prompt as text, markers and images, ending with the generation prompt."""
    system = [m for m in messages if m.role == "system"]
    pieces: list[Piece] = [system[0].text if system else META_INSTRUCTION]
    for m in (m for m in messages if m.role != "system"):
        if m.role == "user":
            pieces += [" <|User|>: ", *_content(m), 0]
        else:
            pieces += [f" <|Bot|>: {m.text}", 1]
    return pieces + [" <|Bot|>:"]


def pieces_to_ids(marks: MarkerIds, pieces: list[Piece], image_tokens: int) -> list[int]:
    """Ids as get_context_emb builds them: BOS, then each text part encoded apart, images as placeholders."""
    from studio.families.xcomposer1_vision import IMAGE_PLACEHOLDER_ID

    ids, run = [BOS_ID], []
    for piece in [*pieces, None]:
        if isinstance(piece, str):
            run.append(piece)
            continue
        ids += marks.text("".join(run))
        run = []
        if isinstance(piece, int):
            ids += marks.eoh if piece == 0 else marks.eoa
        elif isinstance(piece, ImagePart):
            ids += [IMAGE_PLACEHOLDER_ID] * image_tokens
    return ids


class XComposer1Family:
    """InternLM-XComposer v1 (7B), built from the official checkpoint (EVA ViT-g + Q-Former + InternLM-7B)."""

    name = "xcomposer"
    needs_remote_code = False
    loads_checkpoint = True
    accepts_images = True
    default_system_prompt: Optional[str] = META_INSTRUCTION

    def __init__(self, tokens_per_image: int = 66) -> None:
        self.tokens_per_image = tokens_per_image  # `load` sets it from the checkpoint's query tokens

    def image_cost(self, image: Any, max_tiles: Optional[int] = None) -> ImageCost:
        """One 224-px view per image, 66 tokens."""
        return ImageCost(tiles=1, tokens=self.tokens_per_image)

    def build_prompt(self, tokenizer: Any, messages: list[Message]) -> str:
        """The prompt string of the demo (`<Img><ImageHere></Img>` for images; BOS not written)."""
        return "".join(IMAGE_TAG if isinstance(p, ImagePart) else (EOH, EOA)[p] if isinstance(p, int) else p
                       for p in prompt_pieces(messages))

    def encode(self, tokenizer: Any, messages: list[Message], max_tiles: Optional[int] = None) -> list[int]:
        """Ids of the prompt, images as runs of the placeholder id."""
        return pieces_to_ids(MarkerIds(tokenizer, EOH, EOA), prompt_pieces(messages), self.tokens_per_image)

    def prepare(self, tokenizer: Any, messages: list[Message], max_tiles: Optional[int] = None) -> PromptInputs:
        """Ids plus one normalised [3, 224, 224] tensor per image, in prompt order."""
        from studio.families.xcomposer1_vision import IMAGE_SIZE
        from studio.families.xcomposer_vision import preprocess

        pieces = prompt_pieces(messages)
        pixels = [preprocess(p.image, IMAGE_SIZE) for p in pieces if isinstance(p, ImagePart)]
        ids = pieces_to_ids(MarkerIds(tokenizer, EOH, EOA), pieces, self.tokens_per_image)
        return PromptInputs(ids=ids, pixel_values=pixels, image_tokens=[self.tokens_per_image] * len(pixels))

    def stop_token_ids(self, tokenizer: Any, generation_config: Any = None) -> list[int]:
        """eos (2) and the demo's stop words eoh / eoa (103027 / 103028), plus the generation config's eos ids."""
        marks = MarkerIds(tokenizer, EOH, EOA)
        singles = [m[0] for m in (marks.eoh, marks.eoa) if len(m) == 1]
        return unique_ids([EOS_ID, STOP_IDS, singles, getattr(generation_config, "eos_token_id", None)])

    def load(self, model_dir: Path, dtype: Any, progress: Progress) -> LoadedParts:
        """The LM (LoRA merged) as LlamaForCausalLM, the tokenizer, and the EVA + Q-Former image side."""
        from studio.families.checkpoint_io import apply_generation_config, check_architectures, iter_tensors, read_config
        from studio.families.internlm1_weights import build_internlm1_lm
        from studio.families.sp_tokenizer import SPTokenizer
        from studio.families.xcomposer1_vision import build_vision, is_vision_name

        model_dir = Path(model_dir)
        config = read_config(model_dir)
        check_architectures(config, {ARCHITECTURE}, model_dir, self.name)
        tokenizer = SPTokenizer.from_dir(model_dir)
        progress(0.05, "reading weights")
        vision: dict[str, Any] = {}

        def rest(name: str, tensor: Any) -> None:
            if not is_vision_name(name):
                raise StudioError(f"{model_dir}: unexpected tensor {name} in an InternLM-XComposer checkpoint.",
                                  "The checkpoint is of another model family; check `family:`.")
            vision[name] = tensor

        scaling, lora = _lora_settings(config, model_dir)
        merged = merge_lora(iter_tensors(model_dir), LM_PREFIX, lora, scaling, model_dir)
        lm = build_internlm1_lm(_lm_config(config), merged, dtype, src_prefix=LM_PREFIX, rest=rest, where=model_dir)
        apply_generation_config(lm, model_dir)
        parts = build_vision(vision, lm.config.hidden_size, dtype, model_dir)
        self.tokens_per_image = parts.tokens_per_image
        progress(1.0, "loaded")
        return LoadedParts(lm=lm, tokenizer=tokenizer, vision=parts)


def _lm_config(config: dict) -> dict:
    """The LM's config as InternLM v1 fields: attention biases from `kqvo_bias` (converted attention)."""
    converted = bool(config.get("intern_converted_llm", True))
    return {**config, "bias": bool(config.get("kqvo_bias", False)) if converted else False,
            "pad_token_id": config.get("pad_token_id", -1)}


_LORA_MODULES = {"q": ["self_attn.q_proj"], "k": ["self_attn.k_proj"], "v": ["self_attn.v_proj"],
                 "o": ["self_attn.o_proj"], "ffn": ["mlp.up_proj", "mlp.down_proj"]}


def _lora_settings(config: dict, where: Path) -> tuple[float, set[str]]:
    """(alpha / r, the module suffixes that carry LoRA) from config.json `internlm_lora`."""
    cfg = config.get("internlm_lora")
    if cfg is None:
        return 1.0, set()
    try:
        scaling = float(cfg["lora_alpha"]) / float(cfg["lora_r"])
        modules = {m for p in cfg.get("learn_param", []) for m in _LORA_MODULES[p]}
    except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
        raise StudioError(f"{where / 'config.json'}: internlm_lora is not valid ({exc}).",
                          "The checkpoint looks damaged.") from None
    return scaling, modules


def merge_lora(items: Iterable[tuple[str, Any]], prefix: str, modules: set[str], scaling: float,
               where: Any) -> Iterator[tuple[str, Any]]:
    """The tensors with each LoRA pair folded into its base weight: W + scaling · B @ A (in fp32).

    A base weight of a module listed in `modules` waits until its lora_A and lora_B have been seen
    (shards may hold them in any order); a module left incomplete is an error."""
    pending: dict[str, dict[str, Any]] = {}
    for name, tensor in items:
        module, kind = _lora_part(name, prefix, modules)
        if module is None:
            yield name, tensor
            continue
        parts = pending.setdefault(module, {})
        parts[kind] = tensor
        if len(parts) == 3:
            base = parts["weight"]
            delta = parts["lora_B"].float() @ parts["lora_A"].float() * scaling
            yield f"{module}.weight", (base.float() + delta).to(base.dtype)
            del pending[module]
    if pending:
        module, parts = next(iter(pending.items()))
        raise StudioError(f"{where}: {module} lacks {', '.join(sorted({'weight', 'lora_A', 'lora_B'} - set(parts)))}.",
                          "The checkpoint is incomplete, or its internlm_lora does not match its weights.")


def _lora_part(name: str, prefix: str, modules: set[str]) -> tuple[Optional[str], str]:
    """(module path, "weight" | "lora_A" | "lora_B") for a tensor that takes part in a merge, else (None, "")."""
    if not name.startswith(prefix + "model.layers."):
        return None, ""
    for kind, tail in (("lora_A", ".lora_A.weight"), ("lora_B", ".lora_B.weight"), ("weight", ".weight")):
        if name.endswith(tail):
            module = name[: -len(tail)]
            if any(module.endswith("." + m) for m in modules):
                return module, kind
    return None, ""
