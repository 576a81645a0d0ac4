"""The InternLM3 tokenizer without remote code: SPTokenizer's encoding with the decoding of the
official InternLM3Tokenizer (tokenization_internlm3.py, as run by transformers 4.48).

Encoding is InternLM2's: BOS when asked, SentencePiece ids of the text (no dummy prefix in the
model), typed special-token text kept as text. The special tokens <|im_start|> (128132),
<|im_end|> (128131) … are pieces of the SentencePiece model itself, which SPTokenizer's guard keeps
from matching typed text. Decoding differs from InternLM2's:
- no space around special tokens (`spaces_for_interleaved_special_tokens` is off);
- with `add_prefix_space` (true in the official tokenizer_config.json) the leading "▁" of the first
  token is dropped, so a reply that starts with a space-prefixed piece starts without the space;
- no English clean-up (`clean_up_tokenization_spaces` is false).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from studio.families.sp_tokenizer import SPTokenizer, _read_optional_json, clean_up_tokenization

SPIECE_UNDERLINE = "\u2581"


class InternLM3Tokenizer(SPTokenizer):
    """InternLM3's SentencePiece tokenizer with its special tokens and the official decoding."""

    add_prefix_space = True

    @classmethod
    def from_dir(cls, model_dir: Path) -> "InternLM3Tokenizer":
        """Read tokenizer.model and tokenizer_config.json (plus special_tokens_map.json if present)."""
        tok = super().from_dir(model_dir)
        cfg = _read_optional_json(Path(model_dir) / "tokenizer_config.json")
        # Set once here, before the tokenizer is shared: instances are read-only afterwards.
        tok.add_prefix_space = bool(cfg.get("add_prefix_space", True))
        return tok

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = False,
               clean_up_tokenization_spaces: bool = False) -> str:
        """Text of `ids`, as the official InternLM3 tokenizer writes it (see the module docstring)."""
        tokens = [self._token(i) for i in (int(i) for i in ids)
                  if not (skip_special_tokens and i in self._special_id_set)]
        if not tokens:
            return ""
        if self.add_prefix_space and tokens[0].startswith(SPIECE_UNDERLINE):
            tokens[0] = tokens[0][1:]
        out, pending = "", []
        for token in tokens:
            if token in self._special_names:
                out += self._pieces(pending) + token
                pending = []
            else:
                pending.append(token)
        out += self._pieces(pending)
        return clean_up_tokenization(out) if clean_up_tokenization_spaces else out

    def _pieces(self, pieces: list[str]) -> str:
        """SentencePiece text of piece strings (as the official code decodes them, by piece)."""
        return self.sp.decode(pieces) if pieces else ""
