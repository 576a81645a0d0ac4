"""The lmdeploy engine on a real GPU: load, stream, cancel and 8 concurrent streams.

A random-weight Llama checkpoint with InternLM2-1.8B-like proportions (scaled down) is written with
transformers, with a SentencePiece tokenizer saved as LlamaTokenizerFast: nothing runs remote code.
Run: pip install -r requirements-lmdeploy.txt && python -m pytest -m gpu tests/gpu/test_lmdeploy_gpu.py
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("lmdeploy")
pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="the lmdeploy engine needs CUDA")]

from studio.config import EngineConfig  # noqa: E402
from studio.core.types import GenerationRequest, GenParams, Message  # noqa: E402
from studio.engines import ENGINES, preflight  # noqa: E402
from studio.engines.base import LoadContext, Placement  # noqa: E402
from tests.support.tiny_checkpoints import CHAT_TEMPLATE, REAL_VOCAB, write_tiny_tokenizer  # noqa: E402


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """InternLM2-1.8B's layout scaled down: 8 layers, hidden 512, GQA 8:2, 92544-token vocabulary."""
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaTokenizerFast

    folder = tmp_path_factory.mktemp("llama-tiny")
    spm = write_tiny_tokenizer(tmp_path_factory.mktemp("spm")) / "tokenizer.model"
    tok = LlamaTokenizerFast(vocab_file=str(spm), legacy=False, add_bos_token=True)
    tok.chat_template = CHAT_TEMPLATE
    tok.save_pretrained(folder)
    config = LlamaConfig(vocab_size=REAL_VOCAB, hidden_size=512, intermediate_size=1408, num_hidden_layers=8,
                         num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=4096,
                         rope_theta=1_000_000.0, bos_token_id=1, eos_token_id=2, torch_dtype="bfloat16")
    torch.manual_seed(0)
    LlamaForCausalLM(config).to(torch.bfloat16).save_pretrained(folder, safe_serialization=True)
    return folder


@pytest.fixture(scope="module")
def engine(checkpoint, tmp_path_factory):
    cfg = EngineConfig(engine="lmdeploy", model_path=str(checkpoint), backend="pytorch", session_len=2048,
                       max_batch_size=16)
    assert "lmdeploy tp=1" in preflight(cfg, 1)
    ctx = LoadContext("chat", Placement("auto", 1), tmp_path_factory.mktemp("cache"), lambda f, t: None)
    eng = ENGINES.get("lmdeploy")(cfg, ctx)
    yield eng
    eng.close()


def _request(max_new=32, **params) -> GenerationRequest:
    return GenerationRequest([Message.of("user", "Hello world.")],
                             GenParams(max_new_tokens=max_new, do_sample=False, **params))


def test_streams_deltas_to_a_final_reason(engine):
    deltas = list(engine.stream(_request(32)))
    assert deltas[-1].finish_reason in ("stop", "length") and deltas[-1].error is None
    assert deltas[-1].completion_tokens >= 1
    assert engine.info().engine == "lmdeploy" and engine.info().extra["backend"] == "pytorch"


def test_cancel_stops_within_a_second(engine):
    # Random weights mostly emit tokens that decode to nothing, so cancel on a timer, not on text.
    request = _request(2000, stop=())
    threading.Timer(0.1, request.cancel.set).start()
    start = time.monotonic()
    last = list(engine.stream(request))[-1]
    took = time.monotonic() - start
    assert last.finish_reason == "cancelled" and last.completion_tokens < 2000, last
    assert took < 1.5, took
    again = list(engine.stream(_request(8)))[-1]  # the engine serves the next request
    assert again.finish_reason in ("stop", "length")


def test_eight_concurrent_streams(engine):
    def one(_):
        return list(engine.stream(_request(64)))[-1]

    with ThreadPoolExecutor(8) as pool:
        finals = list(pool.map(one, range(8)))
    assert all(f.finish_reason in ("stop", "length") and f.error is None for f in finals)


def test_greedy_is_reproducible(engine):
    text = lambda: "".join(d.text for d in engine.stream(_request(24)))  # noqa: E731
    assert text() == text()
