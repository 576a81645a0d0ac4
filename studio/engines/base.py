"""The engine contract: how tokens are produced, whatever runs the model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Protocol

from studio.config import EngineConfig
from studio.core.types import EngineInfo, GenerationRequest, Message, TextDelta

# progress(fraction 0..1, short description) — called from the loading thread.
ProgressFn = Callable[[float, str], None]


@dataclass(frozen=True)
class Placement:
    """Where a model may live: the device kind and how many GPUs it may span."""

    device: str  # "auto" | "cpu" | "cuda" (from the engine config)
    num_gpus: int = 1


@dataclass(frozen=True)
class LoadContext:
    """Everything an engine factory needs besides its config."""

    name: str
    placement: Placement
    cache_dir: Path
    progress: ProgressFn


class Engine(Protocol):
    """A loaded model that streams text; thread-safe only as far as `batches` says."""

    accepts_images: bool
    batches: bool

    def stream(self, request: GenerationRequest) -> Iterator[TextDelta]:
        """Yield text deltas; the last one has a finish reason (stop/length/cancelled/error)."""
        ...

    def count_tokens(self, messages: list[Message]) -> int:
        """Tokens the prompt for `messages` (with the generation prompt) takes."""
        ...

    def info(self) -> EngineInfo:
        """Name, device, dtype, context window and memory, for the UI."""
        ...

    def close(self) -> None:
        """Free the model's memory; the engine is unusable afterwards."""
        ...


# An engine factory builds and loads an engine; registered in studio.engines.ENGINES.
EngineFactory = Callable[[EngineConfig, LoadContext], Engine]
