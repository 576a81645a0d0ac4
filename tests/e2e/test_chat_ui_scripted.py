"""The chat app's API surface driven with gradio_client over real HTTP, on the scripted engine.

Deterministic UI behaviour only; generation itself is tested on the real model in test_chat_real.py.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from gradio_client.client import Status
from gradio_client.exceptions import AppError

from studio.tasks.users import local_user
from studio.ui.chat_page import GENERATING_CLASS
from tests.e2e.helpers import chat, connect, reply_text, wait_for
from tests.support.apps import running_app, write_config
from tests.support.waits import wait_until


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("scripted")
    with running_app(write_config(tmp), tmp / "data") as running:
        yield running


@pytest.fixture(scope="module")
def slow_app(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("slow")
    with running_app(write_config(tmp, model_path="script:slow"), tmp / "data") as running:
        yield running


def test_endpoints_are_the_intended_ones(app):
    client, _ = connect(app.url)
    named = set(client.view_api(return_format="dict", print_info=False)["named_endpoints"])
    assert named == {"/status", "/resume", "/select", "/new", "/rename", "/delete", "/search", "/system_prompt",
                     "/chat",
                     "/regenerate", "/edit", "/version", "/undo", "/clear", "/export_markdown", "/export_json", "/export_homework",
                     "/vision_ask", "/vision_describe", "/vision_ocr", "/vision_regenerate", "/vision_extract",
                     "/vision_clear", "/vision_switch", "/article_write", "/article_rewrite", "/article_expand", "/article_shorten",
                     "/article_insert_before", "/article_insert_after", "/article_set_text", "/article_delete_block",
                     "/article_search", "/article_delete_image", "/article_pick", "/article_undo",
                     "/article_export_markdown", "/article_export_html", "/article_export_xlsx",
                     "/article_export_homework", "/article_open",
                     "/article_new", "/article_rename", "/article_delete", "/article_drafts",
                     "/system_status", "/system_unload", "/system_load", "/system_switch",
                     "/agent_send", "/agent_stop", "/agent_clear", "/agent_new", "/agent_resume",
                     "/agent_export_markdown", "/agent_export_json",
                     "/presets", "/preset_apply", "/preset_save", "/preset_delete",
                     "/models_find", "/models_load", "/models_download", "/models_cancel", "/models_jobs"}


def test_stream_grows_and_conversation_is_listed(app):
    client, user = connect(app.url)
    words = " ".join(f"w{i}" for i in range(30))  # 0.6 s of streaming: several 50 ms frames
    outs, final = chat(client, words)
    texts = [reply_text(o[0]) for o in outs]
    assert len(texts) >= 5 and texts[-1] == f"echo: {words}"
    assert all(texts[i] == texts[i + 1][: len(texts[i])] for i in range(len(texts) - 1))  # prefixes
    assert final[1] == ""  # the input box is cleared
    convs = app.services.store.list(user)
    assert len(convs) == 1 and convs[0].title == words[:48] + "…"


def test_bad_input_gets_a_message_and_next_request_works(app):
    client, _ = connect(app.url)
    with pytest.raises(AppError, match="empty"):
        client.predict("   ", api_name="/chat")
    with pytest.raises(AppError, match="200,000 characters; the limit is 100,000"):
        client.predict("x" * 200_000, api_name="/chat")
    with pytest.raises(Exception):
        client.predict("hi", max_new_tokens=99_999, api_name="/chat")  # slider bounds enforced
    with pytest.raises(AppError, match="nothing to regenerate"):
        client.predict(api_name="/regenerate")
    with pytest.raises(AppError, match="nothing to undo"):
        client.predict(api_name="/undo")
    _, final = chat(client, "still alive")
    assert reply_text(final[0]) == "echo: still alive"


def test_undo_regenerate_clear(app):
    client, user = connect(app.url)
    before = {c.id for c in app.services.store.list(user)}  # every client is the local user: others' chats
    chat(client, "first")
    chat(client, "second message")
    chatbot, box, _ = client.predict(api_name="/undo")
    assert box == "second message" and [m["role"] for m in chatbot] == ["user", "assistant"]
    _, final = chat(client, "edited message")
    assert reply_text(final[0]) == "echo: edited message"
    chatbot, _, _ = client.predict(api_name="/regenerate")
    # The earlier reply is kept as version 1 of 2; the new one is shown, marked so.
    assert len(chatbot) == 4 and reply_text(chatbot) == "echo: edited message\n\n*‹ 2/2 ›*"
    chatbot, _, _ = client.predict(api_name="/clear")
    assert chatbot == []
    assert {c.id for c in app.services.store.list(user)} == before  # an emptied conversation is not listed


def test_conversations_new_select_rename_delete(app):
    client, user = connect(app.url)
    before = {c.id for c in app.services.store.list(user)}
    chat(client, "alpha conversation")
    client.predict(api_name="/new")
    chat(client, "beta conversation")
    ids = [c.id for c in app.services.store.list(user) if c.id not in before]
    assert len(ids) == 2
    out = client.predict(ids[1], api_name="/select")  # the older one: alpha
    assert reply_text(out[1]) == "echo: alpha conversation"
    client.predict("Renamed α", api_name="/rename")
    assert app.services.store.load(user, ids[1]).title == "Renamed α"
    client.predict(False, api_name="/delete")  # not confirmed: nothing happens
    assert len(app.services.store.list(user)) == len(before) + 2
    client.predict(True, api_name="/delete")
    left = app.services.store.list(user)
    assert [c.id for c in left if c.id not in before] == [ids[0]]


def test_browsers_without_a_login_share_the_local_user(app):
    a, user_a = connect(app.url)
    b, user_b = connect(app.url, "0f" * 16)  # a browser that kept an old per-browser key
    assert user_a == user_b == local_user()
    chat(a, "written in browser A")
    conv = app.services.store.list(user_a)[0]
    listing = b.predict("", api_name="/resume")[1]  # B reloads: A's conversation is in its list
    assert [conv.id, "written in browser A"] in [[i, t] for t, i in listing["choices"]]
    assert reply_text(b.predict(conv.id, api_name="/select")[1]) == "echo: written in browser A"


def test_users_with_a_login_are_isolated(tmp_path):
    with running_app(write_config(tmp_path), tmp_path / "data", auth=[("ann", "pw-1"), ("ben", "pw-2")]) as app:
        a, user_a = connect(app.url, auth=("ann", "pw-1"))
        b, user_b = connect(app.url, auth=("ben", "pw-2"))
        chat(a, "secret of A")
        conv_a = app.services.store.list("user:ann")[0].id
        # B cannot open A's conversation: Gradio refuses an id outside B's own list, and the store
        # would answer "not found" for the wrong user anyway.
        with pytest.raises(Exception, match="not found|not in the list of choices"):
            b.predict(conv_a, api_name="/select")
        assert app.services.store.list("user:ben") == []
        again, _ = connect(app.url, auth=("ann", "pw-1"))  # A coming back, from another browser too
        listing = again.predict("", api_name="/resume")[1]
        assert conv_a in [value for _, value in listing["choices"]]


def test_exports_reopen_with_the_content(app, tmp_path):
    client, _ = connect(app.url)
    chat(client, "export me ```please``` # now")
    md = Path(client.predict(api_name="/export_markdown")).read_text(encoding="utf-8")
    assert "export me ```please``` # now" in md and "echo: export me" in md
    data = json.loads(Path(client.predict(api_name="/export_json")).read_text(encoding="utf-8"))
    assert data["format"] == "puyu-studio.conversation"
    assert [m["content"] for m in data["messages"]] == ["export me ```please``` # now",
                                                        "echo: export me ```please``` # now"]


def test_stop_keeps_partial_reply_and_next_message_works(slow_app):
    client, user = connect(slow_app.url)
    job = client.submit("go", api_name="/chat")
    wait_for(lambda: len(job.outputs()) >= 4, "4 streamed updates")
    job.cancel()
    wait_for(lambda: job.status().code in (Status.CANCELLED, Status.FINISHED), "the job to end after Stop")
    time.sleep(0.5)
    conv = slow_app.services.store.list(user)[0]
    saved = slow_app.services.store.load(user, conv.id)
    partial = saved.messages[-1].text
    assert saved.messages[-1].role == "assistant" and 0 < len(partial.split()) < 200
    job2 = client.submit("again", api_name="/chat")
    wait_for(lambda: len(job2.outputs()) >= 2, "the next message to stream")
    job2.cancel()


def test_message_sent_while_loading_waits_and_says_so(tmp_path):
    # The model stays loading until the test opens the gate: a busy machine cannot finish it early.
    with running_app(write_config(tmp_path, model_path="script:gatedload"), tmp_path / "data",
                     cache_dir=tmp_path / "cache", wait_ready=False) as app:
        client, _ = connect(app.url)
        status = client.predict(api_name="/status")[0]
        assert "loading" in status
        job = client.submit("are you there", api_name="/chat")
        wait_until(lambda: any("Waiting for the model to load" in str(o[2]) for o in job.outputs()),
                   "the loading notice on the message sent while loading")
        (tmp_path / "cache" / "load-gate").touch()
        outs = list(job)
        final = job.outputs()[-1]
        notices = [o[2] for o in outs]
        # The loading notice is the generating line's text while the model loads.
        assert any("Waiting for the model to load" in n and GENERATING_CLASS in n for n in notices)
        assert reply_text(final[0]) == "echo: are you there" and final[2] == ""  # notice cleared
        assert client.predict(api_name="/status")[0].startswith('<span class="status-dot status-ready">')


def test_api_client_without_resume_still_saves(app):
    from gradio_client import Client

    client = Client(app.url, verbose=False)
    chatbot = client.predict("no resume here", api_name="/chat")[0]
    assert reply_text(chatbot) == "echo: no resume here"
    user = f"session:{client.session_hash}"
    assert app.services.store.list(user)[0].title == "no resume here"


def test_exporting_an_empty_chat_is_a_notice_not_an_error(app):
    client, _ = connect(app.url)
    assert client.predict(api_name="/export_markdown") is None  # no file, and no error raised
    assert client.predict(api_name="/export_json") is None
    chat(client, "now there is something")
    path = Path(client.predict(api_name="/export_markdown"))
    assert "now there is something" in path.read_text(encoding="utf-8")


def test_export_written_in_the_private_folder(app):
    import stat

    client, _ = connect(app.url)
    chat(client, "private please")
    client.predict(api_name="/export_json")
    written = list((app.services.files.root / "exports").glob("*/*.json"))
    assert written and all(stat.S_IMODE(p.parent.stat().st_mode) == 0o700 for p in written)
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in written)
