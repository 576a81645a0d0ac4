"""Text a user types, checked once for every tab: a message, a system prompt."""

from __future__ import annotations

from studio.core.text import cleaned
from studio.errors import InputError
from studio.services import Services


def validate_prompt(services: Services, text: str) -> str:
    """The message to send (lone surrogates and NUL replaced), or InputError saying what is wrong with it."""
    if text is not None and not isinstance(text, str):
        raise InputError(f"The message must be text, not {type(text).__name__}.", "Send the message as a string.")
    text = cleaned(text or "")
    if not text.strip():
        raise InputError("The message is empty.", "Type something, then press Enter.", key="err_message_empty")
    limit = services.config.ui.max_prompt_chars
    if len(text) > limit:
        raise InputError(
            f"The message is {len(text):,} characters; the limit is {limit:,}.",
            "Shorten it, or split it over several messages.",
            key="err_message_long", values={"n": len(text), "limit": limit},
        )
    return text


def validate_system_prompt(services: Services, text: str) -> str:
    """A system prompt as typed (lone surrogates and NUL replaced; "" means none), or InputError."""
    if text is not None and not isinstance(text, str):
        raise InputError(f"The system prompt must be text, not {type(text).__name__}.", "Send it as a string.")
    text = cleaned(text or "")
    limit = services.config.ui.max_prompt_chars
    if len(text) > limit:
        raise InputError(f"The system prompt is {len(text):,} characters; the limit is {limit:,}.", "Shorten it.")
    return text
