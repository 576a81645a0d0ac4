"""Agent steps in the conversation exports and in the agent tab's Chatbot messages."""

from __future__ import annotations

import json

from studio.core.session import ChatSession
from studio.core.types import Message
from studio.exports.conversation import conversation_json, conversation_markdown, parse_conversation_json
from studio.ui.agent_view import RESULT_CAP, agent_messages, call_summary


def _session(figure: str = "/x/fig.png") -> ChatSession:
    call = Message.of("assistant", "I will compute it.")
    call.tool_call = {"kind": "interpreter", "name": "python", "code": "print('```', 7 * 6)", "raw": "..."}
    call.meta = {"status": "done", "seconds": 0.25}
    result = Message.of("tool", "``` 42")
    result.name, result.meta = "interpreter", {"status": "done", "error": "", "images": [figure],
                                               "tool": "python", "seconds": 0.2}
    plug = Message.of("assistant", "")
    plug.tool_call = {"kind": "plugin", "name": "add", "arguments": {"a": 2, "b": 40}, "raw": "{}"}
    plug.meta = {"status": "error", "seconds": 0.1}
    failed = Message.of("tool", "add failed: boom")
    failed.name, failed.meta = "plugin", {"status": "error", "error": "add failed: boom", "images": [],
                                          "tool": "add", "seconds": 0.1}
    return ChatSession(messages=[Message.of("user", "6 * 7?"), call, result, plug, failed,
                                 Message.of("assistant", "It is 42.")])


def test_markdown_shows_each_call_collapsible_with_its_result():
    md = conversation_markdown(_session()).decode("utf-8")
    assert "### Assistant · calls python (done, 0.25 s)" in md
    assert "<details><summary>Tool call: python</summary>" in md
    assert "````python\nprint('```', 7 * 6)\n````" in md  # a fence longer than the code's own backticks
    assert "### Tool result · python (done, 0.2 s)" in md and "*(1 figure not included in this export)*" in md
    assert '"a": 2' in md and "### Tool result · add (error, 0.1 s)" in md
    assert md.rstrip().endswith("### Assistant\n\nIt is 42.")  # the reply's Markdown as is, no fence


def test_json_keeps_the_steps_and_reads_them_back():
    session = _session()
    data = conversation_json(session)
    doc = json.loads(data)
    assert doc["messages"][1]["tool_call"]["code"] == "print('```', 7 * 6)"
    back = parse_conversation_json(data)
    assert [(m.role, m.name, m.tool_call, m.meta) for m in back.messages] == \
        [(m.role, m.name, m.tool_call, m.meta) for m in session.messages]


def test_chatbot_messages_make_each_step_a_titled_collapsible_message(tmp_path):
    png = tmp_path / "fig.png"
    png.write_bytes(b"\x89PNG")
    shown = agent_messages(_session(str(png)))
    assert [m["role"] for m in shown] == ["user", "assistant", "assistant", "assistant"]
    python, add = shown[1], shown[2]
    assert python["metadata"] == {"title": "python · print('```', 7 * 6)", "id": "step-0", "status": "done",
                                  "duration": 0.25}
    text = python["content"]
    assert "I will compute it." in text and "````python" in text and "``` 42" in text
    assert text.endswith(f"![figure 1 of step 1](/gradio_api/file={png})")
    assert add["metadata"]["title"] == "× add(a=2, b=40)" and "**Error**" in add["content"]
    assert shown[3]["content"] == "It is 42."


def test_a_figure_that_is_gone_is_said_so_not_sent():
    step = agent_messages(_session("/nonexistent/fig.png"))[1]
    assert isinstance(step["content"], str) and "1 figure(s) no longer available" in step["content"]


def test_a_running_step_is_pending_and_long_output_is_capped():
    session = _session()
    session.messages[1].meta = {"status": "running"}
    del session.messages[2:]
    step = agent_messages(session, live="")[1]
    assert step["metadata"]["status"] == "pending" and "duration" not in step["metadata"]
    session.messages.append(Message.of("tool", "y" * (RESULT_CAP + 500)))
    session.messages[-1].meta = {"status": "done", "error": "", "images": []}
    assert "[500 more characters not shown]" in agent_messages(session)[1]["content"]


def test_titles_are_one_short_line():
    call = {"kind": "interpreter", "code": "\n\n   import math\nprint(math.pi)" + "x" * 200}
    assert call_summary(call) == "python · import math"
    long = call_summary({"kind": "plugin", "name": "search", "arguments": {"q": "z" * 300}})
    assert len(long) == 80 and long.endswith("…")
