"""Editing an earlier message on the real embedded SmolLM2: the reply is the edited prompt's, the old one kept."""

from __future__ import annotations

import pytest

from tests.e2e.helpers import GREEDY, chat, connect, reply_text
from tests.support.apps import EMBEDDED_CONFIG, running_app


@pytest.fixture(scope="module")
def app(tmp_path_factory, embedded_cache_dir):
    tmp = tmp_path_factory.mktemp("versions-real")
    with running_app(EMBEDDED_CONFIG, tmp / "data", cache_dir=embedded_cache_dir) as running:
        yield running


def test_editing_the_first_message_answers_it_afresh_and_keeps_the_old_branch(app):
    params = dict(max_new_tokens=12, **GREEDY)
    client, user = connect(app.url)
    _, first = chat(client, "Say hello in French.", **params)
    chat(client, "And in Spanish?", **params)
    old_reply = reply_text(first[0])
    job = client.submit(0, "Name three colors.", api_name="/edit", **params)
    edited = job.result()[0]
    assert len(edited) == 2  # the later turns belong to the earlier version now
    # Greedy decoding: the edited turn's reply is exactly what a fresh chat with that message gets.
    fresh, _ = connect(app.url)
    _, alone = chat(fresh, "Name three colors.", **params)
    assert reply_text(edited) == reply_text(alone[0]) and reply_text(edited).strip()
    back = client.predict(0, 1, api_name="/version")
    assert len(back) == 4 and reply_text(back[:2]) == old_reply
    stored = app.services.store.load(user, app.services.store.list(user)[0].id)
    assert stored.version_of(0) == (1, 2) and stored.messages[0].text == "Say hello in French."
