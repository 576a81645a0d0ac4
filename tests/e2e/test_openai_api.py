"""The OpenAI-compatible API on the launched app, driven with the official `openai` client."""

from __future__ import annotations

import base64
import threading
import time

import httpx
import openai
import pytest

from studio.api.auth import LaunchInfo, refusal
from studio.core.types import Message, TextDelta
from studio.errors import InputError
from studio.images import load_image
from studio.tasks import completions
from tests.e2e.helpers import wait_for
from tests.support import hostile_images as hostile
from tests.support.apps import EMBEDDED_CONFIG, running_app, write_config
from tests.support.engine_calls import GenerationRequest, generate

KEY = "test-key-0123456789"
LOGIN = ("alice", "s3cret-pass")
ENGINES = f"""\
  vision: {{engine: scripted, model_path: "script:vision"}}
  slow: {{engine: scripted, model_path: "script:slow"}}
api: {{keys: [{KEY}], model_names: {{echo-alias: chat}}}}
"""


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("openai-api")
    with running_app(write_config(tmp, extra=ENGINES), tmp / "data", auth=LOGIN) as running:
        for name in ("vision", "slow"):
            assert running.services.engines.wait(name, 30).state == "ready"
        yield running


def client(app, key: str = KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=app.url + "v1", api_key=key, max_retries=0, timeout=120)


def ask(app, text: str = "hello there", model: str = "chat", **kw):
    return client(app).chat.completions.create(model=model, messages=[{"role": "user", "content": text}], **kw)


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def with_images(*urls: str, text: str = "what is this?") -> list[dict]:
    parts = [{"type": "image_url", "image_url": {"url": u}} for u in urls]
    return [{"role": "user", "content": [{"type": "text", "text": text}, *parts]}]


def test_models_list_engines_and_aliases(app):
    models = {m.id: m for m in client(app).models.list().data}
    assert set(models) == {"chat", "vision", "slow", "echo-alias"}
    assert models["vision"].accepts_images is True and models["chat"].accepts_images is False
    assert models["echo-alias"].engine == "chat" and models["chat"].label == "script:echo"


def test_non_stream_reply_with_usage(app):
    reply = ask(app, "hello there", model="echo-alias")
    assert reply.object == "chat.completion" and reply.model == "echo-alias"
    assert reply.choices[0].message.content == "echo: hello there" and reply.choices[0].finish_reason == "stop"
    assert reply.usage.completion_tokens == 3 and reply.usage.prompt_tokens > 0
    reply = ask(app, "a b", stop="zzz", seed=3, temperature=0, extra_body={"top_k": 5, "repetition_penalty": 1.2})
    assert reply.choices[0].message.content == "echo: a b"  # extras accepted


def test_stream_grows_ends_with_finish_usage_and_done(app):
    chunks = list(ask(app, "one two three four", stream=True, stream_options={"include_usage": True}))
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert chunks[0].choices[0].delta.role == "assistant" and pieces == ["echo:", " one", " two", " three", " four"]
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop" and chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == 5
    with httpx.stream("POST", app.url + "v1/chat/completions", headers={"Authorization": f"Bearer {KEY}"},
                      json={"model": "chat", "stream": True, "messages": [{"role": "user", "content": "x"}]}) as r:
        lines = [line for line in r.iter_lines() if line]
    assert r.headers["content-type"].startswith("text/event-stream") and lines[-1] == "data: [DONE]"


@pytest.mark.parametrize("kwargs, param", [
    (dict(temperature=5), "temperature"), (dict(max_tokens=0), "max_tokens"),
    (dict(max_completion_tokens=99_999), "max_completion_tokens"), (dict(top_p=0), "top_p"),
    (dict(n=2), "n"), (dict(presence_penalty=0.5), "presence_penalty"), (dict(model="gpt-4o"), "model"),
    (dict(extra_body={"top_k": -1}), "top_k"), (dict(stop=["a", "b", "c", "d", "e"]), "stop"),
    (dict(messages=[]), "messages"),
    (dict(messages=[{"role": "bot", "content": "hi"}]), "messages[0].role"), (dict(seed=-1), "seed"),
    (dict(messages=[{"role": "user", "content": [{"type": "image_url"}]}]), "messages[0].content[0].image_url"),
    (dict(messages=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]), "messages[1].role"),
])
def test_invalid_params_are_400_naming_the_param(app, kwargs, param):
    body = dict(model="chat", messages=[{"role": "user", "content": "hi"}]) | kwargs
    with pytest.raises(openai.APIStatusError) as err:
        client(app).chat.completions.create(**body)
    assert err.value.status_code == (404 if param == "model" else 400)
    assert err.value.body["param"] == param and err.value.body["type"] == "invalid_request_error"
    if param == "model":
        assert err.value.body["code"] == "model_not_found" and "known: chat, vision, slow" in err.value.body["message"]


def test_images_as_data_urls_reach_the_vision_model(app):
    png = hostile.encode(hostile.noise((64, 48)), "PNG")
    jpeg = hostile.encode(hostile.noise((30, 20)), "JPEG")
    reply = client(app).chat.completions.create(
        model="vision", messages=with_images(data_url(png), data_url(jpeg, "image/jpeg")))
    assert reply.choices[0].message.content.startswith("I see 2 image(s) (64x48, 30x20)")


@pytest.mark.parametrize("data", [hostile.half(hostile.encode(hostile.noise(), "PNG")), b"not an image at all",
                                  hostile.bomb_png()], ids=["truncated", "not-an-image", "bomb"])
def test_hostile_images_get_our_message(app, data):
    with pytest.raises(InputError) as ours:
        load_image(data, name="The image in messages[0].content[1]")
    with pytest.raises(openai.BadRequestError) as err:
        client(app).chat.completions.create(model="vision", messages=with_images(data_url(data)))
    assert ours.value.message in err.value.body["message"]
    assert err.value.body["param"] == "messages[0].content[1]" and err.value.body["code"] == "invalid_image"


def test_remote_and_malformed_image_urls_are_refused(app):
    for url, words in [("https://example.com/cat.png", "does not download"), ("data:image/png,rawbytes", "base64"),
                       ("data:image/png;base64,%%%", "invalid")]:
        with pytest.raises(openai.BadRequestError) as err:
            client(app).chat.completions.create(model="vision", messages=with_images(url))
        assert words in err.value.body["message"]


def test_image_to_text_only_model_is_400(app):
    png = hostile.encode(hostile.noise((16, 16)), "PNG")
    with pytest.raises(openai.BadRequestError) as err:
        client(app).chat.completions.create(model="chat", messages=with_images(data_url(png)))
    assert "reads text only" in err.value.body["message"] and err.value.body["code"] == "images_not_supported"


def test_prompt_twice_the_context_window_is_400(app):
    with pytest.raises(openai.BadRequestError) as err:
        ask(app, "word " * 1024)  # the scripted engine's window is 512 tokens
    assert "context window is 512 tokens" in err.value.body["message"]
    assert err.value.body["code"] == "context_length_exceeded"


def test_keys_and_launch_credentials(app):
    for bad in ("wrong-key-0000000", LOGIN[0], "s3cret-pas"):
        with pytest.raises(openai.AuthenticationError) as err:
            client(app, bad).models.list()
        assert err.value.body["message"] == "Incorrect API key provided."
    r = httpx.get(app.url + "v1/models")
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    for good in (KEY, LOGIN[1], f"{LOGIN[0]}:{LOGIN[1]}"):
        assert len(client(app, good).models.list().data) == 4


def test_without_keys_or_login_only_a_localhost_server_is_open():
    assert refusal([], LaunchInfo(None, "127.0.0.1"), None) is None is refusal([], LaunchInfo(None, "::1"), None)
    assert "public address" in refusal([], LaunchInfo(None, "0.0.0.0"), None)
    assert "public address" in refusal([], LaunchInfo(None, "127.0.0.1", share=True), None)
    assert "Missing API key" in refusal(["k" * 8], LaunchInfo(None, "127.0.0.1"), None)


def test_engine_error_mid_stream_is_an_error_event(app, monkeypatch):
    engine = app.services.engines.get("chat")

    def failing(prepared, cancel):
        yield TextDelta("partial")
        if prepared.params.seed == 1:
            raise RuntimeError("a bug")
        yield TextDelta(finish_reason="error", error="Generation failed: boom")

    monkeypatch.setattr(engine, "stream", failing)
    for seed, words in [(2, "Generation failed: boom"), (1, "Internal error (id ")]:
        with pytest.raises(openai.APIError) as err:
            list(ask(app, stream=True, seed=seed))
        assert words in err.value.message
    with pytest.raises(openai.InternalServerError):
        ask(app, seed=2)


def test_client_disconnect_mid_stream_stops_the_engine(app, monkeypatch):
    engine, produced, running = app.services.engines.get("slow"), [], threading.Event()
    original = engine.stream

    def counting(prepared, cancel):
        running.set()
        try:
            for delta in original(prepared, cancel):
                produced.append(delta)
                yield delta
        finally:
            running.clear()

    monkeypatch.setattr(engine, "stream", counting)
    stream = ask(app, "go", model="slow", stream=True)
    list(zip(range(4), stream))  # read a few chunks, then hang up
    stream.close()
    wait_for(lambda: not running.is_set(), "the engine to stop for the gone client", step=0.02)
    assert produced[-1].finish_reason == "cancelled" and len(produced) < 10
    count = len(produced)
    time.sleep(0.5)
    assert len(produced) == count  # nothing more is produced for the gone client
    assert ask(app, "again").choices[0].message.content == "echo: again"


def test_model_still_loading_waits_then_503_with_progress(tmp_path, monkeypatch):
    monkeypatch.setattr(completions, "LOAD_WAIT_S", 0.3)
    with running_app(write_config(tmp_path, model_path="script:slowload"), tmp_path / "data", wait_ready=False) as run:
        c = client(run, "unused")
        with pytest.raises(openai.APIStatusError) as err:
            c.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}])
        assert err.value.status_code == 503 and "still loading (" in err.value.body["message"]
        monkeypatch.setattr(completions, "LOAD_WAIT_S", 30.0)  # a bounded wait long enough for the load
        reply = c.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}])
        assert reply.choices[0].message.content == "echo: hi"


def test_api_disabled_has_no_routes(tmp_path):
    with running_app(write_config(tmp_path, extra="api:\n  enabled: false\n"), tmp_path / "data") as run:
        assert httpx.get(run.url + "v1/models").status_code == 404 and httpx.get(run.url).status_code == 200


@pytest.fixture(scope="module")
def real(tmp_path_factory, embedded_cache_dir):
    with running_app(EMBEDDED_CONFIG, tmp_path_factory.mktemp("api-real") / "data",
                     cache_dir=embedded_cache_dir) as running:
        yield running


def test_real_model_greedy_matches_the_engine_stream_and_stop(real):
    engine = real.services.engines.get("chat")
    text, c = "Write one sentence about the sea.", client(real, "unused-on-localhost")
    messages = [{"role": "user", "content": text}]
    params = real.services.config.engines["chat"].defaults.model_copy(
        update={"max_new_tokens": 24, "temperature": 0.0, "do_sample": False})
    deltas = list(generate(engine, GenerationRequest([Message.of("user", text)], params)))
    direct, end = "".join(d.text for d in deltas), deltas[-1]
    assert end.finish_reason in ("stop", "length") and end.completion_tokens > 8
    reply = c.chat.completions.create(model="chat", messages=messages, max_tokens=24, temperature=0)
    assert reply.choices[0].message.content == direct and reply.choices[0].finish_reason == end.finish_reason
    assert reply.usage.completion_tokens == end.completion_tokens
    cut = c.chat.completions.create(model="chat", messages=messages, max_tokens=8, temperature=0)
    assert cut.choices[0].finish_reason == "length" and cut.usage.completion_tokens == 8
    assert direct.startswith(cut.choices[0].message.content) and len(cut.choices[0].message.content) < len(direct)
    pieces = [ch.choices[0].delta.content or "" for ch in
              c.chat.completions.create(model="chat", messages=messages, max_tokens=24, temperature=0, stream=True)
              if ch.choices]
    assert "".join(pieces) == direct and len([p for p in pieces if p]) >= 5
    stop = direct.split()[3]
    cut = c.chat.completions.create(model="chat", messages=messages, max_tokens=24, temperature=0, stop=[stop])
    assert cut.choices[0].finish_reason == "stop" and cut.choices[0].message.content == direct[:direct.index(stop)]


def _post(app, body: bytes | object, **headers) -> httpx.Response:
    return httpx.post(app.url + "v1/chat/completions", content=body, timeout=300,
                      headers={"authorization": f"Bearer {KEY}", "content-type": "application/json", **headers})


def test_body_over_the_cap_is_413_chunked_or_not(app):
    from studio.api.openai_routes import MAX_BODY

    head, tail = b'{"model": "chat", "messages": [{"role": "user", "content": "', b'"}]}'
    filler = MAX_BODY + 1 - len(head) - len(tail)
    declared = _post(app, head + b"x" * filler + tail)
    assert declared.status_code == 413 and "over 64 MiB" in declared.json()["error"]["message"]

    def chunked():  # no content-length: httpx sends Transfer-Encoding: chunked
        yield head
        for _ in range(filler // 2**20):
            yield b"x" * 2**20
        yield b"x" * (filler % 2**20) + tail

    r = _post(app, chunked())
    assert r.status_code == 413 and "over 64 MiB" in r.json()["error"]["message"]

    def small():
        yield head + "chunked but small".encode() + tail

    ok = _post(app, small())
    assert ok.status_code == 200 and ok.json()["choices"][0]["message"]["content"] == "echo: chunked but small"


def test_lone_surrogates_and_nul_are_replaced_not_a_500(app):
    body = ('{"model": "chat\\ud800", "messages": [{"role": "user", "content": "a\\ud800b\\u0000c"}]}').encode()
    unknown = _post(app, body)
    assert unknown.status_code == 404 and "chat\ufffd" in unknown.json()["error"]["message"]
    body = b'{"model": "chat", "messages": [{"role": "system", "content": "s\\udfff"}, ' \
           b'{"role": "user", "content": [{"type": "text", "text": "a\\ud800b\\u0000c"}]}], "stop": ["\\ud800"]}'
    r = _post(app, body)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == "echo: a\ufffdb\ufffdc"
    assert ask(app, "next one").choices[0].message.content == "echo: next one"
