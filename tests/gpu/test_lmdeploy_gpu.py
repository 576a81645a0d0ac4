"""The lmdeploy engine on a real GPU: load, stream, cancel and 8 concurrent streams.

A random-weight Llama checkpoint with InternLM2-1.8B-like proportions (scaled down) is written with
transformers (tests/gpu/conftest.py): nothing runs remote code.
Run: pip install -r requirements-lmdeploy.txt && python -m pytest -m gpu tests/gpu/test_lmdeploy_gpu.py
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("lmdeploy")
pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="the lmdeploy engine needs CUDA")]

from studio.engines.lmdeploy_setup import LmdeployOptions  # noqa: E402
from studio.core.types import GenParams, Message  # noqa: E402
from studio.engines import ENGINES, preflight  # noqa: E402
from studio.engines.base import LoadContext, Placement  # noqa: E402
from tests.support.engine_calls import GenerationRequest, generate


@pytest.fixture(scope="module")
def engine(llama_checkpoint, tmp_path_factory):
    cfg = LmdeployOptions(model_path=str(llama_checkpoint), backend="pytorch", session_len=2048,
                       max_batch_size=16)
    assert "lmdeploy tp=1" in preflight(cfg, 1)
    ctx = LoadContext("chat", Placement("auto", 1), tmp_path_factory.mktemp("cache"), lambda f, t: None)
    eng = ENGINES.get("lmdeploy").load(cfg, ctx)
    yield eng
    eng.close()


def _request(max_new=32, **params) -> GenerationRequest:
    return GenerationRequest([Message.of("user", "Hello world.")],
                             GenParams(max_new_tokens=max_new, do_sample=False, **params))


def test_streams_deltas_to_a_final_reason(engine):
    deltas = list(generate(engine, _request(32)))
    assert deltas[-1].finish_reason in ("stop", "length") and deltas[-1].error is None
    assert deltas[-1].completion_tokens >= 1
    assert engine.info().engine == "lmdeploy" and engine.info().extra["backend"] == "pytorch"


def test_cancel_stops_within_a_second(engine):
    # Random weights mostly emit tokens that decode to nothing, so cancel on a timer, not on text.
    request = _request(2000, stop=())
    threading.Timer(0.1, request.cancel.set).start()
    start = time.monotonic()
    last = list(generate(engine, request))[-1]
    took = time.monotonic() - start
    assert last.finish_reason == "cancelled" and last.completion_tokens < 2000, last
    assert took < 1.5, took
    again = list(generate(engine, _request(8)))[-1]  # the engine serves the next request
    assert again.finish_reason in ("stop", "length")


def test_eight_concurrent_streams(engine):
    def one(_):
        return list(generate(engine, _request(64)))[-1]

    with ThreadPoolExecutor(8) as pool:
        finals = list(pool.map(one, range(8)))
    assert all(f.finish_reason in ("stop", "length") and f.error is None for f in finals)


def test_greedy_is_reproducible(engine):
    text = lambda: "".join(d.text for d in generate(engine, _request(24)))  # noqa: E731
    assert text() == text()


def test_a_reader_that_falls_behind_gets_the_same_reply_in_fewer_pieces(engine):
    """lmdeploy_stream joins the responses that waited while the reader was busy: same text, same counts."""

    def read(lag_s: float) -> list:
        out = []
        for d in generate(engine, _request(64, stop=())):
            out.append(d)
            time.sleep(lag_s)
        return out

    paced, lagging = read(0.0), read(0.05)
    assert "".join(d.text for d in lagging) == "".join(d.text for d in paced)
    assert lagging[-1].completion_tokens == paced[-1].completion_tokens
    assert lagging[-1].prompt_tokens == paced[-1].prompt_tokens > 0
    assert len(lagging) < len(paced)
    assert hasattr(engine.pipe, "internal_thread") and hasattr(engine.pipe, "async_engine")  # the async path


def test_a_request_lmdeploy_refuses_ends_with_its_message_and_the_next_one_works(engine):
    from lmdeploy import GenerationConfig

    from studio.engines.lmdeploy_engine import LmdeployEngine

    too_long = [{"role": "user", "content": "word " * 5000}]  # past session_len 2048; prepare() would refuse it
    last = list(LmdeployEngine._serve(engine, too_long, GenerationConfig(max_new_tokens=8), threading.Event()))[-1]
    assert last.finish_reason == "error" and last.error and "lmdeploy" in last.error, last
    again = list(generate(engine, _request(8)))[-1]
    assert again.finish_reason in ("stop", "length") and again.error is None
