"""OpenAI chat-completions wire format: request models (validated by FastAPI) and response builders."""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal, Optional, Union

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


class ChatMessage(_Wire):
    """One input message; `developer` is OpenAI's newer name for `system`."""

    role: Literal["system", "developer", "user", "assistant"]
    content: Union[Text, list[ContentPart], None] = None


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
    tools: Optional[list[Any]] = None


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


def completion(cid: str, model: str, text: str, finish: str, tokens: dict) -> dict:
    """A whole (non-streamed) chat.completion."""
    return {"id": cid, "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
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
