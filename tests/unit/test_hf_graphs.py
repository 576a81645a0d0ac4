"""The step the CUDA graphs capture, run eagerly on the CPU: it computes what the lean eager step does.

On a GPU the same function is captured and replayed (tests/gpu/test_hf_graphs_gpu.py); here it runs
directly, so its masking, position and cache writes are checked on every machine."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from studio.engines.hf_decode import FastLlamaDecoder  # noqa: E402
from studio.engines.hf_graphs import GraphLlamaDecoder, bucket_for, buckets  # noqa: E402


@pytest.fixture(scope="module")
def model():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024)
    return LlamaForCausalLM(cfg).eval()


def test_buckets_cover_the_cap():
    assert buckets(4096) == [256, 512, 1024, 2048, 4096]
    assert buckets(1000) == [256, 512, 1000]
    assert bucket_for(1, buckets(4096)) == 256 and bucket_for(257, buckets(4096)) == 512
    assert bucket_for(4097, buckets(4096)) is None


def test_the_captured_step_matches_the_eager_lean_step(model):
    eager = FastLlamaDecoder(model)
    graph = GraphLlamaDecoder(model, 300)  # two buckets: 256 and 300, so the walk crosses one
    ids = list(range(5, 40))
    with torch.inference_mode():
        eager.start(300)
        graph.start(300)
        graph.static = False  # no graphs on the CPU: drive the captured function by hand
        graph.cache.k, graph.cache.v = graph.kbuf, graph.vbuf
        a, b = eager.prefill(ids, lambda: False), graph.prefill(ids, lambda: False)
        assert torch.allclose(a, b)
        for _ in range(250):  # past position 256: the second bucket
            token = int(a.argmax())
            assert token == int(b.argmax())
            n = graph.cache.n
            graph.token.fill_(token)
            graph.pos.fill_(n)
            b = graph.static_step(bucket_for(n + 1, graph.sizes))
            graph.cache.n += 1
            a = eager.step(token)
            assert torch.allclose(a, b, atol=1e-4), n


def test_without_graphs_every_sequence_runs_the_eager_step(model):
    graph = GraphLlamaDecoder(model, 256)
    graph.start(100)
    assert not graph.static  # nothing captured (a CPU, or a failed capture)
    graph.drop_buffers()
    graph.start(100)
    with torch.inference_mode():
        logits = graph.prefill([1, 2, 3], lambda: False)
        assert graph.step(int(logits.argmax())).shape == logits.shape
