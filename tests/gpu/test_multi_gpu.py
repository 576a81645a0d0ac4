"""`--num-gpus 2` on a machine with two GPUs: transformers split over both, lmdeploy with tp=2.

Skipped with fewer than two GPUs. The transformers case uses an official-layout InternLM2 folder at
InternLM2-Chat-1.8B's shape (random weights), which the studio builds natively and then spreads over
the GPUs; the lmdeploy case uses the scaled-down Llama checkpoint of tests/gpu/conftest.py.
Run: python -m pytest -m gpu tests/gpu/test_multi_gpu.py
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.device_count() < 2,
                                 reason="needs two GPUs")]

from studio.engines.hf_loading import HFOptions  # noqa: E402
from studio.engines.lmdeploy_setup import LmdeployOptions  # noqa: E402
from studio.core.types import GenParams, Message  # noqa: E402
from studio.engines import ENGINES, preflight  # noqa: E402
from studio.engines.base import LoadContext, Placement  # noqa: E402
from studio.engines.hf_loading import GIB  # noqa: E402
from tests.support.tiny_checkpoints import write_tiny_internlm2  # noqa: E402
from tests.support.engine_calls import GenerationRequest, generate

SHAPE_1_8B = dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=24, num_attention_heads=16,
                  num_key_value_heads=8)


def _request(max_new=16) -> GenerationRequest:
    return GenerationRequest([Message.of("user", "Hello world.")], GenParams(max_new_tokens=max_new, do_sample=False))


def _ctx(tmp, num_gpus=2):
    return LoadContext("chat", Placement("cuda", num_gpus), tmp, lambda f, t: None)


@pytest.fixture(scope="module")
def internlm2_1_8b(tmp_path_factory):
    return write_tiny_internlm2(tmp_path_factory.mktemp("internlm2-1_8b"), shards=4, **SHAPE_1_8B)


def test_transformers_splits_the_model_over_both_gpus(internlm2_1_8b, tmp_path):
    cfg = HFOptions(model_path=str(internlm2_1_8b), device="cuda", dtype="bfloat16",
                       context_window=4096)
    before = [torch.cuda.memory_allocated(i) for i in (0, 1)]
    engine = ENGINES.get("hf").load(cfg, _ctx(tmp_path))
    try:
        assert engine.info().device == "cuda:0-1"
        devices = set(engine.model.hf_device_map.values())
        assert devices == {0, 1}, engine.model.hf_device_map
        used = [(torch.cuda.memory_allocated(i) - before[i]) / GIB for i in (0, 1)]
        print(f"weights per GPU: {used[0]:.2f} / {used[1]:.2f} GiB")
        assert min(used) > 0.25 * sum(used), used  # really split, not a token share on GPU 1
        last = list(generate(engine, _request(16)))[-1]
        assert last.finish_reason in ("stop", "length") and last.error is None, last
        request = _request(4000)  # stop works across the split
        threading.Timer(0.2, request.cancel.set).start()
        start = time.monotonic()
        last = list(generate(engine, request))[-1]
        assert last.finish_reason == "cancelled" and time.monotonic() - start < 2.0, last
    finally:
        engine.close()


def test_lmdeploy_runs_with_tensor_parallel_two(llama_checkpoint, tmp_path):
    pytest.importorskip("lmdeploy")
    cfg = LmdeployOptions(model_path=str(llama_checkpoint), backend="pytorch", session_len=2048,
                       max_batch_size=16)
    line = preflight(cfg, 2)
    assert "lmdeploy tp=2" in line and "on each of 2 GPUs" in line, line
    engine = ENGINES.get("lmdeploy").load(cfg, _ctx(tmp_path))
    try:
        with ThreadPoolExecutor(8) as pool:
            finals = list(pool.map(lambda _: list(generate(engine, _request(32)))[-1], range(8)))
        assert all(f.finish_reason in ("stop", "length") and f.error is None for f in finals), finals
    finally:
        engine.close()
