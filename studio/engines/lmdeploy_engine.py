"""The lmdeploy engine: continuous batching on NVIDIA GPUs (TurboMind or lmdeploy's PyTorch engine).

lmdeploy is optional (requirements-lmdeploy.txt) and imported only inside functions. Its pipeline
owns an event loop thread and is safe to call from many threads at once: each request gets its
own session, and concurrent requests are batched by the engine. Both backends are stateless, so
the whole history is resent every turn (prefix caching avoids prefilling it again).

With tp > 1 lmdeploy starts worker processes, which re-import the launching script: that script
must start the studio only under `if __name__ == "__main__":` (launch.py does).
"""

from __future__ import annotations

import gc
import threading
import time
from typing import Any, Iterator, Optional

from studio.core.types import EngineInfo, GenParams, Message, TextDelta
from studio.engines.base import Encoded, EngineBase, LoadContext, Prepared
from studio.engines.lmdeploy_count import PromptCounter
from studio.engines.lmdeploy_setup import (
    LmdeployOptions, backend_config, cache_fraction, check_environment, plan_load, session_len_of,
)
from studio.engines.lmdeploy_stream import read
from studio.engines.memory import MemoryPlan
from studio.errors import StudioError
from studio.families.base import ImageCost
_FINISH = {"stop": "stop", "length": "length", "abort": "cancelled", "cancel": "cancelled", "error": "error"}
_WATCH_S = 0.05  # how often the cancel watcher looks at the request's flag


def wire_messages(messages: list[Message], max_tiles: Optional[int]) -> list[dict]:
    """Our messages as lmdeploy's OpenAI-style dicts; images as PIL `image_data` parts."""
    out = []
    for m in messages:
        if not m.images:
            out.append({"role": m.role, "content": m.text})
            continue
        parts: list[dict] = []
        for p in m.content:
            if p.type == "text":
                parts.append({"type": "text", "text": p.text})
            else:
                data: dict = {"data": p.image}
                if max_tiles:
                    data["max_dynamic_patch"] = max_tiles
                parts.append({"type": "image_data", "image_data": data})
        out.append({"role": m.role, "content": parts})
    return out


def gen_config(params: GenParams, max_new: int) -> Any:
    """lmdeploy's GenerationConfig for our sampling parameters (greedy when temperature is 0)."""
    from lmdeploy import GenerationConfig

    sample = params.do_sample and params.temperature > 0
    return GenerationConfig(max_new_tokens=max_new, do_sample=sample, temperature=params.temperature,
                            top_p=params.top_p, top_k=params.top_k, repetition_penalty=params.repetition_penalty,
                            random_seed=params.seed, stop_words=list(params.stop) or None)


SESSION_MARGIN = 32  # tokens kept free in the session beyond our prompt estimate


class LmdeployEngine(EngineBase):
    """An lmdeploy pipeline behind the Engine protocol; concurrent requests are batched."""

    batches = True
    window_name = "session length"
    # The count may be a little short of lmdeploy's own (template/BOS handling): keep a margin so
    # prompt + reply never exceeds session_len, which lmdeploy answers with an error, not a shorter reply.
    reserve = SESSION_MARGIN
    vision_hint = "Load a vision model (e.g. --config configs/lmdeploy-internvl2-2b.yaml), or remove them."
    unloaded_hint = "Load it again from the system panel."

    def __init__(self, pipe: Any, cfg: LmdeployOptions, family: Any, backend: str, tp: int, plan: MemoryPlan,
                 label: str) -> None:
        super().__init__(cfg, session_len_of(cfg))
        self.pipe, self.cfg, self.family, self.backend, self.tp, self.plan = pipe, cfg, family, backend, tp, plan
        self._label = label
        self.session_len = self.context_window
        self.accepts_images = bool(getattr(family, "accepts_images", False)) or \
            type(getattr(pipe, "async_engine", None)).__name__ == "VLAsyncEngine"
        # lmdeploy's chat templates add the same default the family's official code does.
        self.default_system_prompt = getattr(family, "default_system_prompt", None)
        self._counter = PromptCounter(self._hf_tokenizer)
        # Prompts whose upper bound is within this are not tokenized here: with the reply's room (at most
        # half the session for the chat tabs) they fit either way, and only a reply asked to be longer than
        # the rest of the session would be cut a little earlier than the exact count would cut it.
        self.quick_limit = self.session_len // 8
        self._watch = CancelWatch()

    def label(self) -> str:
        """The model's name: the label, else the folder's."""
        return self._label

    def _hf_tokenizer(self) -> Any:
        # lmdeploy wraps the transformers tokenizer: pipe.tokenizer.model.model (or one level less).
        tok = getattr(self.pipe, "tokenizer", None) or getattr(getattr(self.pipe, "async_engine", None), "tokenizer", None)
        for _ in range(3):
            if tok is None or hasattr(tok, "apply_chat_template"):
                return tok
            tok = getattr(tok, "model", None)
        return None

    def _count(self, messages: list[Message], max_tiles: Optional[int]) -> int:
        """Prompt tokens plus each image's cost: the upper bound while that is within `quick_limit` of the
        session (where it decides the same as the exact count), else exact through the chat template;
        an estimate without a tokenizer. lmdeploy reports its own exact count when the reply ends."""
        from studio.engines.openai_wire import estimate_tokens

        images = [img for m in messages for img in m.images]
        if not self._counter.available() or (images and not hasattr(self.family, "image_cost")):
            return estimate_tokens(messages)
        try:
            extra = sum(self.family.image_cost(img, max_tiles).tokens for img in images)
            bound = self._counter.bound(messages) + extra
            if bound <= self.quick_limit:
                return bound
            return self._counter.exact([{"role": m.role, "content": m.text} for m in messages]) + extra
        except Exception:  # no chat template: the estimate still guards the session length
            return estimate_tokens(messages)

    def _encode(self, messages: list[Message], max_tiles: Optional[int], final: bool, tools=()) -> Encoded:
        return Encoded(self._count(messages, max_tiles), wire_messages(messages, max_tiles))

    def _image_cost(self, image: Any, max_tiles: Optional[int]) -> ImageCost:
        if not hasattr(self.family, "image_cost"):
            return ImageCost(1, 0)  # lmdeploy knows; the family does not say
        return self.family.image_cost(image, max_tiles)

    def _generate(self, prepared: Prepared, cancel: threading.Event) -> Iterator[TextDelta]:
        gen = gen_config(prepared.params, prepared.params.max_new_tokens)
        return self._serve(prepared.payload, gen, cancel)

    def _serve(self, messages: list[dict], gen: Any, cancel: threading.Event) -> Iterator[TextDelta]:
        sess = self.pipe.session()  # one per request: a session carries one request at a time
        finish, error, prompt_tokens, tokens, aborted = None, None, 0, 0, False
        watched = self._watch.add(cancel, sess)  # a cancel before the first token (a long prefill) aborts too
        results = read(self.pipe, messages, sess, gen)
        try:
            for r in results:
                if r.text:
                    yield TextDelta(text=r.text)
                tokens = getattr(r, "generate_token_len", tokens) or tokens
                prompt_tokens = getattr(r, "input_token_len", prompt_tokens) or prompt_tokens
                if r.finish_reason:
                    finish = _FINISH.get(r.finish_reason, "stop")
                    if finish == "error":
                        error = _error_text(r)
                elif cancel.is_set() and not aborted:
                    aborted = True
                    _abort(sess)
        except Exception as exc:  # a stream ends with an error delta, never a raise mid-stream
            finish, error = "error", f"lmdeploy failed: {type(exc).__name__}: {exc}"
        finally:
            self._watch.remove(watched)
            if finish is None:  # closed early (the user left) or broke off: stop the compute too
                _abort(sess)
                getattr(results, "close", lambda: None)()
        if cancel.is_set() and finish != "error":
            finish = "cancelled"
        yield TextDelta(finish_reason=finish or "stop", error=error, prompt_tokens=prompt_tokens,
                        completion_tokens=tokens)

    def info(self) -> EngineInfo:
        """Engine, backend, tensor parallelism, dtype and session length, for the UI."""
        device = "cuda:0" if self.tp == 1 else f"cuda:0-{self.tp - 1}"
        dtype = "bfloat16" if self.cfg.dtype == "auto" else self.cfg.dtype
        return EngineInfo(
            engine="lmdeploy", model=self._label, family=self.family.name, device=device, dtype=dtype,
            context_window=self.session_len, accepts_images=self.accepts_images, batches=True,
            system_prompt=self.system_prompt(),
            memory_bytes=0 if self._closed else self.plan.weights,
            extra={"backend": self.backend, "tp": self.tp, "dtype": dtype, "session_len": self.session_len,
                   "max_batch_size": self.cfg.max_batch_size, "memory_plan": self.plan.summary()},
        )

    def close(self) -> None:
        """Stop the pipeline and free its GPU memory; the engine is unusable afterwards."""
        if self._closed:
            return
        self._closed = True
        pipe, self.pipe = self.pipe, None
        try:
            pipe.close()
        finally:
            del pipe
            gc.collect()
            try:
                import torch

                torch.cuda.empty_cache()
            except Exception:  # nothing to free without CUDA
                pass


class CancelWatch:
    """One thread per engine that aborts the sessions of cancelled requests, however many stream.

    A streaming request also checks its flag at each response; the watch covers the time before the first
    (a long prefill, a full batch). The thread runs only while requests are registered."""

    def __init__(self, every_s: float = _WATCH_S) -> None:
        self.every_s = every_s
        self._lock = threading.Lock()
        self._entries: dict[int, tuple[threading.Event, Any]] = {}
        self._next = 0
        self._thread: Optional[threading.Thread] = None

    def add(self, cancel: threading.Event, sess: Any) -> int:
        """Watch `cancel` for `sess`; the key to remove it with."""
        with self._lock:
            self._next += 1
            self._entries[self._next] = (cancel, sess)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True, name="lmdeploy-cancel")
                self._thread.start()
            return self._next

    def remove(self, key: int) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def watching(self) -> int:
        """Requests registered now."""
        with self._lock:
            return len(self._entries)

    def _run(self) -> None:
        while True:
            time.sleep(self.every_s)
            with self._lock:
                if not self._entries:
                    self._thread = None
                    return
                hits = [key for key, (cancel, _) in self._entries.items() if cancel.is_set()]
                sessions = [self._entries.pop(key)[1] for key in hits]
            for sess in sessions:
                _abort(sess)


def _abort(sess: Any) -> None:
    try:
        sess.abort()
    except Exception:  # the request may have ended meanwhile
        pass


def _error_text(r: Any) -> str:
    message = getattr(r, "error_message", None) or getattr(r, "text", "") or "no details given"
    code = getattr(r, "error_code", None)
    return f"lmdeploy reported an error{f' ({code})' if code not in (None, '') else ''}: {message}"


def _overlay(model_dir, ctx: LoadContext):
    """The folder lmdeploy should load: for official InternLM2-family checkpoints an overlay with a
    correct tokenizer and configuration class (see lmdeploy_overlay), else the checkpoint itself."""
    from studio.engines.lmdeploy_overlay import needs_overlay, overlay_for

    if not needs_overlay(model_dir):
        return model_dir
    ctx.progress(0.15, "Preparing the checkpoint's tokenizer and configuration for lmdeploy (once per checkpoint)")
    try:
        return overlay_for(model_dir, ctx.cache_dir)
    except Exception as exc:  # any file in the folder may be corrupt (e.g. a protobuf DecodeError): say which step
        raise StudioError(f"Could not prepare {model_dir} for lmdeploy: {type(exc).__name__}: {exc}",
                          "Check tokenizer.model, tokenizer_config.json and config.json in the folder; "
                          "lmdeploy's own install brings the sentencepiece and protobuf packages this needs.") from None


def load_lmdeploy_engine(cfg: LmdeployOptions, ctx: LoadContext) -> LmdeployEngine:
    """Check the machine and the memory plan, then build the pipeline."""
    tp = max(1, ctx.placement.num_gpus)
    check_environment(cfg, tp)
    files, family, plan = plan_load(cfg, tp)
    share = cfg.cache_max_entry_count or cache_fraction(plan, cfg.max_batch_size)
    backend, engine_cfg = backend_config(cfg, tp, share)
    ctx.progress(0.1, f"lmdeploy {backend}, tp={tp}, KV cache {share:.0%} of free memory")
    folder = _overlay(files.model_dir, ctx)
    from lmdeploy import pipeline

    try:
        pipe = pipeline(str(folder), backend_config=engine_cfg, trust_remote_code=cfg.trust_remote_code)
    except (RuntimeError, ValueError) as exc:
        raise StudioError(f"lmdeploy could not load {files.model_dir}: {exc}",
                          "Check the model folder and the log above; try backend: pytorch or engine: hf.") from None
    return LmdeployEngine(pipe, cfg, family, backend, tp, plan, cfg.label or files.model_dir.name)
