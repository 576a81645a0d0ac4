"""The ReAct text protocol: prompt, parsing of real-looking replies, streaming stop points, observations."""

from __future__ import annotations

import pytest

from studio.errors import InputError
from studio.tools.arxiv import SPEC as ARXIV
from studio.tools.base import ToolResult, ToolSpec
from studio.tools.react import (ReactStream, parse_react, react_force_stop, react_observation, react_retry,
                                react_system_prompt)

PY = ToolSpec("python_interpreter", "Run Python code and return what it prints.",
              {"type": "object", "properties": {"code": {"type": "string"}}, "required": ["code"]})
NAMES = ["python_interpreter", "arxiv_search"]


def test_system_prompt_lists_tools_and_the_format_in_both_languages():
    en = react_system_prompt([PY, ARXIV])
    assert en.startswith("You are an assistant who can use external tools.\n{\"name\": \"python_interpreter\"")
    assert '"name": "arxiv_search"' in en and '"maximum": 5' in en
    assert "one of [python_interpreter, arxiv_search]" in en
    for marker in ("Thought:", "Action:", "Action Input:", "Response:", "Final Answer:"):
        assert marker in en
    zh = react_system_prompt([ARXIV], lang="zh")
    assert zh.startswith("你是一个可以调用外部工具的助手") and "从 [arxiv_search] 中选择" in zh
    assert "Final Answer: 最终答案" in zh and zh.endswith("开始!")


def test_system_prompt_template_override_keeps_json_braces():
    prompt = react_system_prompt([PY], template='Tools: {tool_description}\nNames: {action_names}\nExample {"a": 1}')
    assert prompt.endswith('Names: python_interpreter\nExample {"a": 1}') and '"code"' in prompt


def test_system_prompt_refuses_no_tools_and_unknown_language():
    with pytest.raises(InputError, match="at least one tool"):
        react_system_prompt([])
    with pytest.raises(InputError, match="Unknown prompt language 'fr'") as info:
        react_system_prompt([PY], lang="fr")
    assert "en, zh" in info.value.hint


LESSON = """Thought: I need to solve 2x+3=10 for x, so I will run Python.
Action: python_interpreter
Action Input: {"code": "from sympy import symbols, solve\\nx = symbols('x')\\nprint(solve(2*x + 3 - 10, x))"}"""


def test_parse_a_well_formed_action():
    step = parse_react(LESSON, NAMES)
    assert step.is_action and not step.is_final and step.problem == ""
    assert step.thought == "I need to solve 2x+3=10 for x, so I will run Python."
    assert step.action == "python_interpreter"
    assert step.arguments == {"code": "from sympy import symbols, solve\nx = symbols('x')\nprint(solve(2*x + 3 - 10, x))"}
    call = step.call()
    assert call.name == "python_interpreter" and call.arguments == step.arguments and call.raw.startswith('{"code"')


def test_parse_a_final_answer_on_its_own_line_and_inline_after_the_thought():
    step = parse_react("Thought: The tool said x = 7/2.\nFinal Answer: x = 3.5\n\nSo x is 3.5.")
    assert step.is_final and step.thought == "The tool said x = 7/2." and step.final_answer == "x = 3.5\n\nSo x is 3.5."
    inline = parse_react("Thought: I know this already. Final Answer: Paris is the capital of France.")
    assert inline.is_final and inline.thought == "I know this already." and inline.final_answer.startswith("Paris")


def test_a_final_answer_may_mention_actions_without_being_split():
    step = parse_react("Thought: done\nFinal Answer: To fix it:\nAction: restart the server\nAction Input: none")
    assert step.is_final and step.final_answer == "To fix it:\nAction: restart the server\nAction Input: none"


def test_whitespace_bold_case_and_full_width_colons_are_tolerated():
    text = ("  **Thought**: search first\n\n**Action:** `arxiv_search`\n"
            "action input：  {\"query\": \"InternLM2\", \"max_results\": 2}  \n")
    step = parse_react(text, NAMES)
    assert step.is_action, step.problem
    assert step.thought == "search first" and step.action == "arxiv_search"
    assert step.arguments == {"query": "InternLM2", "max_results": 2}


def test_the_whole_reply_in_a_code_fence_and_a_json_fenced_input():
    text = ('```\nThought: look it up\nAction: arxiv_search\nAction Input:\n```json\n'
            '{"query": "ReAct agents"}\n```\n```')
    step = parse_react(text, NAMES)
    assert step.is_action, step.problem
    assert step.arguments == {"query": "ReAct agents"} and step.action_input == '{"query": "ReAct agents"}'


def test_chinese_reply_with_english_markers_and_with_chinese_markers():
    step = parse_react("Thought: 我需要解方程 2x+3=10。\nAction: python_interpreter\n"
                       "Action Input: {\"code\": \"print((10-3)/2)\"}", NAMES)
    assert step.is_action and step.thought == "我需要解方程 2x+3=10。" and step.arguments == {"code": "print((10-3)/2)"}
    zh = parse_react("思考：工具返回了 3.5。\n最终答案：x = 3.5")
    assert zh.is_final and zh.thought == "工具返回了 3.5。" and zh.final_answer == "x = 3.5"
    zh_action = parse_react("思考：查一下论文\n行动：arxiv_search\n行动输入：{\"query\": \"书生浦语\"}", NAMES)
    assert zh_action.is_action and zh_action.arguments == {"query": "书生浦语"}


def test_an_invented_response_and_what_follows_are_ignored():
    text = LESSON + "\nResponse: [7/2]\nThought: so x is 3.5\nFinal Answer: 3.5"
    step = parse_react(text, NAMES)
    assert step.is_action and step.action == "python_interpreter"
    obs = parse_react("Thought: I'll pretend.\nObservation: 42\nFinal Answer: 42")
    assert not obs.is_final and obs.problem == "there is neither an Action nor a Final Answer"


def test_raw_code_input_stays_text_for_the_interpreter():
    step = parse_react("Thought: compute\nAction: python_interpreter\nAction Input:\n```python\n"
                       "def solution():\n    return (10 - 3) / 2\nprint(solution())\n```", NAMES)
    assert step.is_action and step.arguments == "def solution():\n    return (10 - 3) / 2\nprint(solution())"


@pytest.mark.parametrize("text, problem", [
    ("", "the reply was empty"),
    ("   \n", "the reply was empty"),
    ("The answer is 3.5.", "there is neither an Action nor a Final Answer"),
    ("Thought: I should use a tool.", "there is neither an Action nor a Final Answer"),
    ("Thought: hmm\nAction: python_interpreter", "the Action has no Action Input on the next line"),
    ("Thought: hmm\nAction:\nAction Input: {}", "the Action line does not name a tool"),
    ("Action Input: {\"code\": \"1\"}", "an Action Input came without an Action naming the tool"),
    ("Thought: x\nAction: google_search\nAction Input: {\"q\": \"x\"}",
     "there is no tool 'google_search'; the tools are [python_interpreter, arxiv_search]"),
    ("Action: arxiv_search\nAction Input: {\"query\": \"x\",}", "the Action Input is not valid JSON"),
    ("Action: arxiv_search\nAction Input: {\"query\": \"x\"} and then more", "text after its JSON object"),
    ("Action: arxiv_search\nAction Input: {'query': 'x'}", "the Action Input is not valid JSON"),
    ("Thought: done\nFinal Answer:   \n", "the Final Answer is empty"),
])
def test_malformed_replies_say_what_is_wrong(text, problem):
    step = parse_react(text, NAMES)
    assert problem in step.problem
    assert not step.is_action and not step.is_final


def test_retry_and_force_stop_texts():
    assert react_retry("the Action has no Action Input on the next line.") == (
        "Your reply did not follow the format: the Action has no Action Input on the next line. Reply either with "
        "Thought, Action and Action Input (a JSON object), or with Thought and Final Answer.")
    assert react_retry("回复为空", lang="zh").startswith("你的回复没有遵循格式：回复为空。")
    assert "final answer" in react_force_stop() and react_force_stop("zh") == "你需要基于历史消息直接给出最终答案。"


def test_observation_text_for_results_errors_and_images():
    assert react_observation(ToolResult(text="[7/2]\n")) == "Response: [7/2]\n"
    assert react_observation(ToolResult(error="timed out after 20 s")) == "Response: Error: timed out after 20 s\n"
    assert react_observation(ToolResult(text="plotted", images=(b"png",))) == (
        "Response: plotted\n[1 image(s) shown to the user]\n")
    assert react_observation(ToolResult()) == "Response: (no output)\n"


def feed_all(stream, text, size):
    """Feed `text` in chunks of `size` characters; how many characters were fed when it said done."""
    for i in range(0, len(text), size):
        if stream.feed(text[i:i + size]):
            return i + size
    return None


@pytest.mark.parametrize("size", [1, 3, 7, 1000])
def test_stream_stops_as_soon_as_the_json_input_is_complete(size):
    text = LESSON + "\nResponse: [7/2]\nThought: invented"
    stream = ReactStream(NAMES)
    fed = feed_all(stream, text, size)
    assert fed is not None and (fed < len(text) or size >= len(text))
    assert stream.done and stream.text == LESSON
    assert stream.step().arguments["code"].endswith("print(solve(2*x + 3 - 10, x))")
    assert stream.feed("more") and stream.text == LESSON


def test_stream_with_braces_inside_json_strings_waits_for_the_real_end():
    text = 'Action: python_interpreter\nAction Input: {"code": "d = {\\"a\\": {1: 2}}\\nprint(d)"}'
    stream = ReactStream(NAMES)
    assert feed_all(stream, text, 1) == len(text)
    assert stream.step().arguments == {"code": 'd = {"a": {1: 2}}\nprint(d)'}


def test_stream_of_fenced_code_stops_at_the_closing_fence():
    head = "Thought: compute\nAction: python_interpreter\nAction Input:\n```python\nprint(1 + 1)\n```"
    stream = ReactStream(NAMES)
    assert not stream.feed(head[:-3])
    assert stream.feed(head[-3:] + "\nResponse: 2")
    assert stream.step().arguments == "print(1 + 1)" and "Response" not in stream.text


def test_stream_of_raw_input_stops_at_the_next_marker():
    stream = ReactStream(NAMES)
    assert not stream.feed("Action: python_interpreter\nAction Input: print(2 ** 10)\n")
    assert not stream.feed("Observ")
    assert stream.feed("ation: 1024")
    assert stream.step().arguments == "print(2 ** 10)"


def test_stream_of_a_final_answer_never_stops_early():
    text = "Thought: I know it.\nFinal Answer: call {\"name\": 1}\nAction: x\nAction Input: {\"a\": 1}"
    stream = ReactStream(NAMES)
    assert feed_all(stream, text, 2) is None and not stream.done
    assert stream.step().final_answer.startswith('call {"name": 1}')


def test_stream_ending_without_a_complete_input_parses_what_came():
    stream = ReactStream(NAMES)
    stream.feed('Thought: t\nAction: arxiv_search\nAction Input: {"query": "x"')
    assert not stream.done
    assert "not valid JSON" in stream.step().problem


def test_only_the_first_of_two_actions_is_taken_and_a_multiline_thought_is_kept():
    text = ("Thought: First I search.\nThen I compute.\nAction: arxiv_search.\nAction Input: {\"query\": \"a\"}\n"
            "Thought: and now\nAction: python_interpreter\nAction Input: {\"code\": \"1\"}")
    step = parse_react(text, NAMES)
    assert step.is_action and step.action == "arxiv_search" and step.arguments == {"query": "a"}
    assert step.thought == "First I search.\nThen I compute."
    stream = ReactStream(NAMES)
    assert feed_all(stream, text, 5) is not None and stream.text.endswith('{"query": "a"}')


def test_stream_of_a_fenced_json_input_on_the_marker_line():
    text = 'Thought: t\nAction: arxiv_search\nAction Input: ```json\n{"query": "InternLM"}\n```\n'
    stream = ReactStream(NAMES)
    assert feed_all(stream, text, 4) is not None
    assert stream.text.endswith('{"query": "InternLM"}') and stream.step().arguments == {"query": "InternLM"}


def test_stream_stops_at_an_invented_response_even_without_an_action():
    stream = ReactStream(NAMES)
    assert not stream.feed("Thought: I will just say it\n")
    assert stream.feed("Response: 42\nFinal Answer: 42")
    assert stream.text == "Thought: I will just say it"
    assert stream.step().problem == "there is neither an Action nor a Final Answer"
