"""The tool contract: a tool's schema (as OpenAI function calling has it), a call, and its result."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class ToolSpec:
    """What the model is told about a tool: an OpenAI function schema."""

    name: str  # [A-Za-z_][A-Za-z0-9_]* (what the model writes to call it)
    description: str
    parameters: dict = field(default_factory=lambda: {"type": "object", "properties": {}, "required": []})

    def openai(self) -> dict:
        """The tool as an OpenAI `tools` entry."""
        return {"type": "function", "function": {"name": self.name, "description": self.description,
                                                 "parameters": self.parameters}}


@dataclass(frozen=True)
class ToolCall:
    """A call the model made: the tool's name and its arguments (decoded JSON, or the raw text when invalid)."""

    name: str
    arguments: Any  # a dict when the model wrote valid JSON; the interpreter's code as a str
    raw: str = ""  # exactly what the model wrote for the call
    id: str = ""  # the call's id in the OpenAI API (call_…)


@dataclass(frozen=True)
class ToolResult:
    """What a call gave back: text (capped), PNG images, or an error the model is shown as its observation."""

    text: str = ""
    images: tuple[bytes, ...] = ()
    error: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when the call ran without an error."""
        return not self.error


class Tool(Protocol):
    """Something a model may call; `run` never raises for bad arguments or failures: it returns an error result."""

    spec: ToolSpec

    def run(self, arguments: Any, cancel: threading.Event) -> ToolResult:
        """Run one call; stop soon after `cancel` is set (a running child process is killed)."""
        ...
