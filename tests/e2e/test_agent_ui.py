"""The agent tab over HTTP (gradio_client) on the scripted engine that writes InternLM2's native calls:
a two-step run (the interpreter, then a user tool) to an answer, Stop during a tool run, steps after a restart."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from gradio_client.client import Status

from tests.e2e.helpers import connect, reply_text, wait_for
from tests.support.apps import running_app, write_config
from tests.support.scripted import scripted
from tests.support.agent_tools import write_tools_folder

PYTHON = '<|action_start|><|interpreter|>\n```python\nx = (10 - 3) / 2\nprint("x =", x)\n```<|action_end|>'
ADD = '<|action_start|><|plugin|>\n{"name": "add", "parameters": {"a": 2, "b": 40}}<|action_end|>'
SPIN = '<|action_start|><|interpreter|>\n```python\nwhile True: pass\n```<|action_end|>'


def _config(tmp_path, model_path: str = "script:agent"):
    tools = write_tools_folder(tmp_path / "tools")
    extra = textwrap.dedent(f"""\
        agent:
          tools_folder: {tools}
          arxiv: false
        """)
    return write_config(tmp_path, model_path=model_path, extra=extra)


def _steps(chatbot: list) -> list[dict]:
    return [m for m in chatbot if m["role"] == "assistant" and (m.get("metadata") or {}).get("title")]


def _text(message: dict) -> str:
    content = message["content"]
    if isinstance(content, list):
        return "".join(p if isinstance(p, str) else p.get("text", "") or "" for p in content)
    return content if isinstance(content, str) else ""


def _send(client, text: str, **kw):
    job = client.submit(text, tools=["add"], interpreter=True, max_steps=5, files=None,
                        api_name="/agent_send", **kw)
    outs = list(job)
    return outs, job.outputs()[-1]


@pytest.fixture
def app(tmp_path):
    with running_app(_config(tmp_path), tmp_path / "data") as running:
        yield running


def test_two_steps_to_an_answer_show_as_collapsible_steps_and_survive_a_restart(tmp_path):
    config, data = _config(tmp_path), tmp_path / "data"
    with running_app(config, data) as app:
        scripted(app.services).enqueue(f"Solve it with Python.{PYTHON}", f"Now check with add.{ADD}",
                                       "x = 3.5, and 2 + 40 = 42.")
        client, user = connect(app.url)
        outs, final = _send(client, "已知 2x+3=10，求x")
        chatbot = final[0]
        steps = _steps(chatbot)
        assert [s["metadata"]["status"] for s in steps] == ["done", "done"]
        assert steps[0]["metadata"]["title"].startswith("python · x = (10 - 3) / 2")
        assert steps[1]["metadata"]["title"] == 'add(a=2, b=40)'
        assert all(s["metadata"]["duration"] >= 0 for s in steps)
        assert "x = 3.5" in _text(steps[0]) and "```python" in _text(steps[0])
        assert "Solve it with Python." in _text(steps[0]) and "42" in _text(steps[1])
        assert reply_text(chatbot) == "x = 3.5, and 2 + 40 = 42."
        # While it ran, a step was shown pending before it was done.
        seen = [s["metadata"]["status"] for out in outs for s in _steps(out[0])]
        assert "pending" in seen
        md = Path(client.predict(api_name="/agent_export_markdown")).read_text(encoding="utf-8")
        assert "<details><summary>Tool call: python</summary>" in md and "x = (10 - 3) / 2" in md
        assert "### Tool result · add (done" in md
        doc = json.loads(Path(client.predict(api_name="/agent_export_json")).read_text(encoding="utf-8"))
        assert [m["role"] for m in doc["messages"]] == ["user", "assistant", "tool", "assistant", "tool", "assistant"]
        assert doc["messages"][3]["tool_call"]["arguments"] == {"a": 2, "b": 40}
    with running_app(config, data) as again:  # the same data folder, a new process state
        client, _ = connect(again.url, user)
        chatbot = client.predict(api_name="/agent_resume")[0]
        assert [s["metadata"]["title"] for s in _steps(chatbot)] == [s["metadata"]["title"] for s in steps]
        assert reply_text(chatbot) == "x = 3.5, and 2 + 40 = 42."


def test_stop_during_a_tool_run_kills_it_and_the_next_request_works(app):
    engine = scripted(app.services)
    engine.enqueue(SPIN)
    client, _ = connect(app.url)
    job = client.submit("spin", tools=[], interpreter=True, max_steps=3, files=None, api_name="/agent_send")
    wait_for(lambda: any(s["metadata"]["status"] == "pending" for out in job.outputs() for s in _steps(out[0])),
             "the interpreter step to start")
    client.predict(api_name="/agent_stop")
    wait_for(lambda: job.status().code == Status.FINISHED, "the run to end after Stop")
    step = _steps(job.outputs()[-1][0])[-1]
    assert step["metadata"]["status"] == "done" and step["metadata"]["title"].startswith("■")
    assert "Stopped" in _text(step)
    engine.enqueue('<|action_start|><|interpreter|>\n```python\nprint(6 * 7)\n```<|action_end|>', "It is 42.")
    _, final = _send(client, "again")
    last = _steps(final[0])[-1]
    assert "42" in _text(last) and reply_text(final[0]) == "It is 42."


def _python(code: str) -> str:
    return f"<|action_start|><|interpreter|>\n```python\n{code}\n```<|action_end|>"


def test_clear_empties_the_conversation_and_stops_the_interpreter(app):
    from gradio_client.exceptions import AppError

    engine = scripted(app.services)
    engine.enqueue(_python("y = 5\nprint(y)"), "Set.")
    client, user = connect(app.url)
    with pytest.raises(AppError, match="not in the list of choices"):
        client.predict("hi", tools=["nope"], interpreter=True, max_steps=5, files=None, api_name="/agent_send")
    _, final = _send(client, "set y")
    assert "5" in _text(_steps(final[0])[0]) and reply_text(final[0]) == "Set."
    assert client.predict(api_name="/agent_clear")[0] == []
    assert app.services.agent_store.list(user) == []
    engine.enqueue(_python("print(y)"), "Gone.")
    _, final = _send(client, "y?")
    assert "NameError" in _text(_steps(final[0])[0])  # a new interpreter: the variable went with Clear
    assert len(client.predict(api_name="/agent_new")[0]) == 0
    assert len(app.services.agent_store.list(user)) == 1  # New keeps the stored conversation


def test_an_uploaded_csv_is_copied_for_the_interpreter_and_named_to_the_model(app, tmp_path):
    from gradio_client import handle_file

    csv = tmp_path / "scores.csv"
    csv.write_text("name,score\nann,3\nbob,5\n", encoding="utf-8")
    read = ('<|action_start|><|interpreter|>\n```python\nimport csv\nrows = list(csv.DictReader(open("scores.csv")))'
            '\nprint(sum(int(r["score"]) for r in rows))\n```<|action_end|>')
    scripted(app.services).enqueue(read, "The scores add up to 8.")
    client, _ = connect(app.url)
    job = client.submit("分析这个 CSV", tools=[], interpreter=True, max_steps=3, files=[handle_file(str(csv))],
                        api_name="/agent_send")
    chatbot = job.result()[0]
    assert "scores.csv" in _text(chatbot[0])  # the message names the file to the model
    assert "8" in _text(_steps(chatbot)[0]) and reply_text(chatbot) == "The scores add up to 8."


def test_the_tab_says_which_sandbox_protections_are_active(app):
    client, _ = connect(app.url)
    out = client.predict(api_name="/agent_resume")
    # Outputs (the session state is not sent): chatbot, textbox, notice, files, panel, protections.
    assert out[0] == [] and out[4] == ""  # a fresh conversation; this model calls tools, so no panel
    line = out[5]
    assert "**Sandbox protections active**" in line or "refused on this machine" in line, line


def test_a_model_without_native_tool_calls_gets_the_panel_and_react(tmp_path):
    with running_app(_config(tmp_path, "script:echo"), tmp_path / "data") as app:
        scripted(app.services).enqueue("Thought: easy.\nFinal Answer: 4")
        client, _ = connect(app.url)
        assert "configs/internlm2-chat-1_8b.yaml" in client.predict(api_name="/agent_resume")[4]
        _, final = _send(client, "2 + 2?")
        assert reply_text(final[0]) == "4"  # the ReAct protocol, no red error
        assert "cannot call tools natively" in final[4]


def test_the_prompt_boxes_reach_the_conversation_and_the_models_tool_turns(app, monkeypatch):
    engine = scripted(app.services)
    seen, real = [], engine.prepare

    def prepare(messages, params, **kwargs):
        seen.append(list(messages))
        return real(messages, params, **kwargs)

    monkeypatch.setattr(engine, "prepare", prepare)
    engine.enqueue("Answered without tools.")
    client, user = connect(app.url)
    _send(client, "hi", system_prompt="Be exact.", plugin_prompt="Tools:\n{prompt}",
          interpreter_prompt="Python lives here.")
    sent = {(m.role, m.name): m.text for m in seen[-1] if m.role == "system"}
    assert sent == {("system", "interpreter"): "Python lives here.", ("system", "plugin"): "Tools:\n{prompt}",
                    ("system", None): "Be exact."}
    stored = app.services.agent_store.list(user)[0]
    assert app.services.agent_store.load(user, stored.id).system_prompt == "Be exact."
    job = client.submit("again", tools=["add"], interpreter=True, max_steps=5, files=None,
                        plugin_prompt="no placeholder", api_name="/agent_send")
    with pytest.raises(Exception, match=r"no \{prompt\}"):
        job.result()
