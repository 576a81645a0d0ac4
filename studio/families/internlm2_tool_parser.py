"""Incremental parsing of an InternLM2-Chat reply that may call a tool in the native format.

Fed the reply's text as it streams (with the markers written out, see internlm2_tools.KEPT_MARKERS),
a NativeToolParser emits events: text to show (markers never shown), a call starting (its kind, then
its name as soon as the JSON has it), the call's body as it grows, and the finished call. Only the
first call is meant to run; any later one is reported as ignored.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Optional, Union

from studio.families.internlm2 import IM_END, IM_START
from studio.families.internlm2_tools import ACTION_END, ACTION_START, INTERPRETER, PLUGIN

_MARKERS = (ACTION_START, ACTION_END, PLUGIN, INTERPRETER, IM_END, IM_START)
_KINDS = MappingProxyType({PLUGIN: "plugin", INTERPRETER: "interpreter"})
# The official format writes the name first: {"name": "…", "parameters": …}; that is what streams early.
_NAME_FIRST = re.compile(r'\s*\{\s*"name"\s*:\s*("(?:[^"\\]|\\.)*")')
_FENCE = re.compile(r"^\s*```[^\n`]*\n?(.*?)(?:\n?```\s*)?$", re.S)


@dataclass(frozen=True)
class NativeCall:
    """A call the model wrote: `arguments` is a dict (plugin) or the code (interpreter); `problem` is
    empty when the call can run, else says what was wrong (then `arguments` holds the raw text)."""

    kind: str  # "plugin" | "interpreter"
    name: str
    arguments: Any
    raw: str  # exactly what came between the kind marker and <|action_end|>
    problem: str = ""
    closed: bool = True  # False when the reply ended before <|action_end|>

    def as_tool_call(self) -> dict:
        """The call as a rendering `tool_call` dict; `raw` keeps the prompt exactly as the model wrote it."""
        key = "code" if self.kind == "interpreter" else "arguments"
        return {"kind": self.kind, "name": self.name, key: self.arguments, "raw": self.raw}


@dataclass(frozen=True)
class ReplyText:
    """Reply text to show."""

    text: str


@dataclass(frozen=True)
class CallStarted:
    """A call began; `name` is known at once for the interpreter, later (CallNamed) for a plugin."""

    kind: str
    name: str = ""


@dataclass(frozen=True)
class CallNamed:
    """The plugin call's tool name, as soon as the streamed JSON has it."""

    kind: str
    name: str


@dataclass(frozen=True)
class CallDelta:
    """More of the call's body (JSON or code) as it streams, for showing it being written."""

    kind: str
    text: str


@dataclass(frozen=True)
class CallFinished:
    """A complete call; `ignored` for any call after the first (only the first one runs)."""

    call: NativeCall
    ignored: bool = False


Event = Union[ReplyText, CallStarted, CallNamed, CallDelta, CallFinished]


def _held_suffix(text: str) -> int:
    """Length of the longest end of `text` that could be the start of a marker split across pieces."""
    for size in range(min(len(text), max(map(len, _MARKERS)) - 1), 0, -1):
        tail = text[-size:]
        if any(m.startswith(tail) for m in _MARKERS):
            return size
    return 0


def _split(buffer: str, final: bool) -> tuple[list[tuple[bool, str]], str]:
    """(is_marker, text) items found in `buffer`, and the end kept back until the next piece."""
    items: list[tuple[bool, str]] = []
    while buffer:
        found = [(i, m) for m in _MARKERS if (i := buffer.find(m)) >= 0]
        if not found:
            keep = 0 if final else _held_suffix(buffer)
            items += [(False, buffer[:len(buffer) - keep])] if len(buffer) > keep else []
            return items, buffer[len(buffer) - keep:]
        index, marker = min(found)
        items += [(False, buffer[:index])] if index else []
        items.append((True, marker))
        buffer = buffer[index + len(marker):]
    return items, ""


def _json_string(quoted: str) -> str:
    """A JSON string literal's value ("" when its escapes are invalid)."""
    try:
        return json.loads(quoted)
    except json.JSONDecodeError:
        return ""


def plugin_call(raw: str, closed: bool = True) -> NativeCall:
    """A plugin call from its JSON body; invalid JSON gives a call with the raw text and a problem."""
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        match = _NAME_FIRST.match(raw)
        name = _json_string(match.group(1)) if match else ""
        cut = "" if closed else " (the reply ended before the call was complete)"
        return NativeCall("plugin", name, raw, raw, f"The call's arguments are not valid JSON: {exc}{cut}.", closed)
    if not isinstance(data, dict) or not isinstance(data.get("name"), str) or not data["name"]:
        return NativeCall("plugin", "", raw, raw, 'The call is not a JSON object {"name": …, "parameters": {…}}.',
                          closed)
    args = data.get("parameters", data.get("arguments", {}))
    if isinstance(args, str):  # some replies put the arguments in as a JSON string
        try:
            args = json.loads(args)
        except json.JSONDecodeError:
            pass
    if not isinstance(args, dict):
        return NativeCall("plugin", data["name"], raw, raw, "The call's parameters are not a JSON object.", closed)
    return NativeCall("plugin", data["name"], args, raw, "", closed)


def interpreter_call(raw: str, name: str, closed: bool = True) -> NativeCall:
    """An interpreter call: the code inside the ```python fence (or the whole body when unfenced)."""
    match = _FENCE.match(raw)
    code = (match.group(1) if match else raw).strip("\n")
    problem = "" if code.strip() else "The interpreter call has no code."
    return NativeCall("interpreter", name, code if code.strip() else raw, raw, problem, closed)


class NativeToolParser:
    """Feed reply pieces with `feed`, then call `finish`; both return the events the new text makes."""

    def __init__(self, interpreter_name: str = "python") -> None:
        self.interpreter_name = interpreter_name
        self.text = ""  # the reply's text before the first call, exactly as written
        self.calls: list[NativeCall] = []  # every call, the first one first
        self.ended = False  # True once <|im_end|> was seen: anything after it is not the reply
        self._buffer = ""
        self._state = "text"  # "text" | "head" (after <|action_start|>) | "body"
        self._kind = ""
        self._body = ""
        self._named = False

    @property
    def call(self) -> Optional[NativeCall]:
        """The call to run (the first), if any."""
        return self.calls[0] if self.calls else None

    def assistant_message(self) -> dict:
        """The reply as a rendering message: the text before the call, and the first call if any."""
        message: dict = {"role": "assistant", "content": self.text}
        if self.call is not None:
            message["tool_call"] = self.call.as_tool_call()
        return message

    def feed(self, piece: str) -> list[Event]:
        """Events for one more piece of streamed text."""
        items, self._buffer = _split(self._buffer + piece, final=False)
        return self._consume(items)

    def finish(self) -> list[Event]:
        """Events for the end of the reply: held text comes out, an unclosed call is closed."""
        items, self._buffer = _split(self._buffer, final=True)
        events = self._consume(items)
        if self._state == "body" and not self.ended:
            events += self._close(closed=False)
        self._state = "text"
        self.ended = True
        return events

    def _consume(self, items: list[tuple[bool, str]]) -> list[Event]:
        events: list[Event] = []
        for is_marker, text in items:
            if self.ended:
                break
            events += self._marker(text) if is_marker else self._text(text)
        return events

    def _text(self, text: str) -> list[Event]:
        if self._state == "body":
            return self._grow(text)
        if self._state == "head":
            # <|action_start|> without a kind marker: guess the kind from the body (JSON or a fence).
            if not text.strip():
                return []
            kind = "interpreter" if text.lstrip().startswith("`") else "plugin"
            return self._start(kind) + self._grow(text)
        if self.calls:
            return []  # text after the first call is not part of this step's reply
        self.text += text
        return [ReplyText(text)]

    def _marker(self, marker: str) -> list[Event]:
        events: list[Event] = []
        if marker in (IM_END, IM_START):
            events += self._close(closed=False) if self._state == "body" else []
            self._state, self.ended = "text", True
        elif marker == ACTION_START:
            events += self._close(closed=False) if self._state == "body" else []
            self._state = "head"
        elif marker in _KINDS:
            events += self._close(closed=False) if self._state == "body" else []
            events += self._start(_KINDS[marker])
        elif marker == ACTION_END and self._state == "body":
            events += self._close(closed=True)
        elif marker == ACTION_END:
            self._state = "text"  # a stray end marker is dropped
        return events

    def _start(self, kind: str) -> list[Event]:
        self._state, self._kind, self._body = "body", kind, ""
        self._named = kind == "interpreter"
        return [CallStarted(kind, self.interpreter_name if self._named else "")]

    def _grow(self, text: str) -> list[Event]:
        self._body += text
        events: list[Event] = [CallDelta(self._kind, text)]
        if not self._named and (match := _NAME_FIRST.match(self._body)):
            self._named = True
            events.append(CallNamed(self._kind, _json_string(match.group(1))))
        return events

    def _close(self, closed: bool) -> list[Event]:
        raw = self._body
        call = plugin_call(raw, closed) if self._kind == "plugin" else interpreter_call(raw, self.interpreter_name,
                                                                                         closed)
        events: list[Event] = []
        if not self._named and call.name:
            events.append(CallNamed(self._kind, call.name))
        self.calls.append(call)
        self._state, self._body, self._named = "text", "", False
        return events + [CallFinished(call, ignored=len(self.calls) > 1)]
