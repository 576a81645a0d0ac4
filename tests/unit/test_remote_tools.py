"""The remote engine passes tools through: the body's tools and history calls in OpenAI form, streamed
tool_calls assembled into a structured call, a server that refuses tools, and the agent loop on top."""

from __future__ import annotations

import json
import textwrap
import threading
from pathlib import Path

import pytest

from studio.config import load_config
from studio.core.types import GenParams, Message
from studio.engines.base import LoadContext, Placement
from studio.engines.openai_compat import RemoteOptions, load_openai_compat
from studio.engines.openai_wire import SseDecoder
from studio.services import build_services
from studio.tasks import agent
from tests.support.fake_openai import FakeOpenAI
from tests.support.agent_tools import write_tools_folder

CTX = LoadContext("chat", Placement("auto"), Path("/tmp"), lambda frac, text: None)
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


@pytest.fixture
def fake():
    with FakeOpenAI() as server:
        yield server


def stream(base_url: str, messages: list[Message], tools=(WEATHER,)) -> list:
    eng = load_openai_compat(RemoteOptions(base_url=base_url), CTX)
    try:
        return list(eng.stream(eng.prepare(messages, GenParams(max_new_tokens=50), tools=tools), threading.Event()))
    finally:
        eng.close()


def history() -> list[Message]:
    asked = Message.of("assistant", "Let me look.")
    asked.tool_call = {"kind": "plugin", "name": "get_weather", "arguments": {"city": "Paris"}, "id": "call_x"}
    result = Message.of("tool", "sunny")
    result.name = "plugin"
    ran = Message.of("assistant", "")
    ran.tool_call = {"kind": "interpreter", "name": "python", "code": "print(1)"}  # a local model's call: no id
    printed = Message.of("tool", "1")
    printed.name = "interpreter"
    return [Message.of("user", "Paris?"), asked, result, ran, printed, Message.of("user", "And tomorrow?")]


def test_tools_and_the_history_go_on_the_wire_and_streamed_calls_are_assembled(fake):
    deltas = stream(fake.base_url("toolcall"), history())
    body = fake.bodies[-1]
    assert body["tools"] == [WEATHER]
    assert body["messages"][1:5] == [
        {"role": "assistant", "content": "Let me look.", "tool_calls": [{"id": "call_x", "type": "function",
                                                                          "function": {
            "name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_x", "content": "sunny"},
        {"role": "assistant", "content": "", "tool_calls": [{"id": "call_3", "type": "function", "function": {
            "name": "python", "arguments": '{"code": "print(1)"}'}}]},
        {"role": "tool", "tool_call_id": "call_3", "content": "1"}]
    assert [d.text for d in deltas if d.text] == ["Checking."]
    (call,) = [d.tool_call for d in deltas if d.tool_call]
    assert {k: call[k] for k in ("kind", "name", "arguments", "id")} == {
        "kind": "plugin", "name": "get_weather", "arguments": {"city": "Paris"}, "id": "call_fake1"}
    assert deltas[-1].finish_reason == "stop" and deltas[-1].error is None and deltas[-1].tool_call is None


def test_no_tools_no_tools_key(fake):
    stream(fake.base_url(), [Message.of("user", "hi")], tools=())
    assert "tools" not in fake.bodies[-1]


def test_a_python_call_from_the_server_is_an_interpreter_call(fake):
    fake.tool_call = ("python", '{"code": "x = 6 * 7\\nprint(x)"}')
    call = next(d.tool_call for d in stream(fake.base_url("toolcall"), [Message.of("user", "6*7?")]) if d.tool_call)
    assert (call["kind"], call["code"]) == ("interpreter", "x = 6 * 7\nprint(x)")


def test_arguments_that_are_not_json_are_a_call_with_a_problem():
    decoder = SseDecoder()
    for piece in ({"index": 0, "id": "c1", "function": {"name": "f", "arguments": "{bad"}},
                  # arguments as an object, not a string:
                  {"index": 1, "id": "c2", "function": {"name": "g", "arguments": {"a": 1}}}):
        decoder.feed("data: " + json.dumps({"choices": [{"delta": {"tool_calls": [piece]}}]}))
    bad, good = decoder.tool_calls()
    assert bad["arguments"] == "{bad" and "not valid JSON" in bad["problem"]
    assert good["arguments"] == {"a": 1} and "problem" not in good


def test_a_server_that_refuses_tools_says_so_with_the_fix(fake):
    last = stream(fake.base_url("notools"), [Message.of("user", "hi")])[-1]
    assert last.finish_reason == "error"
    assert "HTTP 400: This server does not support tools." in last.error
    assert "--tool-call-parser internlm" in last.error


def test_the_agent_runs_a_call_the_remote_server_made(fake, tmp_path):
    tools = write_tools_folder(tmp_path / "tools")
    config = tmp_path / "remote.yaml"
    config.write_text(textwrap.dedent(f"""\
        engines:
          chat: {{engine: openai_compat, base_url: "{fake.base_url()}"}}
        agent:
          tools_folder: {tools}
          arxiv: false
        """), encoding="utf-8")
    services = build_services(load_config(config), tmp_path / "data")
    try:
        fake.tool_call, fake.next_mode = ("add", '{"a": 2, "b": 40}'), "toolcall"  # then it echoes the result
        session = agent.new_session(services)
        list(agent.run(services, "u1", session, "2 + 40?", agent.AgentOptions(tools=("add",), interpreter=False)))
    finally:
        services.close()
    user, asked, result, answer = session.messages
    assert (asked.text, asked.tool_call["name"]) == ("Checking.", "add")
    assert asked.tool_call["arguments"] == {"a": 2, "b": 40}
    assert (result.role, result.text, result.meta["status"]) == ("tool", "42", "done")
    assert answer.text == "echo: 42"
    first, second = fake.bodies[-2:]
    assert [t["function"]["name"] for t in first["tools"]] == ["add"]
    assert second["messages"][-2]["tool_calls"][0]["id"] == "call_fake1"
    assert second["messages"][-1] == {"role": "tool", "tool_call_id": "call_fake1", "content": "42"}


def test_the_token_estimate_counts_tool_schemas_and_calls():
    from studio.engines.openai_wire import estimate_tokens

    plain = estimate_tokens([Message.of("user", "hi")])
    assert estimate_tokens([Message.of("user", "hi")], (WEATHER,)) > plain + 30
    assert estimate_tokens(history()) > estimate_tokens([Message.of(m.role, m.text) for m in history()]) + 20


def test_a_wire_call_renders_as_internlm2s_official_call_body():
    from studio.engines.openai_wire import call_from_wire
    from studio.families.internlm2_tools import call_body

    plugin = call_from_wire("get_weather", '{"city": "Paris"}', "call_1")
    assert call_body(plugin) == '\n{"name": "get_weather", "parameters": {"city": "Paris"}}'
    assert call_body(call_from_wire("python", '{"code": "print(1)"}')) == "\n```python\nprint(1)\n```"
