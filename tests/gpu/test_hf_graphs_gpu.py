"""The transformers engine's CUDA-graph decode step on a real GPU: greedy picks equal to the eager step's (up to bf16 ties),
Stop within a second, memory within the plan, eager fallbacks (long sequences, a failed capture).

Run: python -m pytest -m gpu tests/gpu/test_hf_graphs_gpu.py
"""

from __future__ import annotations

import threading
import time

import pytest

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")]

from studio.core.types import GenParams, Message  # noqa: E402
from studio.engines import ENGINES  # noqa: E402
from studio.engines.base import LoadContext, Placement  # noqa: E402
from studio.engines.hf_loading import HFOptions  # noqa: E402
from tests.support.engine_calls import GenerationRequest, generate  # noqa: E402
from tests.support.tiny_checkpoints import write_tiny_internlm2  # noqa: E402

PROMPTS = ["Tell me about the sea.", "Write a poem about a cat who learns the piano, in six verses.",
           "List ten fruits and say one thing about each of them, with as much detail as you can."]
GREEDY = GenParams(max_new_tokens=96, do_sample=False, repetition_penalty=1.0)


def _load(folder, tmp_path, **options):
    # One request at a time: the single-sequence graphs (tests/gpu/test_hf_batch_gpu.py: the batched ones).
    cfg = HFOptions(model_path=str(folder), device="cuda", dtype="bfloat16", **{"max_batch_size": 1, **options})
    return ENGINES.get("hf").load(cfg, LoadContext("chat", Placement("cuda", 1), tmp_path, lambda f, t: None))


def _greedy_ids(engine, prompt: str, params: GenParams = GREEDY) -> list[int]:
    text = "".join(d.text for d in generate(engine, GenerationRequest([Message.of("user", prompt)], params)))
    return engine.tokenizer.encode(text, add_special_tokens=False)


@pytest.fixture(scope="module")
def engines(llama_checkpoint, tmp_path_factory):
    graphs = _load(llama_checkpoint, tmp_path_factory.mktemp("g"), family="hf_chat_template")
    eager = _load(llama_checkpoint, tmp_path_factory.mktemp("e"), family="hf_chat_template", cuda_graphs=False)
    yield graphs, eager
    graphs.close()
    eager.close()


def test_graphs_are_captured_at_load(engines):
    graphs, eager = engines
    info = graphs.info().extra
    assert info["decoder"] == "cuda-graph" and info["decoder_notice"] == ""
    assert info["graph_capture_s"] > 0
    assert eager.info().extra["decoder"] == "fast-llama"
    print(f"capture {info['graph_capture_s']} s for buckets {graphs.decoder.sizes}")


def _follows_eager(graphs, eager, prompt: str, steps: int = 96) -> dict:
    """Teacher-forced on the eager step's greedy choices: at every step the graph's pick is the eager pick,
    or a tie within bf16 rounding (the eager logits of the two picks differ by at most TIE of the top
    logit's size). The graph step attends with one fused bf16 kernel (fp32 accumulation), the eager lean
    step in fp32 matmuls, so random-weight logits that are nearly tied may order differently."""
    g, e = graphs.decoder, eager.decoder
    ids = graphs.tokenizer.encode(prompt)
    flips, worst_gap, worst_diff = 0, 0.0, 0.0
    with torch.inference_mode():
        g.start(len(ids) + steps + 1)
        e.start(len(ids) + steps + 1)
        lg, le = g.prefill(ids, lambda: False), e.prefill(ids, lambda: False)
        for _ in range(steps):
            ref, got = int(le.argmax()), int(lg.argmax())
            gap = float(le[ref] - le[got])
            assert got == ref or gap <= TIE * max(1.0, abs(float(le[ref]))), (prompt, got, ref, gap)
            flips += got != ref
            worst_gap = max(worst_gap, gap)
            worst_diff = max(worst_diff, float((lg - le).abs().max()))
            lg, le = g.step(ref), e.step(ref)
        g.release()
        e.release()
    return {"flips": flips, "worst_gap": worst_gap, "max_logit_diff": worst_diff}


TIE = 2e-2


def test_graph_greedy_picks_follow_the_eager_step(engines):
    graphs, eager = engines
    for prompt in PROMPTS:
        print(prompt[:20], _follows_eager(graphs, eager, prompt))


def test_replay_equals_the_captured_step_run_eagerly(engines):
    """The graph replays exactly the step it captured: identical logits, bit for bit."""
    graphs, _ = engines
    dec = graphs.decoder
    ids = graphs.tokenizer.encode(PROMPTS[0])
    with torch.inference_mode():
        dec.start(len(ids) + 65)
        logits = dec.prefill(ids, lambda: False)
        for _ in range(64):
            token = int(logits.argmax())
            n = dec.cache.n
            replayed = dec.step(token).clone()
            dec.token.fill_(token)
            dec.pos.fill_(n)
            with dec._flags():  # the attention kernels the capture was made with
                direct = dec.static_step(next(s for s in dec.sizes if s >= n + 1))
            assert torch.equal(replayed, direct)
            logits = replayed
        dec.release()


def test_sequences_longer_than_the_cap_run_eagerly_and_agree(llama_checkpoint, tmp_path, engines):
    _, eager = engines
    short = _load(llama_checkpoint, tmp_path, family="hf_chat_template", cuda_graph_tokens=256)
    try:
        params = GenParams(max_new_tokens=240, do_sample=False, repetition_penalty=1.0)
        # Past the cap the graph decoder runs the eager lean step itself: the very same tokens.
        assert _greedy_ids(short, PROMPTS[2], params) == _greedy_ids(eager, PROMPTS[2], params)
        assert not short.decoder.static  # the last sequence did not fit 256 positions
    finally:
        short.close()


def test_stop_ends_a_graph_stream_within_a_second(engines):
    graphs, _ = engines
    request = GenerationRequest([Message.of("user", PROMPTS[1])], GenParams(max_new_tokens=3000, do_sample=False))
    stream = generate(graphs, request)
    seen, stopped_at, last = 0, None, None
    for delta in stream:
        last = delta
        seen += 1
        if seen == 20:
            stopped_at = time.monotonic()
            request.cancel.set()
    took = time.monotonic() - stopped_at
    assert last.finish_reason == "cancelled" and took < 1.0, (last, took)


def test_peak_memory_stays_within_the_plan(llama_checkpoint, tmp_path):
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    engine = _load(llama_checkpoint, tmp_path, family="hf_chat_template")
    try:
        _greedy_ids(engine, PROMPTS[2], GenParams(max_new_tokens=512, do_sample=False))
        peak = torch.cuda.max_memory_allocated() - base
        plan = engine.loaded.plan
        print(f"peak {peak / 2**20:.0f} MiB, plan {plan.need / 2**20:.0f} MiB ({plan.summary()})")
        assert peak <= plan.need
    finally:
        engine.close()


def test_a_failed_capture_decodes_eagerly_with_a_notice(llama_checkpoint, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("capture refused")

    monkeypatch.setattr(torch.cuda, "CUDAGraph", broken)
    engine = _load(llama_checkpoint, tmp_path, family="hf_chat_template")
    try:
        extra = engine.info().extra
        assert extra["decoder"] == "fast-llama" and "capture refused" in extra["decoder_notice"]
        assert len(_greedy_ids(engine, PROMPTS[0], GenParams(max_new_tokens=8, do_sample=False))) > 0
    finally:
        engine.close()


def test_internlm2_native_checkpoint_decodes_with_graphs(tmp_path):
    folder = write_tiny_internlm2(tmp_path / "internlm2", shards=2)
    graphs = _load(folder, tmp_path / "g", family="internlm2")
    eager = _load(folder, tmp_path / "e", family="internlm2", cuda_graphs=False)
    try:
        assert graphs.info().extra["decoder"] == "cuda-graph"
        for prompt in PROMPTS[:2]:
            print(prompt[:20], _follows_eager(graphs, eager, prompt))
    finally:
        graphs.close()
        eager.close()


def test_a_graph_stream_and_cancel_leave_the_engine_usable(engines):
    graphs, _ = engines
    cancel = threading.Event()
    cancel.set()
    request = GenerationRequest([Message.of("user", "Hi")], GenParams(max_new_tokens=32, do_sample=False), cancel)
    assert list(generate(graphs, request))[-1].finish_reason == "cancelled"
    assert _greedy_ids(graphs, PROMPTS[0]) == _greedy_ids(graphs, PROMPTS[0])
