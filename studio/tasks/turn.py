"""The one place a prompt becomes a reply: wait for the engine, prepare, stream, accumulate, save.

Chat, the image tab, every article step and the /v1 API run their model calls through `run`; what
differs between them (what is shown, what is stored) comes in as two small callbacks.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
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
    """A reply as it accumulates, timed by the loop that streams it; `run` returns it once the stream has ended.

    The token counts are the engine's own (its final delta's). The clock starts when `start` is called,
    just before the engine prepares the prompt (after any wait for the model to load)."""

    text: str = ""
    finish_reason: Optional[FinishReason] = None
    error: Optional[str] = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    first_token_s: Optional[float] = None  # start → the first delta with text
    seconds: Optional[float] = None  # start → the latest delta (the whole generation once finished)
    pieces: int = 0  # deltas with text so far: what the page counts while the reply streams
    clock: Callable[[], float] = field(default=time.monotonic, repr=False, compare=False)
    _started: Optional[float] = field(default=None, repr=False, compare=False)

    def start(self) -> None:
        """Start the clock (the loop calls it as the engine begins to prepare the prompt)."""
        self._started = self.clock()

    def add(self, delta: TextDelta) -> None:
        """Take one delta in."""
        self.text += delta.text
        if self._started is not None:
            self.seconds = self.clock() - self._started
            if delta.text and self.first_token_s is None:
                self.first_token_s = self.seconds
        if delta.text:
            self.pieces += 1
        if delta.finish_reason:
            self.finish_reason, self.error = delta.finish_reason, delta.error
            # An engine that does not count the prompt (0) leaves the prepared prompt's count.
            self.prompt_tokens = delta.prompt_tokens or self.prompt_tokens
            self.completion_tokens = delta.completion_tokens

    @property
    def failed(self) -> bool:
        """The engine ended the reply with an error."""
        return self.finish_reason == "error"

    @property
    def tokens_per_s(self) -> Optional[float]:
        """Decode speed: completion_tokens divided by the seconds from the first text delta to the end.

        The time to the first token (prefill, and any held-back text) is left out, as other studios do;
        None until the reply has ended, or when no time passed after the first text (a whole-reply engine)."""
        if self.finish_reason is None or self.first_token_s is None or self.seconds is None:
            return None
        decode_s = self.seconds - self.first_token_s
        return self.completion_tokens / decode_s if decode_s > 0 and self.completion_tokens else None

    def stats(self) -> dict:
        """The reply's stats as stored on its message (`Message.meta["stats"]`); counts the engine has not
        reported yet (the reply still streams) are None."""
        done = self.finish_reason is not None
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens if done else None,
                "first_token_s": _rounded(self.first_token_s, 3), "seconds": _rounded(self.seconds, 3),
                "tokens_per_s": _rounded(self.tokens_per_s, 2), "finish_reason": self.finish_reason}


def _rounded(value: Optional[float], digits: int) -> Optional[float]:
    return None if value is None else round(value, digits)


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
        reply.start()
        prepared = engine.prepare(messages, params, max_tiles=max_tiles, fit=fit, tools=tools)
        reply.prompt_tokens = prepared.prompt_tokens  # until the engine's final delta reports its own
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
        yield Notice(f"The reply so far could not be saved: {exc}", "warning", key="notice_not_saved",
                     args={"error": str(exc)})
