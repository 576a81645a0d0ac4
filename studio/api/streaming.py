"""Blocking engine iterators driven off the event loop, and responses that stop them when the client leaves."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import AsyncIterator, Callable, Iterator, TypeVar

from starlette.requests import Request
from starlette.responses import StreamingResponse

T = TypeVar("T")
_END = object()


class _Raised:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


async def in_thread(make: Callable[[], Iterator[T]]) -> AsyncIterator[T]:
    """Items of `make()`, produced on a thread of their own so the event loop (and the UI) never waits."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()

    def put(item) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, item)
        except RuntimeError:  # the loop is gone (server shutting down): nobody is listening
            pass

    def pump() -> None:
        it = None
        try:
            it = make()
            for item in it:
                put(item)
        except BaseException as exc:  # handed to the awaiting side, which raises it there
            put(_Raised(exc))
        finally:
            close = getattr(it, "close", None)
            if close:
                close()  # on this thread: a generator is closed where it runs
            put(_END)

    threading.Thread(target=pump, name="api-generation", daemon=True).start()
    while True:
        item = await queue.get()
        if item is _END:
            return
        if isinstance(item, _Raised):
            raise item.exc
        yield item


@contextlib.asynccontextmanager
async def cancel_on_disconnect(request: Request, cancel: threading.Event):
    """Set `cancel` if the client disconnects while the block runs (the body has been read already)."""

    async def watch() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass
        cancel.set()

    task = asyncio.create_task(watch())
    try:
        yield
    finally:
        task.cancel()


class EngineStream(StreamingResponse):
    """Server-sent events whose end, however it comes (done, client gone, error), stops the compute."""

    def __init__(self, content: AsyncIterator[str], cancel: threading.Event) -> None:
        super().__init__(content, media_type="text/event-stream",
                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self._cancel = cancel

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            # Starlette stops sending when the client disconnects; the engine thread learns it here.
            self._cancel.set()


class BodyLimit:
    """Refuses request bodies over `limit` bytes before they are read whole (a JSON body is kept in memory)."""

    def __init__(self, app, limit: int, refuse: Callable[[str], object]) -> None:
        self.app, self.limit, self.refuse = app, limit, refuse

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        message = f"The request body is over {self.limit // 2**20} MiB."
        declared = dict(scope.get("headers", ())).get(b"content-length", b"0")
        if declared.isdigit() and int(declared) > self.limit:
            return await self.refuse(message)(scope, receive, send)
        # Read the body here (the JSON body is held whole anyway): a chunked body declares no size,
        # and failing inside the app's own read would be answered as a parse error (400), not 413.
        chunks, seen = [], 0
        while True:
            msg = await receive()
            if msg["type"] != "http.request":
                return  # the client went away before sending the whole body
            chunks.append(msg.get("body", b""))
            seen += len(chunks[-1])
            if seen > self.limit:
                return await self.refuse(message)(scope, receive, send)
            if not msg.get("more_body", False):
                break
        body = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]
        chunks.clear()

        async def replay():
            return body.pop() if body else await receive()  # then: disconnect notices, as before

        await self.app(scope, replay, send)
