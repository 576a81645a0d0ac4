"""InternLM-Chat v1 (InternLM-Chat-7B): the `<|User|>:…<eoh>\\n<|Bot|>:…<eoa>\\n` prompt of the official
chat(), stop on <eoa>; official checkpoints load as transformers' LlamaForCausalLM with remote code off.

Prompt, as `InternLMForCausalLM.build_inputs` (InternLM 3028f07 tools/transformers/modeling_internlm.py)
writes it and its tokenizer encodes it: the tokenizer adds BOS, every history record starts with
its own `<s>`, and a first question (no history) gets one `<s>` too, so a prompt starts with two BOS:

    [BOS] ( [BOS] "<|User|>:{q}" <eoh> "\\n<|Bot|>:{a}" <eoa> "\\n" )*  [BOS if no history]
    "<|User|>:{query}" <eoh> "\\n<|Bot|>:"

`<eoh>` and `<eoa>` are pieces of the SentencePiece model (ids 103027 / 103028 in InternLM-Chat-7B);
the official tokenizer splits text only at <s>/</s>/<unk>, so SentencePiece matches those pieces
inside the text. The official chat() has no system turn; a system message, when given, is written as
`<|System|>:{text}\\n` right after the first BOS (the InternLM v1 meta template of lmdeploy and
OpenCompass).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Optional

from studio.core.types import Message
from studio.families.base import LoadedParts, Progress
from studio.families.hf_chat_template import text_messages, unique_ids
from studio.families.plain_text import plain_ids

BOS, BOS_ID, EOS_ID = "<s>", 1, 2
EOH, EOA = "<eoh>", "<eoa>"
EOA_ID = 103028  # web_demo.py stops on this id by number
ARCHITECTURES = frozenset({"InternLMForCausalLM"})


def pieces(messages: list[dict]) -> tuple[Optional[str], list[tuple[str, str]], str]:
    """(system text or None, history records (question, answer), the final question) of text messages.

    Consecutive questions are joined by a newline; an answer without a question gets an empty one."""
    system = "\n".join(m["content"] for m in messages if m["role"] == "system") or None
    records: list[list[str]] = []
    open_question: Optional[str] = None
    for m in (m for m in messages if m["role"] != "system"):
        if m["role"] == "user":
            open_question = m["content"] if open_question is None else f"{open_question}\n{m['content']}"
        else:
            records.append([open_question or "", m["content"]])
            open_question = None
    return system, [(q, a) for q, a in records], open_question or ""


class MarkerIds:
    """Ids of the two markers in one tokenizer, and plain-text encoding that never forges them."""

    def __init__(self, tokenizer: Any, eoh: str = EOH, eoa: str = EOA) -> None:
        self.tokenizer = tokenizer
        self.names = (eoh, eoa)
        self.eoh, self.eoa = (self._marker(tokenizer, n) for n in self.names)
        self._typed = re.compile("|".join(map(re.escape, self.names)))

    @staticmethod
    def _marker(tokenizer: Any, name: str) -> list[int]:
        """The marker's one id, or (for a SentencePiece model without that piece) its text's ids, as the
        official tokenizer would encode the template's string."""
        found = tokenizer.convert_tokens_to_ids(name)
        unk = getattr(tokenizer, "unk_token_id", None)
        return [int(found)] if found is not None and found != unk else plain_ids(tokenizer, name)

    def text(self, text: str) -> list[int]:
        """Ids of user text: a typed marker name is encoded one character at a time, so it stays text."""
        ids, start = [], 0
        for m in self._typed.finditer(text):
            ids += plain_ids(self.tokenizer, text[start:m.start()])
            for ch in m.group():
                ids += plain_ids(self.tokenizer, ch)
            start = m.end()
        return ids + plain_ids(self.tokenizer, text[start:])


class InternLM1Family:
    """InternLM-Chat v1 (7B): the official chat() format, built token-exactly."""

    name = "internlm"
    # InternLMForCausalLM is not in transformers, but it is Llama with attention biases: `load`
    # builds LlamaForCausalLM from the official checkpoint, so no code from the folder runs.
    needs_remote_code = False
    loads_checkpoint = True
    accepts_images = False
    default_system_prompt: Optional[str] = None

    def build_prompt(self, tokenizer: Any, messages: list[Message]) -> str:
        """The prompt as text (`<s>` for each BOS id)."""
        system, records, query = pieces(text_messages(messages))
        parts = [BOS, f"<|System|>:{system}\n" if system else ""]
        parts += [f"{BOS}<|User|>:{q}{EOH}\n<|Bot|>:{a}{EOA}\n" for q, a in records]
        parts += [BOS] if not records else []
        parts.append(f"<|User|>:{query}{EOH}\n<|Bot|>:")
        return "".join(parts)

    def encode(self, tokenizer: Any, messages: list[Message]) -> list[int]:
        """Ids of `build_prompt`, the markers as their ids and user text kept plain."""
        return encode_turns(MarkerIds(tokenizer), *pieces(text_messages(messages)))

    def stop_token_ids(self, tokenizer: Any, generation_config: Any = None) -> list[int]:
        """eos (2) and 103028, the web demo's `additional_eos_token_id` (<eoa>), plus the tokenizer's own <eoa>
        piece if it has another id and any eos ids the generation config adds."""
        eoa = MarkerIds(tokenizer).eoa
        return unique_ids([EOS_ID, EOA_ID, eoa if len(eoa) == 1 else None,
                           getattr(generation_config, "eos_token_id", None)])

    def load(self, model_dir: Path, dtype: Any, progress: Progress) -> LoadedParts:
        """The official checkpoint as a LlamaForCausalLM plus its SentencePiece tokenizer (remote code off)."""
        from studio.families.checkpoint_io import apply_generation_config, check_architectures, iter_tensors, read_config
        from studio.families.internlm1_weights import build_internlm1_lm
        from studio.families.sp_tokenizer import SPTokenizer

        model_dir = Path(model_dir)
        config = read_config(model_dir)
        check_architectures(config, ARCHITECTURES, model_dir, self.name)
        progress(0.05, f"Reading the tokenizer from {model_dir}")
        tokenizer = SPTokenizer.from_dir(model_dir)
        progress(0.1, f"Reading the InternLM weights from {model_dir}")
        lm = build_internlm1_lm(config, iter_tensors(model_dir), dtype, where=model_dir)
        apply_generation_config(lm, model_dir)
        progress(0.85, "InternLM weights loaded")
        return LoadedParts(lm=lm, tokenizer=tokenizer)


def encode_turns(marks: MarkerIds, system: Optional[str], records: list[tuple[str, str]], query: str) -> list[int]:
    """The chat() ids for a system text, history records and a final question (see the module docstring)."""
    text, newline = marks.text, plain_ids(marks.tokenizer, "\n")
    ids = [BOS_ID] + (text(f"<|System|>:{system}\n") if system else [])
    for q, a in records:
        ids += [BOS_ID, *text(f"<|User|>:{q}"), *marks.eoh, *text(f"\n<|Bot|>:{a}"), *marks.eoa, *newline]
    ids += [] if records else [BOS_ID]
    return ids + text(f"<|User|>:{query}") + marks.eoh + plain_ids(marks.tokenizer, "\n<|Bot|>:")
