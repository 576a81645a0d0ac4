"""Models that ship a Jinja chat template with their tokenizer (SmolLM2, Qwen, Llama …)."""

from __future__ import annotations

import re
from typing import Any, Iterable, Optional, Union

from studio.core.types import Message
from studio.errors import InputError, StudioError
from studio.families.plain_text import plain_ids, special_tokens


class Plain(str):
    """Message text inside a rendered template: encoded with no special-token parsing."""


Piece = Union[str, Plain]


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


# Stand-ins for message text while the template renders: private-use characters, which no
# template trims or rewrites, so the markers around them can be told from the user's text.
_MARK = "\ue000{}\ue001"
_MARKS = re.compile("\ue000(\\d+)\ue001")


def _render(tokenizer: Any, turns: list[dict[str, str]]) -> str:
    """The chat template rendered as text with the generation prompt."""
    return tokenizer.apply_chat_template(turns, add_generation_prompt=True, tokenize=False)


def template_system_default(tokenizer: Any) -> Optional[str]:
    """The text a chat template puts in its system turn when given none, or None when it adds no system turn.

    Found by rendering one user turn with and without a marked system message: when the template adds
    a default, the render without one is the marked render with the marker replaced by that default."""
    if not getattr(tokenizer, "chat_template", None):
        return None
    user = {"role": "user", "content": _MARK.format(1)}
    try:
        marked = _render(tokenizer, [{"role": "system", "content": _MARK.format(0)}, user])
        bare = _render(tokenizer, [user])
    except Exception:  # a template that requires a system turn, or rejects one: no default to show
        return None
    head, sep, tail = marked.partition(_MARK.format(0))
    if not sep or len(bare) < len(head) + len(tail) or not (bare.startswith(head) and bare.endswith(tail)):
        return None
    return bare[len(head):len(bare) - len(tail)]


def template_pieces(tokenizer: Any, turns: list[dict[str, str]], prompt: str) -> list[Piece]:
    """`prompt` as the template's own text (str) and the messages' text (Plain), in order."""
    marked = _render(tokenizer, [{**t, "content": _MARK.format(i)} for i, t in enumerate(turns)])
    parts = _MARKS.split(marked)
    for shape in (lambda s: s, str.strip):  # templates that `| trim` the content are common
        pieces = [Plain(shape(turns[int(p)]["content"])) if k % 2 else p for k, p in enumerate(parts)]
        if "".join(pieces) == prompt:
            return pieces
    # A template that rewrites the content some other way: its markers still come from the
    # template, and the text goes in as the user wrote it.
    return [Plain(turns[int(p)]["content"]) if k % 2 else p for k, p in enumerate(parts)]


def _specials_pattern(specials: dict[str, int]) -> Optional[re.Pattern]:
    """A regex matching any special token's text, longest first (as the tokenizer matches them)."""
    if not specials:
        return None
    return re.compile("(" + "|".join(map(re.escape, sorted(specials, key=len, reverse=True))) + ")")


def _forged(pieces: list[Piece], prompt: str, split: Optional[re.Pattern]) -> bool:
    """True when a special token's text in `prompt` touches message text (typed, or spliced)."""
    if split is None or "".join(pieces) != prompt:
        return split is not None
    spans, at = [], 0
    for piece in pieces:
        if isinstance(piece, Plain) and piece:
            spans.append((at, at + len(piece)))
        at += len(piece)
    return any(m.start() < end and start < m.end() for m in split.finditer(prompt) for start, end in spans)


def _pieces_to_ids(tokenizer: Any, pieces: list[Piece], specials: dict[str, int],
                   split: Optional[re.Pattern]) -> list[int]:
    """Ids: the template's special tokens by id, all text between them encoded as one plain run."""
    ids: list[int] = []
    run: list[str] = []
    for piece in pieces:
        chunks = [piece] if isinstance(piece, Plain) or split is None else split.split(piece)
        for k, chunk in enumerate(chunks):
            if k % 2:
                ids += plain_ids(tokenizer, "".join(run)) + [specials[chunk]]
                run = []
            else:
                run.append(str(chunk))
    return ids + plain_ids(tokenizer, "".join(run))


def _added_around(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The ids the tokenizer itself adds before and after a text (BOS/EOS, as it is configured)."""
    bare = list(tokenizer("a", add_special_tokens=False)["input_ids"])
    full = list(tokenizer("a", add_special_tokens=True)["input_ids"])
    for start in range(len(full) - len(bare) + 1):
        if full[start:start + len(bare)] == bare:
            return full[:start], full[start + len(bare):]
    return [], []


class HFChatTemplateFamily:
    """Prompt assembly through the tokenizer's own chat template."""

    name = "hf_chat_template"
    needs_remote_code = False
    loads_checkpoint = False
    accepts_images = False
    default_system_prompt: Optional[str] = None

    def system_default(self, tokenizer: Any) -> Optional[str]:
        """The system prompt the chat template writes when a conversation has none (e.g. SmolLM2's)."""
        return template_system_default(tokenizer)

    def build_prompt(self, tokenizer: Any, messages: list[Message]) -> str:
        """The chat template rendered as text, ending with the assistant's generation prompt."""
        if not getattr(tokenizer, "chat_template", None):
            raise StudioError(
                "This model's tokenizer has no chat template.",
                "Choose a chat/instruct model, or set an explicit family in the config.",
            )
        return _render(tokenizer, text_messages(messages))

    def encode(self, tokenizer: Any, messages: list[Message]) -> list[int]:
        """Token ids of the rendered template, with BOS exactly once; message text stays plain text."""
        prompt = self.build_prompt(tokenizer, messages)
        bos = getattr(tokenizer, "bos_token", None)
        # Many templates already start with the BOS text; letting the tokenizer add its own
        # as well would give two BOS tokens, which degrades some models noticeably.
        add_special = not (bos and prompt.startswith(bos))
        pieces = template_pieces(tokenizer, text_messages(messages), prompt)
        specials = special_tokens(tokenizer)
        split = _specials_pattern(specials)
        if _forged(pieces, prompt, split):
            # Text that spells a special token: encode piece by piece so only the template's markers
            # become special ids. Otherwise the whole prompt is tokenized at once, exactly as before.
            before, after = _added_around(tokenizer) if add_special else ([], [])
            ids = [*before, *_pieces_to_ids(tokenizer, pieces, specials, split), *after]
        else:
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
