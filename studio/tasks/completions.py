"""Chat completions for API clients: OpenAI-shaped input → Messages and GenParams → engine deltas."""

from __future__ import annotations

import base64
import binascii
import secrets
import threading
from dataclasses import dataclass, replace
from typing import Any, Iterator, Optional, Union

from pydantic import ValidationError

from studio import images as image_intake
from studio.core.types import GenParams, ImagePart, Message, TextDelta, TextPart
from studio.engines.base import ContextOverflow, ImagesRefused, ToolsRefused
from studio.engines.openai_wire import call_from_wire, call_to_wire
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
    tools: tuple[dict, ...] = ()  # OpenAI function schemas offered to the model (none with tool_choice "none")


@dataclass(frozen=True)
class ToolCallOut:
    """A call the model made, for the client: its place in the reply and an OpenAI `tool_calls` entry."""

    index: int
    call: dict  # {"id": "call_…", "type": "function", "function": {"name", "arguments": JSON string}}


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


def _parts(services: Services, content: Any, i: int) -> list:
    if isinstance(content, str):
        content = [{"type": "text", "text": content}]
    return [TextPart(p["text"]) if p["type"] == "text"
            else _image(services, p["image_url"]["url"], f"messages[{i}].content[{j}]")
            for j, p in enumerate(content)]


def _check_size(services: Services, message: Message, i: int) -> None:
    limit, max_images = services.config.ui.max_prompt_chars, services.config.ui.max_images_per_message
    if len(message.images) > max_images:
        raise ParamError(f"messages[{i}] has {len(message.images)} images; the limit is {max_images}.",
                         f"messages[{i}].content")
    if len(message.text) > limit:
        raise ParamError(f"messages[{i}] is {len(message.text):,} characters; the limit is {limit:,}.",
                         f"messages[{i}].content")


def to_messages(services: Services, raw: list[dict]) -> list[Message]:
    """OpenAI messages → ours: leading system messages merged; images decoded safely; an assistant's
    tool_calls and the tool messages answering them become call / result pairs, one call each."""
    if not raw:
        raise ParamError("messages is empty; send at least one user message.", "messages")
    out: list[Message] = []
    calls = _PendingCalls()
    for i, msg in enumerate(raw):
        role = "system" if msg["role"] == "developer" else msg["role"]
        content = msg.get("content")
        if role == "tool":
            calls.answer(services, msg, i)
            continue
        out += calls.flush(i)
        if role != "assistant" and (msg.get("tool_calls") or msg.get("tool_call_id")):
            field = "tool_calls" if msg.get("tool_calls") else "tool_call_id"
            raise ParamError(f"messages[{i}]: a {role} message cannot have {field}; only assistant messages make "
                             "calls and only tool messages answer them.", f"messages[{i}].{field}")
        if role == "system" and content == "" and not out:
            out.append(Message.of("system", ""))  # an explicitly empty system prompt: none, not the model's default
            continue
        if role == "assistant" and msg.get("tool_calls"):
            calls.start(msg, i, Message(role, _parts(services, content or "", i)))
            continue
        if content is None or content == "" or content == []:
            raise ParamError(f"messages[{i}] has no content.", f"messages[{i}].content")
        message = Message(role, _parts(services, content, i))
        _check_size(services, message, i)
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
    out += calls.flush(len(raw))
    if out[-1].role not in ("user", "tool"):
        raise ParamError("The last message must come from the user (or be a tool result).",
                         f"messages[{len(raw) - 1}].role")
    return out


class _PendingCalls:
    """The tool calls of the latest assistant message, gathered with the tool messages that answer them."""

    def __init__(self) -> None:
        self.where, self.text, self.calls, self.results = -1, "", [], {}

    def start(self, msg: dict, i: int, message: Message) -> None:
        """An assistant message's calls, checked: each id once, arguments a JSON object."""
        if message.images:
            raise ParamError(f"messages[{i}]: an assistant message cannot hold images.", f"messages[{i}].content")
        self.where, self.text, self.calls, self.results = i, message.text, [], {}
        for j, item in enumerate(msg["tool_calls"]):
            where = f"messages[{i}].tool_calls[{j}]"
            if any(c.get("id") == item["id"] for c in self.calls):
                raise ParamError(f"{where}.id: the id {item['id']!r} is used twice in this message.", f"{where}.id")
            call = call_from_wire(item["function"]["name"], item["function"].get("arguments", "{}"), item["id"])
            if call.get("problem"):
                raise ParamError(f"{where}.function.arguments: {call['problem']}", f"{where}.function.arguments")
            self.calls.append(call)

    def answer(self, services: Services, msg: dict, i: int) -> None:
        """A tool message: the result of one of the pending calls, named by tool_call_id."""
        call_id = msg.get("tool_call_id")
        if not call_id:
            raise ParamError(f"messages[{i}]: a tool message needs tool_call_id (the id of the call it answers).",
                             f"messages[{i}].tool_call_id")
        known = [c["id"] for c in self.calls]
        if call_id not in known:
            after = (f"the calls of messages[{self.where}] are {', '.join(map(repr, known))}" if known
                     else "no assistant message with tool_calls comes before it")
            raise ParamError(f"messages[{i}].tool_call_id {call_id!r} answers no call: {after}.",
                             f"messages[{i}].tool_call_id")
        if call_id in self.results:
            raise ParamError(f"messages[{i}]: the call {call_id!r} is answered twice.", f"messages[{i}].tool_call_id")
        result = Message("tool", _parts(services, msg.get("content") or "", i))
        if result.images:
            raise ParamError(f"messages[{i}]: a tool message holds text only.", f"messages[{i}].content")
        _check_size(services, result, i)
        self.results[call_id] = result

    def flush(self, i: int) -> list[Message]:
        """The pending calls as (call, result) message pairs, in the calls' order; all must be answered."""
        missing = [c["id"] for c in self.calls if c["id"] not in self.results]
        if missing:
            raise ParamError(f"messages[{self.where}]: the tool call {missing[0]!r} has no tool message answering "
                             f"it (send one with tool_call_id {missing[0]!r} before messages[{i}]).",
                             f"messages[{self.where}].tool_calls")
        out = []
        for j, call in enumerate(self.calls):
            asked = Message.of("assistant", self.text if j == 0 else "")
            asked.tool_call = call
            answer = self.results[call["id"]]
            answer.name = "interpreter" if call["kind"] == "interpreter" else "plugin"
            out += [asked, answer]
        self.where, self.text, self.calls, self.results = -1, "", [], {}
        return out


def tool_specs(body: dict) -> tuple[dict, ...]:
    """The functions offered to the model: none with tool_choice "none"; names must be unique."""
    tools = body.get("tools") or []
    choice = body.get("tool_choice", "auto")
    if choice == "required" or isinstance(choice, dict):
        shown = "'required'" if choice == "required" else "a named function"
        raise ParamError(f"tool_choice {shown} is not supported: the model decides whether to call a tool.",
                         "tool_choice", "unsupported_tool_choice", 'Send tool_choice "auto" (or "none").')
    seen: set[str] = set()
    for i, tool in enumerate(tools):
        name = tool["function"]["name"]
        if name in seen:
            raise ParamError(f"tools[{i}].function.name: the function {name!r} is declared twice.",
                             f"tools[{i}].function.name")
        seen.add(name)
    if choice == "none":
        return ()
    return tuple({"type": "function", "function": tool["function"]} for tool in tools)


def prepare(services: Services, body: dict) -> Job:
    """Validate a request body (plain data) into a Job; decodes images, so run it off the event loop."""
    ids = model_ids(services)
    model = body.get("model", "")
    if model not in ids:
        raise UnknownModel(f"The model {model!r} does not exist; known: {', '.join(ids)}.", "model", "model_not_found")
    engine = ids[model]
    params = gen_params(services.config.engines[engine].defaults, body)
    tools = tool_specs(body)
    return Job(model, engine, to_messages(services, body.get("messages") or []), params, tools)


def run(services: Services, job: Job, cancel: threading.Event) -> Iterator[Union[Started, TextDelta, ToolCallOut]]:
    """Started, then the engine's deltas (with tools: text without call markers, then each call);
    ParamError before Started when the prompt cannot be served."""
    events = turn.run(services, job.engine, job.messages, job.params, cancel, wait_s=LOAD_WAIT_S, tools=job.tools)
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
        except ToolsRefused as exc:
            raise ParamError(f"The model {job.model!r} cannot call tools.", "tools" if job.tools else "messages",
                             exc.code, exc.hint) from None
        yield first
        deltas = (e for e in events if isinstance(e, TextDelta))
        yield from (with_calls(deltas) if job.tools else deltas)
    finally:
        events.close()  # a client gone mid-stream ends the compute (the turn sets `cancel`)


def with_calls(deltas: Iterator[TextDelta]) -> Iterator[Union[TextDelta, ToolCallOut]]:
    """Deltas with InternLM2's call markers taken out of the text; each call (written as markers, or
    handed over parsed by a remote engine) comes as a ToolCallOut before the last delta."""
    from studio.families.internlm2_tool_parser import CallFinished, NativeToolParser, ReplyText

    parser, count = NativeToolParser(), 0
    for delta in deltas:
        events = parser.feed(delta.text) + (parser.finish() if delta.finish_reason else [])
        text = "".join(e.text for e in events if isinstance(e, ReplyText))
        calls = [e.call.as_tool_call() for e in events if isinstance(e, CallFinished)]
        calls += [delta.tool_call] if delta.tool_call else []
        # A call without even a function name cannot be a tool_calls entry: the client sees what the model wrote.
        text += "".join(c.get("raw") or str(c.get("arguments") or "") for c in calls if not c.get("name"))
        calls = [c for c in calls if c.get("name")]
        if text:
            yield TextDelta(text)
        for call in calls:
            call_id = call.get("id") or f"call_{secrets.token_hex(12)}"
            yield ToolCallOut(count, call_to_wire(call, call_id))
            count += 1
        if delta.finish_reason:
            yield replace(delta, text="", tool_call=None)
