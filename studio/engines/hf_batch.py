"""Continuous batching for the transformers engine: concurrent requests decode together.

A scheduler runs on the engine's single compute thread while any request is active: between
steps it admits waiting requests into free slots (prompt prefilled into the slot's cache, image
embeddings included), then runs one batched step for every active slot, picks each row's token
with that request's own sampler, and streams each request's text through its own queue. A
request leaves at its stop token, stop string, length, Stop or error, freeing its slot at once;
an error in one request ends that request only. While the scheduler runs it holds the engine
lock, so the one-at-a-time path (beam search, sequences longer than the graph cache) waits for
the batch to drain, as it waits for another single request today.
"""

from __future__ import annotations

import gc
import logging
import queue
import threading
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional

from studio.core.types import GenParams, TextDelta
from studio.engines.deltas import take_waiting
from studio.families.base import PromptInputs

log = logging.getLogger("studio.engines.hf")

CPU_SLOTS, CUDA_SLOTS = 4, 8
PREFILL_BUDGET = 4096  # padded prompt positions in one shared prefill pass


def prefill_groups(pairs: list, budget: int) -> list[list]:
    """Joining (request, slot) pairs grouped for shared prefill passes: by prompt length, each group's
    padded size (rows × longest) at most `budget` and at most twice its real tokens, so a short prompt is
    not padded far beyond its length. Groups of one prefill alone."""
    groups: list[list] = []
    for pair in sorted(pairs, key=lambda p: len(p[0].prompt.ids)):
        n = len(pair[0].prompt.ids)
        group = groups[-1] if groups else None
        if group is not None:
            rows, real = len(group) + 1, sum(len(r.prompt.ids) for r, _ in group) + n
            if rows * n <= budget and rows * n <= 2 * real:
                group.append(pair)
                continue
        groups.append([pair])
    return groups


def slots_for(max_batch_size: Optional[int], device: str) -> int:
    """The configured batch size, else 8 on a GPU and 4 on CPU (see docs/BENCHMARKS.md)."""
    if max_batch_size:
        return max_batch_size
    return CPU_SLOTS if device == "cpu" else CUDA_SLOTS


@dataclass(eq=False)
class _Request:
    """One request's inputs, its output queue and, once admitted, its decoding state."""

    prompt: PromptInputs
    params: GenParams
    cancel: threading.Event
    markers: dict
    out: "queue.Queue[TextDelta]" = field(default_factory=queue.Queue)
    closed: bool = False  # the caller stopped reading (its generator was closed)
    slot: int = -1
    cache: Any = None
    sampler: Any = None
    text: Any = None
    token: int = 0
    done: int = 0
    hit: bool = False

    def stopped(self) -> bool:
        """Stop pressed or nobody reading any more."""
        return self.closed or self.cancel.is_set()


class Batcher:
    """The scheduler over `slots` sequence slots of one HFEngine (see the module docstring)."""

    def __init__(self, engine: Any, step: Any, slots: int) -> None:
        self.engine, self.step, self.slots = engine, step, slots
        self._mu = threading.Lock()  # guards _pending and _running
        self._pending: list[_Request] = []
        self._active: dict[int, _Request] = {}  # slot -> request; touched on the compute thread only
        self._running = False
        # Joining text prompts share one prefill pass on a GPU, where a prefill is mostly launch overhead.
        # On CPU a prefill is compute: one pass per prompt keeps a lone user's bf16 bits (tests turn it on).
        self.batch_prefill = engine.model.device.type == "cuda"

    def fits(self, capacity: int) -> bool:
        """Whether a sequence of `capacity` positions can join (the graph cache has a fixed length)."""
        cap = self.step.cap if self.step.graphs else None
        return cap is None or capacity <= cap

    # --- the caller's side ----------------------------------------------------------------------------
    def serve(self, prompt: PromptInputs, params: GenParams, cancel: threading.Event,
              markers: dict) -> Iterator[TextDelta]:
        """Queue the request and stream its deltas as the scheduler produces them."""
        req = _Request(prompt, params, cancel, markers)
        with self._mu:
            self._pending.append(req)
        if not self._ensure_running(cancel):
            with self._mu:
                waiting = req in self._pending
                if waiting:
                    self._pending.remove(req)
            if waiting:
                yield TextDelta(finish_reason="cancelled", prompt_tokens=len(prompt.ids))
                return
        try:
            while True:
                for delta in take_waiting(req.out.get(), req.out):  # a reader behind catches up at once
                    yield delta
                    if delta.finish_reason:
                        return
        finally:
            req.closed = True  # the scheduler frees the slot before its next step

    def _ensure_running(self, cancel: threading.Event) -> bool:
        """Start the scheduler unless it runs; False if cancelled while the engine serves a single request."""
        engine = self.engine
        while True:
            with self._mu:
                if self._running:
                    return True
            if engine._lock.acquire(timeout=0.05):
                with self._mu:
                    if self._running:  # started by another caller meanwhile
                        engine._lock.release()
                        return True
                    self._running = True
                try:
                    engine._worker.submit(self._loop)
                except RuntimeError:  # the engine was closed: fail what waits
                    self._stop_running()
                    self._fail_all("The model was unloaded.")
                return True
            if cancel.is_set():
                return False

    # --- the compute thread -----------------------------------------------------------------------------
    def _loop(self) -> None:
        """Admit, step, repeat until nothing is active or waiting; then give the engine back."""
        import torch

        try:
            with torch.inference_mode():
                while True:
                    self._admit()
                    if self._active:
                        self._step()
                        continue
                    with self._mu:
                        if not self._pending:
                            self._running = False
                            self.engine._lock.release()
                            return
        except BaseException as exc:  # a scheduler bug must not leave callers waiting forever
            log.exception("batch scheduler failed")
            self._stop_running()
            self._fail_all(f"Generation failed: {type(exc).__name__}: {exc}")

    def _stop_running(self) -> None:
        with self._mu:
            self._running = False
        self.engine._lock.release()

    def _fail_all(self, error: str) -> None:
        with self._mu:
            waiting, self._pending = self._pending, []
        for req in [*self._active.values(), *waiting]:
            self._end(req, "error", error)

    def _admit(self) -> None:
        """Drop waiting requests that were stopped; move waiting ones into free slots."""
        with self._mu:
            for req in [r for r in self._pending if r.stopped() or self.engine._closed]:
                self._pending.remove(req)
                self._end(req, "cancelled")
            free = [s for s in range(self.slots) if s not in self._active]
            joining, self._pending = self._pending[: len(free)], self._pending[len(free):]
        pairs = list(zip(joining, free))
        shared = [(r, s) for r, s in pairs if self.batch_prefill and self._plain(r)]
        groups = [g for g in prefill_groups(shared, PREFILL_BUDGET) if len(g) > 1]
        together = {id(r) for group in groups for r, _ in group}
        for group in groups:
            self._join_many(group)
        for req, slot in pairs:
            if id(req) not in together:
                self._join(req, slot)

    def _plain(self, req: _Request) -> bool:
        """A text prompt short enough for one prefill pass (images and long prompts prefill alone)."""
        from studio.engines.hf_decode import PREFILL_CHUNK

        return (self.engine.vision is None or not req.prompt.pixel_values) and 0 < len(req.prompt.ids) <= PREFILL_CHUNK

    def _prepare(self, req: _Request, slot: int) -> None:
        """The request's slot, cache, sampler and text assembler."""
        from studio.engines.hf_sampling import _Sampler, _TextAssembler

        engine, ids, max_new = self.engine, req.prompt.ids, req.params.max_new_tokens
        req.slot, req.cache = slot, self.step.new_cache(slot, len(ids) + max_new)
        # As the single path: vision prompts penalise repeats in the reply only.
        req.sampler = _Sampler(req.params, [] if engine.accepts_images else ids, max_new, engine.model.device)
        req.text = _TextAssembler(engine.tokenizer, req.params.stop, engine._tok_lock)

    def _join(self, req: _Request, slot: int) -> None:
        """Prefill the prompt into the slot and emit its first token."""
        engine = self.engine
        try:
            self._prepare(req, slot)
            engine.decoder.cache = req.cache  # the decoder's prefill writes into the cache it holds
            try:
                logits = engine._prefill(req.prompt, req.stopped)
            finally:
                engine.decoder.cache = None
            if logits is None:
                self._end(req, "cancelled")
                return
            self._active[slot] = req
            self._take(req, req.sampler.pick(logits))
        except Exception as exc:
            self._failed(req, exc)

    def _join_many(self, group: list[tuple[_Request, int]]) -> None:
        """Prefill several text prompts in one pass (BatchStep.prefill_many); each emits its first token."""
        reqs = []
        for req, slot in group:
            try:
                self._prepare(req, slot)
                reqs.append(req)
            except Exception as exc:
                self._failed(req, exc)
        if not reqs:
            return
        try:
            logits = self.step.prefill_many([r.prompt.ids for r in reqs], [r.cache for r in reqs])
        except Exception as exc:  # the shared pass failed: each of its requests ends with the error
            for req in reqs:
                self._failed(req, exc)
            return
        for row, req in enumerate(reqs):
            if req.stopped():
                self._end(req, "cancelled")
                continue
            self._active[req.slot] = req
            try:
                self._take(req, req.sampler.pick(logits[row]))
            except Exception as exc:
                self._failed(req, exc)

    def _step(self) -> None:
        """One batched forward for every active slot; each row's token goes to its request."""
        for req in [r for r in self._active.values() if r.stopped() or self.engine._closed]:
            self._end(req, "cancelled")
        reqs = sorted(self._active.values(), key=lambda r: r.slot)
        if not reqs:
            return
        try:
            logits = self.step.forward([r.token for r in reqs], [r.cache for r in reqs], [r.slot for r in reqs])
        except Exception as exc:  # the shared forward failed: every request in it ends with the error
            for req in reqs:
                self._failed(req, exc)
            return
        plain = [r.sampler.greedy and r.params.repetition_penalty == 1.0 for r in reqs]
        # One device-to-host copy for all plain greedy rows instead of one per row.
        best = logits.argmax(-1).tolist() if any(plain) else None
        for row, req in enumerate(reqs):
            try:
                self._take(req, best[row] if plain[row] else req.sampler.pick(logits[row]))
            except Exception as exc:
                self._failed(req, exc)

    def _take(self, req: _Request, token: int) -> None:
        """The request's next token: stop ids, tool markers, text and stop strings, as HFEngine._run."""
        from studio.engines.hf_sampling import _TextAssembler

        engine = self.engine
        if token in engine.stop_ids:
            return self._end(req, "stop")
        req.done += 1
        piece, hit = "", False
        if token in req.markers:  # what was held back, then the marker; text after it decodes afresh
            req.out.put(TextDelta(text=req.text.flush() + req.markers[token]))
            req.text = _TextAssembler(engine.tokenizer, req.params.stop, engine._tok_lock)
            if token == engine.tool_format.ACTION_END_ID:
                return self._end(req, "stop")
        else:
            piece, hit = req.text.push(token)
        if piece:
            req.out.put(TextDelta(text=piece))
        if hit:
            req.hit = True
            return self._end(req, "stop")
        if req.done >= req.params.max_new_tokens:
            return self._end(req, "length")
        req.token = token

    def _failed(self, req: _Request, exc: BaseException) -> None:
        import torch

        if isinstance(exc, torch.cuda.OutOfMemoryError):
            gc.collect()
            torch.cuda.empty_cache()
            error = (f"Out of GPU memory while generating (prompt {len(req.prompt.ids)} tokens, {req.done} "
                     "generated). Shorten the conversation, lower max_new_tokens or max_batch_size.")
        else:
            log.error("generation failed", exc_info=exc)
            error = f"Generation failed: {type(exc).__name__}: {exc}"
        self._end(req, "error", error)

    def _end(self, req: _Request, finish: str, error: Optional[str] = None) -> None:
        """The request's last delta; its slot is free for the next step."""
        if self._active.get(req.slot) is req:
            del self._active[req.slot]
        req.cache = None
        counts = dict(prompt_tokens=len(req.prompt.ids), completion_tokens=req.done)
        if error:
            req.out.put(TextDelta(finish_reason="error", error=error, **counts))
            return
        tail = "" if (req.hit or req.text is None) else req.text.flush()  # after a stop string: nothing more
        req.out.put(TextDelta(text=tail, finish_reason=finish, **counts))


def make_batcher(engine: Any) -> Optional[Batcher]:
    """A batcher for an engine on the lean Llama decoder with more than one slot, else None."""
    from studio.engines.hf_batch_step import BatchStep
    from studio.engines.hf_decode import FastLlamaDecoder

    slots = slots_for(engine.cfg.max_batch_size, engine.model.device.type)
    if slots <= 1 or not isinstance(engine.decoder, FastLlamaDecoder):
        return None
    return Batcher(engine, BatchStep(engine.decoder), slots)
