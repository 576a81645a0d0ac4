"""The remote engine (openai_compat) against a real `lmdeploy serve api_server` on the GPU.

The server runs lmdeploy's PyTorch engine on the scaled-down checkpoint of tests/gpu/conftest.py;
the studio talks to it over HTTP exactly as it would to a node behind `lmdeploy serve proxy`.
Run: pip install -r requirements-lmdeploy.txt && python -m pytest -m gpu tests/gpu/test_remote_lmdeploy_gpu.py
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("lmdeploy")
pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="lmdeploy's api_server needs CUDA")]

from studio.engines.openai_compat import RemoteOptions  # noqa: E402
from studio.core.types import GenParams, Message  # noqa: E402
from studio.engines import ENGINES  # noqa: E402
from studio.engines.base import LoadContext, Placement  # noqa: E402
from tests.e2e.helpers import GREEDY, connect, reply_text  # noqa: E402
from tests.support.apps import free_port, running_app  # noqa: E402
from tests.support.engine_calls import GenerationRequest, generate


@pytest.fixture(scope="module")
def api_server(llama_checkpoint, tmp_path_factory):
    port = free_port()
    log = (tmp_path_factory.mktemp("api-server") / "server.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "lmdeploy", "serve", "api_server", str(llama_checkpoint),
                             "--backend", "pytorch", "--server-port", str(port), "--session-len", "2048",
                             "--max-batch-size", "16", "--cache-max-entry-count", "0.05"],
                            stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 300
    while True:
        assert proc.poll() is None, f"api_server exited with {proc.returncode}; see {log.name}"
        try:
            urllib.request.urlopen(base + "/models", timeout=2).read()
            break
        except OSError:
            assert time.monotonic() < deadline, "api_server did not answer within 300 s"
            time.sleep(1)
    yield base
    proc.terminate()
    proc.wait(60)
    log.close()


@pytest.fixture(scope="module")
def remote(api_server, tmp_path_factory):
    cfg = RemoteOptions(base_url=api_server, timeout_s=60)
    ctx = LoadContext("chat", Placement("auto", 1), tmp_path_factory.mktemp("cache"), lambda f, t: None)
    return ENGINES.get("openai_compat").load(cfg, ctx)


def _request(max_new: int, text: str = "Hello world.") -> GenerationRequest:
    # No repetition penalty: the direct request below sends none, and lmdeploy applies it even when greedy.
    return GenerationRequest([Message.of("user", text)],
                             GenParams(max_new_tokens=max_new, do_sample=False, repetition_penalty=1.0))


def test_streams_from_lmdeploy_api_server(remote, llama_checkpoint):
    deltas = list(generate(remote, _request(32)))
    last = deltas[-1]
    assert last.finish_reason in ("length", "stop") and last.error is None, last
    assert sum(1 for d in deltas if d.text) >= 2  # streamed, not one block
    info = remote.info()
    assert info.engine == "openai_compat" and llama_checkpoint.name in info.model


def test_greedy_matches_lmdeploy_own_reply(remote, api_server):
    """The same greedy request through our engine and straight to the server give the same text."""
    import json

    body = json.dumps({"model": remote.info().model, "messages": [{"role": "user", "content": "Hello world."}],
                       "max_tokens": 24, "temperature": 0}).encode()
    req = urllib.request.Request(api_server + "/chat/completions", body, {"Content-Type": "application/json"})
    direct = json.loads(urllib.request.urlopen(req, timeout=60).read())["choices"][0]["message"]["content"]
    ours = "".join(d.text for d in generate(remote, _request(24)))
    assert ours == direct


def test_cancel_closes_the_stream_and_the_next_request_works(remote):
    request = _request(1500)
    threading.Timer(0.3, request.cancel.set).start()
    start = time.monotonic()
    last = list(generate(remote, request))[-1]
    assert last.finish_reason == "cancelled" and time.monotonic() - start < 3
    assert list(generate(remote, _request(8)))[-1].finish_reason in ("length", "stop")


def test_studio_serves_eight_users_from_the_api_server(api_server, tmp_path):
    cfg = tmp_path / "remote.yaml"
    cfg.write_text(f"ui:\n  queue_max_size: 32\nengines:\n  chat:\n    engine: openai_compat\n"
                   f"    base_url: {api_server}\n    max_batch_size: 16\n", encoding="utf-8")
    with running_app(cfg, tmp_path / "data") as app:
        def one(i):
            client, _ = connect(app.url)
            return client.predict(f"Story {i}.", max_new_tokens=32, api_name="/chat", **GREEDY)

        with ThreadPoolExecutor(8) as pool:
            finals = list(pool.map(one, range(8)))
    assert all(reply_text(f[0]) for f in finals)
