"""Chat completions for API clients: OpenAI-shaped input → Messages and GenParams → engine deltas."""

from __future__ import annotations

import base64
import binascii
import threading
from dataclasses import dataclass
from typing import Iterator, Optional, Union

from pydantic import ValidationError

from studio import images as image_intake
from studio.core.types import GenParams, ImagePart, Message, TextDelta, TextPart
from studio.engines.base import ContextOverflow, ImagesRefused
from studio.errors import InputError
from studio.services import Services
from studio.tasks import turn
from studio.tasks.turn import Started

LOAD_WAIT_S = 30.0  # an API call made during start-up waits this long, then gets "still loading"
_PARAM_NAMES = {"max_new_tokens": "max_tokens"}  # ours → OpenAI's, for error messages


class ParamError(InputError):
    """A request field that cannot be served; `param` names it the way the client spelled it."""

    def __init__(self, message: str, param: Optional[str] = None, code: Optional[str] = None, hint: str = "") -> None:
        super().__init__(message, hint)
        self.param = param
        self.code = code


class UnknownModel(ParamError):
    """The requested model id names no configured engine."""


@dataclass(frozen=True)
class Job:
    """A validated request: which engine, the prompt and the sampling parameters."""

    model: str  # the id the client asked for, echoed in replies
    engine: str
    messages: list[Message]
    params: GenParams


def model_ids(services: Services) -> dict[str, str]:
    """Every model id a client may use → the engine it names (engine names, then configured aliases)."""
    return {**{n: n for n in services.engines.names()}, **services.config.api.model_names}


def gen_params(defaults: GenParams, body: dict) -> GenParams:
    """The engine's defaults overridden by the request, checked against GenParams' bounds."""
    if body.get("n", 1) != 1:
        raise ParamError(f"n={body['n']} is not supported; only one choice per request (n=1).", "n")
    for name in ("frequency_penalty", "presence_penalty"):
        if body.get(name, 0) != 0:
            raise ParamError(f"{name} is not supported (only 0); use repetition_penalty instead.", name)
    if body.get("logprobs"):
        raise ParamError("logprobs are not supported.", "logprobs")
    if body.get("tools"):
        raise ParamError("tools (function calling) are not supported.", "tools")
    update: dict = {}
    length_param = "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens"
    if length_param in body:
        update["max_new_tokens"] = body[length_param]
    for name in ("temperature", "top_p", "top_k", "repetition_penalty", "seed"):
        if name in body:
            update[name] = body[name]
    if "temperature" in update:
        update["do_sample"] = update["temperature"] > 0  # OpenAI's temperature 0 means greedy
    stop = body.get("stop")
    if stop is not None:
        stop = [stop] if isinstance(stop, str) else list(stop)
        if len(stop) > 4 or not all(stop):
            raise ParamError("stop takes at most 4 non-empty strings.", "stop")
        update["stop"] = tuple(stop)
    try:
        return GenParams.model_validate({**defaults.model_dump(), **update})
    except ValidationError as exc:
        err = exc.errors()[0]
        name = str(err["loc"][0]) if err["loc"] else ""
        param = length_param if name == "max_new_tokens" else _PARAM_NAMES.get(name, name)
        raise ParamError(f"{param}: {err['msg']} (got {err.get('input')!r}).", param) from None


def _image(services: Services, url: str, where: str) -> ImagePart:
    """A `data:image/...;base64,` URL → a normalised image; nothing is ever downloaded."""
    if not url.startswith("data:"):
        raise ParamError(f"{where}: only data URLs (data:image/png;base64,…) are accepted; this server "
                         "does not download images.", where, "invalid_image_url")
    header, sep, payload = url.partition(",")
    if not sep or not header.endswith(";base64"):
        raise ParamError(f"{where}: the data URL must be base64-encoded (data:image/png;base64,…).", where,
                         "invalid_image_url")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ParamError(f"{where}: the data URL's base64 payload is invalid.", where, "invalid_image_url") from None
    try:
        return ImagePart(image_intake.load_image(data, name=f"The image in {where}").image)
    except InputError as exc:
        raise ParamError(exc.message, where, "invalid_image", exc.hint) from None


def to_messages(services: Services, raw: list[dict]) -> list[Message]:
    """OpenAI messages → ours: leading system messages merged; images decoded safely."""
    if not raw:
        raise ParamError("messages is empty; send at least one user message.", "messages")
    limit, max_images = services.config.ui.max_prompt_chars, services.config.ui.max_images_per_message
    out: list[Message] = []
    for i, msg in enumerate(raw):
        role = "system" if msg["role"] == "developer" else msg["role"]
        content = msg.get("content")
        if role == "system" and content == "" and not out:
            out.append(Message.of("system", ""))  # an explicitly empty system prompt: none, not the model's default
            continue
        if content is None or content == "" or content == []:
            raise ParamError(f"messages[{i}] has no content.", f"messages[{i}].content")
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        parts = [TextPart(p["text"]) if p["type"] == "text"
                 else _image(services, p["image_url"]["url"], f"messages[{i}].content[{j}]")
                 for j, p in enumerate(content)]
        message = Message(role, parts)
        if len(message.images) > max_images:
            raise ParamError(f"messages[{i}] has {len(message.images)} images; the limit is {max_images}.",
                             f"messages[{i}].content")
        if len(message.text) > limit:
            raise ParamError(f"messages[{i}] is {len(message.text):,} characters; the limit is {limit:,}.",
                             f"messages[{i}].content")
        if role == "system":
            if out and out[-1].role != "system":
                raise ParamError(f"messages[{i}]: system messages are only accepted at the start.",
                                 f"messages[{i}].role")
            if message.images:
                raise ParamError(f"messages[{i}]: a system message cannot hold images.", f"messages[{i}].content")
            if out:  # several leading system messages: one system prompt
                out[-1] = Message.of("system", "\n\n".join(t for t in (out[-1].text, message.text) if t))
                continue
        out.append(message)
    if out[-1].role != "user":
        raise ParamError("The last message must come from the user.", f"messages[{len(raw) - 1}].role")
    return out


def prepare(services: Services, body: dict) -> Job:
    """Validate a request body (plain data) into a Job; decodes images, so run it off the event loop."""
    ids = model_ids(services)
    model = body.get("model", "")
    if model not in ids:
        raise UnknownModel(f"The model {model!r} does not exist; known: {', '.join(ids)}.", "model", "model_not_found")
    engine = ids[model]
    params = gen_params(services.config.engines[engine].defaults, body)
    return Job(model, engine, to_messages(services, body.get("messages") or []), params)


def run(services: Services, job: Job, cancel: threading.Event) -> Iterator[Union[Started, TextDelta]]:
    """Started, then the engine's deltas; ParamError before Started when the prompt cannot be served."""
    events = turn.run(services, job.engine, job.messages, job.params, cancel, wait_s=LOAD_WAIT_S)
    try:
        try:
            first = next(e for e in events if isinstance(e, Started))  # loading notices are for people
        except StopIteration:
            return  # the client left while the model loaded
        except ImagesRefused as exc:
            raise ParamError(f"The model {job.model!r} reads text only, so images cannot be sent to it.",
                             "messages", exc.code,
                             "Send the images to a vision model (see GET /v1/models, accepts_images).") from None
        except ContextOverflow as exc:
            raise ParamError(exc.message, "messages", exc.code, "Shorten the messages or drop earlier turns.") from None
        yield first
        yield from (e for e in events if isinstance(e, TextDelta))
    finally:
        events.close()  # a client gone mid-stream ends the compute (the turn sets `cancel`)
