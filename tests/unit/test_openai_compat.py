"""The remote engine against a local fake server: streaming, parameters, every failure mode, cancel, config."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from studio.config import load_config
from studio.engines.openai_compat import RemoteOptions
from studio.core.types import GenParams, ImagePart, Message, TextPart
from studio.engines import ENGINES, preflight
from studio.engines.base import LoadContext, Placement
from studio.engines.openai_compat import load_openai_compat
from studio.errors import ConfigError, InputError, StudioError
from tests.support.fake_openai import FakeOpenAI
from tests.support.engine_calls import GenerationRequest, generate, prompt_tokens

CTX = LoadContext("chat", Placement("auto"), Path("/tmp"), lambda frac, text: None)


@pytest.fixture(scope="module")
def fake():
    with FakeOpenAI(slow_s=3.0) as server:
        yield server


def engine(base_url: str, **cfg):
    return load_openai_compat(RemoteOptions(base_url=base_url, **cfg), CTX)


def ask(eng, text: str = "hello there", **params):
    request = GenerationRequest([Message.of("user", text)], GenParams(**params))
    deltas = list(generate(eng, request))
    return "".join(d.text for d in deltas), deltas[-1]


def test_streams_words_with_finish_and_usage(fake):
    eng = engine(fake.base_url())
    request = GenerationRequest([Message.of("user", "hello there world")])
    deltas = list(generate(eng, request))
    assert [d.text for d in deltas[:-1]] == ["echo:", " hello", " there", " world"]
    last = deltas[-1]
    assert (last.finish_reason, last.error, last.prompt_tokens, last.completion_tokens) == ("stop", None, 7, 4)
    text, last = ask(eng, "a b c d e f", max_new_tokens=3)
    assert (text, last.finish_reason) == ("echo: a b", "length")


def test_info_and_estimated_token_count(fake):
    eng = engine(fake.base_url())
    info = eng.info()
    assert (info.engine, info.model, info.device, info.context_window) == (
        "openai_compat", "fake-model", f"remote: 127.0.0.1:{fake.server_address[1]}", 2048)
    assert info.batches and not info.accepts_images and "estimate" in info.extra["token_count"]
    assert prompt_tokens(eng, [Message.of("user", "x" * 300)]) == 100 + 4 + 3
    assert engine(fake.base_url(), context_window=8192).info().context_window == 8192


def test_parameters_and_messages_on_the_wire(fake):
    eng = engine(fake.base_url(), system_prompt="Be brief.", accepts_images=True)
    image = Image.new("RGB", (8, 6), (255, 0, 0))
    msg = Message("user", [TextPart("what is this?"), ImagePart(image)])
    params = GenParams(max_new_tokens=5, temperature=0.5, top_p=0.8, top_k=7, seed=3, stop=("END",))
    list(generate(eng, GenerationRequest([msg], params)))
    body = fake.bodies[-1]
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    parts = body["messages"][1]["content"]
    assert parts[0] == {"type": "text", "text": "what is this?"}
    assert parts[1]["image_url"]["url"].startswith("data:image/png;base64,")
    assert {k: body[k] for k in ("model", "stream", "max_tokens", "temperature", "top_p", "top_k", "seed", "stop")} == {
        "model": "fake-model", "stream": True, "max_tokens": 5, "temperature": 0.5, "top_p": 0.8, "top_k": 7,
        "seed": 3, "stop": ["END"]}
    list(generate(eng, GenerationRequest([Message.of("user", "hi")], GenParams(do_sample=False))))
    assert (fake.bodies[-1]["temperature"], fake.bodies[-1]["top_k"]) == (0.0, 1)


def test_images_refused_up_front_for_a_text_model(fake):
    msg = Message("user", [TextPart("look"), ImagePart(Image.new("RGB", (4, 4)))])
    with pytest.raises(InputError, match="text only; the conversation has 1 image"):
        generate(engine(fake.base_url()), GenerationRequest([msg]))


@pytest.mark.parametrize("mode, message, partial", [
    ("error500", "HTTP 500: model crashed: CUDA out of memory", ""),
    ("html", "expected a stream of server-sent events, got text/html: '<!doctype html>", ""),
    ("garbage", "not a stream of server-sent events: 'Hello, this is not an event stream'", ""),
    ("notjson", "not JSON: '{broken'", ""),
    ("drop", "the connection dropped mid-reply", "echo: hello there"),
    ("errorevent", "the server reported an error: engine died while generating", "echo: hello"),
    ("slowfirst", "no data for 0.5 s (timeout_s)", ""),
    ("slowchunks", "no data for 0.5 s (timeout_s)", "echo:"),
])
def test_failures_end_the_stream_with_a_clear_error_and_the_next_request_works(fake, mode, message, partial):
    eng = engine(fake.base_url(mode), timeout_s=0.5, remote_model="fake-model")
    text, last = ask(eng, "hello there world")
    # The fake's silence outlasts timeout_s: an "error" finish with the partial text is the timeout firing.
    assert (text, last.finish_reason) == (partial, "error")
    assert last.error.startswith(f"127.0.0.1:{fake.server_address[1]}: ") and message in last.error
    assert ("broke off after" in last.error) == bool(partial)
    assert ask(engine(fake.base_url()), "again")[0] == "echo: again"  # the server (and client pool) still work


def test_http_401_and_key_from_the_environment(monkeypatch):
    with FakeOpenAI(api_key="sekrit") as fake:
        with pytest.raises(StudioError, match=r"refused the API key \(HTTP 401: Invalid API key\.\)"):
            engine(fake.base_url())
        monkeypatch.setenv("FAKE_KEY", "sekrit")
        assert ask(engine(fake.base_url(), api_key_env="FAKE_KEY"))[0] == "echo: hello there"
        assert ask(engine(fake.base_url(), api_key="sekrit"))[0] == "echo: hello there"
        monkeypatch.delenv("FAKE_KEY")
        with pytest.raises(StudioError, match="environment variable FAKE_KEY .* is not set"):
            engine(fake.base_url(), api_key_env="FAKE_KEY")


@pytest.fixture
def own_fake():
    """A server of the test's own, so no other test's stream is still open on it."""
    with FakeOpenAI() as server:
        yield server


def test_cancel_closes_the_stream_and_the_server_stops(own_fake):
    fake = own_fake
    eng = engine(fake.base_url("long"))
    request = GenerationRequest([Message.of("user", "go")])
    deltas = []
    for d in generate(eng, request):
        deltas.append(d)
        if len(deltas) == 20:
            request.cancel.set()
    assert deltas[-1].finish_reason == "cancelled" and len(deltas) < 40
    time.sleep(1.0)
    sent = fake.words_sent
    time.sleep(0.5)
    assert fake.words_sent == sent and fake.streams_open == 0


def test_closing_the_generator_closes_the_stream(own_fake):
    fake = own_fake
    eng = engine(fake.base_url("long"))
    gen = generate(eng, GenerationRequest([Message.of("user", "go")]))
    assert next(gen).text == "w0"
    gen.close()
    time.sleep(1.0)
    assert fake.streams_open == 0


def test_cancel_while_the_server_is_silent_returns_at_once(fake):
    eng = engine(fake.base_url("slowfirst"))
    request = GenerationRequest([Message.of("user", "go")])
    threading.Timer(0.3, request.cancel.set).start()
    start = time.monotonic()
    deltas = list(generate(eng, request))
    assert deltas[-1].finish_reason == "cancelled" and time.monotonic() - start < fake.slow_s  # before the server spoke


def test_load_errors_say_where_and_what():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket closes
    with pytest.raises(StudioError, match=rf"Cannot reach the model server at http://127.0.0.1:{port}/v1/models: "
                                          r"cannot connect") as e:
        engine(f"http://127.0.0.1:{port}/v1")
    assert "lmdeploy serve api_server" in e.value.hint
    with FakeOpenAI(models=("a", "b")) as fake:
        with pytest.raises(StudioError, match=r"has no model 'c'; it serves: a, b"):
            engine(fake.base_url(), remote_model="c")
        with pytest.raises(StudioError, match=r"serves 2 models \(a, b\)") as e:
            engine(fake.base_url())
        assert "remote_model" in e.value.hint
        assert engine(fake.base_url(), remote_model="b").info().model == "b"
        with pytest.raises(StudioError, match=r"answered HTTP 404: Not Found") as e:
            engine(fake.base_url().removesuffix("/v1"))
        assert "/v1" in e.value.hint


def write(tmp_path, text: str):
    path = tmp_path / "c.yaml"
    path.write_text("engines:\n  chat:\n" + text, encoding="utf-8")
    return path


def test_config_fields_and_defaults(tmp_path):
    cfg = load_config(write(tmp_path, "    engine: openai_compat\n    base_url: https://gpu:23333/v1/\n"
                                      "    remote_model: internlm2\n")).engines["chat"]
    assert (cfg.base_url, cfg.label, cfg.timeout_s, cfg.connect_timeout_s) == (
        "https://gpu:23333/v1", "internlm2", 60.0, 5.0)
    assert "model_path" not in type(cfg).model_fields  # a remote engine has no model folder
    plain = load_config(write(tmp_path, "    engine: openai_compat\n    base_url: http://gpu:23333/v1\n"))
    assert plain.engines["chat"].label == "gpu:23333"
    assert "sekrit" not in repr(RemoteOptions(base_url="http://h/v1", api_key="sekrit"))


@pytest.mark.parametrize("text, message", [
    ("    engine: openai_compat\n", r"engines\.chat\.base_url: required for engine: openai_compat"),
    ("    engine: openai_compat\n    base_url: ftp://h/v1\n", r"base_url: must start with http:// or https://"),
    ("    engine: openai_compat\n    base_url: http:///v1\n", r"base_url: has no host name"),
    ("    engine: openai_compat\n    base_url: http://h:port/v1\n", r"base_url: is not a URL"),
    ("    engine: openai_compat\n    base_url: http://h/v1?x=1\n", r"base_url: must not have a query"),
    ("    engine: openai_compat\n    base_url: http://h/v1\n    model_path: /m\n",
     r"model_path: not used by engine openai_compat; name the server's model with remote_model"),
    ("    engine: openai_compat\n    base_url: http://h/v1\n    timeout_s: 0\n", r"timeout_s: .*greater than 0"),
    ("    engine: hf\n    model_path: /m\n    base_url: http://h/v1\n", r"base_url: only for engine: openai_compat"),
    ("    engine: hf\n    model_path: /m\n    timeout_s: 3\n", r"timeout_s: only for engine: openai_compat"),
    ("    engine: hf\n    base_url: http://h/v1\n", r"engines\.chat\.model_path: Field required"),
])
def test_config_errors(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text))


def test_a_key_given_to_the_wrong_engine_is_not_echoed(tmp_path):
    with pytest.raises(ConfigError, match=r"api_key: only for engine: openai_compat") as e:
        load_config(write(tmp_path, "    model_path: /m\n    api_key: sekrit\n"))
    assert "sekrit" not in str(e.value)


def test_check_needs_no_network(monkeypatch):
    cfg = RemoteOptions(base_url="http://nowhere.invalid:1/v1", remote_model="m")
    assert ENGINES.get("openai_compat").check is not None
    assert preflight(cfg) == "remote: m at http://nowhere.invalid:1/v1"
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    with pytest.raises(StudioError, match="NO_SUCH_KEY_VAR"):
        preflight(RemoteOptions(base_url="http://h/v1", api_key_env="NO_SUCH_KEY_VAR"))


def test_shipped_remote_config_validates():
    from studio.config import CONFIG_DIR

    cfg = load_config(CONFIG_DIR / "remote-openai.yaml").engines["chat"]
    assert (cfg.engine, cfg.base_url, cfg.remote_model, cfg.context_window) == (
        "openai_compat", "http://127.0.0.1:23333/v1", "internlm2-chat-1_8b", 8192)
    assert preflight(cfg).startswith("remote: internlm2-chat-1_8b")
