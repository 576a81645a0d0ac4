"""The one place a prompt becomes a reply: wait for the engine, prepare, stream, accumulate, save.

Chat, the image tab, every article step and the /v1 API run their model calls through `run`; what
differs between them (what is shown, what is stored) comes in as two small callbacks.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterator, Optional, Union

from studio.core.types import FinishReason, GenParams, Message, Notice, TextDelta
from studio.engines.base import Engine, Fit, Prepared
from studio.errors import StudioError
from studio.services import Services

LOAD_WAIT_S = 600.0  # how long a message sent during start-up waits for the model
LOAD_POLL_S = 1.0
CHECKPOINT_S = 2.0  # a streaming reply is saved this often, so a crash loses at most this much of it


@dataclass(frozen=True)
class Started:
    """The engine accepted the prompt; deltas follow."""

    prepared: Prepared
    engine: Engine

    @property
    def prompt_tokens(self) -> int:
        """Tokens of the prompt as sent."""
        return self.prepared.prompt_tokens


@dataclass
class Reply:
    """A reply as it accumulates; `run` returns it once the stream has ended."""

    text: str = ""
    finish_reason: Optional[FinishReason] = None
    error: Optional[str] = None
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def add(self, delta: TextDelta) -> None:
        """Take one delta in."""
        self.text += delta.text
        if delta.finish_reason:
            self.finish_reason, self.error = delta.finish_reason, delta.error
            self.prompt_tokens, self.completion_tokens = delta.prompt_tokens, delta.completion_tokens

    @property
    def failed(self) -> bool:
        """The engine ended the reply with an error."""
        return self.finish_reason == "error"


TurnEvent = Union[Notice, Started, TextDelta]


def ready_engine(services: Services, name: str, cancel: Optional[threading.Event] = None,
                 wait_s: float = LOAD_WAIT_S) -> Iterator[Notice]:
    """Yield loading notices until the engine is ready; returns it (`engine = yield from ready_engine(…)`),
    or None when `cancel` is set while it loads; ModelNotReady when loading failed or takes over `wait_s`."""
    deadline = time.monotonic() + wait_s
    pool = services.engines
    pool.start(name)
    while True:
        st = pool.state(name)
        if st.state in ("ready", "failed") or time.monotonic() > deadline:
            return pool.get(name)  # raises ModelNotReady when failed or still loading
        if cancel is not None and cancel.is_set():
            return None
        yield Notice(f"Waiting for the model to load ({st.progress:.0%}, {st.text})…",
                     key="notice_waiting_model", args={"progress": st.progress, "detail": st.text})
        pool.wait(name, min(LOAD_POLL_S, max(0.05, deadline - time.monotonic())))


def run(services: Services, name: str, messages: list[Message], params: GenParams, cancel: threading.Event, *,
        max_tiles: Optional[int] = None, fit: Fit = "refuse", wait_s: float = LOAD_WAIT_S,
        on_text: Optional[Callable[[Reply], None]] = None,
        checkpoint: Optional[Callable[[Reply], None]] = None, tools: tuple[dict, ...] = ()) -> Iterator[TurnEvent]:
    """Notices while the model loads, Started, the trim notice, then the deltas; returns the Reply.

    `on_text(reply)` runs after every delta, before it is yielded (what the caller shows or keeps);
    `checkpoint(reply)` every CHECKPOINT_S while text streams (a failed save becomes a warning and the
    reply goes on). Ending early (Stop, a closed page, an error) sets `cancel` and closes the engine's
    stream, so the compute ends too; a reply that ran to its end leaves `cancel` as it was. A reply
    cancelled before the model was ready has finish reason "cancelled"."""
    reply = Reply()
    try:
        engine = yield from ready_engine(services, name, cancel, wait_s)
        if engine is None:
            reply.finish_reason = "cancelled"
            return reply
        prepared = engine.prepare(messages, params, max_tiles=max_tiles, fit=fit, tools=tools)
        yield Started(prepared, engine)
        yield from prepared.notices
        stream = engine.stream(prepared, cancel)
        saved = time.monotonic()
        try:
            for delta in stream:
                reply.add(delta)
                if on_text:
                    on_text(reply)
                if checkpoint and reply.text and time.monotonic() - saved >= CHECKPOINT_S:
                    yield from _checkpoint(checkpoint, reply)
                    saved = time.monotonic()
                yield delta
        finally:
            getattr(stream, "close", lambda: None)()  # a closed generator ends the compute at once
    finally:
        if reply.finish_reason is None:
            cancel.set()
    return reply


def complete(services: Services, name: str, messages: list[Message], params: GenParams,
             cancel: Optional[threading.Event] = None, max_tiles: Optional[int] = None) -> Reply:
    """The whole reply at once (for callers that cannot stream, e.g. a gallery captioning a picture)."""
    events = run(services, name, messages, params, cancel or threading.Event(), max_tiles=max_tiles)
    while True:
        try:
            next(events)
        except StopIteration as end:
            return end.value


def shown(events: Iterator[TurnEvent]) -> Iterator[Union[Notice, TextDelta]]:
    """A turn's events without Started (what the tabs show); returns the Reply."""
    while True:
        try:
            event = next(events)
        except StopIteration as end:
            return end.value
        if not isinstance(event, Started):
            yield event


def _checkpoint(checkpoint: Callable[[Reply], None], reply: Reply) -> Iterator[Notice]:
    try:
        checkpoint(reply)
    except StudioError as exc:
        yield Notice(f"The reply so far could not be saved: {exc}", "warning")
