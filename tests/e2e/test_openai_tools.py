"""Tools over /v1/chat/completions with the official `openai` client: the scripted engine writes InternLM2's
call markers, the studio answers with OpenAI tool_calls (streamed and not); results sent back; bad input."""

from __future__ import annotations

import json

import openai
import pytest

from tests.support.apps import running_app, write_config
from tests.support.scripted import scripted

KEY = "tools-key-0123456789"
CONFIG = f"""\
  agent: {{engine: scripted, model_path: "script:agent"}}
api: {{keys: [{KEY}]}}
"""
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
PYTHON = {"type": "function", "function": {
    "name": "python", "parameters": {"type": "object", "properties": {"code": {"type": "string"}}}}}
CALL = '<|action_start|><|plugin|>\n{"name": "get_weather", "parameters": {"city": "Paris"}}<|action_end|>'
ASK = [{"role": "user", "content": "Weather in Paris?"}]


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("openai-tools")
    with running_app(write_config(tmp, extra=CONFIG), tmp / "data") as running:
        assert running.services.engines.wait("agent", 30).state == "ready"
        yield running


@pytest.fixture
def engine(app):
    eng = scripted(app.services, "agent")
    eng.clear()
    yield eng
    assert eng.clear() == []  # every queued reply was asked for


def client(app) -> openai.OpenAI:
    return openai.OpenAI(base_url=app.url + "v1", api_key=KEY, max_retries=0, timeout=120)


def recorded(engine, monkeypatch) -> list:
    """The Prepared requests the engine streams, in order."""
    seen, real = [], engine._generate

    def generate(prepared, cancel):
        seen.append(prepared)
        return real(prepared, cancel)

    monkeypatch.setattr(engine, "_generate", generate)
    return seen


def test_a_call_comes_back_as_tool_calls(app, engine, monkeypatch):
    seen = recorded(engine, monkeypatch)
    engine.enqueue(f"Let me look.{CALL}")
    reply = client(app).chat.completions.create(model="agent", messages=ASK, tools=[WEATHER])
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content == "Let me look."
    (call,) = choice.message.tool_calls
    assert call.id.startswith("call_") and call.type == "function" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    assert seen[0].tools == (WEATHER,)  # the engine was prepared with the tools


def test_a_call_alone_has_null_content_and_the_interpreter_is_the_python_function(app, engine):
    engine.enqueue('<|action_start|><|interpreter|>\n```python\nprint(6*7)\n```<|action_end|>')
    reply = client(app).chat.completions.create(model="agent", messages=ASK, tools=[WEATHER, PYTHON])
    message = reply.choices[0].message
    assert message.content is None and message.tool_calls[0].function.name == "python"
    assert json.loads(message.tool_calls[0].function.arguments) == {"code": "print(6*7)"}


def test_streamed_text_has_no_markers_then_tool_call_deltas(app, engine):
    engine.enqueue(f"Let me look it up.{CALL}")
    chunks = list(client(app).chat.completions.create(model="agent", messages=ASK, tools=[WEATHER], stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Let me look it up." and len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1
    pieces = [t for c in chunks if c.choices for t in (c.choices[0].delta.tool_calls or [])]
    assert pieces[0].index == 0 and pieces[0].id.startswith("call_") and pieces[0].function.name == "get_weather"
    assert json.loads("".join(p.function.arguments or "" for p in pieces)) == {"city": "Paris"}
    assert all(p.index == 0 for p in pieces) and all(p.id is None for p in pieces[1:])
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"


def test_the_tool_result_goes_back_and_the_model_answers(app, engine, monkeypatch):
    seen = recorded(engine, monkeypatch)
    engine.enqueue(CALL, "It is sunny in Paris.")
    api = client(app)
    first = api.chat.completions.create(model="agent", messages=ASK, tools=[WEATHER]).choices[0].message
    history = [*ASK, first.model_dump(exclude_none=True),
               {"role": "tool", "tool_call_id": first.tool_calls[0].id, "content": "sunny, 21 C"}]
    final = api.chat.completions.create(model="agent", messages=history, tools=[WEATHER]).choices[0]
    assert final.finish_reason == "stop" and final.message.content == "It is sunny in Paris."
    assert not final.message.tool_calls
    asked, result = seen[1].messages[-2:]
    assert (asked.role, asked.tool_call["kind"], asked.tool_call["name"], asked.tool_call["arguments"]) == (
        "assistant", "plugin", "get_weather", {"city": "Paris"})
    assert (result.role, result.name, result.text) == ("tool", "plugin", "sunny, 21 C")


def test_parallel_calls_in_the_history_become_call_result_pairs(app, engine, monkeypatch):
    seen = recorded(engine, monkeypatch)
    engine.enqueue("Both sunny.")
    calls = [{"id": f"c{i}", "type": "function", "function": {"name": "get_weather", "arguments": json.dumps(
        {"city": city})}} for i, city in enumerate(("Paris", "Rome"))]
    history = [*ASK, {"role": "assistant", "content": None, "tool_calls": calls},
               {"role": "tool", "tool_call_id": "c1", "content": "Rome: sun"},  # answered out of order
               {"role": "tool", "tool_call_id": "c0", "content": "Paris: sun"}]
    client(app).chat.completions.create(model="agent", messages=history, tools=[WEATHER])
    sent = seen[0].messages[-4:]
    assert [(m.role, (m.tool_call or {}).get("arguments"), m.text) for m in sent] == [
        ("assistant", {"city": "Paris"}, ""), ("tool", None, "Paris: sun"),
        ("assistant", {"city": "Rome"}, ""), ("tool", None, "Rome: sun")]


def test_tool_choice_none_offers_no_tools_and_leaves_text_alone(app, engine, monkeypatch):
    seen = recorded(engine, monkeypatch)
    engine.enqueue("Plain answer.")
    reply = client(app).chat.completions.create(model="agent", messages=ASK, tools=[WEATHER], tool_choice="none")
    assert reply.choices[0].message.content == "Plain answer." and seen[0].tools == ()


def test_a_model_without_tools_is_400_tools_not_supported(app):
    with pytest.raises(openai.BadRequestError) as e:
        client(app).chat.completions.create(model="chat", messages=ASK, tools=[WEATHER])
    err = e.value.body
    assert (err["param"], err["code"]) == ("tools", "tools_not_supported")
    assert "cannot call tools" in err["message"] and "InternLM2-Chat" in err["message"]  # with the hint


def _call(arguments: str = '{"city": "Paris"}', id_: str = "c0") -> dict:
    return {"role": "assistant", "tool_calls": [
        {"id": id_, "type": "function", "function": {"name": "get_weather", "arguments": arguments}}]}


@pytest.mark.parametrize("kwargs, param, words", [
    ({"tools": [{"type": "function", "function": {"name": "get weather!"}}]}, "tools[0].function.name",
     "not a valid function name"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "string"}}}]},
     "tools[0].function.parameters", 'type "object"'),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": "x"}}]},
     "tools[0].function.parameters", "dictionary"),
    ({"tools": [{"type": "retrieval"}]}, "tools[0].type", "function"),
    ({"tools": [WEATHER, WEATHER]}, "tools[1].function.name", "declared twice"),
    ({"tools": [WEATHER], "tool_choice": "required"}, "tool_choice", "not supported"),
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "get_weather"}}}, "tool_choice",
     "named function is not supported"),
    ({"messages": [*ASK, _call(), {"role": "tool", "content": "x"}]}, "messages[2].tool_call_id",
     "needs tool_call_id"),
    ({"messages": [*ASK, _call(), {"role": "tool", "tool_call_id": "zz", "content": "x"}]},
     "messages[2].tool_call_id", "answers no call"),
    ({"messages": [*ASK, {"role": "tool", "tool_call_id": "c0", "content": "x"}]}, "messages[1].tool_call_id",
     "no assistant message with tool_calls"),
    ({"messages": [*ASK, _call(), {"role": "user", "content": "and?"}]}, "messages[1].tool_calls",
     "has no tool message answering it"),
    ({"messages": [*ASK, _call("{not json")]}, "messages[1].tool_calls[0].function.arguments", "not valid JSON"),
    ({"messages": [*ASK, _call("[1, 2]")]}, "messages[1].tool_calls[0].function.arguments", "not a JSON object"),
    ({"messages": [{"role": "user", "content": "x", "tool_call_id": "c0"}]}, "messages[0].tool_call_id",
     "only tool messages answer them"),
    ({"messages": [*ASK, {"role": "robot", "content": "x"}]}, "messages[1].role", "'tool'"),
])
def test_bad_tools_and_tool_messages_are_400_naming_the_param(app, kwargs, param, words):
    body = {"model": "agent", "messages": ASK, "tools": [WEATHER], **kwargs}
    with pytest.raises(openai.BadRequestError) as e:
        client(app).chat.completions.create(**body)
    err = e.value.body
    assert err["param"] == param and words in err["message"], err


@pytest.fixture(scope="module")
def front(app, tmp_path_factory):
    """A second studio whose chat engine is the first studio's /v1 (its scripted agent model), as a remote."""
    tmp = tmp_path_factory.mktemp("front")
    config = tmp / "front.yaml"
    config.write_text(f"engines:\n  chat:\n    engine: openai_compat\n    base_url: {app.url}v1\n"
                      f"    remote_model: agent\n    api_key: {KEY}\napi: {{keys: [{KEY}]}}\n", encoding="utf-8")
    with running_app(config, tmp / "data") as running:
        assert running.services.engines.wait("chat", 30).state == "ready"
        yield running


def test_studio_to_studio_tool_calls_pass_through_streamed_and_not(front, engine):
    assert front.services.engines.get("chat").tools
    engine.enqueue(f"Let me look.{CALL}", CALL)
    reply = client(front).chat.completions.create(model="chat", messages=ASK, tools=[WEATHER]).choices[0]
    assert reply.finish_reason == "tool_calls" and reply.message.content == "Let me look."
    call = reply.message.tool_calls[0]
    assert call.id.startswith("call_") and json.loads(call.function.arguments) == {"city": "Paris"}
    chunks = list(client(front).chat.completions.create(model="chat", messages=ASK, tools=[WEATHER], stream=True))
    pieces = [t for c in chunks if c.choices for t in (c.choices[0].delta.tool_calls or [])]
    assert pieces[0].function.name == "get_weather"
    assert json.loads("".join(p.function.arguments or "" for p in pieces)) == {"city": "Paris"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"


def test_studio_to_studio_the_result_reaches_the_model(front, engine, monkeypatch):
    seen = recorded(engine, monkeypatch)
    engine.enqueue("It is sunny in Paris.")
    history = [*ASK, _call(id_="call_front1"), {"role": "tool", "tool_call_id": "call_front1", "content": "sunny"}]
    reply = client(front).chat.completions.create(model="chat", messages=history, tools=[WEATHER]).choices[0]
    assert (reply.finish_reason, reply.message.content) == ("stop", "It is sunny in Paris.")
    asked, result = seen[0].messages[-2:]
    assert (asked.tool_call["name"], asked.tool_call["arguments"], asked.tool_call["id"]) == (
        "get_weather", {"city": "Paris"}, "call_front1")
    assert (result.role, result.name, result.text) == ("tool", "plugin", "sunny")
    assert seen[0].tools == (WEATHER,)


def test_a_broken_call_is_passed_on_as_written(app, engine):
    engine.enqueue('<|action_start|><|plugin|>\n{"name": "get_weather", "parameters": {"city": }<|action_end|>',
                   '<|action_start|><|plugin|>\n{"nam<|action_end|>')
    message = client(app).chat.completions.create(model="agent", messages=ASK, tools=[WEATHER]).choices[0].message
    call = message.tool_calls[0]  # the client's own JSON parsing tells it what is wrong, as with OpenAI
    assert call.function.name == "get_weather" and '"city": }' in call.function.arguments
    reply = client(app).chat.completions.create(model="agent", messages=ASK, tools=[WEATHER]).choices[0]
    assert (reply.finish_reason, reply.message.tool_calls, reply.message.content.strip()) == ("stop", None, '{"nam')


def test_the_clients_stream_helper_assembles_the_call(app, engine):
    engine.enqueue(f"Let me look.{CALL}")
    with client(app).chat.completions.stream(model="agent", messages=ASK, tools=[WEATHER]) as stream:
        final = stream.get_final_completion().choices[0]
    assert final.finish_reason == "tool_calls" and final.message.content == "Let me look."
    (call,) = final.message.tool_calls
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}
