"""The sidebar's API over real HTTP (gradio_client, scripted engine): search, rename and delete, the
conversation a reload reopens, and prompt presets saved per user."""

from __future__ import annotations

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from tests.e2e.helpers import chat, connect, reply_text
from tests.support.apps import running_app, write_config


# Without a login every page shares the local user; logins keep each test's users apart (one app per module).
USERS = [(f"user{i}", f"pw-{i}") for i in range(8)]


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sidebar")
    with running_app(write_config(tmp), tmp / "data", auth=USERS) as running:
        yield running


def login(app, i: int):
    """A page of login user `i`: its client and user id."""
    client, _ = connect(app.url, auth=USERS[i])
    return client, f"user:{USERS[i][0]}"


def listed(radio: dict) -> list[str]:
    """The labels of the conversations radio as an update returns it."""
    return [label for label, _ in radio["choices"]]


def test_search_filters_by_title_and_text_and_keeps_the_filter(app):
    client, user = login(app, 0)
    chat(client, "alpha: growth of 100% in a_b")
    client.predict(api_name="/new")
    chat(client, "beta: 小猫 sleeps in the sun")
    client.predict(api_name="/new")
    chat(client, "gamma: nothing special")
    assert listed(client.predict("小猫", api_name="/search")[0]) == ["beta: 小猫 sleeps in the sun"]
    assert listed(client.predict("100%", api_name="/search")[0]) == ["alpha: growth of 100% in a_b"]
    assert listed(client.predict("a_b", api_name="/search")[0]) == ["alpha: growth of 100% in a_b"]
    assert listed(client.predict("_", api_name="/search")[0]) == ["alpha: growth of 100% in a_b"]
    assert listed(client.predict("echo: gamma", api_name="/search")[0]) == ["gamma: nothing special"]  # a reply
    assert client.predict("no such words", api_name="/search")[0]["choices"] == []
    # Opening a found conversation keeps the list filtered; clearing the box shows all three again.
    listed_now = client.predict("sun", api_name="/search")[0]
    beta = listed_now["choices"][0][1]
    out = client.predict(beta, api_name="/select")
    assert listed(out[0]) == ["beta: 小猫 sleeps in the sun"] and out[0]["value"] == beta
    assert reply_text(out[1]) == "echo: beta: 小猫 sleeps in the sun"
    assert len(client.predict("", api_name="/search")[0]["choices"]) == 3
    other, _ = login(app, 1)
    assert other.predict("小猫", api_name="/search")[0]["choices"] == []  # another user's conversations


def test_rename_and_delete_keep_the_list_in_step(app):
    client, user = login(app, 2)
    chat(client, "first chat")
    client.predict(api_name="/new")
    chat(client, "second chat")
    radio = client.predict("新的标题 · renamed", api_name="/rename")[0]
    assert listed(radio) == ["新的标题 · renamed", "first chat"]
    assert listed(client.predict("新的标题", api_name="/search")[0]) == ["新的标题 · renamed"]
    out = client.predict(True, api_name="/delete")  # the open one: the newest left is opened
    assert listed(out[0]) == [] and app.services.store.count(user) == 1  # the search still filters
    assert reply_text(out[1]) == "echo: first chat"
    assert listed(client.predict("", api_name="/search")[0]) == ["first chat"]
    with pytest.raises(AppError, match="title cannot be empty"):
        client.predict("   ", api_name="/rename")


def test_resume_reopens_the_conversation_that_was_open(app):
    client, user = login(app, 3)
    chat(client, "older conversation")
    older = app.services.store.list(user)[0].id
    client.predict(api_name="/new")
    chat(client, "newer conversation")
    again = Client(app.url, verbose=False, auth=USERS[3])
    out = again.predict(user, older, "480", api_name="/resume")
    assert out[0] == "" and reply_text(out[2]) == "echo: older conversation"  # a login keeps no browser key
    assert out[1]["value"] == older and out[-2] == older and out[-1] == "480"  # open id, browser zone
    # Gone, another user's, or not an id at all: the newest opens, as before.
    stranger, _ = login(app, 4)
    chat(stranger, "not yours")
    foreign = app.services.store.list(f"user:{USERS[4][0]}")
    for conv in ["0" * 32, "../../etc", foreign[0].id if foreign else "f" * 32]:
        out = Client(app.url, verbose=False, auth=USERS[3]).predict(user, conv, "bogus", api_name="/resume")
        assert reply_text(out[2]) == "echo: newer conversation" and out[-1] == ""


def test_presets_builtin_saved_applied_and_deleted_per_user(app):
    client, user = login(app, 5)
    choices = client.predict(api_name="/presets")["choices"]
    assert [key for _, key in choices][:3] == ["builtin:default", "builtin:concise", "builtin:translator"]
    assert "briefly" in client.predict("builtin:concise", api_name="/preset_apply")
    zh = Client(app.url, verbose=False, auth=USERS[5], headers={"Accept-Language": "zh-CN"})
    assert "简洁" in zh.predict("builtin:concise", api_name="/preset_apply")
    assert "中英互译" in [label for label, _ in zh.predict(api_name="/presets")["choices"]]

    picker, name_box = client.predict("Pirate 海盗", "Talk like a pirate.", api_name="/preset_save")
    saved = picker["value"]
    assert name_box == "" and ("Pirate 海盗", saved) in [tuple(c) for c in picker["choices"]]
    assert app.services.presets.load(user, saved).text == "Talk like a pirate."
    picker, _ = client.predict("Pirate 海盗", "Arr, be brief.", api_name="/preset_save")  # same name: replaced
    assert picker["value"] == saved and len(app.services.presets.list(user)) == 1
    text = client.predict(saved, api_name="/preset_apply")
    assert text == "Arr, be brief."
    chat(client, "ahoy", system_prompt=text)  # what the box holds is what the conversation keeps
    assert app.services.store.load(user, app.services.store.list(user)[0].id).system_prompt == "Arr, be brief."

    other, _ = login(app, 6)
    assert saved not in [key for _, key in other.predict(api_name="/presets")["choices"]]
    with pytest.raises(AppError, match="not found|not in the list of choices"):
        other.predict(saved, api_name="/preset_apply")
    with pytest.raises(AppError, match="Built-in presets cannot be deleted"):
        client.predict("builtin:concise", api_name="/preset_delete")
    with pytest.raises(AppError, match="needs a name"):
        client.predict("  ", "text", api_name="/preset_save")
    with pytest.raises(AppError, match="nothing to save"):
        client.predict("Empty", "", api_name="/preset_save")
    picker = client.predict(saved, api_name="/preset_delete")
    assert saved not in [key for _, key in picker["choices"]] and app.services.presets.list(user) == []
