"""The transformers engine: local checkpoints and GGUF files, streamed token by token.

Generation runs inside the caller's generator, one decoder step per token: no background
thread, so a cancelled request or a closed generator stops the compute at the next token.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from studio.core.types import EngineInfo, GenParams, Message, TextDelta
from studio.engines.base import Encoded, EngineBase, LoadContext, Prepared, uses_tools
from studio.engines.hf_loading import HFOptions
from studio.engines.hf_sampling import _Sampler, _TextAssembler
from studio.families import TOOL_FORMATS
from studio.families.base import ImageCost, PromptInputs, system_default

log = logging.getLogger(__name__)


class HFEngine(EngineBase):
    """A transformers causal LM behind the Engine protocol; Llama-architecture models decode concurrent
    requests together (studio.engines.hf_batch), others one generation at a time."""

    batches = False

    def __init__(self, loaded: Any, family: Any, cfg: HFOptions) -> None:
        from studio.engines.hf_decode import make_decoder

        config = loaded.model.config
        text_cfg = config.get_text_config() if hasattr(config, "get_text_config") else config
        super().__init__(cfg, cfg.context_window or getattr(text_cfg, "max_position_embeddings", None) or 2048)
        self.loaded = loaded
        self.model, self.tokenizer = loaded.model, loaded.tokenizer
        self.family, self.cfg = family, cfg
        self.vision = loaded.vision
        self.accepts_images = bool(getattr(family, "accepts_images", False)) and self.vision is not None
        self.decoder = make_decoder(self.model)
        self.decoder_notice = ""  # why the decoder is not the one the config asked for
        self.stop_ids = set(family.stop_token_ids(self.tokenizer, getattr(self.model, "generation_config", None)))
        self.default_system_prompt = system_default(family, self.tokenizer)
        # A family with a native tool-call format (InternLM2) can run the agent: its tool turns, its stops.
        self.tool_format = TOOL_FORMATS.get(family.name)() if family.name in TOOL_FORMATS else None
        self.tools = self.tool_format is not None
        # A model without a default: an explicit empty system prompt and none at all are the same prompt.
        self.keeps_empty_system = self.default_system_prompt is not None
        self._lock = threading.Lock()  # serialises generations: direct callers (CLI, API) too
        # All compute runs on one thread: torch's OpenMP pool is per calling thread, and servers
        # resume generators from rotating worker threads, which halved decode speed (58 → 33 tok/s).
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hf-engine")
        # Fast tokenizers raise "Already borrowed" when one thread encodes while another decodes.
        self._tok_lock = threading.Lock()
        from studio.engines.hf_batch import make_batcher

        self.batcher = make_batcher(self)  # None: one request at a time
        self.batches = self.batcher is not None

    def label(self) -> str:
        """The model's name: the label, the GGUF file's or the folder's."""
        files = self.loaded.files
        return self.cfg.label or (files.gguf.stem if files.gguf else files.model_dir.name)

    def _encode(self, messages: list[Message], max_tiles: Optional[int], final: bool, tools=()) -> Encoded:
        """Prompt ids (a vision prompt's preprocessed images only with `final`); InputError for unreadable images."""
        with self._tok_lock:
            if self.tool_format is not None and uses_tools(messages, tools):  # the family's native tool format
                fmt = self.tool_format
                ids = fmt.render_ids(self.tokenizer, fmt.native_messages(messages, tools))
                return Encoded(len(ids), PromptInputs(ids))
            if self.accepts_images and final:
                prompt = self.family.prepare(self.tokenizer, messages, max_tiles)
                return Encoded(len(prompt.ids), prompt)
            if self.accepts_images:  # counting only: tile counts without resizing any image
                return Encoded(len(self.family.encode(self.tokenizer, messages, max_tiles)))
            ids = self.family.encode(self.tokenizer, messages)
            return Encoded(len(ids), PromptInputs(ids))

    def _image_cost(self, image: Any, max_tiles: Optional[int]) -> ImageCost:
        return self.family.image_cost(image, max_tiles)

    def _generate(self, prepared: Prepared, cancel: threading.Event) -> Iterator[TextDelta]:
        markers = self.tool_format.KEPT_MARKERS if (
            self.tool_format is not None and uses_tools(prepared.messages, prepared.tools)) else {}
        return self._serve(prepared.payload, prepared.params, cancel, markers)

    def _acquire(self, cancel: threading.Event) -> bool:
        """Wait for the model; False if the request is cancelled first."""
        while not self._lock.acquire(timeout=0.05):
            if cancel.is_set():
                return False
        return True

    def _serve(self, prompt: PromptInputs, params: GenParams, cancel: threading.Event,
               markers: Optional[dict] = None) -> Iterator[TextDelta]:
        batcher = self.batcher
        if batcher is not None and params.num_beams <= 1 and batcher.fits(len(prompt.ids) + params.max_new_tokens):
            yield from batcher.serve(prompt, params, cancel, markers or {})
            return
        # The lock is taken on the caller's thread; only the compute moves to the engine thread,
        # so a waiting caller never occupies that thread.
        if not self._acquire(cancel):
            yield TextDelta(finish_reason="cancelled", prompt_tokens=len(prompt.ids))
            return
        max_new = params.max_new_tokens
        if params.num_beams > 1 and not prompt.pixel_values:
            from studio.engines.hf_beams import beam_generate

            gen = beam_generate(self.model, self.tokenizer, prompt.ids, max_new, self.stop_ids, params, cancel)
        else:
            gen = self._run(prompt, params, cancel, markers or {})
        try:
            while True:
                try:
                    item = self._worker.submit(next, gen).result()
                except StopIteration:
                    return
                yield item
        finally:
            try:
                self._worker.submit(self._finish, gen).result()
            except RuntimeError:  # the engine was closed meanwhile
                self._finish(gen)
            self._lock.release()

    def _finish(self, gen: Iterator[TextDelta]) -> None:
        gen.close()
        if not self._closed:
            self.decoder.release()

    def _prefill(self, prompt: PromptInputs, cancelled: Any) -> Any:
        """The prompt through the model (image features spliced in); fp32 logits or None if cancelled."""
        if self.vision is None or not prompt.pixel_values:
            return self.decoder.prefill(prompt.ids, cancelled)
        embeds, mask = self.vision.embed(self.model, prompt)

        def on_chunk(start: int, end: int) -> None:
            self.vision.set_adapter_mask(None if mask is None else mask[None, start:end])

        try:
            return self.decoder.prefill(prompt.ids, cancelled, embeds=embeds, on_chunk=on_chunk)
        finally:
            self.vision.set_adapter_mask(None)  # decoding is text only

    def _run(self, prompt: PromptInputs, params: GenParams, cancel: threading.Event,
             markers: dict) -> Iterator[TextDelta]:
        """Decode token by token; `markers` (tool calls) are written out as text, and the last one that ends
        a call (`<|action_end|>`) ends the reply."""
        import torch

        ids, max_new = prompt.ids, params.max_new_tokens
        text = _TextAssembler(self.tokenizer, params.stop, self._tok_lock)
        done, finish, error, oom, hit = 0, "length", None, False, False
        try:
            # Vision models generate from embeddings, as the official chat() does: the repetition
            # penalty then sees the reply only, not the prompt's placeholder ids.
            seen = [] if self.accepts_images else ids
            sampler = _Sampler(params, seen, max_new, self.model.device)
            with torch.inference_mode():  # entered per call: never held across a yield
                self.decoder.start(len(ids) + max_new)
                logits = self._prefill(prompt, cancel.is_set)
            while logits is not None:
                token = sampler.pick(logits)
                if token in self.stop_ids:
                    finish = "stop"
                    break
                done += 1
                if token in markers:  # what was held back, then the marker; text after it decodes afresh
                    yield TextDelta(text=text.flush() + markers[token])
                    text = _TextAssembler(self.tokenizer, params.stop, self._tok_lock)
                    if token == self.tool_format.ACTION_END_ID:  # the call is complete
                        finish = "stop"
                        break
                    piece, hit = "", False
                else:
                    piece, hit = text.push(token)
                if piece:
                    yield TextDelta(text=piece)
                if hit:
                    finish = "stop"
                    break
                if done >= max_new:
                    break
                if cancel.is_set() or self._closed:
                    logits = None
                    break
                with torch.inference_mode():
                    logits = self.decoder.step(token)
            if logits is None:
                finish = "cancelled"
        except torch.cuda.OutOfMemoryError:
            oom = True  # handled outside the except block, so the traceback's tensors can be freed
        except Exception as exc:  # a stream ends with an error delta, never a raise mid-stream
            log.exception("generation failed")
            error = f"Generation failed: {type(exc).__name__}: {exc}"
        if oom:
            gc.collect()
            torch.cuda.empty_cache()
            error = (f"Out of GPU memory while generating (prompt {len(ids)} tokens, {done} generated). "
                     "Shorten the conversation or lower max_new_tokens.")
        if error:
            yield TextDelta(finish_reason="error", error=error, prompt_tokens=len(ids), completion_tokens=done)
            return
        tail = "" if hit else text.flush()  # after a stop string nothing more is shown
        yield TextDelta(text=tail, finish_reason=finish, prompt_tokens=len(ids), completion_tokens=done)

    def decoder_name(self) -> str:
        """How tokens are decoded: "cuda-graph" (or "cuda-graph-compiled"), "fast-llama" (the lean eager step)
        or "hf-forward"."""
        decoder = self.decoder
        if self.batcher is not None and self.batcher.step.graphs:
            return "cuda-graph"
        if getattr(decoder, "name", "") == "cuda-graph":
            return ("cuda-graph-compiled" if decoder.compile_step else "cuda-graph") if decoder.graphs else "fast-llama"
        return getattr(decoder, "name", "?")

    def info(self) -> EngineInfo:
        """Name, device, dtype, context window and memory, for the UI."""
        label = self.label()
        memory = 0 if self._closed else sum(p.numel() * p.element_size() for p in self.model.parameters())
        if self.vision is not None and not self._closed:
            memory += sum(p.numel() * p.element_size() for p in getattr(self.vision, "parameters", list)())
        plan = self.loaded.plan
        return EngineInfo(
            engine="hf", model=label, family=self.family.name, device=self.loaded.device,
            dtype=self.loaded.dtype, context_window=self.context_window, memory_bytes=memory,
            accepts_images=self.accepts_images, system_prompt=self.system_prompt(), batches=self.batches,
            extra={"decoder": self.decoder_name(), "decoder_notice": self.decoder_notice,
                   "batch": self._batch_summary(),
                   "graph_capture_s": round(getattr(self.decoder, "capture_seconds", 0.0), 2),
                   "load_seconds": round(self.loaded.seconds, 2),
                   "source": self.loaded.source, "cache_path": str(self.loaded.cache_path or ""),
                   "memory_plan": plan.summary() if plan else ""},
        )

    def _batch_summary(self) -> str:
        """ "8 × cuda-graph", "4 × eager", or "" for one request at a time."""
        batcher = self.batcher
        return f"{batcher.slots} × {batcher.step.name}" if batcher is not None else ""

    def capture_graphs(self, progress: Callable[[float, str], None], cache_dir: Optional[Path] = None) -> None:
        """On a GPU, capture the lean decode step as CUDA graphs (cfg.cuda_graphs); a failure leaves the
        eager step, said in the log and the System panel."""
        from studio.engines.hf_decode import FastLlamaDecoder

        if not (self.cfg.cuda_graphs and self.model.device.type == "cuda" and type(self.decoder) is FastLlamaDecoder):
            return
        if self.batcher is not None:  # every lean request decodes in the batch: capture that step only
            self._capture_batch(progress)
            return
        from studio.engines.hf_graphs import GraphLlamaDecoder

        compile_step = self.cfg.cuda_graph_compile
        if compile_step and cache_dir is not None:
            # Inductor's compile cache is read at its first use: later starts load the kernels from here.
            os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(Path(cache_dir) / "inductor"))
        progress(0.95, "Compiling and capturing the decode step" if compile_step else
                 "Capturing the decode step as CUDA graphs")
        decoder = GraphLlamaDecoder(self.model, min(self.cfg.cuda_graph_tokens, self.context_window), compile_step)
        self.decoder = decoder  # eager until (unless) the capture succeeds
        if decoder.capture(lambda i, n: progress(0.95 + 0.05 * i / n, f"Capturing CUDA graphs ({i}/{n})")):
            self.decoder_notice = ""
        else:
            decoder.drop_buffers()
            self.decoder_notice = f"CUDA graph capture failed, decoding eagerly: {decoder.failure}"

    def _capture_batch(self, progress: Callable[[float, str], None]) -> None:
        """The batched step as CUDA graphs per (batch, length) bucket; eager batched when capture fails."""
        import torch

        from studio.engines.hf_batch_step import GraphBatchStep, graph_tokens

        slots = self.batcher.slots
        want = min(self.cfg.cuda_graph_tokens, self.context_window)
        tokens = graph_tokens(self.decoder, slots, want, torch.cuda.mem_get_info(self.model.device)[0])
        if not tokens:
            self.decoder_notice = f"Not enough free GPU memory for {slots} graph cache slots: batching eagerly."
            return
        progress(0.95, "Capturing the batched decode step as CUDA graphs")
        step = GraphBatchStep(self.decoder, slots, tokens)
        if step.capture(lambda i, n: progress(0.95 + 0.05 * i / n, f"Capturing CUDA graphs ({i}/{n})")):
            self.batcher.step, self.decoder_notice = step, ""
        else:
            self.decoder_notice = f"CUDA graph capture failed, decoding eagerly: {step.failure}"
        self.decoder.capture_seconds = step.capture_seconds

    def warm_up(self) -> None:
        """One tiny generation so the first reply does not pay for lazy kernel set-up."""
        prepared = self.prepare([Message.of("user", "Hi")], GenParams(max_new_tokens=2, do_sample=False))
        for _ in self.stream(prepared, threading.Event()):
            pass

    def close(self) -> None:
        """Free the model's memory; the engine is unusable afterwards."""
        locked = self._lock.acquire(timeout=2.0)  # a suspended stream must not block unloading
        try:
            self._closed = True
            on_cuda = self.model is not None and self.model.device.type == "cuda"
            self.decoder.release()
            self.model = self.decoder = self.loaded.model = self.vision = self.loaded.vision = None
            self._worker.shutdown(wait=False)
            gc.collect()
            if on_cuda:
                import torch

                torch.cuda.empty_cache()
        finally:
            if locked:
                self._lock.release()


def load_hf_engine(cfg: HFOptions, ctx: LoadContext) -> HFEngine:
    """Resolve the files and family, load the model (GGUF through its cache), warm it up."""
    from studio.engines.hf_loading import load_model, resolve_model_files
    from studio.families.detect import resolve_family

    files = resolve_model_files(cfg.model_path, cfg.gguf_file)
    # The family is settled before the slow load, so an unsupported checkpoint fails at once.
    family = resolve_family(cfg.family, None if files.gguf else files.model_dir)
    loaded = load_model(cfg, ctx, files, family)
    engine = HFEngine(loaded, family, cfg)
    engine.capture_graphs(ctx.progress, ctx.cache_dir)
    engine.warm_up()  # a tokenizer without a chat template fails here, before the tabs use it
    return engine
