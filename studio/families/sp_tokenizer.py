"""The InternLM2 tokenizer without remote code: SentencePiece `tokenizer.model` plus the special
tokens that `tokenizer_config.json` names.

Behaviour follows the official InternLM2Tokenizer (as run by transformers 4.37):
- encode: BOS when asked and `add_bos_token`, then SentencePiece ids of the text. Unlike the
  official tokenizer, special-token strings typed in the text stay text: neither a typed
  `<|im_end|>` nor the raw piece name behind it (`[UNUSED_TOKEN_145]`) becomes a special id.
- decode: special tokens are written by name; a run of tokens that starts with a special token
  gets a leading space; the official English clean-up (" ." → "." …) is always applied to each
  run; added tokens outside the SentencePiece vocabulary (InternVL2's `<img>` …) are joined to the
  rest with single spaces.

The object is immutable after construction and SentencePiece's encode/decode do not change the
processor, so one instance may be used from several threads at once.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterable, Optional, Union

from studio.errors import ModelNotFound, StudioError

_CLEANUPS = ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
             (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"))


def clean_up_tokenization(text: str) -> str:
    """transformers' English clean-up of spaces before punctuation and contractions."""
    for old, new in _CLEANUPS:
        text = text.replace(old, new)
    return text


def _token_name(value: Any) -> Optional[str]:
    """A token string from a tokenizer_config value (a string or an AddedToken-like dict)."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


class SPTokenizer:
    """InternLM2's SentencePiece tokenizer with its chat special tokens (see the module docstring)."""

    def __init__(self, sp: Any, added: dict[int, str], specials: Iterable[str], add_bos_token: bool = True,
                 add_eos_token: bool = False, names: Optional[dict[str, str]] = None,
                 chat_template: Optional[str] = None) -> None:
        self.sp = sp
        names = {"bos": "<s>", "eos": "</s>", "unk": "<unk>", "pad": "</s>", **(names or {})}
        self.bos_token, self.eos_token = names["bos"], names["eos"]
        self.unk_token, self.pad_token = names["unk"], names["pad"]
        self.add_bos_token, self.add_eos_token = add_bos_token, add_eos_token
        self.chat_template = chat_template
        self.added_tokens_decoder = dict(added)
        self._added_ids = {text: i for i, text in sorted(added.items())}
        self._special_names = frozenset([*names.values(), *specials])
        self.special_tokens = {t: self.convert_tokens_to_ids(t) for t in sorted(self._special_names)}
        self.all_special_ids = sorted(set(self.special_tokens.values()))
        self._special_id_set = frozenset(self.all_special_ids)
        n = self.vocab_size
        # Added tokens decoded apart from the SentencePiece text (transformers' "legacy added tokens").
        self._apart = frozenset(t for t, i in self._added_ids.items() if t not in self._special_names or i >= n)
        # Raw pieces that SentencePiece matches in plain text and that carry a special id.
        guarded = [sp.id_to_piece(i) for i in self.all_special_ids if i < n]
        guarded = [p for p in guarded if list(sp.encode(p)) == [sp.piece_to_id(p)]]
        self._guard = re.compile("|".join(map(re.escape, sorted(guarded, key=len, reverse=True)))) if guarded else None

    @classmethod
    def from_dir(cls, model_dir: Path) -> "SPTokenizer":
        """Read tokenizer.model and tokenizer_config.json (plus special_tokens_map.json if present)."""
        import sentencepiece

        model_dir = Path(model_dir)
        path = model_dir / "tokenizer.model"
        if not path.is_file():
            raise ModelNotFound(f"{path}: tokenizer.model not found.",
                                "Copy the checkpoint's tokenizer.model (SentencePiece) into the model folder.")
        sp = sentencepiece.SentencePieceProcessor()
        try:
            sp.Load(str(path))
        except (OSError, RuntimeError) as exc:
            raise StudioError(f"{path}: cannot read the SentencePiece model: {exc}",
                              "The file looks damaged; copy it again.") from None
        cfg = _read_optional_json(model_dir / "tokenizer_config.json")
        smap = _read_optional_json(model_dir / "special_tokens_map.json")
        added = {int(i): name for i, v in (cfg.get("added_tokens_decoder") or {}).items()
                 if (name := _token_name(v)) is not None}
        specials = {name for i, v in (cfg.get("added_tokens_decoder") or {}).items()
                    if isinstance(v, dict) and v.get("special") and (name := _token_name(v))}
        for source in (cfg, smap):
            specials |= {n for v in source.get("additional_special_tokens") or [] if (n := _token_name(v))}
        names = {k: n for k in ("bos", "eos", "unk", "pad")
                 for n in [_token_name(smap.get(f"{k}_token")) or _token_name(cfg.get(f"{k}_token"))] if n}
        return cls(sp, added, specials, bool(cfg.get("add_bos_token", True)), bool(cfg.get("add_eos_token", False)),
                   names, cfg.get("chat_template") if isinstance(cfg.get("chat_template"), str) else None)

    # ------------------------------------------------------------------ ids and names

    @property
    def vocab_size(self) -> int:
        """SentencePiece pieces (as the official tokenizer reports; added tokens may lie beyond)."""
        return self.sp.get_piece_size()

    def __len__(self) -> int:
        """Number of ids: the pieces, or up to the highest added token id."""
        return max([self.vocab_size, *(i + 1 for i in self.added_tokens_decoder)])

    @property
    def bos_token_id(self) -> int:
        return self.convert_tokens_to_ids(self.bos_token)

    @property
    def eos_token_id(self) -> int:
        return self.convert_tokens_to_ids(self.eos_token)

    @property
    def pad_token_id(self) -> int:
        return self.convert_tokens_to_ids(self.pad_token)

    @property
    def unk_token_id(self) -> int:
        return self.convert_tokens_to_ids(self.unk_token)

    def convert_tokens_to_ids(self, tokens: Union[str, list[str]]) -> Union[int, list[int]]:
        """Id of an added token's name or of a SentencePiece piece (unk id when unknown)."""
        if isinstance(tokens, str):
            found = self._added_ids.get(tokens)
            return found if found is not None else self.sp.piece_to_id(tokens)
        return [self.convert_tokens_to_ids(t) for t in tokens]

    def convert_ids_to_tokens(self, ids: Union[int, list[int]]) -> Union[str, list[str]]:
        """Added token name or SentencePiece piece of each id ("" for ids outside both)."""
        if isinstance(ids, int):
            return self._token(ids)
        return [self._token(int(i)) for i in ids]

    def _token(self, i: int) -> str:
        if i in self.added_tokens_decoder:
            return self.added_tokens_decoder[i]
        return self.sp.id_to_piece(i) if 0 <= i < self.vocab_size else ""

    # ------------------------------------------------------------------ encode / decode

    def encode(self, text: str, add_special_tokens: bool = True, split_special_tokens: bool = True) -> list[int]:
        """Ids of `text` (plain text: typed special-token strings are not special), BOS/EOS as configured.

        `split_special_tokens` is accepted as transformers tokenizers take it; it is always on here."""
        ids = [self.bos_token_id] if add_special_tokens and self.add_bos_token else []
        ids += self._encode_text(text)
        if add_special_tokens and self.add_eos_token:
            ids.append(self.eos_token_id)
        return ids

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict:
        """{"input_ids": encode(text)}, as transformers tokenizers answer."""
        return {"input_ids": self.encode(text, add_special_tokens)}

    def _encode_text(self, text: str) -> list[int]:
        if not text:
            return []
        if self._guard is None or not self._guard.search(text):
            return list(self.sp.encode(text))
        # A typed raw piece such as "[UNUSED_TOKEN_145]" would otherwise become <|im_end|>:
        # encode it one character at a time so it stays text (rare input, so no cost otherwise).
        ids, start = [], 0
        for m in self._guard.finditer(text):
            ids += self.sp.encode(text[start:m.start()]) if m.start() > start else []
            for ch in m.group():
                ids += self.sp.encode(ch)
            start = m.end()
        return ids + (list(self.sp.encode(text[start:])) if start < len(text) else [])

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = False,
               clean_up_tokenization_spaces: bool = False) -> str:
        """Text of `ids`, as the official tokenizer writes it (see the module docstring)."""
        parts: list[str] = []
        run: list[tuple[int, str]] = []
        for i in (int(i) for i in ids):
            if skip_special_tokens and i in self._special_id_set:
                continue
            token = self._token(i)
            if token in self._apart:
                text = self._decode_run(run) if run else ""
                parts += [text] if text else []
                parts.append(token)
                run = []
            else:
                run.append((i, token))
        if run:
            parts.append(self._decode_run(run))
        text = " ".join(parts)
        return clean_up_tokenization(text) if clean_up_tokenization_spaces else text

    def _decode_run(self, run: list[tuple[int, str]]) -> str:
        """One run of SentencePiece and special tokens."""
        out, pending, after_special = "", [], False
        for i, token in run:
            if token in self._special_names:
                # The official tokenizer puts a space before a special token that follows text
                # (or starts the run), never between two special tokens.
                out += ("" if after_special else " ") + self._sp_decode(pending) + token
                pending, after_special = [], True
            else:
                pending.append(i)
                after_special = False
        return clean_up_tokenization(out + self._sp_decode(pending))

    def _sp_decode(self, ids: list[int]) -> str:
        n = self.vocab_size
        return self.sp.decode([i for i in ids if 0 <= i < n]) if ids else ""


def _read_optional_json(path: Path) -> dict:
    """A JSON object file, {} when absent; unreadable or malformed is an error naming it."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StudioError(f"{path}: cannot read {path.name}: {exc}", "The file looks damaged; copy it again.") from None
    if not isinstance(data, dict):
        raise StudioError(f"{path}: {path.name} is not a JSON object.", "The file looks damaged; copy it again.")
    return data
