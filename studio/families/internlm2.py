"""InternLM2-Chat: ChatML-style prompt, official meta instruction, stop on <|im_end|>; official
checkpoints load as transformers' LlamaForCausalLM with remote code off."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from studio.core.types import Message
from studio.families.base import LoadedParts, Progress
from studio.families.hf_chat_template import text_messages, unique_ids
from studio.families.plain_text import plain_ids

# The official chat() default (modeling_internlm2.py meta_instruction): three lines, no trailing newline.
META_INSTRUCTION = "\n".join(
    [
        "You are an AI assistant whose name is InternLM (书生·浦语).",
        "- InternLM (书生·浦语) is a conversational language model that is developed by Shanghai AI "
        "Laboratory (上海人工智能实验室). It is designed to be helpful, honest, and harmless.",
        "- InternLM (书生·浦语) can understand and communicate fluently in the language chosen by the "
        "user such as English and 中文.",
    ]
)

BOS, EOS = "<s>", "</s>"
IM_START, IM_END = "<|im_start|>", "<|im_end|>"
BOS_ID, EOS_ID = 1, 2
# In the raw SentencePiece model these ids are the pieces [UNUSED_TOKEN_146] / [UNUSED_TOKEN_145];
# only the checkpoints' tokenizer_config.json names them, so the ids are fixed here.
IM_START_ID, IM_END_ID = 92543, 92542
ARCHITECTURES = frozenset({"InternLM2ForCausalLM"})


class InternLM2Family:
    """InternLM2-Chat (1.8B, 7B, 20B): the official chat format, built token-exactly."""

    name = "internlm2"
    # InternLM2ForCausalLM is not in transformers, but it is Llama with renamed, fused weights:
    # `load` maps the official checkpoint onto LlamaForCausalLM, so no code from the folder runs.
    needs_remote_code = False
    loads_checkpoint = True
    accepts_images = False
    default_system_prompt: Optional[str] = META_INSTRUCTION

    def _turns(self, messages: list[Message]) -> list[tuple[str, str]]:
        """(role, text) turns, with the meta instruction first when no system message is given."""
        turns = [(m["role"], m["content"]) for m in text_messages(messages)]
        if not any(role == "system" for role, _ in turns):
            turns.insert(0, ("system", META_INSTRUCTION))
        # An explicitly empty system message means "no system block", as in the official chat().
        return [(r, t) for r, t in turns if not (r == "system" and not t)]

    def build_prompt(self, tokenizer: Any, messages: list[Message]) -> str:
        """`<s><|im_start|>role\\ntext<|im_end|>\\n…<|im_start|>assistant\\n` as text."""
        parts = [BOS]
        for role, text in self._turns(messages):
            parts.append(f"{IM_START}{role}\n{text}{IM_END}\n")
        parts.append(f"{IM_START}assistant\n")
        return "".join(parts)

    def encode(self, tokenizer: Any, messages: list[Message]) -> list[int]:
        """Ids of `build_prompt`: BOS once, each special token as its single id, text pieces encoded apart."""
        # Built turn by turn rather than by tokenizing the whole string: the special tokens get
        # their ids whatever the tokenizer knows, and a user who types "<|im_end|>" gets plain
        # text, not a forged turn boundary. For ordinary text the ids equal the official ones,
        # since the official tokenizer also encodes the text between special tokens separately.
        ids = [BOS_ID]
        newline = plain_ids(tokenizer, "\n")
        for role, text in self._turns(messages):
            ids += [IM_START_ID, *plain_ids(tokenizer, f"{role}\n{text}"), IM_END_ID, *newline]
        ids += [IM_START_ID, *plain_ids(tokenizer, "assistant\n")]
        return ids

    def stop_token_ids(self, tokenizer: Any, generation_config: Any = None) -> list[int]:
        """eos (2) and <|im_end|> (92542), plus any eos ids the generation config adds."""
        return unique_ids([EOS_ID, IM_END_ID, getattr(generation_config, "eos_token_id", None)])

    def load(self, model_dir: Path, dtype: Any, progress: Progress) -> LoadedParts:
        """The official checkpoint as a LlamaForCausalLM plus its SentencePiece tokenizer (remote code off)."""
        from studio.families.checkpoint_io import apply_generation_config, check_architectures, iter_tensors, read_config
        from studio.families.internlm2_weights import build_internlm2_lm
        from studio.families.sp_tokenizer import SPTokenizer

        model_dir = Path(model_dir)
        config = read_config(model_dir)
        # A config without `architectures` but with model_type internlm2 is what auto-detection
        # accepts too; anything else must name the InternLM2 architecture.
        if config.get("architectures") or config.get("model_type") != "internlm2":
            check_architectures(config, ARCHITECTURES, model_dir, self.name)
        progress(0.05, f"Reading the tokenizer from {model_dir}")
        tokenizer = SPTokenizer.from_dir(model_dir)
        progress(0.1, f"Reading the InternLM2 weights from {model_dir}")
        lm = build_internlm2_lm(config, iter_tensors(model_dir), dtype, where=model_dir)
        apply_generation_config(lm, model_dir)
        progress(0.85, "InternLM2 weights loaded")
        return LoadedParts(lm=lm, tokenizer=tokenizer)
