"""The lmdeploy engine on CPU: config validation, refusals, UI concurrency, and the request mapping
checked against a small stand-in `lmdeploy` module (the real one needs CUDA; see tests/gpu)."""

from __future__ import annotations

import importlib.machinery
import json
import struct
import sys
import threading
import types
from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image

from studio.config import StudioConfig, load_config
from studio.engines.hf_loading import HFOptions
from studio.engines.lmdeploy_setup import LmdeployOptions
from studio.engines.openai_compat import RemoteOptions
from studio.core.types import GenParams, ImagePart, Message, TextPart
from studio.engines import ENGINES, preflight
from studio.engines import lmdeploy_engine as lm
from studio.engines import lmdeploy_setup as lms
from studio.engines.base import LoadContext, Placement
from studio.engines.memory import GIB, MemoryPlan
from studio.errors import ConfigError, InputError, StudioError
from studio.services import EnginePool
from tests.support.engine_calls import GenerationRequest, generate, prompt_tokens


def _write(tmp_path: Path, engine: dict) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(json.dumps({"engines": {"chat": engine}}), encoding="utf-8")
    return path


@pytest.mark.parametrize("extra, expected", [
    ({"family": "xcomposer2", "trust_remote_code": True}, r"XComposer2 is not supported by lmdeploy.*engine: hf"),
    ({"backend": "vllm"}, r"engines\.chat\.backend: Input should be 'auto', 'turbomind' or 'pytorch'.*'vllm'"),
    ({"cache_max_entry_count": 1.0}, r"cache_max_entry_count: Input should be less than 1"),
    ({"max_batch_size": 0}, r"max_batch_size: Input should be greater than or equal to 1"),
    ({"device": "cpu"}, r"needs an NVIDIA GPU; use engine: hf on CPU"),
    ({"dtype": "float32"}, r"float16 or bfloat16"),
])
def test_config_refuses_what_lmdeploy_cannot_run(tmp_path, extra, expected):
    with pytest.raises(ConfigError, match=expected):
        load_config(_write(tmp_path, {"engine": "lmdeploy", "model_path": "/m", **extra}))


@pytest.mark.parametrize("field, value", [("backend", "pytorch"), ("session_len", 4096),
                                          ("cache_max_entry_count", 0.3), ("enable_prefix_caching", False),
                                          ("engine_process", False)])
def test_lmdeploy_fields_only_for_lmdeploy(tmp_path, field, value):
    with pytest.raises(ConfigError, match=rf"engines\.chat\.{field}: only for engine: lmdeploy"):
        load_config(_write(tmp_path, {"engine": "hf", "model_path": "/m", field: value}))


def test_shipped_lmdeploy_configs_validate():
    for name in ("lmdeploy-internlm2-chat-1_8b.yaml", "lmdeploy-internvl2-2b.yaml"):
        chat = load_config(Path("configs") / name).engines["chat"]
        assert chat.engine == "lmdeploy" and chat.backend == "auto" and chat.enable_prefix_caching


def test_concurrency_follows_max_batch_size_for_engines_that_batch(tmp_path):
    cfg = StudioConfig(engines={"chat": LmdeployOptions(model_path="/m", max_batch_size=24),
                                "vision": HFOptions(model_path="/v"),
                                "remote": RemoteOptions(base_url="http://h:1/v1",
                                                       max_batch_size=16)})
    pool = EnginePool(cfg, 1, tmp_path)
    # A transformers engine batches too (8 on a GPU by default); max_batch_size: 1 is one at a time.
    assert [pool.concurrency(n) for n in ("chat", "vision", "remote")] == [24, 8, 16]
    assert load_config(_write(tmp_path, {"model_path": "/v", "max_batch_size": 1})).engines["chat"].concurrency() == 1
    assert EnginePool(StudioConfig(engines={"chat": LmdeployOptions(model_path="/m")}), 1,
                      tmp_path).concurrency("chat") == 32


def _model_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({
        "architectures": ["InternLM2ForCausalLM"], "hidden_size": 64, "num_attention_heads": 4,
        "num_key_value_heads": 2, "num_hidden_layers": 2, "max_position_embeddings": 4096}))
    header = json.dumps({"w": {"dtype": "BF16", "shape": [1000, 64], "data_offsets": [0, 128000]}}).encode()
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + bytes(128000))
    return folder


@pytest.fixture
def machine(monkeypatch):
    """A machine with one CUDA device, lmdeploy installed, no TurboMind and 40 GiB free."""
    monkeypatch.setattr(lms, "cuda_devices", lambda: 1)
    monkeypatch.setattr(lms, "installed", lambda: True)
    monkeypatch.setattr(lms, "turbomind_available", lambda: False)
    monkeypatch.setattr("studio.engines.memory.free_bytes", lambda device, n=1: 40 * GIB)


def test_preflight_refusals(tmp_path, monkeypatch, machine):
    cfg = LmdeployOptions(family="internlm2", model_path=str(_model_dir(tmp_path)))
    assert "lmdeploy tp=1" in preflight(cfg, 1)
    with pytest.raises(ConfigError, match=r"--num-gpus 2 .* only 1 is visible") as err:
        preflight(cfg, 2)
    assert "--num-gpus 1" in err.value.hint
    with pytest.raises(ConfigError, match="TurboMind extension does not import") as err:
        preflight(cfg.model_copy(update={"backend": "turbomind"}), 1)
    assert "backend: pytorch" in err.value.hint
    with pytest.raises(ConfigError, match="XComposer2"):
        preflight(cfg.model_copy(update={"family": "xcomposer2"}), 1)
    monkeypatch.setattr(lms, "installed", lambda: False)
    with pytest.raises(ConfigError, match="not installed") as err:
        preflight(cfg, 1)
    assert "pip install -r requirements-lmdeploy.txt" in err.value.hint
    monkeypatch.setattr(lms, "cuda_devices", lambda: 0)
    with pytest.raises(ConfigError, match="needs an NVIDIA GPU") as err:
        preflight(cfg, 1)
    assert "engine: hf" in err.value.hint


def test_two_gpus_plan_tensor_parallelism_over_both(tmp_path, monkeypatch, machine, fake_lmdeploy):
    """--num-gpus 2 on a two-GPU machine: tp=2, the plan counts both devices' free memory."""
    monkeypatch.setattr(lms, "cuda_devices", lambda: 2)
    seen = []
    monkeypatch.setattr("studio.engines.memory.free_bytes", lambda device, n=1: seen.append(n) or n * 40 * GIB)
    cfg = LmdeployOptions(family="internlm2", model_path=str(_model_dir(tmp_path)),
                       max_batch_size=8, session_len=2048)
    line = preflight(cfg, 2)
    assert "lmdeploy tp=2" in line and "80.0 GiB free on cuda:0-1" in line and seen[-1] == 2
    with pytest.raises(ConfigError, match=r"--num-gpus 3 .* only 2 are visible"):
        preflight(cfg, 3)
    engine = ENGINES.get("lmdeploy").load(cfg, LoadContext("chat", Placement("auto", 2), tmp_path, lambda f, t: None))
    backend = fake_lmdeploy.loaded[0][1]
    assert backend.tp == 2 and engine.info().device == "cuda:0-1" and engine.info().extra["tp"] == 2
    engine.close()


def test_real_machine_without_cuda_or_lmdeploy_is_refused(tmp_path):
    cfg = LmdeployOptions(model_path=str(tmp_path))
    with pytest.raises(ConfigError, match="NVIDIA GPU|not installed"):
        preflight(cfg, 1)


def test_cache_fraction_comes_from_the_plan():
    plan = MemoryPlan("cuda:0", weights=4 * GIB, kv_cache=GIB // 4, headroom=GIB, free=100 * GIB)
    assert lms.cache_fraction(plan, 32) == round(8 / 96, 3)  # 32 sessions of 0.25 GiB out of 96 free
    assert lms.cache_fraction(plan, 1024) == 0.9  # never all of it
    assert lms.cache_fraction(plan.__class__("cuda:0", 4 * GIB, GIB, GIB, 5 * GIB), 32) == 0.05


class _Session:
    def __init__(self):
        self.aborted = threading.Event()

    def abort(self):
        self.aborted.set()


class _Pipe:
    """Stands in for lmdeploy's Pipeline; `script(session)` yields the responses."""

    def __init__(self, script=None):
        self.script = script or (lambda s: iter([_r("Hel"), _r("lo", "stop", 2)]))
        self.sessions, self.calls, self.closed = [], [], False
        self.tokenizer = SimpleNamespace(model=SimpleNamespace(model=SimpleNamespace(
            apply_chat_template=lambda msgs, add_generation_prompt, tokenize: list(range(5 * len(msgs))))))

    def session(self):
        self.sessions.append(_Session())
        return self.sessions[-1]

    def stream_infer(self, messages, sessions, gen_config):
        self.calls.append((messages, gen_config))
        yield from self.script(sessions)

    def close(self):
        self.closed = True


def _r(text="", finish=None, n=1, **extra):
    return SimpleNamespace(text=text, finish_reason=finish, generate_token_len=n, input_token_len=7, **extra)


@pytest.fixture
def fake_lmdeploy(monkeypatch):
    """A `lmdeploy` module with the names the engine uses, recording what it is given."""
    mod = types.ModuleType("lmdeploy")
    mod.__spec__ = importlib.machinery.ModuleSpec("lmdeploy", None)
    for name in ("GenerationConfig", "PytorchEngineConfig", "TurbomindEngineConfig"):
        setattr(mod, name, type(name, (SimpleNamespace,), {}))
    mod.loaded = []

    def pipeline(path, backend_config=None, trust_remote_code=False):
        mod.loaded.append((path, backend_config, trust_remote_code))
        return _Pipe()

    mod.pipeline = pipeline
    monkeypatch.setitem(sys.modules, "lmdeploy", mod)
    return mod


def _engine(pipe, vision=False, **cfg):
    cfg = LmdeployOptions(model_path="/m", **cfg)
    family = SimpleNamespace(name="internvl2" if vision else "internlm2", accepts_images=vision)
    plan = MemoryPlan("cuda:0", GIB, GIB, GIB, 10 * GIB)
    return lm.LmdeployEngine(pipe, cfg, family, "pytorch", 1, plan, "m")


def test_load_builds_the_pipeline_from_the_config(tmp_path, machine, fake_lmdeploy):
    cfg = LmdeployOptions(family="internlm2", model_path=str(_model_dir(tmp_path)),
                       session_len=2048, max_batch_size=8, trust_remote_code=True, enable_prefix_caching=False)
    engine = ENGINES.get("lmdeploy").load(cfg, LoadContext("chat", Placement("auto", 1), tmp_path, lambda f, t: None))
    path, backend, trust = fake_lmdeploy.loaded[0]
    assert path.endswith("model") and trust is True
    assert type(backend).__name__ == "PytorchEngineConfig"
    assert (backend.tp, backend.session_len, backend.max_batch_size, backend.enable_prefix_caching) == (1, 2048, 8, False)
    assert backend.enable_mp_engine is True  # the engine runs beside the web server, not under its GIL
    assert 0.05 <= backend.cache_max_entry_count <= 0.9
    info = engine.info()
    assert (info.engine, info.batches, info.context_window) == ("lmdeploy", True, 2048)
    assert info.extra["backend"] == "pytorch" and info.extra["tp"] == 1 and info.extra["session_len"] == 2048
    engine.close()
    assert engine._closed


def test_official_checkpoints_load_through_the_tokenizer_overlay(tmp_path, machine, fake_lmdeploy):
    pytest.importorskip("google.protobuf")
    from tests.support.tiny_checkpoints import write_tiny_internlm2

    model = write_tiny_internlm2(tmp_path / "internlm2")
    cfg = LmdeployOptions(model_path=str(model), trust_remote_code=True)
    cache = tmp_path / "cache"
    engine = ENGINES.get("lmdeploy").load(cfg, LoadContext("chat", Placement("auto", 1), cache, lambda f, t: None))
    path = fake_lmdeploy.loaded[0][0]
    assert path.startswith(str(cache / "lmdeploy-tokenizer")) and (Path(path) / "tokenizer.json").is_file()
    engine.close()


def test_an_unreadable_tokenizer_is_refused_with_the_folder_named(tmp_path, machine, fake_lmdeploy):
    pytest.importorskip("google.protobuf")
    from tests.support.tiny_checkpoints import write_tiny_internlm2

    model = write_tiny_internlm2(tmp_path / "internlm2")
    (model / "tokenizer.model").write_bytes(b"not a sentencepiece model")
    cfg = LmdeployOptions(model_path=str(model), trust_remote_code=True)
    with pytest.raises(StudioError, match="Could not prepare .*internlm2 for lmdeploy") as err:
        ENGINES.get("lmdeploy").load(cfg, LoadContext("chat", Placement("auto", 1), tmp_path / "cache", lambda f, t: None))
    assert "tokenizer.model" in err.value.hint and not fake_lmdeploy.loaded  # nothing was handed to lmdeploy


def test_stream_maps_messages_and_generation_config(fake_lmdeploy):
    pipe = _Pipe()
    engine = _engine(pipe, vision=True, system_prompt="Be brief.")
    img = Image.new("RGB", (8, 8))
    msgs = [Message.of("user", "hi"), Message.of("assistant", "hello"),
            Message("user", [TextPart("what is this?"), ImagePart(img)])]
    params = GenParams(max_new_tokens=64, temperature=0.5, top_p=0.8, top_k=20, repetition_penalty=1.1,
                       seed=7, stop=("END",))
    deltas = list(generate(engine, GenerationRequest(msgs, params, max_tiles=4)))
    assert [d.text for d in deltas] == ["Hel", "lo", ""]
    assert deltas[-1].finish_reason == "stop" and deltas[-1].completion_tokens == 2
    sent, gen = pipe.calls[0]
    assert sent[0] == {"role": "system", "content": "Be brief."}
    assert sent[1] == {"role": "user", "content": "hi"} and sent[2]["role"] == "assistant"
    assert sent[3]["content"] == [{"type": "text", "text": "what is this?"},
                                  {"type": "image_data", "image_data": {"data": img, "max_dynamic_patch": 4}}]
    assert (gen.max_new_tokens, gen.do_sample, gen.temperature, gen.top_p, gen.top_k) == (64, True, 0.5, 0.8, 20)
    assert (gen.repetition_penalty, gen.random_seed, gen.stop_words) == (1.1, 7, ["END"])
    greedy = GenParams(temperature=0.0)
    list(generate(engine, GenerationRequest([Message.of("user", "x")], greedy)))
    assert pipe.calls[1][1].do_sample is False and pipe.calls[1][1].stop_words is None
    assert len(pipe.sessions) == 2  # one session per request


def test_cancel_aborts_the_session(fake_lmdeploy):
    def script(sess):
        yield _r("a")
        assert sess.aborted.wait(5)
        yield _r("", "abort")

    pipe = _Pipe(script)
    request = GenerationRequest([Message.of("user", "hi")])
    stream = generate(_engine(pipe), request)
    assert next(stream).text == "a"
    request.cancel.set()
    last = list(stream)[-1]
    assert last.finish_reason == "cancelled" and pipe.sessions[0].aborted.is_set()


def test_closing_the_stream_aborts_the_session(fake_lmdeploy):
    pipe = _Pipe(lambda s: iter([_r("a"), _r("b"), _r("", "stop")]))
    stream = generate(_engine(pipe), GenerationRequest([Message.of("user", "hi")]))
    next(stream)
    stream.close()
    assert pipe.sessions[0].aborted.is_set()


def test_errors_become_a_clear_final_delta(fake_lmdeploy):
    pipe = _Pipe(lambda s: iter([_r("", "error", error_code="context_length_exceeded",
                                    error_message="input 9000 tokens exceeds session_len 8192")]))
    last = list(generate(_engine(pipe), GenerationRequest([Message.of("user", "hi")])))[-1]
    assert last.finish_reason == "error"
    assert "context_length_exceeded" in last.error and "exceeds session_len" in last.error

    def broken(sess):
        yield _r("a")
        raise RuntimeError("engine loop died")

    last = list(generate(_engine(_Pipe(broken)), GenerationRequest([Message.of("user", "hi")])))[-1]
    assert last.finish_reason == "error" and "engine loop died" in last.error


def test_requests_it_cannot_serve_are_refused_up_front(fake_lmdeploy):
    engine = _engine(_Pipe(), session_len=256)
    image = Message("user", [TextPart("see"), ImagePart(Image.new("RGB", (4, 4)))])
    with pytest.raises(InputError, match="reads text only"):
        generate(engine, GenerationRequest([image]))
    with pytest.raises(InputError, match="session length is 256"):
        generate(engine, GenerationRequest([Message.of("user", "x")] * 60))
    # far inside the session: the bound (the template's 5 tokens for one user turn + 2 bytes + 2 slack)
    assert prompt_tokens(engine, [Message.of("user", "hi")]) == 9
    engine.quick_limit = 0  # always exact
    assert prompt_tokens(engine, [Message.of("user", "hi")]) == 5  # the tokenizer's chat template
    # transformers 5 returns a BatchEncoding (a dict) from apply_chat_template(tokenize=True)
    engine.pipe.tokenizer.model.model.apply_chat_template = lambda msgs, add_generation_prompt, tokenize: {
        "input_ids": list(range(7 * len(msgs))), "attention_mask": [1] * 7 * len(msgs)}
    assert prompt_tokens(engine, [Message.of("user", "hi")]) == 7
    engine.close()
    with pytest.raises(Exception, match="unloaded"):
        generate(engine, GenerationRequest([Message.of("user", "hi")]))


def test_vision_prompts_count_image_tokens(fake_lmdeploy):
    from studio.families import FAMILIES

    engine = _engine(_Pipe(), max_tiles=1)
    engine.quick_limit = 0  # the exact count
    engine.family, engine.accepts_images = FAMILIES.get("internvl2")(), True
    image = Image.new("RGB", (448, 448))
    cost = engine.image_cost(image)
    assert cost.tiles == 1 and cost.tokens == 258
    msg = Message("user", [TextPart("see"), ImagePart(image)])
    assert prompt_tokens(engine, [msg]) == 5 + 258


def test_prompts_are_counted_from_many_threads_as_the_template_tokenizes_them(fake_lmdeploy, tmp_path):
    """The count uses a private copy of the Rust tokenizer, without a lock: equal to transformers'
    apply_chat_template(tokenize=True) for every prompt, also with 16 threads counting at once."""
    from concurrent.futures import ThreadPoolExecutor

    from transformers import AutoTokenizer

    from studio.engines.lmdeploy_tokenizer import write_fast_tokenizer
    from tests.support.tiny_checkpoints import write_tiny_tokenizer

    spm, fast = tmp_path / "spm", tmp_path / "fast"
    spm.mkdir(), fast.mkdir()
    write_tiny_tokenizer(spm)
    write_fast_tokenizer(spm, fast)
    tok = AutoTokenizer.from_pretrained(fast)
    pipe = _Pipe()
    pipe.tokenizer = SimpleNamespace(model=SimpleNamespace(model=tok))
    engine = _engine(pipe)
    engine.quick_limit = 0  # the exact count every time
    chats = [[Message.of("system", "Be brief."), Message.of("user", f"Tell me about the river, part {i}. " * (i + 1)),
              Message.of("assistant", "The river runs east."), Message.of("user", "浦语 and more " * i)]
             for i in range(24)]

    def expected(msgs):
        ids = tok.apply_chat_template([{"role": m.role, "content": m.text} for m in msgs],
                                      add_generation_prompt=True, tokenize=True)
        return len(ids["input_ids"] if isinstance(ids, Mapping) else ids)  # transformers 5: a BatchEncoding

    want = [expected(c) for c in chats]
    assert len(set(want)) > 10  # the prompts differ, so a wrong count shows
    with ThreadPoolExecutor(16) as pool:
        got = list(pool.map(lambda c: engine._count(c, None), chats * 8))
    assert got == want * 8
    assert engine._counter._tokenizers()[1] is not tok.backend_tokenizer  # lmdeploy's own is left alone

    # The bound, used far inside the session, is never below the exact count, and not far above it
    engine.quick_limit = engine.session_len // 8
    for chat, exact in zip(chats, want):
        bound = engine._count(chat, None)
        assert exact <= bound <= 4 * exact + 16, (exact, bound)
    long = [Message.of("user", "a long message about the river " * 400)]  # past the quick limit: exact
    assert engine._count(long, None) == expected(long)
    # the bound decides as the exact count would: a prompt it cannot fit is counted exactly, then refused
    with pytest.raises(InputError, match=r"The prompt is \d+ tokens"):
        generate(engine, GenerationRequest([Message.of("user", "river " * 20000)], GenParams(max_new_tokens=8)))


def test_one_watch_thread_serves_every_request_and_a_cancel_before_the_first_token_aborts(fake_lmdeploy):
    started = threading.Barrier(9)

    def script(sess):
        started.wait(5)  # all eight requests are streaming: none has produced a token yet
        assert sess.aborted.wait(5)  # only the watch can end this one: no response came to check the flag
        yield _r("", "abort")

    engine = _engine(_Pipe(script))
    engine._watch.every_s = 0.01
    requests = [GenerationRequest([Message.of("user", f"hi {i}")]) for i in range(8)]
    results = [None] * 8

    def run(i):
        results[i] = list(generate(engine, requests[i]))[-1]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    started.wait(5)
    assert engine._watch.watching() == 8
    assert sum(t.name == "lmdeploy-cancel" for t in threading.enumerate()) == 1
    for r in requests:
        r.cancel.set()
    for t in threads:
        t.join(10)
    assert all(r.finish_reason == "cancelled" for r in results)
    assert all(s.aborted.is_set() for s in engine.pipe.sessions)
    assert engine._watch.watching() == 0
    for _ in range(200):  # the watch's thread ends once nothing is registered
        if not any(t.name == "lmdeploy-cancel" for t in threading.enumerate()):
            break
        threading.Event().wait(0.01)
    assert not any(t.name == "lmdeploy-cancel" for t in threading.enumerate())
