"""Domain types: messages, generation parameters, requests and streamed events."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field

Role = Literal["system", "user", "assistant", "tool"]
FinishReason = Literal["stop", "length", "cancelled", "error"]


@dataclass(frozen=True)
class TextPart:
    """A run of text inside a message."""

    text: str
    type: Literal["text"] = "text"


@dataclass(frozen=True)
class ImagePart:
    """A normalised RGB PIL image inside a message (see studio.images)."""

    image: Any
    type: Literal["image"] = "image"


Part = Union[TextPart, ImagePart]


@dataclass
class Message:
    """One chat message, OpenAI-style: a role and a list of content parts."""

    role: Role
    content: list[Part] = field(default_factory=list)
    # A reply cut short by a crash or an error: saved as far as it got, labelled, ready to regenerate.
    partial: bool = False
    # Agent turns: an assistant message may end in a tool call ({"kind": "plugin", "name", "arguments"} or
    # {"kind": "interpreter", "code"}, "raw" as the model wrote it); a "tool" message is a call's result and
    # `name` says whose ("plugin" or "interpreter"); a system message named "plugin"/"interpreter" declares them.
    name: Optional[str] = None
    tool_call: Optional[dict] = None
    # What the agent tab shows of a tool step (status, seconds, images, error); never sent to the model.
    meta: Optional[dict] = None

    @classmethod
    def of(cls, role: Role, text: str, partial: bool = False) -> "Message":
        """A text-only message."""
        return cls(role=role, content=[TextPart(text)], partial=partial)

    @property
    def text(self) -> str:
        """The concatenated text parts."""
        return "".join(p.text for p in self.content if isinstance(p, TextPart))

    @property
    def images(self) -> list[Any]:
        """The images of the message, in order."""
        return [p.image for p in self.content if isinstance(p, ImagePart)]


class GenParams(BaseModel):
    """Sampling parameters, validated once at the edge (UI, API, config)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_new_tokens: int = Field(512, ge=1, le=8192)
    temperature: float = Field(0.7, ge=0.0, le=2.0)
    top_p: float = Field(0.9, gt=0.0, le=1.0)
    top_k: int = Field(50, ge=0, le=1000)
    repetition_penalty: float = Field(1.05, ge=0.5, le=2.0)
    do_sample: bool = True
    seed: Optional[int] = Field(None, ge=0, le=2**32 - 1)
    stop: tuple[str, ...] = ()
    # Beam search (the article demo's "beams"): the reply arrives whole, not streamed.
    num_beams: int = Field(1, ge=1, le=8)


@dataclass(frozen=True)
class TextDelta:
    """A streamed piece of model output; the last one carries `finish_reason`."""

    text: str = ""
    finish_reason: Optional[FinishReason] = None
    error: Optional[str] = None
    completion_tokens: int = 0
    prompt_tokens: int = 0
    # A call a remote server returned already parsed (OpenAI tool_calls), as a Message.tool_call dict
    # ({"kind": "plugin", "name", "arguments", "id"} or {"kind": "interpreter", "code", "id"}); local
    # models write their calls into `text` as markers instead.
    tool_call: Optional[dict] = None


@dataclass(frozen=True)
class Notice:
    """Something the user should know about a request (history trimmed, model loading …)."""

    text: str  # English: what the API and the CLI show
    level: Literal["info", "warning"] = "info"
    # The UI shows `key` (a UI string key) formatted with `args` in the page's language; `text` when empty.
    key: str = ""
    args: dict[str, Any] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class EngineInfo:
    """What an engine reports about itself for the header and system panel."""

    engine: str
    model: str
    family: str
    device: str
    dtype: str
    context_window: int
    accepts_images: bool = False
    batches: bool = False
    memory_bytes: int = 0
    # What is sent when a conversation brings no system message (None: the model decides).
    system_prompt: Optional[str] = None
    extra: dict = field(default_factory=dict)
