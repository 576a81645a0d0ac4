"""The launched app with the remote engine (openai_compat), driven with gradio_client over real HTTP:
against a local fake server (every failure mode), and against a second studio's own /v1 API."""

from __future__ import annotations

import time

import pytest
from gradio_client.client import Status
from gradio_client.exceptions import AppError

from tests.e2e.helpers import GREEDY, chat, connect, reply_text, wait_for
from tests.support.apps import running_app, write_config
from tests.support.fake_openai import FakeOpenAI


def remote_config(folder, base_url: str, extra: str = ""):
    """A config whose chat engine is the remote engine at `base_url`."""
    path = folder / "remote.yaml"
    path.write_text(f"ui:\n  queue_max_size: 8\nengines:\n  chat:\n    engine: openai_compat\n"
                    f"    base_url: {base_url}\n    timeout_s: 1\n{extra}", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def fake():
    with FakeOpenAI(slow_s=3.0, word_delay=0.01) as server:
        yield server


@pytest.fixture(scope="module")
def app(fake, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("remote")
    with running_app(remote_config(tmp, fake.base_url()), tmp / "data") as running:
        yield running


def test_chat_streams_from_the_remote_server(app, fake):
    client, _ = connect(app.url)
    words = " ".join(f"w{i}" for i in range(40))
    outs, final = chat(client, words)
    texts = [reply_text(o[0]) for o in outs]
    assert texts[-1] == f"echo: {words}" and len(texts) >= 3
    assert all(texts[i] == texts[i + 1][: len(texts[i])] for i in range(len(texts) - 1))
    info = app.services.engines.state("chat").info
    assert (info.engine, info.model, info.device) == ("openai_compat", "fake-model",
                                                      f"remote: 127.0.0.1:{fake.server_address[1]}")
    assert client.predict(api_name="/status")[0].startswith('<span class="status-dot status-ready">')


@pytest.mark.parametrize("mode, message", [
    ("error500", "HTTP 500: model crashed: CUDA out of memory"),
    ("html", "expected a stream of server-sent events, got text/html"),
    ("garbage", "not a stream of server-sent events"),
    ("drop", "the connection dropped mid-reply"),
    ("errorevent", "the server reported an error: engine died while generating"),
    ("slowfirst", "no data for 1 s (timeout_s)"),
])
def test_remote_failure_is_a_clear_message_and_the_next_message_works(app, fake, mode, message):
    client, _ = connect(app.url)
    fake.next_mode = mode
    start = time.monotonic()
    with pytest.raises(AppError) as e:
        client.predict("hello there world", api_name="/chat")  # predict raises what a submitted job swallows
    assert time.monotonic() - start < fake.slow_s * 3  # gave up on its own timeout, not the fake's silence
    assert f"127.0.0.1:{fake.server_address[1]}: " in str(e.value) and message in str(e.value)
    chatbot = client.predict("still there?", api_name="/chat")[0]
    assert reply_text(chatbot).endswith("still there?")  # the next message works …
    assert "hello there world" in str(chatbot[0]["content"])  # … and the failed one is kept
    if len(chatbot) == 3:  # it got no reply at all: the model read the two as one turn
        assert reply_text(chatbot) == "echo: hello there world\n\nstill there?"


def test_stop_in_the_ui_closes_the_remote_stream(app, fake):
    client, _ = connect(app.url)
    fake.next_mode = "long"
    job = client.submit("go", api_name="/chat")
    wait_for(lambda: fake.streams_open == 1 and fake.words_sent > 0, "the remote stream to start")
    wait_for(lambda: len(job.outputs()) >= 3, "3 streamed updates")
    job.cancel()
    wait_for(lambda: job.status().code in (Status.CANCELLED, Status.FINISHED), "the job to end after Stop")
    wait_for(lambda: fake.streams_open == 0, "the remote server to see the client go")
    sent = fake.words_sent
    time.sleep(0.5)
    assert fake.words_sent == sent
    assert reply_text(chat(client, "next")[1][0]) == "echo: next"


def test_unreachable_server_fails_the_load_with_the_url_and_how_to_start_one(tmp_path):
    from tests.support.apps import free_port

    url = f"http://127.0.0.1:{free_port()}/v1"
    with running_app(remote_config(tmp_path, url), tmp_path / "data", wait_ready=False) as running:
        state = running.services.engines.wait("chat", 30)
        assert state.state == "failed"
        assert f"Cannot reach the model server at {url}/models" in state.error
        assert "lmdeploy serve api_server" in state.error
        client, _ = connect(running.url)
        with pytest.raises(AppError, match="The model failed to load: Cannot reach the model server"):
            client.predict("hello", api_name="/chat")


KEY = "remote-test-key"


@pytest.fixture(scope="module")
def studio_remote(tmp_path_factory):
    """A second studio (scripted echo engine) whose own /v1 API serves as the remote, behind a key."""
    tmp = tmp_path_factory.mktemp("second")
    with running_app(write_config(tmp, extra=f"api:\n  keys: [{KEY}]\n"), tmp / "data") as running:
        yield running


def test_a_second_studio_serves_as_the_remote(studio_remote, tmp_path):
    base = studio_remote.url + "v1"
    with running_app(remote_config(tmp_path, base, f"    remote_model: chat\n    api_key: {KEY}\n"),
                     tmp_path / "data") as first:
        info = first.services.engines.state("chat").info
        assert (info.engine, info.model, info.accepts_images) == ("openai_compat", "chat", False)
        client, _ = connect(first.url)
        words = " ".join(f"w{i}" for i in range(30))
        outs, final = chat(client, words, **GREEDY)
        texts = [reply_text(o[0]) for o in outs]
        second, _ = connect(studio_remote.url)
        expected = reply_text(chat(second, words, **GREEDY)[1][0])
        assert texts[-1] == expected == f"echo: {words}"
        assert len(texts) >= 3 and all(texts[i] == texts[i + 1][: len(texts[i])] for i in range(len(texts) - 1))


def test_a_second_studio_with_a_wrong_key_is_refused_at_load(studio_remote, tmp_path):
    config = remote_config(tmp_path, studio_remote.url + "v1", "    remote_model: chat\n    api_key: wrong-key-123\n")
    with running_app(config, tmp_path / "data", wait_ready=False) as first:
        state = first.services.engines.wait("chat", 30)
        assert state.state == "failed" and "refused the API key (HTTP 401: Incorrect API key provided.)" in state.error
