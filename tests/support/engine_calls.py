"""Calling an engine directly, as the turn loop does: prepare, then stream (for engine-level tests)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Iterator, Optional

from studio.core.types import GenParams, Message, TextDelta


@dataclass
class GenerationRequest:
    """Messages, parameters, a cancel flag and a tile budget: what a test asks an engine for."""

    messages: list[Message]
    params: GenParams = field(default_factory=GenParams)
    cancel: threading.Event = field(default_factory=threading.Event)
    max_tiles: Optional[int] = None


def generate(engine, request: GenerationRequest) -> Iterator[TextDelta]:
    """The engine's stream for `request`; prepare's errors (images, context window) are raised here, at once."""
    prepared = engine.prepare(request.messages, request.params, max_tiles=request.max_tiles)
    return engine.stream(prepared, request.cancel)


def prompt_tokens(engine, messages: list[Message], max_tiles: Optional[int] = None) -> int:
    """Tokens the prompt for `messages` takes (with the model's system prompt and the generation prompt),
    also when it is too long for the model (prepare refuses it, saying how long it is)."""
    from studio.engines.base import ContextOverflow

    try:
        return engine.prepare(messages, GenParams(max_new_tokens=1), max_tiles=max_tiles).prompt_tokens
    except ContextOverflow as exc:
        return exc.prompt_tokens


class OnePool:
    """The part of EnginePool the tasks use, serving one ready engine under any name."""

    def __init__(self, engine, options=None) -> None:
        from studio.engines.options import EngineOptions

        self.engine = engine
        self.options = options or EngineOptions(engine="scripted")  # no capabilities declared

    def config_of(self, name):
        """The engine's config block."""
        return self.options

    def label(self, name) -> str:
        """The model's name."""
        return self.options.display_name()

    def start(self, name=None) -> None:
        """Nothing to load."""

    def state(self, name):
        """Always ready."""
        from studio.services import LoadState

        return LoadState("ready", 1.0, "ready")

    def get(self, name):
        """The one engine."""
        return self.engine


def serving(engine, **services):
    """Services whose engine pool hands out `engine` (for tasks tested on a hand-made engine)."""
    from studio.config import load_config
    from studio.config import DEFAULT_CONFIG
    from studio.services import Services

    return Services(load_config(DEFAULT_CONFIG), engines=OnePool(engine), store=None, data_dir=None, **services)
