"""Editing messages and switching versions over real HTTP (gradio_client), on the scripted engine."""

from __future__ import annotations

import pytest
from gradio_client.exceptions import AppError

from tests.e2e.helpers import chat, connect, reply_text, wait_for, resume_open
from tests.support.apps import running_app, write_config
from tests.support.studio_process import running_studio


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("versions")
    with running_app(write_config(tmp), tmp / "data") as running:
        yield running


def shown(chatbot: list) -> list[str]:
    """Each Chatbot message's text, in order."""
    return [reply_text([dict(m, role="assistant")]) for m in chatbot]


def edit(client, index: int, text: str, **params) -> list:
    """Edit message `index` to `text` over /edit; returns the final transcript."""
    return client.submit(index, text, api_name="/edit", **params).result()[0]  # raises the app's error


def test_edit_regenerate_and_switch_versions_then_reload(app):
    client, user = connect(app.url)
    chat(client, "first")
    chat(client, "second")
    chatbot = edit(client, 2, "second, edited")
    assert shown(chatbot) == ["first", "echo: first", "second, edited\n\n*‹ 2/2 ›*", "echo: second, edited"]
    chatbot = client.predict(api_name="/regenerate")[0]
    assert shown(chatbot)[3] == "echo: second, edited\n\n*‹ 2/2 ›*"  # the earlier reply kept as version 1
    chatbot = client.predict(2, 1, api_name="/version")
    assert shown(chatbot) == ["first", "echo: first", "second\n\n*‹ 1/2 ›*", "echo: second"]
    chatbot = client.predict(2, 2, api_name="/version")
    assert shown(chatbot)[2:] == ["second, edited\n\n*‹ 2/2 ›*", "echo: second, edited\n\n*‹ 2/2 ›*"]
    chatbot = client.predict(3, 1, api_name="/version")  # the nested version, inside version 2
    assert shown(chatbot)[3] == "echo: second, edited\n\n*‹ 1/2 ›*"
    # The edit box brings the mark along with the text; it is not part of the message.
    chatbot = edit(client, 0, "first, again\n\n*‹ 1/2 ›*")
    assert shown(chatbot) == ["first, again\n\n*‹ 2/2 ›*", "echo: first, again"]
    # A reload (a new client of the same user) shows the same conversation and versions.
    again, _ = connect(app.url, user)
    chatbot = resume_open(again, user)[2]
    assert shown(chatbot) == ["first, again\n\n*‹ 2/2 ›*", "echo: first, again"]
    chatbot = again.predict(0, 1, api_name="/version")
    assert shown(chatbot)[2:] == ["second, edited\n\n*‹ 2/2 ›*", "echo: second, edited\n\n*‹ 1/2 ›*"]
    assert app.services.store.load(user, app.services.store.list(user)[0].id).version_of(0) == (1, 2)


def test_bad_edits_and_switches_get_clear_messages(app):
    client, _ = connect(app.url)
    chat(client, "only")
    with pytest.raises(AppError, match="not one of your messages"):
        edit(client, 1, "a reply")
    with pytest.raises(AppError, match="There is no message 7; this conversation shows 2"):
        edit(client, 7, "nowhere")
    with pytest.raises(AppError, match="empty"):
        edit(client, 0, "   ")
    with pytest.raises(AppError, match="no other versions"):
        client.predict(0, 1, api_name="/version")
    edit(client, 0, "only, edited")
    with pytest.raises(AppError, match="versions 1 to 2; there is no version 5"):
        client.predict(0, 5, api_name="/version")
    _, final = chat(client, "still fine")
    assert reply_text(final[0]) == "echo: still fine"


def test_switching_while_a_reply_streams_is_refused(tmp_path):
    with running_app(write_config(tmp_path, model_path="script:slow"), tmp_path / "data") as slow:
        client, _ = connect(slow.url)
        chat(client, "q", max_new_tokens=2)
        edit(client, 0, "q2", max_new_tokens=2)
        job = client.submit("long one", api_name="/chat")
        wait_for(lambda: len(job.outputs()) >= 3, "the reply to stream")
        with pytest.raises(AppError, match="still being written"):
            client.predict(0, 1, api_name="/version")
        job.cancel()


def test_kill_9_mid_edit_keeps_both_versions(tmp_path):
    config = write_config(tmp_path, model_path="script:slow")
    data, log = tmp_path / "data", tmp_path / "launch.log"
    with running_studio(config, data, log) as studio:
        client, user = connect(studio.url)
        chat(client, "original", max_new_tokens=3)
        job = client.submit(0, "edited", api_name="/edit")
        wait_for(lambda: job.outputs() and len(reply_text(job.outputs()[-1][0]).split()) >= 15,
                 "15 words of the edited reply")  # a checkpoint is on disk by now
        studio.kill()
    with running_studio(config, data, log) as studio:
        client, _ = connect(studio.url, user)
        chatbot = resume_open(client, user)[2]
        texts = shown(chatbot)
        assert texts[0] == "edited\n\n*‹ 2/2 ›*" and texts[1].startswith("w0 w1 w2")
        chatbot = client.predict(0, 1, api_name="/version")
        assert shown(chatbot) == ["original\n\n*‹ 1/2 ›*", "w0 w1 w2"]
