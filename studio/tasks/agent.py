"""The agent (智能体): a model that calls tools step by step, on the turn loop, saved as it goes.

A model with a native tool-call format (InternLM2) gets the tools declared in its own turns and its calls
are parsed from the markers it writes; any other model gets the ReAct text protocol. Each step is stored
with the conversation: the assistant's message carrying the call, then the tool's result.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any, Iterator, Optional, Union

from studio.core.session import ChatSession
from studio.core.types import GenParams, Message, Notice, TextDelta
from studio.errors import InputError
from studio.families.internlm2_tools import (  # noqa: F401  (the tab's hints)
    INTERPRETER_PROMPT, META_PROMPT_CN, PLUGIN_PROMPT_CN,
)
from studio.services import Services
from studio.tasks import turn
from studio.tasks.user_text import validate_prompt, validate_system_prompt
from studio.tools.base import Tool, ToolResult

MAX_STEPS = 20
REACT_STOPS = ("Response:", "Observation:")  # a ReAct model stops here, so the tool answers, not the model


@dataclass(frozen=True)
class AgentOptions:
    """What one run of the agent may do."""

    tools: tuple[str, ...] = ()  # plugin tools by name (the interpreter is the `interpreter` switch)
    interpreter: bool = True
    max_steps: int = 5
    # The lesson's editable prompts ("": the official ones): the plugin prompt wraps the tool list ({prompt}).
    plugin_prompt: str = ""
    interpreter_prompt: str = ""
    params: GenParams = field(default_factory=lambda: GenParams(max_new_tokens=512, do_sample=False))


@dataclass(frozen=True)
class StepUpdate:
    """A tool step as it stands: the call (an assistant message) and, once it has run, its result."""

    index: int
    call: Message
    result: Optional[Message] = None


AgentEvent = Union[Notice, TextDelta, StepUpdate]


def engine_name(services: Services) -> str:
    """The engine behind the agent tab: one named `agent` if configured, else the chat engine."""
    return "agent" if "agent" in services.config.engines else "chat"


def new_session(services: Services) -> ChatSession:
    """A fresh agent conversation."""
    name = engine_name(services)
    return ChatSession(engine=name, params=services.config.engines[name].defaults)


def run(services: Services, user_id: str, session: ChatSession, text: str, options: AgentOptions,
        cancel: Optional[threading.Event] = None) -> Iterator[AgentEvent]:
    """Ask the agent: the user's message is stored at once, then each step as it ends, then the answer."""
    text = validate_prompt(services, text)
    cancel = cancel or threading.Event()
    steps = max(1, min(int(options.max_steps), MAX_STEPS))
    session.messages.append(Message.of("user", text))
    _save(services, user_id, session)
    tools = services.tools.tools(user_id, session.id, options.tools, options.interpreter)
    try:
        engine = yield from turn.ready_engine(services, session.engine, cancel)
        if engine is None:
            return
        native = engine.tools
        for index in range(steps):
            last = index == steps - 1
            reply, call = yield from _step(services, user_id, session, tools, options, native, last, cancel)
            if cancel.is_set() or call is None:
                if reply or not cancel.is_set():  # a reply stopped before its first word leaves nothing
                    session.messages.append(Message.of("assistant", reply, partial=cancel.is_set()))
                return
            yield from _call(services, user_id, session, tools, index, reply, call, cancel)
            if cancel.is_set():
                return
        session.messages.append(Message.of("assistant", f"(Stopped after {steps} steps without a final answer.)"))
    finally:
        _save(services, user_id, session)


def _step(services: Services, user_id: str, session: ChatSession, tools: dict[str, Tool], options: AgentOptions,
          native: bool, last: bool, cancel: threading.Event) -> Iterator[AgentEvent]:
    """One model turn, its text streamed (without call markers) and checkpointed; returns (its text, the call
    it made or None)."""
    if native:
        return (yield from _native_step(services, user_id, session, tools, options, cancel))
    return (yield from _react_step(services, user_id, session, tools, options, last, cancel))


def _checkpoint(services: Services, user_id: str, session: ChatSession, text: Any):
    """A turn-loop checkpoint: the step's text so far (`text()`) stored as a partial reply, so a crash keeps it."""
    def save(reply: turn.Reply) -> None:
        partial = [*session.messages, Message.of("assistant", text(reply), partial=True)]
        stored = replace(session, messages=partial)
        stored.touch()
        services.agent_store.save(user_id, stored)

    return save


def _native_step(services, user_id, session, tools, options, cancel) -> Iterator[AgentEvent]:
    from studio.families.internlm2_tool_parser import NativeToolParser, ReplyText

    parser, shown, given = NativeToolParser(), [], None
    specs = tuple(t.spec.openai() for t in tools.values())
    messages = _with_tool_prompts(session.prompt_messages(), options)
    events = turn.run(services, session.engine, messages, options.params, cancel, tools=specs,
                      checkpoint=_checkpoint(services, user_id, session, lambda reply: "".join(shown)))
    for event in turn.shown(events):
        if isinstance(event, TextDelta):
            # A remote server hands its call over already parsed; a local model writes markers into the text.
            given = given or event.tool_call
            pieces = [e.text for e in parser.feed(event.text) if isinstance(e, ReplyText)]
            if event.finish_reason:
                pieces += [e.text for e in parser.finish() if isinstance(e, ReplyText)]
            shown += pieces
            event = TextDelta("".join(pieces), event.finish_reason, event.error, event.completion_tokens,
                              event.prompt_tokens)
        if isinstance(event, TextDelta) and event.finish_reason == "error":
            _failed(session, "".join(shown), event.error)
        yield event
    found = parser.call
    if given is not None:
        return "".join(shown).strip(), dict(given)
    return "".join(shown).strip(), None if found is None else _native_call(found)


def _with_tool_prompts(messages: list[Message], options: AgentOptions) -> list[Message]:
    """The edited plugin and interpreter prompts as named system messages (the engine places them)."""
    head = []
    for name, text in (("interpreter", options.interpreter_prompt), ("plugin", options.plugin_prompt)):
        if text.strip():
            prompt = Message.of("system", text)
            prompt.name = name
            head.append(prompt)
    return head + messages if head else messages


def _react_step(services, user_id, session, tools, options, last, cancel) -> Iterator[AgentEvent]:
    from studio.tools import react

    system = react.react_system_prompt([t.spec for t in tools.values()]) if tools else ""
    messages = _react_messages(session.prompt_messages(), system, last)
    params = options.params.model_copy(update={"stop": REACT_STOPS})
    saver = _checkpoint(services, user_id, session, lambda reply: reply.text)
    reply = yield from turn.shown(turn.run(services, session.engine, messages, params, cancel, checkpoint=saver))
    if reply.failed:
        _failed(session, reply.text, reply.error)
    step = react.parse_react(reply.text, list(tools))
    if step.is_final:
        return step.final_answer.strip(), None
    if step.problem:  # off the format: the model is told what was wrong and asked again (a bounded retry)
        return step.thought, {"kind": "plugin", "name": step.action or "?", "arguments": None,
                              "raw": reply.text, "problem": react.react_retry(step.problem)}
    return step.thought, {"kind": "interpreter" if step.action == "python" else "plugin", "name": step.action,
                          "arguments": step.arguments, "raw": step.action_input}


def _failed(session: ChatSession, text: str, error: Optional[str]) -> None:
    """The model broke off: what it wrote is kept (labelled partial) and the failure is said."""
    if text.strip():
        session.messages.append(Message.of("assistant", text, partial=True))
    raise InputError(f"The model failed: {error}", "Try again; if it repeats, check the model.")


def _native_call(found: Any) -> dict:
    """A native call as the message's tool_call (the interpreter's code as its arguments)."""
    call = {"kind": found.kind, "name": found.name or "python", "raw": found.raw}
    if found.kind == "interpreter":
        call["code"] = found.arguments if isinstance(found.arguments, str) else found.raw
    else:
        call["arguments"] = found.arguments
    if found.problem:
        call["problem"] = found.problem
    return call


def _react_messages(messages: list[Message], system: str, last: bool) -> list[Message]:
    """The conversation for a ReAct model: the protocol in the system prompt, calls and results as text."""
    from studio.tools import react

    out = []
    for m in messages:
        if m.role == "tool":
            out.append(Message.of("user", react.react_observation(ToolResult(text=m.text, error=(m.meta or {}).get(
                "error", "")))))
        elif m.tool_call:
            call = m.tool_call
            out.append(Message.of("assistant", f"Thought: {m.text}\nAction: {call.get('name')}\nAction Input: "
                                               f"{call.get('raw') or call.get('arguments')}"))
        else:
            out.append(m)
    if system:
        head = f"{out[0].text}\n\n{system}" if out and out[0].role == "system" else system
        out = [Message.of("system", head), *(out[1:] if out and out[0].role == "system" else out)]
    if last:
        out.append(Message.of("user", react.react_force_stop()))
    return out


def _call(services: Services, user_id: str, session: ChatSession, tools: dict[str, Tool], index: int, thought: str,
          call: dict, cancel: threading.Event) -> Iterator[AgentEvent]:
    """Run one tool call; the call and its result are stored as two messages."""
    asked = Message.of("assistant", thought)
    asked.tool_call, asked.meta = call, {"status": "running"}
    session.messages.append(asked)
    _save(services, user_id, session)
    yield StepUpdate(index, asked)
    started = time.monotonic()
    result = _run_tool(tools, call, cancel)
    status = "cancelled" if cancel.is_set() else ("error" if result.error else "done")
    asked.meta = {"status": status, "seconds": round(time.monotonic() - started, 2)}
    saved = _store_images(services, user_id, session, index, result.images)
    answer = Message.of("tool", result.text if not result.error else f"{result.text}\n{result.error}".strip())
    answer.name = "interpreter" if call["kind"] == "interpreter" else "plugin"
    answer.meta = {"status": status, "error": result.error, "images": saved, "tool": call.get("name"),
                   "seconds": round(result.seconds, 2)}
    session.messages.append(answer)
    _save(services, user_id, session)
    yield StepUpdate(index, asked, answer)


def _run_tool(tools: dict[str, Tool], call: dict, cancel: threading.Event) -> ToolResult:
    """The result of a call; a bad call (unknown tool, unreadable arguments) is an error result the model sees."""
    if call.get("problem"):
        return ToolResult(error=f"The call could not be read: {call['problem']}")
    name = "python" if call["kind"] == "interpreter" else call.get("name")
    tool = tools.get(name)
    if tool is None:
        known = ", ".join(tools) or "none"
        return ToolResult(error=f"There is no tool {name!r}; the tools are: {known}.")
    arguments = call.get("code") if name == "python" and "code" in call else call.get("arguments")
    try:
        return tool.run(arguments, cancel)
    except Exception as exc:  # a tool must never take the agent down: the model is told, the loop goes on
        return ToolResult(error=f"{name} failed: {type(exc).__name__}: {exc}")


def _store_images(services: Services, user_id: str, session: ChatSession, index: int,
                  images: tuple[bytes, ...]) -> list[str]:
    """Figures a tool made, kept with the conversation (private, never swept); their paths."""
    return [str(services.tools.save_figure(user_id, session.id, f"step{index + 1}-{k + 1}.png", data))
            for k, data in enumerate(images)]


def _save(services: Services, user_id: str, session: ChatSession) -> None:
    session.touch()
    services.agent_store.save(user_id, session)  # kept apart from the chat tab's list


def clear(services: Services, user_id: str, session: ChatSession) -> None:
    """Empty the conversation and stop its interpreter (its variables go with it)."""
    services.tools.forget(user_id, session.id)
    session.messages.clear()
    services.agent_store.delete(user_id, session.id)


def check_options(services: Services, tools: Any, interpreter: Any, max_steps: Any) -> AgentOptions:
    """The tab's controls as AgentOptions, or InputError naming what is wrong."""
    known = set(services.tools.names())
    names = tuple(tools or ())
    unknown = [n for n in names if n not in known]
    if unknown:
        raise InputError(f"Unknown tool(s): {', '.join(map(str, unknown))}.", f"Pick from: {', '.join(known) or 'none'}.")
    try:
        steps = int(max_steps)
    except (TypeError, ValueError):
        raise InputError(f"Max steps must be a number, not {max_steps!r}.", f"Use 1 to {MAX_STEPS}.") from None
    if not 1 <= steps <= MAX_STEPS:
        raise InputError(f"Max steps is {steps}; it must be 1 to {MAX_STEPS}.", "Lower it.")
    return AgentOptions(names, bool(interpreter), steps)


def with_prompts(services: Services, options: AgentOptions, plugin_prompt: Any, interpreter_prompt: Any) -> AgentOptions:
    """`options` with the tab's edited prompts (checked as typed text; a plugin prompt needs `{prompt}`)."""
    plugin = validate_system_prompt(services, plugin_prompt or "")
    if plugin.strip() and "{prompt}" not in plugin:
        raise InputError("The plugin prompt has no {prompt}, where the list of tools goes.",
                         "Add {prompt} to it, or empty it to use the official prompt.")
    return replace(options, plugin_prompt=plugin,
                   interpreter_prompt=validate_system_prompt(services, interpreter_prompt or ""))
