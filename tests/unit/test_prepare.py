"""Engine.prepare, engine by engine: the system prompt applied once (an explicit empty one means none),
images refused, the prompt counted once, fitted to the window (trimmed with a notice, or refused)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import jinja2
import pytest
from PIL import Image

from studio.core.types import GenParams, ImagePart, Message, TextPart
from studio.engines.base import ContextOverflow, ImagesRefused, LoadContext, Placement
from studio.engines.hf import load_hf_engine
from studio.engines.hf_loading import HFOptions
from studio.engines.lmdeploy_engine import LmdeployEngine
from studio.engines.lmdeploy_setup import LmdeployOptions
from studio.engines.memory import GIB, MemoryPlan
from studio.engines.openai_compat import OpenAICompatEngine, RemoteOptions
from studio.families.hf_chat_template import template_system_default
from studio.families.internlm2 import BOS_ID, IM_END_ID, IM_START_ID, META_INSTRUCTION
from studio.families.plain_text import plain_ids
from studio.families.internlm2 import InternLM2Family
from tests.support.tiny_checkpoints import write_tiny_internlm2

P = GenParams(max_new_tokens=8, do_sample=False)
USER = Message.of("user", "Hello there")
PICTURE = Message("user", [ImagePart(Image.new("RGB", (8, 8))), TextPart("what is it?")])


def _ctx(tmp: Path) -> LoadContext:
    return LoadContext("chat", Placement("cpu"), tmp, lambda f, t: None)


@pytest.fixture(scope="module")
def internlm2(tmp_path_factory):
    """The tiny official-layout InternLM2-Chat on the HF engine, with a 256-token window."""
    tmp = tmp_path_factory.mktemp("prepare-internlm2")
    folder = write_tiny_internlm2(tmp / "ckpt")
    cfg = HFOptions(model_path=str(folder), family="internlm2", device="cpu", dtype="float32", context_window=256)
    engine = load_hf_engine(cfg, _ctx(tmp))
    yield engine
    engine.close()


def _turn_ids(tok, role: str, text: str) -> list[int]:
    return [IM_START_ID, *plain_ids(tok, f"{role}\n{text}"), IM_END_ID, *plain_ids(tok, "\n")]


def _expected(tok, system, user: str) -> list[int]:
    """InternLM2's official prompt ids: BOS, the system turn (if any), the user turn, the generation prompt."""
    head = _turn_ids(tok, "system", system) if system is not None else []
    return [BOS_ID, *head, *_turn_ids(tok, "user", user), IM_START_ID, *plain_ids(tok, "assistant\n")]


def test_hf_internlm2_default_system_prompt_is_the_meta_instruction(internlm2):
    tok = internlm2.tokenizer
    prepared = internlm2.prepare([USER], P)
    assert internlm2.system_prompt() == META_INSTRUCTION == internlm2.info().system_prompt
    assert prepared.messages[0].role == "system" and prepared.messages[0].text == META_INSTRUCTION
    assert prepared.payload.ids == _expected(tok, META_INSTRUCTION, "Hello there")
    # The same ids the family gives the bare conversation (the official chat() default), counted once.
    assert prepared.payload.ids == InternLM2Family().encode(tok, [USER])
    assert prepared.prompt_tokens == len(prepared.payload.ids)


def test_hf_internlm2_explicit_empty_system_prompt_sends_no_system_block(internlm2):
    tok = internlm2.tokenizer
    prepared = internlm2.prepare([Message.of("system", ""), USER], P)
    assert prepared.payload.ids == _expected(tok, None, "Hello there")
    assert prepared.prompt_tokens < internlm2.prepare([USER], P).prompt_tokens


def test_hf_internlm2_an_edited_system_prompt_is_sent_as_written(internlm2):
    tok = internlm2.tokenizer
    prepared = internlm2.prepare([Message.of("system", "Be brief."), USER], P)
    assert prepared.payload.ids == _expected(tok, "Be brief.", "Hello there")


def test_hf_configured_system_prompt_replaces_the_default(tmp_path, internlm2):
    cfg = internlm2.cfg.model_copy(update={"system_prompt": "From the config."})
    engine = load_hf_engine(cfg, _ctx(tmp_path))
    try:
        assert engine.info().system_prompt == "From the config."
        assert engine.prepare([USER], P).payload.ids == _expected(engine.tokenizer, "From the config.", "Hello there")
        empty = load_hf_engine(cfg.model_copy(update={"system_prompt": ""}), _ctx(tmp_path))
        assert empty.prepare([USER], P).payload.ids == _expected(engine.tokenizer, None, "Hello there")
        empty.close()
    finally:
        engine.close()


def test_hf_trim_leaves_out_whole_early_exchanges_with_a_notice(internlm2):
    history = []
    for i in range(8):
        history += [Message.of("user", f"q{i} " + "word " * 3), Message.of("assistant", "answer " * 3)]
    history.append(Message.of("user", "last question"))
    prepared = internlm2.prepare(history, GenParams(max_new_tokens=40), fit="trim")
    assert prepared.dropped > 0 and prepared.dropped % 2 == 0
    kept = prepared.messages
    assert kept[0].text == META_INSTRUCTION and kept[1].role == "user" and kept[-1].text == "last question"
    assert prepared.prompt_tokens + 40 <= 256 and prepared.params.max_new_tokens == 40
    assert prepared.notices[0].text.startswith(f"{prepared.dropped} earliest message(s) left out")
    assert "256-token context window" in prepared.notices[0].text
    # The trimmed prompt is what the model would get for those messages as they stand.
    assert prepared.payload.ids == InternLM2Family().encode(internlm2.tokenizer, kept)


def test_hf_refuses_what_cannot_fit_and_clamps_the_reply(internlm2):
    with pytest.raises(ContextOverflow, match=r"The prompt is [\d,]+ tokens; this model's context window is 256"):
        internlm2.prepare([Message.of("user", "word " * 400)], P)
    with pytest.raises(ContextOverflow, match=r"The message takes [\d,]+ tokens; .* 128 of them kept for the reply"):
        internlm2.prepare([Message.of("user", "word " * 400)], GenParams(max_new_tokens=400), fit="trim")
    prepared = internlm2.prepare([USER], GenParams(max_new_tokens=8000))
    assert prepared.params.max_new_tokens == 256 - prepared.prompt_tokens


def test_hf_text_model_refuses_images_once(internlm2):
    with pytest.raises(ImagesRefused, match=r"reads text only; the conversation has 1 image\(s\)") as err:
        internlm2.prepare([PICTURE], P)
    assert err.value.code == "images_not_supported"


# --- chat templates: the default a template writes when given no system message -----------------

class _Template:
    """A tokenizer's chat-template side, rendered with jinja2 as transformers does."""

    def __init__(self, source: str) -> None:
        self.chat_template = source
        self._t = jinja2.Environment().from_string(source)

    def apply_chat_template(self, turns, add_generation_prompt=True, tokenize=False):
        return self._t.render(messages=turns, add_generation_prompt=add_generation_prompt)


WITH_DEFAULT = ("{% if messages[0]['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                "{% endif %}{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
NO_DEFAULT = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
              "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
# Llama 3.1 style: the system header is always written; without a system message its text is empty.
HEADER_ALWAYS = ("<|start_header_id|>system<|end_header_id|>\n\nToday.\n\n"
                 "{% if messages[0]['role'] == 'system' %}{{ messages[0]['content'] }}{% set rest = messages[1:] %}"
                 "{% else %}{% set rest = messages %}{% endif %}<|eot_id|>"
                 "{% for m in rest %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n{{ m['content'] }}<|eot_id|>"
                 "{% endfor %}<|start_header_id|>assistant<|end_header_id|>\n\n")


@pytest.mark.parametrize("source, default", [(WITH_DEFAULT, "You are a helpful assistant."), (NO_DEFAULT, None),
                                             (HEADER_ALWAYS, "")])
def test_a_chat_templates_default_system_prompt_is_found(source, default):
    assert template_system_default(_Template(source)) == default
    assert template_system_default(SimpleNamespace(chat_template=None)) is None


# --- lmdeploy: the system prompt reaches the pipeline's messages; counts and the session margin --------

class _Pipe:
    def __init__(self):
        self.tokenizer = SimpleNamespace(model=SimpleNamespace(model=SimpleNamespace(
            apply_chat_template=lambda msgs, add_generation_prompt, tokenize: list(range(5 * len(msgs))))))


def _lmdeploy(**cfg) -> LmdeployEngine:
    plan = MemoryPlan("cuda:0", GIB, GIB, GIB, 10 * GIB)
    return LmdeployEngine(_Pipe(), LmdeployOptions(model_path="/m", **cfg), InternLM2Family(), "pytorch", 1, plan, "m")


def test_lmdeploy_prepare_applies_the_system_prompt_and_keeps_its_margin():
    engine = _lmdeploy(session_len=256)
    prepared = engine.prepare([USER], GenParams(max_new_tokens=4000))
    assert prepared.payload[0] == {"role": "system", "content": META_INSTRUCTION}
    assert prepared.payload[1] == {"role": "user", "content": "Hello there"}
    assert prepared.prompt_tokens == 10  # two messages through the (fake) chat template
    assert prepared.params.max_new_tokens == 256 - 10 - 32  # lmdeploy's session length, less the margin
    none = engine.prepare([Message.of("system", ""), USER], P)
    assert none.payload[0] == {"role": "system", "content": ""}  # lmdeploy's template: no default added
    with pytest.raises(ContextOverflow, match="session length is 256"):
        engine.prepare([USER] * 60, P)
    assert _lmdeploy(system_prompt="Be brief.").prepare([USER], P).payload[0]["content"] == "Be brief."


# --- remote: the system prompt in the JSON body; the server's default is left to the server --------

def _remote(**cfg) -> OpenAICompatEngine:
    return OpenAICompatEngine(RemoteOptions(base_url="http://h:1/v1", **cfg), client=None, model="m", window=512)


def test_remote_prepare_sends_the_system_prompt_only_when_set():
    engine = _remote()
    assert engine.system_prompt() is None
    body = engine.body(engine.prepare([USER], P).messages, P)
    assert [m["role"] for m in body["messages"]] == ["user"]  # the server applies its model's default
    none = engine.prepare([Message.of("system", ""), USER], P)
    assert engine.body(none.messages, P)["messages"][0] == {"role": "system", "content": ""}
    configured = _remote(system_prompt="Be brief.").prepare([USER], P)
    assert configured.messages[0].text == "Be brief."
    # The estimate: characters / 3 + 4 per message, + 3 for the generation prompt; images refused up front.
    assert configured.prompt_tokens == (len("Be brief.") // 3 + 4) + (len("Hello there") // 3 + 4) + 3
    with pytest.raises(ImagesRefused, match="accepts_images"):
        engine.prepare([PICTURE], P)


# --- tools: InternLM2 gets them in its own turns; models without a tool format refuse them -------------

ADD = {"type": "function", "function": {"name": "add", "description": "Add two numbers.", "parameters": {
    "type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a", "b"]}}}


def test_hf_internlm2_declares_tools_in_its_native_turns(internlm2, monkeypatch):
    from studio.families.internlm2_tools import INTERPRETER_PROMPT, plugin_turn_content, render_ids

    monkeypatch.setattr(internlm2, "context_window", 4096)  # the tool turns are long
    assert internlm2.tools
    python = {"type": "function", "function": {"name": "python", "description": "Run code."}}
    prepared = internlm2.prepare([USER], P, tools=(ADD, python))
    expected = render_ids(internlm2.tokenizer, [
        {"role": "system", "content": META_INSTRUCTION},
        {"role": "system", "name": "interpreter", "content": INTERPRETER_PROMPT},
        {"role": "system", "name": "plugin", "content": plugin_turn_content([ADD])},
        {"role": "user", "content": "Hello there"}])
    assert prepared.payload.ids == expected and prepared.tools == (ADD, python)
    # A call and its result, later in the conversation, in the official turns.
    call = Message.of("assistant", "Adding.")
    call.tool_call = {"kind": "plugin", "name": "add", "arguments": {"a": 1, "b": 2}}
    result = Message.of("tool", "3")
    result.name = "plugin"
    ids = internlm2.prepare([USER, call, result], P, tools=(ADD,)).payload.ids
    assert ids == render_ids(internlm2.tokenizer, [
        {"role": "system", "content": META_INSTRUCTION},
        {"role": "system", "name": "plugin", "content": plugin_turn_content([ADD])},
        {"role": "user", "content": "Hello there"},
        {"role": "assistant", "content": "Adding.", "tool_call": call.tool_call},
        {"role": "environment", "name": "plugin", "content": "3"}])


def test_an_openai_history_with_tool_calls_gives_the_same_internlm2_prompt(internlm2, monkeypatch):
    from studio.tasks.completions import to_messages

    monkeypatch.setattr(internlm2, "context_window", 4096)
    services = SimpleNamespace(config=SimpleNamespace(ui=SimpleNamespace(max_prompt_chars=10_000,
                                                                         max_images_per_message=4)))
    wire = to_messages(services, [
        {"role": "user", "content": "Hello there"},
        {"role": "assistant", "content": "Adding.", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "add", "arguments": '{"a": 1, "b": 2}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "3"}])
    call = Message.of("assistant", "Adding.")
    call.tool_call = {"kind": "plugin", "name": "add", "arguments": {"a": 1, "b": 2}}
    result = Message.of("tool", "3")
    result.name = "plugin"
    assert (internlm2.prepare(wire, P, tools=(ADD,)).payload.ids
            == internlm2.prepare([USER, call, result], P, tools=(ADD,)).payload.ids)


def test_tools_are_refused_by_engines_without_a_tool_format():
    from studio.engines.base import ToolsRefused
    from tests.support.scripted import ScriptedEngine

    with pytest.raises(ToolsRefused, match="cannot call tools") as err:
        ScriptedEngine().prepare([USER], P, tools=(ADD,))
    assert err.value.code == "tools_not_supported" and "InternLM2" in err.value.hint
    # The remote engine leaves it to the server (one without tool support answers HTTP 400).
    assert _remote().prepare([USER], P, tools=(ADD,)).tools == (ADD,)


def test_hf_internlm2_streams_the_call_markers_and_ends_at_action_end(internlm2, monkeypatch):
    import threading

    from studio.engines import hf
    from studio.families.internlm2_tool_parser import NativeToolParser

    tok = internlm2.tokenizer
    body = plain_ids(tok, '\n{"name": "add", "parameters": {"a": 1, "b": 2}}')
    script = iter([*plain_ids(tok, "Adding."), 92541, 92538, *body, 92540, *plain_ids(tok, "never shown")])
    monkeypatch.setattr(hf._Sampler, "pick", lambda self, logits: next(script))  # the model "writes" a call
    monkeypatch.setattr(internlm2, "context_window", 4096)
    prepared = internlm2.prepare([USER], GenParams(max_new_tokens=200, do_sample=False), tools=(ADD,))
    deltas = list(internlm2.stream(prepared, threading.Event()))
    text = "".join(d.text for d in deltas)
    assert text.startswith("Adding.<|action_start|><|plugin|>\n{") and text.endswith("<|action_end|>")
    assert deltas[-1].finish_reason == "stop" and "never shown" not in text
    parser = NativeToolParser()
    parser.feed(text)
    parser.finish()
    assert parser.call.name == "add" and parser.call.arguments == {"a": 1, "b": 2}


def test_hf_internlm2_keeps_the_meta_instruction_when_the_tool_prompts_are_edited(internlm2, monkeypatch):
    from studio.families.internlm2_tools import plugin_turn_content, render_ids

    monkeypatch.setattr(internlm2, "context_window", 4096)
    plugin = Message.of("system", "Tools:\n{prompt}")
    plugin.name = "plugin"
    prepared = internlm2.prepare([plugin, USER], P, tools=(ADD,))
    assert prepared.payload.ids == render_ids(internlm2.tokenizer, [
        {"role": "system", "content": META_INSTRUCTION},
        {"role": "system", "name": "plugin", "content": plugin_turn_content([ADD], "Tools:\n{prompt}")},
        {"role": "user", "content": "Hello there"}])
