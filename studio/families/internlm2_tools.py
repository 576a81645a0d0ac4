"""InternLM2-Chat's native tool format: the plugin and interpreter turns, calls and results, built
token-exactly; the ids that end a tool step and the markers a decoder must keep.

The format is the one in InternLM's `chat/chat_format.md` (ChatML plus an `environment` role):

    <|im_start|>system name=<|plugin|>\\n[...functions...]<|im_end|>\\n
    <|im_start|>assistant\\ntext<|action_start|><|plugin|>\\n{"name": …, "parameters": …}<|action_end|><|im_end|>\\n
    <|im_start|>environment name=<|plugin|>\\n{result}<|im_end|>\\n

Choices where the sources differ (all checked against chat_format.md's examples):
- The plugin turn lists each function as OpenAI has it (name, description, full `parameters` with
  optional ones and `required`), as the official example does; lagent keeps only the required
  parameters, which hides optional ones from the model, so that is not done here. The JSON is
  indented by 4, as both the example and lagent write it. A template (lagent's PLUGIN_PROMPT_CN) may
  wrap it.
- After `<|action_end|>` a plugin call is closed with `<|im_end|>` directly and an interpreter call with
  "\\n<|im_end|>", exactly as the two official examples write them.
- Conversations are plain dicts (families may not import studio.tools):
  {"role": "system"|"user"|"assistant"|"environment", "content": str,
   "name": "plugin"|"interpreter" (system, environment) or "file" (user),
   "tool_call": {"kind": "plugin", "name": str, "arguments": dict}
              | {"kind": "interpreter", "code": str}   (assistant; "raw" replaces the body verbatim)}
  No meta instruction is added: the caller passes the system turns it wants.
"""

from __future__ import annotations

import json
from types import MappingProxyType
from typing import Any, Iterable, Mapping, Optional, Sequence

from studio.errors import InputError
from studio.families.internlm2 import BOS, BOS_ID, IM_END, IM_END_ID, IM_START, IM_START_ID, InternLM2Family
from studio.families.plain_text import plain_ids

ACTION_START, ACTION_END = "<|action_start|>", "<|action_end|>"
INTERPRETER, PLUGIN = "<|interpreter|>", "<|plugin|>"
ACTION_START_ID, ACTION_END_ID, INTERPRETER_ID, PLUGIN_ID = 92541, 92540, 92539, 92538

# Every special token this format places, by name (chat_format.md's table).
SPECIAL_IDS: Mapping[str, int] = MappingProxyType({
    IM_START: IM_START_ID, IM_END: IM_END_ID, ACTION_START: ACTION_START_ID, ACTION_END: ACTION_END_ID,
    INTERPRETER: INTERPRETER_ID, PLUGIN: PLUGIN_ID})
# What a decoder must write out as text so the parser sees the call (other special ids are skipped).
KEPT_MARKERS: Mapping[int, str] = MappingProxyType({
    ACTION_START_ID: ACTION_START, ACTION_END_ID: ACTION_END, INTERPRETER_ID: INTERPRETER, PLUGIN_ID: PLUGIN})
KIND_MARKERS: Mapping[str, str] = MappingProxyType({"plugin": PLUGIN, "interpreter": INTERPRETER})

# chat_format.md's interpreter system prompt (English), as the model was shown it.
INTERPRETER_PROMPT = "\n".join([
    ("You now have access to a Jupyter notebook environment supporting Python code execution. Just send code "
     "to python to run in this stateful environment. This feature is suitable for:"),
    "- Data analysis or processing (such as data manipulation and graphic creation)",
    "- Complex calculations (such as math and physics problems)",
    "- Programming examples (for understanding programming concepts or language features)",
    "- Text processing and analysis (including text analysis and natural language processing)",
    "- Machine learning and data science (model training and data visualization)",
    "- File operations and data import (handling CSV, JSON, etc. formats)",
])
# lagent's Chinese prompts (agents/internlm2_agent.py), the ones the lesson's demo used.
META_PROMPT_CN = "当开启工具以及代码时，根据需求选择合适的工具进行调用"
INTERPRETER_PROMPT_CN = (
    "你现在已经能够在一个有状态的 Jupyter 笔记本环境中运行 Python 代码。当你向 python 发送含有 Python 代码的消息时，"
    "它将在该环境中执行。这个工具适用于多种场景，如数据分析或处理（包括数据操作、统计分析、图表绘制），"
    "复杂的计算问题（解决数学和物理难题），编程示例（理解编程概念或特性），文本处理和分析（比如文本解析和自然语言处理），"
    "机器学习和数据科学（用于展示模型训练和数据可视化），以及文件操作和数据导入（处理CSV、JSON等格式的文件）。")
PLUGIN_PROMPT_CN = ("你可以使用如下工具：\n{prompt}\n如果你已经获得足够信息，请直接给出答案. 避免不必要的工具调用! "
                    "同时注意你可以使用的工具，不要随意捏造！")

_NAMES = MappingProxyType({"system": ("plugin", "interpreter"), "environment": ("plugin", "interpreter"),
                           "user": ("file",), "assistant": ()})
_HINT = "Build the conversation from dicts with role, content, and optionally name or tool_call."


# ---------------------------------------------------------------- turn contents


def _function(tool: Mapping[str, Any]) -> dict:
    """The function part of an OpenAI `tools` entry (or a bare function schema)."""
    shown = json.dumps(tool, ensure_ascii=False, default=str)[:200]
    hint = 'Give each tool as {"type": "function", "function": {"name": …, "description": …, "parameters": {…}}}.'
    if tool.get("type", "function") != "function":
        raise InputError(f"Tool entry {shown} is of type {tool.get('type')!r}; only function tools exist.", hint)
    fn = tool.get("function", tool)
    if not isinstance(fn, Mapping) or not isinstance(fn.get("name"), str) or not fn["name"]:
        raise InputError(f"Tool entry {shown} has no function name.", hint)
    out = {"name": fn["name"], "description": str(fn.get("description") or "")}
    out["parameters"] = dict(fn.get("parameters") or {"type": "object", "properties": {}, "required": []})
    return out


def plugin_turn_content(tools: Iterable[Mapping[str, Any]], template: Optional[str] = None) -> str:
    """The `system name=<|plugin|>` content: the functions as an indented JSON list, optionally put into
    `template` at "{prompt}" (e.g. PLUGIN_PROMPT_CN)."""
    listing = json.dumps([_function(t) for t in tools], ensure_ascii=False, indent=4)
    if template is None:
        return listing
    if "{prompt}" not in template:
        raise InputError("The plugin prompt has no {prompt} placeholder for the tool list.",
                         "Put {prompt} where the tools should be listed, or leave the plugin prompt empty.")
    return template.replace("{prompt}", listing)


def file_turn_content(files: Iterable[Mapping[str, Any]]) -> str:
    """The `user name=file` content: [{"path": …, "size": …}, …] as JSON."""
    return json.dumps([dict(f) for f in files], ensure_ascii=False)


def call_body(call: Mapping[str, Any]) -> str:
    """What follows `<|action_start|><|plugin|>` or `<|interpreter|>` up to `<|action_end|>`."""
    if isinstance(call.get("raw"), str) and call["raw"]:
        return call["raw"]
    if call.get("kind") == "interpreter":
        code = call.get("code", call.get("arguments"))
        if not isinstance(code, str):
            raise InputError("An interpreter call has no code.", 'Give it as {"kind": "interpreter", "code": "…"}.')
        return f"\n```python\n{code}\n```"
    name, args = call.get("name"), call.get("arguments", {})
    if not isinstance(name, str) or not name:
        raise InputError("A plugin call has no tool name.",
                         'Give it as {"kind": "plugin", "name": "tool", "arguments": {…}}.')
    return "\n" + json.dumps({"name": name, "parameters": args}, ensure_ascii=False)


# ---------------------------------------------------------------- the prompt as segments


def _check(message: Mapping[str, Any], index: int) -> None:
    """Raise InputError for a message this format cannot render."""
    role, name = message.get("role"), message.get("name")
    if role not in _NAMES:
        raise InputError(f"Message {index + 1} has role {role!r}; roles are system, user, assistant, environment.",
                         _HINT)
    if not isinstance(message.get("content", ""), str):
        raise InputError(f"Message {index + 1} ({role}) has content that is not text.", _HINT)
    if name is not None and name not in _NAMES[role]:
        allowed = ", ".join(_NAMES[role]) or "none"
        raise InputError(f"Message {index + 1} ({role}) has name {name!r}; names allowed here: {allowed}.", _HINT)
    call = message.get("tool_call")
    if call is not None and (role != "assistant" or not isinstance(call, Mapping)
                             or call.get("kind") not in KIND_MARKERS):
        raise InputError(f"Message {index + 1} ({role}) has a tool_call this format cannot write.",
                         'Only assistant messages carry a tool_call, of kind "plugin" or "interpreter".')


def _name_marker(role: str, name: str) -> list[tuple[bool, str]]:
    """` name=<|plugin|>` (a special token) or ` name=file` (text) after the role."""
    if name in KIND_MARKERS:
        return [(False, " name="), (True, KIND_MARKERS[name])]
    return [(False, f" name={name}")]


def segments(messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = True,
             bos: bool = True) -> list[tuple[bool, str]]:
    """The prompt as (is_special, text) pieces; special pieces are token names placed by id."""
    out: list[tuple[bool, str]] = [(True, BOS)] if bos else []
    for index, message in enumerate(messages):
        _check(message, index)
        role, name, call = message["role"], message.get("name"), message.get("tool_call")
        out += [(True, IM_START), (False, role)]
        out += _name_marker(role, name) if name else []
        out.append((False, "\n" + message.get("content", "")))
        if call is not None:
            out += [(True, ACTION_START), (True, KIND_MARKERS[call["kind"]]), (False, call_body(call)),
                    (True, ACTION_END)]
            out += [(False, "\n")] if call["kind"] == "interpreter" else []
        out += [(True, IM_END), (False, "\n")]
    if add_generation_prompt:
        out += [(True, IM_START), (False, "assistant\n")]
    return out


def render_text(messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = True, bos: bool = True) -> str:
    """The prompt as text (for display and debugging; the model gets `render_ids`)."""
    return "".join(text for _, text in segments(messages, add_generation_prompt, bos))


def render_ids(tokenizer: Any, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = True,
               bos: bool = True) -> list[int]:
    """The prompt's ids: each special token as its single id, the text between them encoded as plain text."""
    ids: list[int] = []
    pending = ""
    for special, text in segments(messages, add_generation_prompt, bos):
        if not special:
            pending += text  # text between two special tokens is encoded in one piece, as officially
            continue
        ids += plain_ids(tokenizer, pending)
        pending = ""
        ids.append(BOS_ID if text == BOS else SPECIAL_IDS[text])
    return ids + plain_ids(tokenizer, pending)


# ---------------------------------------------------------------- the studio's messages in this format

INTERPRETER_TOOL = "python"  # the interpreter, as a tool name: declared in its own system turn


def native_messages(messages: Sequence[Any], tools: Sequence[Mapping[str, Any]] = ()) -> list[dict]:
    """The studio's Messages (studio.core.types) as this format's dicts, with `tools` declared after the first
    system turn: the interpreter (a tool named "python") in its own turn, the other tools in the plugin turn.

    A system message named "interpreter" gives that turn's prompt; one named "plugin" gives the template
    (`{prompt}` where the tool list goes, as lagent's PLUGIN_PROMPT_CN) — the agent tab's editable prompts."""
    given = {m.name: m.text for m in messages if m.role == "system" and m.name in ("plugin", "interpreter")}
    plugins = [t for t in tools if _function(t).get("name") != INTERPRETER_TOOL]
    declared = ([{"role": "system", "name": "interpreter", "content": given.get("interpreter") or INTERPRETER_PROMPT}]
                if len(plugins) < len(tools) else [])
    if plugins:
        content = plugin_turn_content(plugins, given.get("plugin") or None)
        declared.append({"role": "system", "name": "plugin", "content": content})
    out: list[dict] = []
    for m in messages:
        if m.role == "system" and m.name in given:
            continue  # a prompt for a declared turn, placed with it above
        item: dict = {"role": "environment" if m.role == "tool" else m.role, "content": m.text}
        if m.name:
            item["name"] = m.name
        if m.tool_call:
            item["tool_call"] = dict(m.tool_call)
        out.append(item)
    at = 1 if out and out[0]["role"] == "system" and not out[0].get("name") else 0
    return out[:at] + declared + out[at:]


# ---------------------------------------------------------------- stops and decoding


def tool_stop_token_ids(tokenizer: Any = None, generation_config: Any = None) -> list[int]:
    """The family's stops plus `<|action_end|>`, which ends a step that calls a tool."""
    stops = InternLM2Family().stop_token_ids(tokenizer, generation_config)
    return stops + ([ACTION_END_ID] if ACTION_END_ID not in stops else [])


def marker_for_id(token_id: int) -> Optional[str]:
    """The marker text a decoder writes for a tool-format id, None for any other id."""
    return KEPT_MARKERS.get(int(token_id))


def decode_keeping_markers(tokenizer: Any, ids: Iterable[int]) -> str:
    """Text of `ids` with the tool markers written out and every other special token skipped."""
    parts, run = [], []
    for token_id in (int(i) for i in ids):
        marker = KEPT_MARKERS.get(token_id)
        if marker is None:
            run.append(token_id)
            continue
        parts += [tokenizer.decode(run, skip_special_tokens=True)] if run else []
        parts.append(marker)
        run = []
    parts += [tokenizer.decode(run, skip_special_tokens=True)] if run else []
    return "".join(parts)
