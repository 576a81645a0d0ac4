"""The chat tab's system prompt box over HTTP: it shows the model's default, and what it shows is what is sent."""

from __future__ import annotations

import textwrap

import pytest

from studio.core.session import ChatSession
from studio.ui.chat_tab import _apply_settings
from tests.e2e.helpers import chat, connect, reply_text
from tests.support.apps import running_app

DEFAULT = "Answer briefly."
PARAMS = dict(max_new_tokens=64, temperature=0.7, top_p=0.9, top_k=50, repetition_penalty=1.1, do_sample=True,
              seed=-1)


def _session(prompt):
    sess = ChatSession()
    sess.system_prompt = prompt  # None: the model's default, not known yet
    return sess


def test_an_empty_value_leaves_the_conversations_prompt_as_it_is():
    # An API caller that leaves system_prompt out sends "": the conversation keeps what it has (the model's
    # default, known or not yet); the page empties the prompt through the box's own event instead.
    for before in (None, "", DEFAULT):
        sess = _session(before)
        _apply_settings(sess, "", **PARAMS)
        assert sess.system_prompt == before and sess.params.max_new_tokens == 64


def test_text_in_the_box_is_sent_exactly():
    for before in (None, "", DEFAULT):
        sess = _session(before)
        _apply_settings(sess, "  Be a pirate.\n", **PARAMS)
        assert sess.system_prompt == "  Be a pirate.\n"


def test_bad_setting_leaves_the_prompt_alone():
    sess = _session(DEFAULT)
    with pytest.raises(Exception, match="Invalid setting"):
        _apply_settings(sess, "other", **{**PARAMS, "top_p": 5.0})
    assert sess.system_prompt == DEFAULT


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("prompt")
    cfg = tmp / "prompt.yaml"
    cfg.write_text(textwrap.dedent(f"""\
        engines:
          chat:
            engine: scripted
            family: auto
            model_path: "script:echo"
            system_prompt: "{DEFAULT}"
        """), encoding="utf-8")
    with running_app(cfg, tmp / "data") as running:
        yield running


def test_resume_and_new_show_the_models_default(app):
    client, _ = connect(app.url)
    # /resume: token, conversations, chatbot, notice, system prompt, … (states are not outputs)
    assert client.predict("", api_name="/resume")[4] == DEFAULT
    # /new: conversations, chatbot, notice, system prompt, …
    assert client.predict(api_name="/new")[3] == DEFAULT


def test_the_shown_default_is_sent_and_an_emptied_box_sends_none(app):
    client, user = connect(app.url)
    _, final = chat(client, "first", system_prompt=DEFAULT)
    assert reply_text(final[0]) == "echo: first"
    stored = app.services.store.list(user)[0].id
    assert app.services.store.load(user, stored).system_prompt == DEFAULT
    chat(client, "second")  # left out: the conversation's prompt stays
    assert app.services.store.load(user, stored).system_prompt == DEFAULT
    client.predict("", api_name="/system_prompt")  # the box emptied (what the page sends at each edit)
    chat(client, "second", system_prompt="")
    assert app.services.store.load(user, stored).system_prompt == ""
    chat(client, "third", system_prompt="Only French.")
    assert app.services.store.load(user, stored).system_prompt == "Only French."
    assert client.predict(api_name="/new")[3] == DEFAULT  # a new conversation starts from the default again
    assert client.predict(stored, api_name="/select")[3] == "Only French."  # reopening shows what was stored
