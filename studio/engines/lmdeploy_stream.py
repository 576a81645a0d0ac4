"""One request's responses from an lmdeploy pipeline, in batches of whatever has arrived.

`Pipeline.stream_infer` hands a thread one response per token through a queue it owns, so a thread
that falls behind (32 users streaming on one interpreter) wakes once per token to catch up, and the
code after it (the chat task, the page's frames, /v1's chunks) runs once per token too. Here the
request goes to the pipeline's async engine on the pipeline's own event loop, as `stream_infer` does,
into a queue of ours; the reader takes everything waiting at once. Behind, a reader catches up in one
step; keeping pace, it gets one response at a time as before.

Pipelines without that API (other lmdeploy versions, stand-ins in tests) are read through
`stream_infer`, one response at a time.
"""

from __future__ import annotations

import asyncio
import queue
from dataclasses import dataclass
from typing import Any, Iterator, Optional

_END = object()


@dataclass
class Piece:
    """What one or more of lmdeploy's responses say: new text, the counts so far, the finish."""

    text: str = ""
    generate_token_len: int = 0
    input_token_len: int = 0
    finish_reason: Optional[str] = None
    error_code: Any = None
    error_message: Optional[str] = None


def read(pipe: Any, messages: list[dict], sess: Any, gen: Any) -> Iterator[Any]:
    """The request's responses (lmdeploy's Response or a Piece: text, token counts, finish_reason,
    error), those that arrived while the reader was busy joined into one."""
    loop = getattr(getattr(pipe, "internal_thread", None), "loop", None)
    engine = getattr(pipe, "async_engine", None)
    if loop is None or not (hasattr(engine, "preprocess") and hasattr(engine, "generate")):
        yield from pipe.stream_infer(messages, sessions=sess, gen_config=gen)
        return
    got: queue.SimpleQueue = queue.SimpleQueue()

    async def feed() -> None:
        try:
            request = await engine.preprocess(messages=messages, session_id=sess, gen_config=gen)
            async for out in engine.generate(request, stream_response=True):
                got.put(Piece(out.response or "", out.generate_token_len or 0, out.input_token_len or 0,
                              out.finish_reason))
        except Exception as exc:  # lmdeploy's RequestError carries a code and a message
            code = getattr(getattr(exc, "code", None), "value", getattr(exc, "code", None))
            got.put(Piece(finish_reason="error", error_code=code,
                          error_message=getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"))
        finally:
            got.put(_END)

    future = asyncio.run_coroutine_threadsafe(feed(), loop)
    try:
        while True:
            batch = [got.get()]
            while True:
                try:
                    batch.append(got.get_nowait())
                except queue.Empty:
                    break
            ended = batch[-1] is _END
            batch = [p for p in batch if p is not _END]
            if batch:
                yield merge(batch)
            if ended:
                return
    finally:
        future.cancel()


def merge(pieces: list[Piece]) -> Piece:
    """Consecutive responses as one: their texts joined, the last counts, the finish if any said one."""
    if len(pieces) == 1:
        return pieces[0]
    last = pieces[-1]
    finish = next((p for p in reversed(pieces) if p.finish_reason), last)
    return Piece("".join(p.text for p in pieces), last.generate_token_len, last.input_token_len,
                 finish.finish_reason, finish.error_code, finish.error_message)
