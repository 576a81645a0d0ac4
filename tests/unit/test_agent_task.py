"""The agent loop on the turn pipeline, with the scripted engine: InternLM2's native calls and the ReAct
protocol, a user tool run in the sandboxed interpreter, bad calls told to the model, steps stored."""

from __future__ import annotations

import textwrap
import threading

import pytest

from studio.config import load_config
from studio.core.types import TextDelta
from studio.services import build_services
from studio.tasks import agent
from tests.support.apps import write_config
from tests.support.scripted import scripted
from tests.support.agent_tools import write_tools_folder

pytestmark = pytest.mark.usefixtures("scripted_engine")

def _services(tmp_path, script: str):
    tools = write_tools_folder(tmp_path / "tools")
    extra = textwrap.dedent(f"""\
        agent:
          tools_folder: {tools}
          arxiv: false
        """)
    s = build_services(load_config(write_config(tmp_path, model_path=f"script:{script}", extra=extra)),
                       tmp_path / "data")
    return s


@pytest.fixture
def native(tmp_path):
    s = _services(tmp_path, "agent")
    yield s
    s.close()


@pytest.fixture
def plain(tmp_path):
    s = _services(tmp_path, "echo")
    yield s
    s.close()


def _record_prompts(engine, monkeypatch) -> list:
    seen, real = [], engine.prepare

    def prepare(messages, params, **kwargs):
        seen.append((list(messages), kwargs.get("tools", ())))
        return real(messages, params, **kwargs)

    monkeypatch.setattr(engine, "prepare", prepare)
    return seen


CALL = '<|action_start|><|plugin|>\n{"name": "add", "parameters": {"a": 2, "b": 40}}<|action_end|>'


def test_a_native_call_runs_the_user_tool_and_the_answer_follows(native, monkeypatch):
    engine = scripted(native)
    engine.enqueue(f"I will add them.{CALL}", "2 + 40 = 42.")
    seen = _record_prompts(engine, monkeypatch)
    session = agent.new_session(native)
    events = list(agent.run(native, "u1", session, "What is 2 + 40?", agent.AgentOptions(tools=("add",),
                                                                                          interpreter=False)))
    steps = [e for e in events if isinstance(e, agent.StepUpdate)]
    assert [s.result is None for s in steps] == [True, False]
    done = steps[-1]
    assert done.call.tool_call["name"] == "add" and done.call.tool_call["arguments"] == {"a": 2, "b": 40}
    assert done.call.text == "I will add them." and done.result.text == "42" and done.result.meta["status"] == "done"
    shown = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert "<|action_start|>" not in shown and "I will add them." in shown and "2 + 40 = 42." in shown
    # The tools were declared to the model; the second prompt carries the call and its result.
    assert [t["function"]["name"] for t in seen[0][1]] == ["add"]
    second = seen[1][0]
    assert [m.role for m in second[-3:]] == ["user", "assistant", "tool"] and second[-1].text == "42"
    # Stored as it went: the user's message, the call, the result, the answer — and read back the same.
    stored = native.agent_store.load("u1", session.id)
    assert native.store.list("u1") == []  # the chat tab's list does not show agent conversations
    assert [(m.role, m.name) for m in stored.messages] == [("user", None), ("assistant", None), ("tool", "plugin"),
                                                          ("assistant", None)]
    assert stored.messages[1].tool_call["arguments"] == {"a": 2, "b": 40} and stored.messages[3].text == "2 + 40 = 42."


@pytest.mark.parametrize("reply, problem", [
    ('<|action_start|><|plugin|>\n{"name": "nope", "parameters": {}}<|action_end|>', "There is no tool 'nope'"),
    ('<|action_start|><|plugin|>\n{"name": "add", "parameters": {"a": 1}}<|action_end|>', "add: "),
    ('<|action_start|><|plugin|>\n{"name": "add", "parameters": {"a": 1,<|action_end|>', "could not be read"),
])
def test_a_bad_call_is_an_observation_and_the_loop_goes_on(native, reply, problem):
    scripted(native).enqueue(reply, "Sorry, done.")
    session = agent.new_session(native)
    events = list(agent.run(native, "u1", session, "go", agent.AgentOptions(tools=("add",), interpreter=False)))
    result = [e for e in events if isinstance(e, agent.StepUpdate)][-1].result
    assert result.meta["status"] == "error" and problem in result.meta["error"]
    assert session.messages[-1].text == "Sorry, done."


def test_the_step_limit_ends_the_run_with_a_clear_message(native):
    scripted(native).enqueue(CALL, CALL, CALL)
    session = agent.new_session(native)
    list(agent.run(native, "u1", session, "loop", agent.AgentOptions(tools=("add",), interpreter=False, max_steps=2)))
    assert [m.role for m in session.messages].count("tool") == 2
    assert "Stopped after 2 steps" in session.messages[-1].text


def test_a_model_without_native_calls_gets_the_react_protocol(plain, monkeypatch):
    engine = scripted(plain)
    engine.enqueue('Thought: I need the sum.\nAction: add\nAction Input: {"a": 5, "b": 6}', "Final Answer: 11")
    seen = _record_prompts(engine, monkeypatch)
    session = agent.new_session(plain)
    list(agent.run(plain, "u1", session, "5 + 6?", agent.AgentOptions(tools=("add",), interpreter=False)))
    assert "Action Input" in seen[0][0][0].text and seen[0][1] == ()  # the protocol, in the system prompt
    assert "Response: 11" in seen[1][0][-1].text  # the observation, fed back as text
    assert session.messages[-1].text == "11"
    assert [m.role for m in session.messages] == ["user", "assistant", "tool", "assistant"]


def test_options_from_the_tab_are_checked(native):
    with pytest.raises(Exception, match="Unknown tool"):
        agent.check_options(native, ["rm_rf"], True, 3)
    with pytest.raises(Exception, match="must be 1 to 20"):
        agent.check_options(native, [], True, 99)
    assert agent.check_options(native, ["add"], False, "4") == agent.AgentOptions(("add",), False, 4)


def test_stop_before_the_first_word_keeps_the_message_and_runs_no_tool(native):
    scripted(native).enqueue(CALL)
    cancel = threading.Event()
    cancel.set()
    session = agent.new_session(native)
    events = list(agent.run(native, "u1", session, "hello", agent.AgentOptions(tools=("add",)), cancel))
    assert not any(isinstance(e, agent.StepUpdate) for e in events)
    stored = native.agent_store.load("u1", session.id).messages
    assert stored[0].text == "hello" and all(m.role != "tool" for m in stored)
    scripted(native).clear()


def test_stop_during_a_tool_run_kills_it_and_the_next_call_works(native):
    engine = scripted(native)
    loop = '<|action_start|><|interpreter|>\n```python\nwhile True: pass\n```<|action_end|>'
    engine.enqueue(loop)
    session, cancel = agent.new_session(native), threading.Event()
    events = []
    for event in agent.run(native, "u1", session, "spin", agent.AgentOptions(interpreter=True), cancel):
        events.append(event)
        if isinstance(event, agent.StepUpdate) and event.result is None:
            threading.Timer(1.0, cancel.set).start()  # Stop, while the tool runs
    result = [e for e in events if isinstance(e, agent.StepUpdate)][-1].result
    assert result.meta["status"] == "cancelled"
    assert native.agent_store.load("u1", session.id).messages[-1].meta["status"] == "cancelled"
    engine.enqueue('<|action_start|><|interpreter|>\n```python\nprint(6 * 7)\n```<|action_end|>', "42.")
    list(agent.run(native, "u1", session, "again", agent.AgentOptions(interpreter=True)))
    last = [m for m in session.messages if m.role == "tool"][-1]
    assert last.meta["status"] == "done" and "42" in last.text  # a fresh interpreter after the Stop


def test_a_broken_tool_file_stops_the_start_with_its_path_and_line(tmp_path):
    from studio.tools.user_tools import ToolFileError

    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "broken.py").write_text("def add(a: int, b: int) -> int:\n    return (a +\n", encoding="utf-8")
    cfg = write_config(tmp_path, model_path="script:agent", extra=f"agent:\n  tools_folder: {tools}\n")
    with pytest.raises(ToolFileError, match=r"broken\.py.*line [23]"):
        build_services(load_config(cfg), tmp_path / "data")


def test_each_conversation_has_its_own_private_interpreter_folder(native):
    a = native.tools.interpreter("u1", "conv-a")
    b = native.tools.interpreter("u1", "conv-b")
    assert a is native.tools.interpreter("u1", "conv-a") and a.folder != b.folder
    for folder in (a.folder, a.folder.parent):
        assert folder.stat().st_mode & 0o777 == 0o700


def test_a_model_failure_keeps_what_was_written_and_says_so(native, monkeypatch):
    from studio.errors import InputError

    engine = scripted(native)
    real = engine._generate

    def failing(prepared, cancel):
        yield TextDelta("Half a thought")
        yield TextDelta(finish_reason="error", error="the GPU fell over")

    monkeypatch.setattr(engine, "_generate", failing)
    session = agent.new_session(native)
    with pytest.raises(InputError, match="the GPU fell over"):
        list(agent.run(native, "u1", session, "go", agent.AgentOptions(tools=("add",), interpreter=False)))
    stored = native.agent_store.load("u1", session.id).messages
    assert [m.role for m in stored] == ["user", "assistant"] and stored[1].partial
    monkeypatch.setattr(engine, "_generate", real)


def test_figures_are_kept_with_the_conversation_in_a_private_folder(native, monkeypatch):
    import io

    from PIL import Image

    from studio.tools.base import ToolResult, ToolSpec

    buf = io.BytesIO()
    Image.new("RGB", (8, 6), (0, 0, 255)).save(buf, "PNG")

    class Plot:
        spec = ToolSpec("plot", "Draw a picture.")

        def run(self, arguments, cancel):
            return ToolResult(text="drawn", images=(buf.getvalue(),))

    monkeypatch.setattr(native.tools, "tools", lambda *a: {"plot": Plot()})
    scripted(native).enqueue('<|action_start|><|plugin|>\n{"name": "plot", "parameters": {}}<|action_end|>', "Done.")
    session = agent.new_session(native)
    list(agent.run(native, "u1", session, "draw", agent.AgentOptions(tools=("plot",), interpreter=False)))
    (path,) = native.agent_store.load("u1", session.id).messages[2].meta["images"]
    from pathlib import Path

    saved = Path(path)
    assert saved.read_bytes() == buf.getvalue() and saved.is_relative_to(native.tools.figures_root)
    assert saved.parent.stat().st_mode & 0o777 == 0o700 and saved.stat().st_mode & 0o777 == 0o600


def test_the_edited_plugin_and_interpreter_prompts_reach_the_models_tool_turns(native, monkeypatch):
    engine = scripted(native)
    engine.enqueue("Nothing to call.")
    seen = _record_prompts(engine, monkeypatch)
    options = agent.with_prompts(native, agent.AgentOptions(tools=("add",)), "Tools you may use:\n{prompt}",
                                 "Run Python here.")
    list(agent.run(native, "u1", agent.new_session(native), "hi", options))
    named = {m.name: m.text for m in seen[0][0] if m.role == "system" and m.name}
    assert named == {"plugin": "Tools you may use:\n{prompt}", "interpreter": "Run Python here."}
    prepared = engine.prepare(seen[0][0], agent.AgentOptions().params)
    assert [m.name for m in prepared.messages if m.role == "system"] == ["interpreter", "plugin"]  # no default here

    with pytest.raises(Exception, match=r"no \{prompt\}"):
        agent.with_prompts(native, options, "No placeholder here.", "")


def test_edited_prompts_take_the_place_of_the_official_ones_in_internlm2s_turns():
    from studio.core.types import Message
    from studio.families.internlm2_tools import INTERPRETER_PROMPT, native_messages

    add = {"type": "function", "function": {"name": "add", "description": "Add.", "parameters": {}}}
    python = {"type": "function", "function": {"name": "python", "description": "Run code."}}
    plugin, interp = Message.of("system", "Use these:\n{prompt}"), Message.of("system", "Mine.")
    plugin.name, interp.name = "plugin", "interpreter"
    turns = native_messages([interp, plugin, Message.of("system", "Meta."), Message.of("user", "hi")], (add, python))
    assert [(t["role"], t.get("name")) for t in turns] == [("system", None), ("system", "interpreter"),
                                                          ("system", "plugin"), ("user", None)]
    assert turns[1]["content"] == "Mine." and turns[2]["content"].startswith("Use these:\n[")
    official = native_messages([Message.of("system", "Meta."), Message.of("user", "hi")], (add, python))
    assert official[1]["content"] == INTERPRETER_PROMPT and official[2]["content"].startswith("[")


@pytest.mark.parametrize("fixture", ["native", "plain"])
def test_a_streaming_reply_is_checkpointed_as_partial(fixture, request, monkeypatch):
    from studio.tasks import turn

    services = request.getfixturevalue(fixture)
    monkeypatch.setattr(turn, "CHECKPOINT_S", 0.0)  # every word is due
    words = " ".join(f"w{i}" for i in range(12))
    reply = words if fixture == "native" else f"Final Answer: {words}"
    scripted(services).enqueue(reply)
    session = agent.new_session(services)
    events = agent.run(services, "u1", session, "talk", agent.AgentOptions(interpreter=False))
    seen = 0
    for event in events:
        seen += isinstance(event, TextDelta) and bool(event.text)
        if seen == 6:
            break
    stored = services.agent_store.load("u1", session.id).messages
    assert [m.role for m in stored] == ["user", "assistant"] and stored[1].partial
    assert stored[1].text and reply.startswith(stored[1].text) and stored[1].text != reply  # mid-stream
    events.close()
