"""What travels between the remote engine and an OpenAI-compatible server: SSE chunks, error bodies,
failures described for people, and the prompt-size estimate used without a local tokenizer."""

from __future__ import annotations

import base64
import json
from typing import Any, Optional
from urllib.parse import urlsplit

from studio.core.types import Message
from studio.errors import StudioError

# A guess at what one image costs on the server (InternVL2: 256 per tile, often 3-7 tiles); we cannot ask.
IMAGE_TOKENS = 768
BODY_LIMIT = 4096  # bytes of an error body read: enough for the server's message, never an endless page
FINISH = {"stop": "stop", "length": "length", "abort": "cancelled", "cancelled": "cancelled", "error": "error"}


def base_url_problem(url: str) -> Optional[str]:
    """What is wrong with a remote engine's base URL, or None when it looks usable."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError for a port that is not a number)
    except ValueError as exc:
        return f"is not a URL ({exc})"
    if parts.scheme.lower() not in ("http", "https"):
        return "must start with http:// or https://"
    if not parts.hostname:
        return "has no host name"
    if parts.query or parts.fragment:
        return "must not have a query or fragment; give the API root, e.g. http://host:23333/v1"
    return None



class Unreachable(StudioError):
    """The model server cannot be reached at all."""


def estimate_tokens(messages: list[Message], tools: tuple[dict, ...] = ()) -> int:
    """Characters / 3 (English runs ~4, Chinese ~1-1.5 per token: /3 errs towards trimming) + 4 per message
    for the role markers, + IMAGE_TOKENS per image, + 3 for the generation prompt; tool schemas and calls
    count by their JSON's characters."""
    calls = sum(len(json.dumps(m.tool_call, ensure_ascii=False, default=str)) // 3 for m in messages if m.tool_call)
    schemas = len(json.dumps(list(tools), ensure_ascii=False)) // 3 if tools else 0
    return sum(len(m.text) // 3 + 4 + IMAGE_TOKENS * len(m.images) for m in messages) + 3 + calls + schemas


def model_window(entry: dict) -> Optional[int]:
    """The context window a /models entry advertises (vLLM: max_model_len), if any."""
    for key in ("max_model_len", "context_window", "context_length", "max_context_length"):
        value = entry.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def _snippet(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return repr(text[:limit] + ("…" if len(text) > limit else "")) if text else "(empty body)"


def _message_of(obj: Any) -> Optional[str]:
    """The human message inside an OpenAI / FastAPI / lmdeploy error body."""
    if isinstance(obj, dict):
        for key in ("error", "message", "detail"):
            inner = obj.get(key)
            found = inner if isinstance(inner, str) else _message_of(inner)
            if found:
                return found
    if isinstance(obj, list) and obj:
        return _message_of(obj[0]) or (obj[0] if isinstance(obj[0], str) else None)
    return None


def error_text(resp: Any, json_message: bool = True) -> str:
    """The server's own message from a response body (read at most BODY_LIMIT bytes), or a snippet of it."""
    raw = b""
    try:
        raw = resp.content[:BODY_LIMIT]
    except Exception:  # a streamed response: read only its beginning
        try:
            for chunk in resp.iter_bytes():
                raw += chunk
                if len(raw) >= BODY_LIMIT:
                    break
        except Exception:
            pass
    text = raw[:BODY_LIMIT].decode("utf-8", "replace")
    if json_message:
        try:
            found = _message_of(json.loads(text))
        except ValueError:
            found = None
        if found:
            return found
    return _snippet(text)


def describe_failure(exc: BaseException, cfg: Any) -> str:
    """A transport failure in words: what happened and which setting governs it."""
    import httpx

    if isinstance(exc, httpx.ConnectTimeout):
        return f"could not connect within {cfg.connect_timeout_s:g} s (connect_timeout_s)"
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect ({exc}); is the server running?"
    if isinstance(exc, httpx.ReadTimeout):
        return f"no data for {cfg.timeout_s:g} s (timeout_s); the server may be overloaded or stuck"
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out ({type(exc).__name__})"
    if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError)):
        return f"the connection dropped mid-reply ({exc or type(exc).__name__})"
    return f"{type(exc).__name__}: {exc}"


def _png_url(image: Any) -> str:
    from studio.images import to_png_bytes

    return "data:image/png;base64," + base64.b64encode(to_png_bytes(image)).decode("ascii")


INTERPRETER_TOOL = "python"  # the interpreter as an OpenAI function: {"code": "…"}


def call_from_wire(name: str, arguments: str, call_id: Optional[str] = None) -> dict:
    """An OpenAI function call (arguments as a JSON string) as a Message.tool_call dict; arguments that are
    not a JSON object give a call with a `problem` saying so (the raw text kept)."""
    try:
        args = json.loads(arguments) if arguments.strip() else {}
    except ValueError as exc:
        args, problem = arguments, f"The call's arguments are not valid JSON: {exc}."
    else:
        problem = "" if isinstance(args, dict) else "The call's arguments are not a JSON object."
    if not problem and name == INTERPRETER_TOOL and isinstance(args.get("code"), str):
        call = {"kind": "interpreter", "name": name, "code": args["code"]}
    else:
        call = {"kind": "plugin", "name": name, "arguments": args}
    # No "raw" here: that key holds a call as InternLM2 wrote it natively, and would replace its prompt body.
    if problem:
        call["problem"] = problem
    return {**call, "id": call_id} if call_id else call


def call_to_wire(call: dict, call_id: str) -> dict:
    """A Message.tool_call dict as an OpenAI `tool_calls` entry (arguments as a JSON string)."""
    if call.get("kind") == "interpreter":
        name, arguments = call.get("name") or INTERPRETER_TOOL, json.dumps({"code": call.get("code", "")})
    else:
        args = call.get("arguments")
        name = call.get("name") or ""
        arguments = args if isinstance(args, str) else json.dumps(args if args is not None else {},
                                                                 ensure_ascii=False)
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def wire_messages(messages: list[Message]) -> list[dict]:
    """Messages as OpenAI chat messages: plain strings, or parts with PNG data URLs for images; a tool call
    as `tool_calls`, its result as a `tool` message answering the call's id."""
    out, last_id = [], "call_0"
    for i, m in enumerate(messages):
        if m.role == "system" and m.name:
            continue  # a prompt for a native tool turn (the agent tab's); the server renders `tools` itself
        if m.tool_call:
            last_id = m.tool_call.get("id") or f"call_{i}"
            # "" rather than null: servers whose chat templates join strings (lmdeploy) fail on null.
            out.append({"role": "assistant", "content": m.text, "tool_calls": [call_to_wire(m.tool_call, last_id)]})
            continue
        if m.role == "tool":
            out.append({"role": "tool", "tool_call_id": last_id, "content": m.text})
            continue
        if not m.images:
            out.append({"role": m.role, "content": m.text})
            continue
        parts = [{"type": "text", "text": p.text} if p.type == "text" else
                 {"type": "image_url", "image_url": {"url": _png_url(p.image)}} for p in m.content]
        out.append({"role": m.role, "content": parts})
    return out


class SseDecoder:
    """Turns the lines of a chat-completion event stream into (text, finish reason, error) triples."""

    def __init__(self) -> None:
        self.finish: Optional[str] = None
        self.prompt_tokens = self.completion_tokens = self.chunks = 0
        self._event = ""
        self._calls: dict[int, dict] = {}  # streamed tool_calls by index: id, name, arguments so far

    def feed(self, line: str) -> list[tuple[str, Optional[str], Optional[str]]]:
        """Handle one line; a non-None finish reason means the reply is over."""
        if not line or line.startswith(":"):  # event separators and keep-alive comments
            return []
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "event":
            self._event = value
            return []
        if field in ("id", "retry"):
            return []
        if field != "data":
            return [("", "error", f"the reply is not a stream of server-sent events: {_snippet(line)}")]
        return [self._data(value)]

    def _data(self, data: str) -> tuple[str, Optional[str], Optional[str]]:
        if data.strip() == "[DONE]":
            return "", FINISH.get(self.finish or "stop", "stop"), None
        try:
            obj = json.loads(data)
        except ValueError:
            return "", "error", f"the stream held something that is not JSON: {_snippet(data)}"
        if self._event == "error" or (isinstance(obj, dict) and "error" in obj):
            return "", "error", f"the server reported an error: {_message_of(obj) or _snippet(data)}"
        if not isinstance(obj, dict):
            return "", "error", f"unexpected event in the stream: {_snippet(data)}"
        usage = obj.get("usage") or {}
        self.prompt_tokens = usage.get("prompt_tokens") or self.prompt_tokens
        self.completion_tokens = usage.get("completion_tokens") or self.completion_tokens
        choice = (obj.get("choices") or [{}])[0] or {}
        delta = choice.get("delta") or {}
        piece = delta.get("content") or ""
        self._add_calls(delta.get("tool_calls"))
        self.chunks += bool(piece)
        self.finish = choice.get("finish_reason") or self.finish
        if self.finish == "error":
            return piece, "error", "the server ended the reply with an error"
        return piece, None, None

    def _add_calls(self, pieces: Any) -> None:
        """Assemble streamed tool_calls: the first piece of an index has its id and name, later ones
        append to the arguments (OpenAI's streaming form; a server may also send a call whole)."""
        for k, piece in enumerate(pieces if isinstance(pieces, list) else []):
            if not isinstance(piece, dict):
                continue
            index = piece.get("index", k) if isinstance(piece.get("index", k), int) else k
            call = self._calls.setdefault(index, {"id": None, "name": "", "arguments": ""})
            function = piece.get("function") if isinstance(piece.get("function"), dict) else {}
            call["id"] = call["id"] or piece.get("id")
            call["name"] += function.get("name") or ""
            arguments = function.get("arguments") or ""
            # Some servers send the arguments as an object rather than the JSON string OpenAI specifies.
            call["arguments"] += arguments if isinstance(arguments, str) else json.dumps(arguments)

    def tool_calls(self) -> list[dict]:
        """The calls the reply made, as Message.tool_call dicts, in index order."""
        return [call_from_wire(c["name"], c["arguments"], c["id"]) for _, c in sorted(self._calls.items())]

    def end(self) -> tuple[str, Optional[str]]:
        """The stream closed: (finish reason, error); a reply without a finish reason was cut off."""
        if self.finish:
            return FINISH.get(self.finish, "stop"), None
        return "error", "the connection closed before the reply was complete"
