"""The model-family contract: how a model wants its input."""

from __future__ import annotations

from typing import Any, Optional, Protocol

from studio.core.types import Message


class ModelFamily(Protocol):
    """Prompt assembly and stop tokens of one model family."""

    name: str
    # True while the family can only load its official checkpoints through their own code.
    needs_remote_code: bool
    # The system prompt the official chat code uses when the user gives none (None: no default).
    default_system_prompt: Optional[str]

    def build_prompt(self, tokenizer: Any, messages: list[Message]) -> str:
        """The prompt text for `messages`, ending with the assistant's generation prompt."""
        ...

    def encode(self, tokenizer: Any, messages: list[Message]) -> list[int]:
        """Token ids of `build_prompt` (BOS handled as the official code does)."""
        ...

    def stop_token_ids(self, tokenizer: Any) -> list[int]:
        """Ids that end a reply."""
        ...
