"""The ReAct text protocol (Thought / Action / Action Input / Final Answer) for models without native tool calls."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from studio.errors import InputError
from studio.tools.base import ToolCall, ToolResult, ToolSpec

# The shape of lagent's CALL_PROTOCOL (react.py@511b038): tool list, the call format, the answer format.
PROTOCOL = {
    "en": """You are an assistant who can use external tools.
{tool_description}
To use a tool, reply in this format:
```
Thought: think about what you need to solve and whether a tool helps
Action: the tool name, one of [{action_names}]
Action Input: the tool's arguments as a JSON object
```
The tool's result then comes back as:
```
Response: the result of the tool call
```
If you already know the answer, or need no tool, reply in this format:
```
Thought: how you reached the final answer
Final Answer: the final answer
```
Begin!""",
    "zh": """你是一个可以调用外部工具的助手，可以使用的工具包括：
{tool_description}
如果使用工具，请遵循以下格式回复：
```
Thought: 思考你当前步骤需要解决什么问题，是否需要使用工具
Action: 工具名称，你的工具必须从 [{action_names}] 中选择
Action Input: 工具的输入参数，写成一个 JSON 对象
```
工具返回的结果格式如下：
```
Response: 调用工具后的结果
```
如果你已经知道了答案，或者你不需要工具，请遵循以下格式回复：
```
Thought: 给出最终答案的思考过程
Final Answer: 最终答案
```
开始!""",
}
RETRY = {
    "en": "Your reply did not follow the format: {problem}. Reply either with Thought, Action and Action Input "
          "(a JSON object), or with Thought and Final Answer.",
    "zh": "你的回复没有遵循格式：{problem}。请用 Thought、Action 和 Action Input（一个 JSON 对象）调用工具，"
          "或者用 Thought 和 Final Answer 给出最终答案。",
}
FORCE_STOP = {"en": "You should now give the final answer directly, based on what you have so far.",
              "zh": "你需要基于历史消息直接给出最终答案。"}

# Markers at a line's start; tolerant of indentation, list dashes, **bold**, case, full-width colons,
# and the Chinese names a model may write when prompted in Chinese.
_ALIASES = {"thought": "thought", "思考": "thought", "action input": "input", "actioninput": "input",
            "action_input": "input", "行动输入": "input", "动作输入": "input", "工具输入": "input",
            "action": "action", "行动": "action", "动作": "action", "final answer": "final", "final_answer": "final",
            "最终答案": "final", "response": "response", "observation": "response", "观察": "response"}
_NAMES = "|".join(sorted((re.escape(a).replace(r"\ ", r"[ \t]+") for a in _ALIASES), key=len, reverse=True))
MARKER = re.compile(rf"^[ \t>*\-]*\**[ \t]*({_NAMES})[ \t]*\**[ \t]*[:：][ \t]*\**[ \t]*", re.I | re.M)
INLINE_FINAL = re.compile(r"(?<![A-Za-z])(final[ \t]+answer|最终答案)[ \t]*\**[ \t]*[:：][ \t]*\**[ \t]*", re.I)
FENCE_LINE = re.compile(r"^[ \t]*```[\w+-]*[ \t]*$")
TRIGGERS = ":：}`"  # a marker's colon, a JSON object's end, a closing fence


@dataclass(frozen=True)
class ReactStep:
    """One parsed reply: a thought plus either an action (tool + arguments), a final answer, or a format problem."""

    thought: str = ""
    action: str = ""
    arguments: Any = None  # a dict when the Action Input was JSON, else its raw text (e.g. code)
    action_input: str = ""  # the Action Input exactly as written (fences stripped)
    final_answer: str | None = None
    problem: str = ""  # what is wrong with the format; empty when the step is usable

    @property
    def is_final(self) -> bool:
        """True when the reply is a final answer."""
        return self.final_answer is not None and not self.problem

    @property
    def is_action(self) -> bool:
        """True when the reply calls a tool."""
        return bool(self.action) and not self.problem

    def call(self) -> ToolCall:
        """The tool call this step asks for."""
        return ToolCall(name=self.action, arguments=self.arguments, raw=self.action_input)


def _name_for(marker: str) -> str:
    return _ALIASES[re.sub(r"[ \t]+", " ", marker.lower())]


def react_system_prompt(specs: list[ToolSpec], lang: str = "en", template: str | None = None) -> str:
    """The ReAct system prompt listing `specs`; `template` (with {tool_description}/{action_names}) overrides."""
    if lang not in PROTOCOL:
        raise InputError(f"Unknown prompt language {lang!r}.", f"Use one of: {', '.join(PROTOCOL)}.")
    if not specs:
        raise InputError("The ReAct prompt needs at least one tool.", "Pick a tool, or chat without the agent.")
    description = "\n".join(json.dumps({"name": s.name, "description": s.description, "parameters": s.parameters},
                                       ensure_ascii=False) for s in specs)
    names = ", ".join(s.name for s in specs)
    # replace, not str.format: an edited prompt may hold JSON braces of its own
    return (template or PROTOCOL[lang]).replace("{tool_description}", description).replace("{action_names}", names)


def react_retry(problem: str, lang: str = "en") -> str:
    """The "please follow the format" message sent back after a reply that could not be parsed."""
    return RETRY.get(lang, RETRY["en"]).format(problem=problem.rstrip("."))


def react_force_stop(lang: str = "en") -> str:
    """Appended on the last allowed step: answer now, with what you have."""
    return FORCE_STOP.get(lang, FORCE_STOP["en"])


def react_observation(result: ToolResult) -> str:
    """The text fed back after an Action Input: the tool's result (or its error) as a Response."""
    parts = [result.text.strip()] if result.text.strip() else []
    if result.images:
        parts.append(f"[{len(result.images)} image(s) shown to the user]")
    if result.error:
        parts.append(f"Error: {result.error}")
    return "Response: " + ("\n".join(parts) or "(no output)") + "\n"


def parse_react(text: str, names: list[str] | None = None) -> ReactStep:
    """Parse one model reply; `names` (the tools offered) turns an unknown tool into a format problem."""
    marks = list(MARKER.finditer(text))
    thought: list[str] = []
    for i, mark in enumerate(marks):
        kind, end = _name_for(mark.group(1)), _section_end(marks, i, text)
        if kind == "response":  # the model invented a tool result: nothing after it counts
            break
        if kind == "final":
            return _final_step(_join(thought), text[mark.end():])
        if kind == "thought":
            inline = INLINE_FINAL.search(text, mark.end(), end)
            if inline:  # "Thought: … Final Answer: …" on one line, as lagent's prompt shows it
                thought.append(_clean(text[mark.end():inline.start()]))
                return _final_step(_join(thought), text[inline.end():])
            thought.append(_clean(text[mark.end():end]))
        elif kind == "action":
            return _action_step(_join(thought), text, marks, i, names)
        elif kind == "input":
            return ReactStep(_join(thought), problem="an Action Input came without an Action naming the tool")
    if not text.strip():
        return ReactStep(problem="the reply was empty")
    return ReactStep(_join(thought), problem="there is neither an Action nor a Final Answer")


def _final_step(thought: str, answer: str) -> ReactStep:
    answer = _clean(answer)
    return ReactStep(thought, final_answer=answer, problem="" if answer else "the Final Answer is empty")


def _section_end(marks: list[re.Match], i: int, text: str) -> int:
    return marks[i + 1].start() if i + 1 < len(marks) else len(text)


def _join(parts: list[str]) -> str:
    return " ".join(p for p in parts if p)


def _action_step(thought: str, text: str, marks: list[re.Match], i: int, names: list[str] | None) -> ReactStep:
    """The step of an Action marker (marks[i]) and the Action Input that must follow it."""
    name = _clean(text[marks[i].end():_section_end(marks, i, text)]).strip("`'\"[]<>() ").rstrip(".。")
    if not name:
        return ReactStep(thought, problem="the Action line does not name a tool")
    if names is not None and name not in names:
        return ReactStep(thought, action=name, problem=f"there is no tool {name!r}; the tools are "
                                                       f"[{', '.join(names)}]")
    if i + 1 >= len(marks) or _name_for(marks[i + 1].group(1)) != "input":
        return ReactStep(thought, action=name, problem="the Action has no Action Input on the next line")
    raw = _strip_fences(text[marks[i + 1].end():_section_end(marks, i + 1, text)])
    arguments, problem = _decode(raw)
    return ReactStep(thought, action=name, arguments=arguments, action_input=raw, problem=problem)


def _decode(raw: str) -> tuple[Any, str]:
    """JSON arguments when the input is JSON; text (code) stays text; broken JSON is a format problem."""
    if not raw.startswith(("{", "[")):
        return raw, ""
    try:
        value, end = json.JSONDecoder().raw_decode(raw)
    except json.JSONDecodeError as exc:
        return raw, f"the Action Input is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
    if raw[end:].strip():
        return raw, "the Action Input has text after its JSON object"
    return value, ""


def _strip_fences(value: str) -> str:
    lines = value.strip().splitlines()
    while lines and FENCE_LINE.match(lines[0]):
        lines.pop(0)
    while lines and FENCE_LINE.match(lines[-1]):
        lines.pop()
    return "\n".join(lines).strip()


def _clean(value: str) -> str:
    return _strip_fences(value).strip().strip("*").strip()


class ReactStream:
    """Fed a reply as it streams; `feed` returns True once the step is complete, so generation can stop there."""

    def __init__(self, names: list[str] | None = None) -> None:
        self.names = names
        self.buffer = ""
        self.end: int | None = None  # where the step ends in `buffer` once complete

    @property
    def done(self) -> bool:
        """True once an Action Input is complete (generation should stop)."""
        return self.end is not None

    @property
    def text(self) -> str:
        """The reply up to the end of the step (what the model wrote after it is dropped)."""
        return self.buffer if self.end is None else self.buffer[: self.end]

    def feed(self, delta: str) -> bool:
        """Add streamed text; True when the Action Input is complete."""
        if self.end is None:
            self.buffer += delta
            if any(c in delta for c in TRIGGERS):  # a step can only complete on one of these: skip the rescan
                self.end = _action_end(self.buffer)
        return self.done

    def step(self) -> ReactStep:
        """The step parsed from the text so far (call after `done`, or when the stream ended)."""
        return parse_react(self.text, self.names)


def _action_end(text: str) -> int | None:
    """Where a complete Action Input ends: after its JSON object, or before the next marker line."""
    marks = list(MARKER.finditer(text))
    for i, mark in enumerate(marks):
        kind = _name_for(mark.group(1))
        if kind == "final":
            return None  # a final answer runs to the end of the reply
        if kind == "response":  # the model started inventing the tool's result: stop before it
            return len(text[:mark.start()].rstrip())
        if kind == "thought" and INLINE_FINAL.search(text, mark.end(), marks[i + 1].start() if i + 1 < len(marks)
                                                     else len(text)):
            return None
        if kind == "input":
            end = _json_end(text, mark.end())
            if end is None and i + 1 < len(marks):  # the model went on to another marker: the input ended there
                end = len(text[:marks[i + 1].start()].rstrip())
            return end
    return None


def _json_end(text: str, start: int) -> int | None:
    """The end of a complete JSON object starting at `start` (after an optional ``` fence line), else None."""
    rest = text[start:]
    stripped = rest.lstrip()
    offset = start + len(rest) - len(stripped)
    fence = re.match(r"```[\w+-]*[ \t]*\n\s*", stripped)
    if fence:
        offset, stripped = offset + fence.end(), stripped[fence.end():]
    if fence and not stripped.startswith("{"):  # fenced code: complete at the closing fence
        close = re.search(r"\n[ \t]*```[ \t]*(\n|$)", "\n" + stripped)
        return offset + close.end() - 1 if close else None
    if not stripped.startswith("{"):
        return None
    try:
        _, end = json.JSONDecoder().raw_decode(stripped)
    except json.JSONDecodeError:
        return None
    return offset + end
