"""Prompt tokens for the lmdeploy engine: exact through the chat template, or a cheap upper bound.

lmdeploy applies the chat template and tokenizes each request itself, on its event loop. The studio
needs a count before that, to fit the prompt into the session. Counting exactly repeats lmdeploy's
work in the request's thread; with many requests arriving at once that Python work competes with
lmdeploy's own for the interpreter (bench/lmdeploy_callers.py: "engine-no-count"). Most prompts sit
far inside the session, where an upper bound decides the same: each token covers at least one byte
of text, so the template's own tokens for the conversation's roles (counted once per sequence of
roles) plus the messages' UTF-8 bytes is never below the exact count.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, Callable, Optional

from studio.core.types import Message

ROLE_CACHE = 256  # sequences of roles whose template tokens are kept
SLACK = 2  # tokens per message for merges across a message's edges


class PromptCounter:
    """Counts chat prompts with the pipeline's tokenizer (fetched lazily by `get_tokenizer`)."""

    def __init__(self, get_tokenizer: Callable[[], Any]) -> None:
        self._get = get_tokenizer
        self._lock = threading.Lock()
        self._loaded: Optional[tuple[Any, Any]] = None
        self._roles: OrderedDict[tuple[str, ...], int] = OrderedDict()

    def _tokenizers(self) -> tuple[Any, Any]:
        """(HF tokenizer or None, a private copy of its Rust tokenizer or None), built once.

        The copy counts from any number of threads without a lock: the HF tokenizer is lmdeploy's too,
        and transformers' encode reconfigures it per call ("Already borrowed" under concurrent use)."""
        with self._lock:
            if self._loaded is None:
                tok = self._get()
                copy = None
                backend = getattr(tok, "backend_tokenizer", None)
                if backend is not None:
                    try:
                        from tokenizers import Tokenizer

                        copy = Tokenizer.from_str(backend.to_str())
                        copy.no_truncation()
                        copy.no_padding()
                    except Exception:  # an unusual tokenizer: count through transformers under the lock
                        copy = None
                self._loaded = (tok, copy)
            return self._loaded

    def available(self) -> bool:
        """True when a tokenizer with a chat template is there to count with."""
        return self._tokenizers()[0] is not None

    def exact(self, chat: list[dict]) -> int:
        """Tokens of the chat template's prompt for `chat` (role/content dicts), generation prompt included."""
        tok, copy = self._tokenizers()
        if copy is not None:
            text = tok.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
            return len(copy.encode(text, add_special_tokens=False).ids)
        with self._lock:
            ids = tok.apply_chat_template(chat, add_generation_prompt=True, tokenize=True)
        if isinstance(ids, Mapping):  # transformers 5 returns a BatchEncoding (a dict), not a list
            ids = ids["input_ids"]
        return len(ids)

    def bound(self, messages: list[Message]) -> int:
        """An upper bound on exact(): the template's tokens for these roles + the texts' UTF-8 bytes."""
        roles = tuple(m.role for m in messages)
        with self._lock:
            fixed = self._roles.get(roles)
            if fixed is not None:
                self._roles.move_to_end(roles)
        if fixed is None:
            fixed = self.exact([{"role": r, "content": ""} for r in roles])
            with self._lock:
                self._roles[roles] = fixed
                while len(self._roles) > ROLE_CACHE:
                    self._roles.popitem(last=False)
        return fixed + sum(len(m.text.encode("utf-8")) for m in messages) + SLACK * len(messages)
