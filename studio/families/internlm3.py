"""InternLM3-8B-Instruct: InternLM2's ChatML-style prompt and default system prompt, with InternLM3's
tokenizer (<|im_start|> 128132, <|im_end|> 128131); official checkpoints load as transformers'
LlamaForCausalLM with remote code off."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from studio.core.types import Message
from studio.errors import StudioError
from studio.families.base import LoadedParts, Progress
from studio.families.hf_chat_template import unique_ids
from studio.families.internlm2 import IM_END, IM_START, META_INSTRUCTION, InternLM2Family
from studio.families.plain_text import plain_ids

ARCHITECTURES = frozenset({"InternLM3ForCausalLM"})
# The official tokenizer's ids (tokenizer_config.json); the loaded tokenizer is checked against them.
BOS_ID, EOS_ID, IM_END_ID, IM_START_ID = 1, 2, 128131, 128132


def marker_ids(tokenizer: Any) -> tuple[int, int]:
    """(<|im_start|>, <|im_end|>) ids as the tokenizer names them; an error when it does not know them."""
    specials = getattr(tokenizer, "special_tokens", None) or {}
    start, end = specials.get(IM_START), specials.get(IM_END)
    if start is None or end is None:
        raise StudioError("The tokenizer does not define <|im_start|> and <|im_end|> as special tokens.",
                          "Copy the checkpoint's tokenizer_config.json and special_tokens_map.json next to "
                          "tokenizer.model, or set `family:` to the right family.")
    return start, end


class InternLM3Family(InternLM2Family):
    """InternLM3-8B-Instruct: the official chat format (the model card's system prompt), built token-exactly."""

    name = "internlm3"
    # The official InternLM3ForCausalLM is Llama with two bias switches: `load` builds transformers'
    # LlamaForCausalLM from the checkpoint, so no code from the folder runs.
    needs_remote_code = False
    loads_checkpoint = True
    accepts_images = False
    # The model card's system prompt (lmdeploy's internlm3 template has the same meta instruction).
    default_system_prompt: Optional[str] = META_INSTRUCTION

    def encode(self, tokenizer: Any, messages: list[Message]) -> list[int]:
        """Ids of `build_prompt`: BOS once, each marker as its single id, text pieces encoded apart (plain text)."""
        start, end = marker_ids(tokenizer)
        ids = [tokenizer.bos_token_id]
        newline = plain_ids(tokenizer, "\n")
        for role, text in self._turns(messages):
            ids += [start, *plain_ids(tokenizer, f"{role}\n{text}"), end, *newline]
        ids += [start, *plain_ids(tokenizer, "assistant\n")]
        return ids

    def stop_token_ids(self, tokenizer: Any, generation_config: Any = None) -> list[int]:
        """eos (2) and <|im_end|> (128131), plus any eos ids the generation config adds."""
        end = marker_ids(tokenizer)[1] if tokenizer is not None else IM_END_ID
        return unique_ids([getattr(tokenizer, "eos_token_id", EOS_ID), end,
                           getattr(generation_config, "eos_token_id", None)])

    def load(self, model_dir: Path, dtype: Any, progress: Progress) -> LoadedParts:
        """The official checkpoint as a LlamaForCausalLM plus its SentencePiece tokenizer (remote code off)."""
        from studio.families.checkpoint_io import apply_generation_config, check_architectures, iter_tensors, read_config
        from studio.families.internlm3_tokenizer import InternLM3Tokenizer
        from studio.families.internlm3_weights import build_internlm3_lm

        model_dir = Path(model_dir)
        config = read_config(model_dir)
        if config.get("architectures") or config.get("model_type") != "internlm3":
            check_architectures(config, ARCHITECTURES, model_dir, self.name)
        progress(0.05, f"Reading the tokenizer from {model_dir}")
        tokenizer = InternLM3Tokenizer.from_dir(model_dir)
        marker_ids(tokenizer)  # refuse a tokenizer without the chat markers before minutes of loading
        progress(0.1, f"Reading the InternLM3 weights from {model_dir}")
        lm = build_internlm3_lm(config, iter_tensors(model_dir), dtype, where=model_dir)
        apply_generation_config(lm, model_dir)
        progress(0.85, "InternLM3 weights loaded")
        return LoadedParts(lm=lm, tokenizer=tokenizer)
