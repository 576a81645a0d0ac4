"""Models that ship a Jinja chat template with their tokenizer (SmolLM2, Qwen, Llama …)."""

from __future__ import annotations

from typing import Any, Iterable, Optional

from studio.core.types import Message
from studio.errors import InputError, StudioError


def _ids(value: Any) -> list[int]:
    """An eos id setting (int, list of ints or None) as a list."""
    if value is None:
        return []
    if isinstance(value, int):
        return [value]
    return [int(v) for v in value if v is not None]


def unique_ids(groups: Iterable[Any]) -> list[int]:
    """Concatenate id settings, keeping the first occurrence of each id."""
    out: list[int] = []
    for group in groups:
        for i in _ids(group):
            if i not in out:
                out.append(i)
    return out


def text_messages(messages: list[Message]) -> list[dict[str, str]]:
    """Messages as [{"role", "content": text}]; images are refused (text-only family)."""
    out = []
    for m in messages:
        if m.images:
            raise InputError(
                "This model reads text only; the message contains an image.",
                "Pick a vision model for image questions, or remove the image.",
            )
        out.append({"role": m.role, "content": m.text})
    return out


class HFChatTemplateFamily:
    """Prompt assembly through the tokenizer's own chat template."""

    name = "hf_chat_template"
    needs_remote_code = False
    loads_checkpoint = False
    accepts_images = False
    default_system_prompt: Optional[str] = None

    def build_prompt(self, tokenizer: Any, messages: list[Message]) -> str:
        """The chat template rendered as text, ending with the assistant's generation prompt."""
        if not getattr(tokenizer, "chat_template", None):
            raise StudioError(
                "This model's tokenizer has no chat template.",
                "Choose a chat/instruct model, or set an explicit family in the config.",
            )
        return tokenizer.apply_chat_template(
            text_messages(messages), add_generation_prompt=True, tokenize=False
        )

    def encode(self, tokenizer: Any, messages: list[Message]) -> list[int]:
        """Token ids of the rendered template, with BOS exactly once."""
        prompt = self.build_prompt(tokenizer, messages)
        bos = getattr(tokenizer, "bos_token", None)
        # Many templates already start with the BOS text; letting the tokenizer add its own
        # as well would give two BOS tokens, which degrades some models noticeably.
        add_special = not (bos and prompt.startswith(bos))
        ids = list(tokenizer(prompt, add_special_tokens=add_special)["input_ids"])
        bos_id = getattr(tokenizer, "bos_token_id", None)
        if bos_id is not None and len(ids) > 1 and ids[0] == bos_id == ids[1]:
            ids = ids[1:]
        return ids

    def stop_token_ids(self, tokenizer: Any, generation_config: Any = None) -> list[int]:
        """The tokenizer's eos id plus any eos ids of the model's generation config."""
        return unique_ids(
            [
                getattr(tokenizer, "eos_token_id", None),
                getattr(generation_config, "eos_token_id", None),
            ]
        )
