"""Errors that carry a user-facing message and a hint saying what to do."""

from __future__ import annotations

from typing import Any, Optional


class StudioError(Exception):
    """An error a user can act on: `message` says what went wrong, `hint` what to do."""

    def __init__(self, message: str, hint: str = "", key: str = "", values: Optional[dict[str, Any]] = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        # The UI words `key` (and `key` + "_hint") with `values` in the page's language; the API, the CLI and
        # the log keep the English message and hint.
        self.key = key
        self.values = dict(values or {})

    def __str__(self) -> str:
        return f"{self.message} {self.hint}".strip()


class ConfigError(StudioError):
    """The YAML config (or a flag overriding it) is invalid."""


class UnknownName(StudioError):
    """A registry lookup for a name that is not registered."""


class ModelNotFound(StudioError):
    """A model path is missing or does not hold a model."""


class ModelNotReady(StudioError):
    """The model is still loading or failed to load."""


class InputError(StudioError):
    """A request (prompt, parameters, upload) cannot be served as given."""
