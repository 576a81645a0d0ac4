"""Text a user typed, encoded as plain text: special-token names in it never become special ids."""

from __future__ import annotations

from typing import Any


def plain_ids(tokenizer: Any, text: str) -> list[int]:
    """Ids of `text` with no special tokens added and none parsed (a raw SentencePiece model, the
    studio's SPTokenizer or a transformers tokenizer)."""
    if not text:
        return []
    if hasattr(tokenizer, "EncodeAsIds"):  # sentencepiece.SentencePieceProcessor: no specials at all
        return list(tokenizer.EncodeAsIds(text))
    # transformers tokenizers match special-token names in text unless asked not to; SPTokenizer
    # accepts the flag and always keeps them plain.
    if hasattr(tokenizer, "encode"):
        return list(tokenizer.encode(text, add_special_tokens=False, split_special_tokens=True))
    return list(tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"])


def special_tokens(tokenizer: Any) -> dict[str, int]:
    """The tokenizer's special added tokens (name -> id): the markers a template may place."""
    decoder = getattr(tokenizer, "added_tokens_decoder", None)
    if isinstance(decoder, dict):
        return {str(getattr(t, "content", t)): int(i) for i, t in decoder.items()
                if getattr(t, "special", True)}
    names = list(getattr(tokenizer, "all_special_tokens", None) or [])
    return {n: int(tokenizer.convert_tokens_to_ids(n)) for n in names} if names else {}
