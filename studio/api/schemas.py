"""OpenAI chat-completions wire format: request models (validated by FastAPI) and response builders."""

from __future__ import annotations

import re
import time
from typing import Annotated, Literal, Optional, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from studio.core.text import cleaned

# Clients can send lone surrogates ("\ud800" in JSON) or NUL: replaced with U+FFFD on the way in,
# so nothing downstream (prompts, the store, error messages echoing a name) fails to encode them.
Text = Annotated[str, AfterValidator(cleaned)]


class _Wire(BaseModel):
    # Clients send fields we do not use (user, metadata, store …): ignored, as OpenAI servers do.
    model_config = ConfigDict(extra="ignore")


class ImageURL(_Wire):
    """Where an image part's bytes are: only `data:` URLs are accepted."""

    url: Text
    detail: Optional[Text] = None


class TextContent(_Wire):
    """A text part of a message."""

    type: Literal["text"]
    text: Text


class ImageContent(_Wire):
    """An image part of a message."""

    type: Literal["image_url"]
    image_url: ImageURL


ContentPart = Annotated[Union[TextContent, ImageContent], Field(discriminator="type")]


def _tool_name(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name):
        raise ValueError(f"{name!r} is not a valid function name: use 1 to 64 letters, digits, _ or -")
    return name


def _object_schema(schema: dict) -> dict:
    if schema.get("type", "object") != "object":
        raise ValueError(f'parameters must be a JSON Schema of type "object", not {schema.get("type")!r}')
    return schema


class FunctionDef(_Wire):
    """A function the model may call: its name, what it does, and a JSON Schema of its arguments."""

    name: Annotated[str, AfterValidator(_tool_name)]
    description: Optional[Text] = None
    parameters: Annotated[dict, AfterValidator(_object_schema)] = Field(
        default_factory=lambda: {"type": "object", "properties": {}})


class ToolDef(_Wire):
    """One entry of `tools`: only functions exist."""

    type: Literal["function"] = "function"
    function: FunctionDef


class FunctionCall(_Wire):
    """A call as the model made it: the arguments are a JSON string."""

    name: Text
    arguments: Text = "{}"


class ToolCall(_Wire):
    """An assistant message's call, echoed back in the history."""

    id: Text
    type: Literal["function"] = "function"
    function: FunctionCall


class NamedToolChoice(_Wire):
    """tool_choice naming one function."""

    type: Literal["function"] = "function"
    function: dict


class ChatMessage(_Wire):
    """One input message; `developer` is OpenAI's newer name for `system`; `tool` answers a call."""

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Union[Text, list[ContentPart], None] = None
    tool_calls: Optional[list[ToolCall]] = None
    tool_call_id: Optional[Text] = None


class StreamOptions(_Wire):
    """Streaming options: a last chunk with token usage when asked."""

    include_usage: bool = False


class ChatCompletionRequest(_Wire):
    """POST /v1/chat/completions; bounds are checked later with GenParams, so messages match the UI's."""

    model: Text
    messages: list[ChatMessage]
    max_tokens: Optional[int] = None
    max_completion_tokens: Optional[int] = None
    temperature: Optional[float] = None
    top_p: Optional[float] = None
    top_k: Optional[int] = None
    repetition_penalty: Optional[float] = None
    seed: Optional[int] = None
    stop: Union[Text, list[Text], None] = None
    stream: bool = False
    stream_options: Optional[StreamOptions] = None
    n: Optional[int] = None
    frequency_penalty: Optional[float] = None
    presence_penalty: Optional[float] = None
    logprobs: Optional[bool] = None
    tools: Optional[list[ToolDef]] = None
    tool_choice: Union[Literal["auto", "none", "required"], NamedToolChoice, None] = None
    parallel_tool_calls: Optional[bool] = None  # accepted; the model decides how many calls it makes


def error_body(message: str, type_: str = "invalid_request_error", param: Optional[str] = None,
               code: Optional[str] = None) -> dict:
    """An OpenAI-style error object."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def model_card(model_id: str, engine: str, label: str, accepts_images: Optional[bool], created: int) -> dict:
    """One entry of GET /v1/models; `accepts_images` is None while the model has not loaded yet."""
    return {"id": model_id, "object": "model", "created": created, "owned_by": "puyu-studio",
            "engine": engine, "label": label, "accepts_images": accepts_images}


def usage(prompt: int, completion: int) -> dict:
    """Token counts of one completion."""
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def completion(cid: str, model: str, text: str, finish: str, tokens: dict, calls: list[dict] = ()) -> dict:
    """A whole (non-streamed) chat.completion; with tool `calls` the content is the text before them, or null."""
    message: dict = {"role": "assistant", "content": text}
    if calls:
        message = {"role": "assistant", "content": text if text.strip() else None, "tool_calls": list(calls)}
    return {"id": cid, "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": message,
                         "logprobs": None, "finish_reason": finish}],
            "usage": tokens}


def chunk(cid: str, model: str, created: int, delta: Optional[dict] = None, finish: Optional[str] = None,
          tokens: Optional[dict] = None) -> dict:
    """One chat.completion.chunk; with `tokens` and no delta it is the usage-only last chunk."""
    choices = [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
    body = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model, "choices": choices}
    if tokens is not None:
        body["usage"] = tokens
    return body


def call_pieces(index: int, call: dict) -> list[dict]:
    """A tool call as OpenAI streams it: id, type and name first (empty arguments), then the arguments."""
    function = call["function"]
    return [{"index": index, "id": call["id"], "type": "function",
             "function": {"name": function["name"], "arguments": ""}},
            {"index": index, "function": {"arguments": function["arguments"]}}]
