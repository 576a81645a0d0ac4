"""Batched decoding in the transformers engine on a real GPU, at InternLM2-1.8B's shape (random bf16 weights
as bench/serving_model.py builds them): the batched graphs are captured, their greedy picks follow the
single-sequence step's (up to bf16 ties), a replay equals the step run eagerly, Stop ends one stream within a
second while the others go on.

Run: python -m pytest -m gpu tests/gpu/test_hf_batch_gpu.py
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")]

from bench.serving_model import LM_1_8B, prompt, write_checkpoint  # noqa: E402
from studio.core.types import GenParams, Message  # noqa: E402
from studio.engines import ENGINES  # noqa: E402
from studio.engines.base import LoadContext, Placement  # noqa: E402
from studio.engines.hf_loading import HFOptions  # noqa: E402
from tests.gpu.conftest import REAL_SPM  # noqa: E402
from tests.support.engine_calls import GenerationRequest, generate  # noqa: E402

TIE = 2e-2  # as tests/gpu/test_hf_graphs_gpu.py: a flip is allowed where the reference's two logits are this close
USERS = 8


def _load(folder: Path, tmp: Path, slots: int):
    cfg = HFOptions(model_path=str(folder), family="hf_chat_template", device="cuda", dtype="bfloat16",
                    max_batch_size=slots)
    return ENGINES.get("hf").load(cfg, LoadContext("chat", Placement("cuda", 1), tmp, lambda f, t: None))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    spm = next((Path(p) for p in REAL_SPM if p and Path(p).is_file()), None)
    if spm is None:
        pytest.skip("the InternLM2 tokenizer (PUYU_INTERNLM2_SPM or ../shared/fixtures) is not here")
    return write_checkpoint(tmp_path_factory.mktemp("lm-1_8b"), spm, LM_1_8B)


@pytest.fixture(scope="module")
def engines(checkpoint, tmp_path_factory):
    batched = _load(checkpoint, tmp_path_factory.mktemp("b"), USERS)
    single = _load(checkpoint, tmp_path_factory.mktemp("s"), 1)
    yield batched, single
    batched.close()
    single.close()


def test_batched_graphs_are_captured_at_load(engines):
    batched, single = engines
    extra = batched.info().extra
    assert extra["batch"] == f"{USERS} × cuda-graph" and extra["decoder_notice"] == "" and batched.info().batches
    assert single.info().extra["decoder"] == "cuda-graph" and single.info().extra["batch"] == ""
    step = batched.batcher.step
    print(f"capture {extra['graph_capture_s']} s for batches {step.batches} × lengths {step.sizes}")


def test_batched_greedy_picks_follow_the_single_sequence_step(engines):
    """All USERS prompts in one batch, teacher-forced on the single-sequence graph step's greedy picks: each
    row picks the same token, or one whose reference logit is within TIE of the top (the batched graph attends
    over a longer masked bucket with the same fused kernel; bf16 rounding may order near-ties differently)."""
    batched, single = engines
    step, dec, steps = batched.batcher.step, single.decoder, 96
    ids = [batched.prepare([Message.of("user", prompt(i))], GenParams()).payload.ids for i in range(USERS)]
    flips, worst = 0, 0.0
    with torch.inference_mode():
        histories, logs = [], []
        for x in ids:  # the reference: one sequence at a time on the single engine's graphs
            dec.start(len(x) + steps + 1)
            token, seq, out = int(dec.prefill(x, lambda: False).argmax()), [], []
            for _ in range(steps):
                seq.append(token)
                out.append(dec.step(token).clone())
                token = int(out[-1].argmax())
            dec.release()
            histories.append(seq)
            logs.append(out)
        caches = []
        for i, x in enumerate(ids):
            caches.append(step.new_cache(i, len(x) + steps + 1))
            batched.decoder.cache = caches[-1]
            assert int(batched.decoder.prefill(x, lambda: False).argmax()) == histories[i][0]
        batched.decoder.cache = None
        for k in range(steps):
            rows = step.forward([h[k] for h in histories], caches, list(range(USERS)))
            for r in range(USERS):
                ref = logs[r][k]
                want, got = int(ref.argmax()), int(rows[r].argmax())
                gap = float(ref[want] - ref[got])
                assert got == want or gap <= TIE * max(1.0, abs(float(ref[want]))), (r, k, want, got, gap)
                flips += got != want
                worst = max(worst, float((ref - rows[r]).abs().max()))
    print(f"{flips} near-tie flips in {steps * USERS} picks; largest logit difference {worst:.3f}")


def test_a_shared_prefill_pass_follows_each_prompts_own_prefill(engines):
    """The USERS prompts in one padded pass (how users joining together are prefilled on a GPU): each row's
    first-token logits and cached keys follow that prompt's own prefill up to bf16 rounding (a different
    matmul shape), with the same TIE rule for the greedy pick."""
    batched, _ = engines
    step = batched.batcher.step
    assert batched.batcher.batch_prefill
    ids = [batched.prepare([Message.of("user", prompt(i) + " x" * (7 * i))], GenParams()).payload.ids
           for i in range(USERS)]
    assert len({len(x) for x in ids}) == USERS  # every row padded differently
    with torch.inference_mode():
        alone = []
        for i, x in enumerate(ids):
            batched.decoder.cache = cache = step.new_cache(i, len(x) + 1)
            logits = batched.decoder.prefill(x, lambda: False).clone()
            alone.append((logits, [k[:, : len(x)].clone() for k in cache.k]))
        batched.decoder.cache = None
        caches = [step.new_cache(i, len(x) + 1) for i, x in enumerate(ids)]
        rows = step.prefill_many(ids, caches)
    worst_logit, worst_key = 0.0, 0.0
    for r, (ref, keys) in enumerate(alone):
        want, got = int(ref.argmax()), int(rows[r].argmax())
        gap = float(ref[want] - ref[got])
        assert got == want or gap <= TIE * max(1.0, abs(float(ref[want]))), (r, want, got, gap)
        assert caches[r].n == len(ids[r])
        worst_logit = max(worst_logit, float((ref - rows[r]).abs().max()) / max(1.0, float(ref.abs().max())))
        for k_alone, k_shared in zip(keys, caches[r].k):
            diff = (k_alone.float() - k_shared[:, : len(ids[r])].float()).abs().max()
            worst_key = max(worst_key, float(diff) / max(1e-3, float(k_alone.float().abs().max())))
    print(f"shared prefill of {USERS} prompts: largest relative logit difference {worst_logit:.4f}, keys {worst_key:.4f}")
    assert worst_logit < 0.05 and worst_key < 0.05


def test_replay_equals_the_captured_batched_step_run_eagerly(engines):
    batched, _ = engines
    step = batched.batcher.step
    ids = [batched.prepare([Message.of("user", prompt(i))], GenParams()).payload.ids for i in range(3)]
    slots = [0, 2, 3]  # not contiguous: slot 1 idles inside the 4-row bucket
    with torch.inference_mode():
        caches, tokens = [], []
        for s, x in zip(slots, ids):
            caches.append(step.new_cache(s, len(x) + 33))
            batched.decoder.cache = caches[-1]
            tokens.append(int(batched.decoder.prefill(x, lambda: False).argmax()))
        batched.decoder.cache = None
        for _ in range(32):
            size = next(s for s in step.sizes if s >= max(c.n for c in caches) + 1)
            replayed = step.forward(tokens, caches, slots).clone()
            with step.d._flags():  # the captured function itself, on the inputs the replay read
                direct = step.static_step(4, size)[torch.tensor(slots, device="cuda")]
            assert torch.equal(replayed, direct)
            tokens = replayed.argmax(-1).tolist()


def test_stop_ends_one_batched_stream_within_a_second_and_the_others_go_on(engines):
    batched, _ = engines
    requests = [GenerationRequest([Message.of("user", prompt(i))], GenParams(max_new_tokens=3000, do_sample=False))
                for i in range(4)]
    seen, stopped_at, last, ended = [0] * 4, [None], [None] * 4, [None] * 4

    def run(i):
        for delta in generate(batched, requests[i]):
            seen[i] += 1
            last[i] = delta
            if i == 0 and seen[0] == 20:
                stopped_at[0] = time.monotonic()
                requests[0].cancel.set()
        ended[i] = time.monotonic()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    threads[0].join(120)
    others_then = sum(seen[1:])
    deadline = time.monotonic() + 120
    while sum(seen[1:]) < others_then + 30 and time.monotonic() < deadline:
        time.sleep(0.05)
    for r in requests[1:]:
        r.cancel.set()
    for t in threads[1:]:
        t.join(120)
    took = ended[0] - stopped_at[0]
    assert last[0].finish_reason == "cancelled" and took < 1.0, (last[0], took)
    assert sum(seen[1:]) >= others_then + 30  # the other three kept streaming after the Stop
    assert all(d.finish_reason == "cancelled" for d in last[1:])
